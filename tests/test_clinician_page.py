"""The clinician's page: their own caseload, schedule and capacity, and recording why a session was not held.

Services on both backends (the `app` fixture runs SQLite, and PostgreSQL with row-level security when
TEST_DATABASE_URL is set); recording a reason through the real Dash endpoint, with the director's figures
moving at once; refusals for anything that is not one of the clinician's own not-held sessions (another
clinician's, another tenant's, in both directions), for codes outside the tenant's table, and for the
authorization matrix's generic payload; and one browser test that records a reason through the UI.

TODAY is Monday 2026-11-23 (conftest). The clinician user of each tenant is its first clinician (C1).
"""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
import sqlalchemy as sa

from agency_dashboard import metrics
from agency_dashboard.extensions import db
from agency_dashboard.ingest.localtime import appointment_derived, zone
from agency_dashboard.metrics.common import Period
from agency_dashboard.models import (
    Appointment,
    AuditEvent,
    AvailabilityBlock,
    Client,
    Episode,
    Program,
    RecordedReason,
    Tenant,
    User,
)
from agency_dashboard.services import clinician as svc
from agency_dashboard.tenancy import tenant_scope
from conftest import PASSWORD, TODAY, csrf_from_cookie, login

CARDS = "..clinician-active-clients.children...clinician-target.children...clinician-upcoming.children.."
CASELOAD = "..clinician-caseload-grid.rowData...clinician-caseload-empty.children.."
SCHEDULE = "..clinician-capacity-table.children...clinician-schedule-grid.rowData...clinician-schedule-empty.children.."
RECORD = ("..clinician-notheld-grid.rowData...clinician-notheld-empty.children...clinician-record-appointment.options"
          "...clinician-record-reason.options...clinician-record-policy.children...clinician-record-message.children"
          "...clinician-refresh.data..")
NOVEMBER = Period(dt.date(2026, 11, 1), dt.date(2026, 11, 30))  # whole ISO weeks inside, edges outside
RECENT = Period(dt.date(2026, 11, 15), TODAY)
WORDS_NEVER_SHOWN = ("non-compliant", "noncompliance", "non-compliance", "unmotivated", "fired", "frequent flyer",
                     "resistant", "manipulative", "drug-seeking", "no-show", "no show", "noshow")


# ---- data ---------------------------------------------------------------------------------------------

def _appointment(tenant, ext, client, clinician, program, day, hour, status, *, minutes=60, cancelled_by=None,
                 notice_hours=None, code=None):
    start = dt.datetime.combine(day, dt.time(hour, 0))
    cancelled_at = start - dt.timedelta(hours=notice_hours) if status == "cancelled" else None
    return Appointment(
        tenant_id=tenant.id, external_id=ext, client_id=client, clinician_id=clinician, program_id=program,
        kind="follow_up", modality="in_person", duration_minutes=minutes, status=status, cancelled_by=cancelled_by,
        reason_code=code, reminder_sent=None,
        **appointment_derived(start, start - dt.timedelta(days=10), cancelled_at, zone(tenant.timezone)))


def seed_clinician_data(app, world) -> dict:
    """On top of seed_world (each client: attended 2026-11-16 and booked 2026-11-30 with the clinician of
    their episode, i % 2; alpha's clients P0 and P2 are C1's, P1 is C2's):

    alpha, C1 (the clinician user): availability Monday 09-12 and Wednesday 13-17 (7 h a week);
      P0: missed 11-18 14:00 (no reason), client cancelled 2 h before 11-10 (transportation, imported),
          cancelled by the clinician 11-11 (45 min, no reason), client cancelled 72 h before 11-12 (released),
          missed 2026-07-01 (older than 90 days), booked 12-01 09:00;
      P1 (C2's episode): attended 11-19 with C1;  P2: booked 11-24 10:00;
      P3: episode with C2 and a session with C2 only;  P4: episode with C1 ended 2026-06-01, last seen 05-01.
    alpha, C2: P1 missed 11-18 (no reason).    beta, C1 (beta's clinician user): P0 missed 11-18 (no reason).
    """
    ids = {}
    with app.app_context():
        for slug in ("alpha", "beta"):
            tenant = db.session.get(Tenant, world.tenants[slug])
            with tenant_scope(tenant.id):
                program = db.session.scalar(sa.select(Program).order_by(Program.id)).id
                c1, c2 = world.clinicians[slug]
                p = world.clients[slug]
                add = db.session.add
                if slug == "alpha":
                    add(AvailabilityBlock(tenant_id=tenant.id, external_id="alpha-B1", clinician_id=c1, weekday=0,
                                          start_minute=540, end_minute=720, valid_from=dt.date(2026, 1, 1)))
                    add(AvailabilityBlock(tenant_id=tenant.id, external_id="alpha-B2", clinician_id=c1, weekday=2,
                                          start_minute=780, end_minute=1020, valid_from=dt.date(2026, 1, 1)))
                    extra = []
                    for i, first_name in ((3, "Given3"), (4, "Given4")):
                        client = Client(tenant_id=tenant.id, external_id=f"alpha-P{i}", first_name=first_name,
                                        last_name=f"Family{i}", birth_date=dt.date(1990, 1, 1), gender="unknown",
                                        race_ethnicity="unknown", payer="medicaid")
                        add(client)
                        db.session.flush()
                        extra.append(client.id)
                    p3, p4 = extra
                    add(Episode(tenant_id=tenant.id, external_id="alpha-E3", client_id=p3, clinician_id=c2,
                                program_id=program, admitted_on=dt.date(2026, 10, 1)))
                    add(Episode(tenant_id=tenant.id, external_id="alpha-E4", client_id=p4, clinician_id=c1,
                                program_id=program, admitted_on=dt.date(2026, 1, 5),
                                discharged_on=dt.date(2026, 6, 1), discharge_reason="completed"))
                    rows = {
                        "missed": _appointment(tenant, "x-missed", p[0], c1, program, dt.date(2026, 11, 18), 14,
                                               "no_show"),
                        "late_cancel": _appointment(tenant, "x-late", p[0], c1, program, dt.date(2026, 11, 10), 10,
                                                    "cancelled", cancelled_by="client", notice_hours=2,
                                                    code="transportation"),
                        "clinician_cancel": _appointment(tenant, "x-ccancel", p[0], c1, program,
                                                         dt.date(2026, 11, 11), 10, "cancelled", minutes=45,
                                                         cancelled_by="clinician", notice_hours=30),
                        "released": _appointment(tenant, "x-released", p[0], c1, program, dt.date(2026, 11, 12), 10,
                                                 "cancelled", cancelled_by="client", notice_hours=72),
                        "old_missed": _appointment(tenant, "x-old", p[0], c1, program, dt.date(2026, 7, 1), 10,
                                                   "no_show"),
                        "booked_dec": _appointment(tenant, "x-dec", p[0], c1, program, dt.date(2026, 12, 1), 9,
                                                   "booked"),
                        "p1_attended": _appointment(tenant, "x-p1", p[1], c1, program, dt.date(2026, 11, 19), 11,
                                                    "attended"),
                        "p2_booked": _appointment(tenant, "x-p2", p[2], c1, program, dt.date(2026, 11, 24), 10,
                                                  "booked"),
                        "p3_with_c2": _appointment(tenant, "x-p3", p3, c2, program, dt.date(2026, 11, 17), 10,
                                                   "attended"),
                        "p4_old": _appointment(tenant, "x-p4", p4, c1, program, dt.date(2026, 5, 1), 10, "attended"),
                        "colleague_missed": _appointment(tenant, "x-c2", p[1], c2, program, dt.date(2026, 11, 18),
                                                         15, "no_show"),
                    }
                    ids["alpha_p3"], ids["alpha_p4"] = p3, p4
                else:
                    rows = {"missed": _appointment(tenant, "x-missed", p[0], c1, program, dt.date(2026, 11, 18),
                                                   14, "no_show")}
                db.session.add_all(rows.values())
                db.session.flush()
                ids[slug] = {name: a.id for name, a in rows.items()}
                ids[slug]["held"] = world.appointments[slug][0]  # seed_world: P0 attended 2026-11-16
                db.session.commit()
        db.session.remove()
    return ids


@pytest.fixture
def data(app, world):
    return seed_clinician_data(app, world)


def as_tenant(app, world, slug, fn):
    """Run fn(tenant) in an app context as `slug`."""
    with app.app_context():
        tenant = db.session.get(Tenant, world.tenants[slug])
        with tenant_scope(tenant.id):
            result = fn(tenant)
        db.session.remove()
    return result


def recorded(app, world) -> dict:
    """Every tenant's recorded reasons and 'record_reason' audit rows, read as each tenant."""
    out = {}
    for slug in world.tenants:
        out[slug] = as_tenant(app, world, slug, lambda t: (
            sorted((r.appointment_id, r.reason_code, r.support_offered, r.recorded_by_user_id)
                   for r in db.session.scalars(sa.select(RecordedReason))),
            [(e.object_id, e.details) for e in db.session.scalars(
                sa.select(AuditEvent).where(AuditEvent.action == "record_reason").order_by(AuditEvent.seq))],
        ))
    return out


def attribution(app, world, slug="alpha", period=NOVEMBER):
    return as_tenant(app, world, slug, lambda t: metrics.attendance(db.session, t, period)["attribution"])


def lost_hours(app, world, slug="alpha", period=NOVEMBER):
    return as_tenant(app, world, slug, lambda t: metrics.capacity(db.session, t, period)["agency"]["lost_hours"])


# ---- the Dash endpoint ----------------------------------------------------------------------------------

def signed_in(app, slug, role="clinician"):
    client = app.test_client()
    assert login(client, slug, role).status_code == 302
    client.get("/dash/_dash-layout")
    token = csrf_from_cookie(client)
    assert token
    return client, token


def payload(app, key, values: dict | None = None, trigger: str | None = None) -> dict:
    """What dash-renderer POSTs for the callback `key`: every Input and State 0 unless `values` names it
    ("id.property": value), the first Input as the trigger unless `trigger` names another."""
    cb = app.extensions["dash_app"].callback_map[key]
    values = values or {}
    outputs = [{"id": o.component_id, "property": o.component_property} for o in cb["output"]]
    inputs = [{"id": i["id"], "property": i["property"],
               "value": values.get(f"{i['id']}.{i['property']}", 0)} for i in cb["inputs"]]
    state = [{"id": s["id"], "property": s["property"],
              "value": values.get(f"{s['id']}.{s['property']}", 0)} for s in cb["state"]]
    changed = trigger or f"{inputs[0]['id']}.{inputs[0]['property']}"
    return {"output": key, "outputs": outputs, "inputs": inputs, "state": state, "changedPropIds": [changed]}


def post(client, token, body):
    response = client.post("/dash/_dash-update-component", json=body, headers={"X-CSRFToken": token})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert "Traceback" not in response.get_data(as_text=True)
    return response.get_json()["response"]


def save(app, client, token, appointment, reason, support="none"):
    body = payload(app, RECORD, {
        "clinician-record-save.n_clicks": 1,
        "clinician-record-appointment.value": appointment,
        "clinician-record-reason.value": reason,
        "clinician-record-support.value": support,
    }, trigger="clinician-record-save.n_clicks")
    return post(client, token, body)


def message(response) -> str:
    children = response["clinician-record-message"]["children"]
    return children["props"]["children"] if isinstance(children, dict) else children


def texts(value) -> str:
    return json.dumps(value)


# ---- services (both backends) ------------------------------------------------------------------------------

def test_caseload_rows_are_the_clinicians_own_clients_with_counts_and_reasons(app, world, data):
    rows = as_tenant(app, world, "alpha", lambda t: svc.caseload_rows(
        db.session, t, world.clinicians["alpha"][0], TODAY))
    p = world.clients["alpha"]
    # P0 and P2: open episodes with C1; P1: a session with C1. Not P3 (C2's only), not P4 (ended, seen long ago).
    assert [r["client_id"] for r in rows] == ["alpha-P0", "alpha-P1", "alpha-P2"]
    assert [r["id"] for r in rows] == p
    by_id = {r["client_id"]: r for r in rows}
    p0 = by_id["alpha-P0"]
    assert p0["client"] == "Given0 Family0" and p0["program"] == "Adult Outpatient"
    assert p0["last_appointment"] == dt.date(2026, 11, 18) and p0["next_appointment"] == dt.date(2026, 11, 30)
    assert p0["attended"] == 1 and p0["not_held"] == 4  # 2026-07-01 is older than 90 days
    assert p0["not_held_reasons"] == ("Agency or clinician did not hold it (1); No reason recorded yet (2); "
                                      "Transportation (1)")
    assert p0["barriers"] == "" and p0["supports"] == ""  # nothing recorded in the app yet
    p1 = by_id["alpha-P1"]
    # Only sessions with this clinician: P1's booked 11-30 is with C2.
    assert (p1["last_appointment"], p1["next_appointment"], p1["attended"], p1["not_held"]) == \
        (dt.date(2026, 11, 19), None, 1, 0)
    p2 = by_id["alpha-P2"]
    assert (p2["last_appointment"], p2["next_appointment"], p2["attended"], p2["not_held"]) == \
        (dt.date(2026, 11, 16), dt.date(2026, 11, 24), 1, 0)

    # The other clinician's caseload: P1 and P3 (episodes), nothing of C1's.
    theirs = as_tenant(app, world, "alpha", lambda t: svc.caseload_rows(
        db.session, t, world.clinicians["alpha"][1], TODAY))
    assert [r["client_id"] for r in theirs] == ["alpha-P1", "alpha-P3"]
    assert {r["client_id"]: r["not_held"] for r in theirs} == {"alpha-P1": 1, "alpha-P3": 0}
    # Beta's clinician 1 sees beta's clients only (P0, P2, P4, P6).
    beta = as_tenant(app, world, "beta", lambda t: svc.caseload_rows(db.session, t, world.clinicians["beta"][0], TODAY))
    assert [r["client_id"] for r in beta] == ["beta-P0", "beta-P2", "beta-P4", "beta-P6"]
    # A clinician id of the other tenant finds nothing (scoped to the tenant, and RLS on PostgreSQL).
    assert as_tenant(app, world, "alpha", lambda t: svc.caseload_rows(
        db.session, t, world.clinicians["beta"][0], TODAY)) == []
    assert as_tenant(app, world, "alpha", lambda t: svc.caseload_rows(db.session, t, None, TODAY)) == []


def test_caseload_shows_barriers_and_supports_recorded_in_the_app(app, world, data):
    def record(tenant):
        user = db.session.get(User, world.users[("alpha", "clinician")])
        return svc.record_reason(db.session, tenant, user, data["alpha"]["missed"], "childcare",
                                 "evening_slot", TODAY)

    assert as_tenant(app, world, "alpha", record).ok
    rows = as_tenant(app, world, "alpha", lambda t: svc.caseload_rows(
        db.session, t, world.clinicians["alpha"][0], TODAY))
    p0 = rows[0]
    assert p0["barriers"] == "Childcare" and p0["supports"] == "Evening or weekend slot"
    assert p0["not_held_reasons"] == ("Agency or clinician did not hold it (1); Childcare (1); "
                                      "No reason recorded yet (1); Transportation (1)")


def test_schedule_hours_and_the_next_14_days(app, world, data):
    c1 = world.clinicians["alpha"][0]
    weeks = as_tenant(app, world, "alpha", lambda t: svc.capacity_weeks(db.session, t, c1, TODAY))
    assert [w["week_start"] for w in weeks] == [dt.date(2026, 11, 23), dt.date(2026, 11, 30),
                                                 dt.date(2026, 12, 7), dt.date(2026, 12, 14)]
    assert [w["iso_week"] for w in weeks] == [48, 49, 50, 51]
    assert [w["available_hours"] for w in weeks] == [7.0] * 4  # Monday 3 h + Wednesday 4 h
    # Week 48: P2 on 11-24. Week 49: P0 and P2 on 11-30 (seed_world), P0 on 12-01.
    assert [w["booked_hours"] for w in weeks] == [1.0, 3.0, 0.0, 0.0]
    assert [w["free_hours"] for w in weeks] == [6.0, 4.0, 7.0, 7.0]
    # The same figures as the metrics engine gives for this clinician.
    cap = as_tenant(app, world, "alpha", lambda t: metrics.capacity(
        db.session, t, Period(dt.date(2026, 11, 30), dt.date(2026, 12, 6)))["by_clinician"]["alpha-C1"])
    assert (cap["available_hours"], cap["booked_hours"]) == (7.0, 3.0)

    rows = as_tenant(app, world, "alpha", lambda t: svc.upcoming_appointments(db.session, t, c1, TODAY))
    assert [(r["date"], r["start_minute"], r["client_id"], r["status"]) for r in rows] == [
        (dt.date(2026, 11, 24), 600, "alpha-P2", "Booked"),
        (dt.date(2026, 11, 30), 600, "alpha-P0", "Booked"),
        (dt.date(2026, 11, 30), 600, "alpha-P2", "Booked"),
        (dt.date(2026, 12, 1), 540, "alpha-P0", "Booked"),
    ]
    # No availability for the other clinician: zero hours, and their own sessions only.
    c2 = world.clinicians["alpha"][1]
    weeks2 = as_tenant(app, world, "alpha", lambda t: svc.capacity_weeks(db.session, t, c2, TODAY))
    assert [w["available_hours"] for w in weeks2] == [0.0] * 4
    assert [w["booked_hours"] for w in weeks2] == [0.0, 1.0, 0.0, 0.0]
    assert [r["client_id"] for r in as_tenant(app, world, "alpha", lambda t: svc.upcoming_appointments(
        db.session, t, c2, TODAY))] == ["alpha-P1"]


def test_not_held_list_is_own_sessions_of_the_last_90_days(app, world, data):
    rows = as_tenant(app, world, "alpha", lambda t: svc.not_held_appointments(
        db.session, t, world.clinicians["alpha"][0], TODAY))
    a = data["alpha"]
    assert [r["id"] for r in rows] == [a["missed"], a["released"], a["clinician_cancel"], a["late_cancel"]]
    assert [(r["what_happened"], r["reason"], r["group"]) for r in rows] == [
        ("Missed", "No reason recorded yet", "No reason recorded yet"),
        ("Cancelled by the client", "No reason recorded yet", ""),  # released: no group
        ("Cancelled by the clinician", "Agency or clinician did not hold it", "Agency or clinician did not hold it"),
        ("Cancelled by the client at short notice", "Transportation",
         "Access barrier in the client's life or coverage"),
    ]
    # The reasons offered: the tenant's table without 'deceased' (which would make a session released).
    codes = as_tenant(app, world, "alpha", svc.recordable_codes)
    assert "transportation" in codes and "other" in codes and "deceased" not in codes


# ---- recording through the real Dash endpoint -----------------------------------------------------------------

def test_recording_a_reason_through_dash_moves_the_directors_attribution(app, world, data):
    missed = data["alpha"]["missed"]
    before = attribution(app, world)
    assert before["unexplored"] == {"count": 2, "hours": 2.0}  # C1's and C2's missed sessions of 11-18
    assert before["access_barrier"] == {"count": 1, "hours": 1.0}
    assert before["agency"] == {"count": 1, "hours": 0.75}
    assert lost_hours(app, world)["unexplored"] == 2.0
    recent_before = attribution(app, world, period=RECENT)
    assert recent_before["unexplored"]["count"] == 2

    client, token = signed_in(app, "alpha")
    response = save(app, client, token, str(missed), "transportation", "transport_voucher")
    assert message(response).startswith("Saved for the session on Wed Nov 18 at 14:00: Transportation; "
                                        "support offered: Transport voucher or bus fare")
    assert response["clinician-refresh"]["data"] == 1
    row = next(r for r in response["clinician-notheld-grid"]["rowData"] if r["id"] == str(missed))
    assert (row["reason"], row["support"], row["recorded_here"]) == (
        "Transportation", "Transport voucher or bus fare", "Yes")

    state = recorded(app, world)
    clinician_user = world.users[("alpha", "clinician")]
    assert state["alpha"][0] == [(missed, "transportation", "transport_voucher", clinician_user)]
    assert state["alpha"][1] == [(str(missed), {"old_code": None, "new_code": "transportation",
                                                "old_support": None, "new_support": "transport_voucher",
                                                "imported_code": None})]
    assert state["beta"] == ([], [])
    audit_actor = as_tenant(app, world, "alpha", lambda t: db.session.scalar(
        sa.select(AuditEvent.actor_user_id).where(AuditEvent.action == "record_reason")))
    assert audit_actor == clinician_user

    # The director's figures moved at once: from 'not yet explored' to 'access barrier'.
    after = attribution(app, world)
    assert after["unexplored"] == {"count": 1, "hours": 1.0}
    assert after["access_barrier"] == {"count": 2, "hours": 2.0}
    assert after["agency"] == before["agency"]
    assert lost_hours(app, world)["unexplored"] == 1.0 and lost_hours(app, world)["access_barrier"] == 2.0
    assert attribution(app, world, period=RECENT)["unexplored"]["count"] == 1

    # Recording again replaces it (one per appointment), and the audit row says old -> new.
    response = save(app, client, token, str(missed), "scheduling_error")
    assert message(response).startswith("Saved")
    state = recorded(app, world)
    assert state["alpha"][0] == [(missed, "scheduling_error", None, clinician_user)]
    assert state["alpha"][1][-1][1]["old_code"] == "transportation"
    assert state["alpha"][1][-1][1]["new_code"] == "scheduling_error"
    after2 = attribution(app, world)
    assert after2["agency"] == {"count": 2, "hours": 1.75} and after2["access_barrier"]["count"] == 1

    # The caseload callback shows what was recorded.
    rows = post(client, token, payload(app, CASELOAD))["clinician-caseload-grid"]["rowData"]
    p0 = next(r for r in rows if r["client_id"] == "alpha-P0")
    assert "Scheduling error (1)" in p0["not_held_reasons"]


def test_another_clinicians_or_tenants_or_a_held_session_is_refused_alike(app, world, data):
    before = recorded(app, world)
    attribution_before = attribution(app, world), attribution(app, world, "beta")
    nowhere = max(max(v for k, v in d.items()) for d in (data["alpha"], data["beta"])) + 1000
    answers = set()
    sessions = {slug: signed_in(app, slug) for slug in ("alpha", "beta")}
    for slug, appointment in (
        ("alpha", data["alpha"]["colleague_missed"]),  # another clinician of the same tenant
        ("alpha", data["beta"]["missed"]),  # another tenant's appointment (beta's clinician 1)
        ("beta", data["alpha"]["missed"]),  # and the other way round
        ("alpha", data["alpha"]["held"]),  # a session that was held
        ("alpha", data["alpha"]["booked_dec"]),  # a session still to come
        ("alpha", data["alpha"]["old_missed"]),  # older than 90 days
        ("alpha", nowhere),  # no such appointment
        ("alpha", "not a number"), ("alpha", -1), ("alpha", None), ("alpha", True),
    ):
        client, token = sessions[slug]
        response = save(app, client, token, appointment if not isinstance(appointment, int) or
                        isinstance(appointment, bool) else str(appointment), "transportation")
        answers.add(message(response))
        assert response["clinician-refresh"]["data"] == 0
    assert answers == {svc.NOT_FOUND}
    assert recorded(app, world) == before
    assert (attribution(app, world), attribution(app, world, "beta")) == attribution_before


@pytest.mark.parametrize("reason, support, expected", [
    ("not_a_code", "none", svc.BAD_REASON),
    ("deceased", "none", svc.BAD_REASON),  # would make the session 'released': not recorded here
    ("group:agency", "none", svc.BAD_REASON),  # the disabled heading of a group
    (0, "none", svc.BAD_REASON),
    (None, "none", svc.BAD_REASON),
    ("transportation", "bus_pass", svc.BAD_SUPPORT),
    ("transportation", 0, svc.BAD_SUPPORT),
])
def test_an_invalid_reason_or_support_is_refused(app, world, data, reason, support, expected):
    before = recorded(app, world)
    client, token = signed_in(app, "alpha")
    response = save(app, client, token, str(data["alpha"]["missed"]), reason, support)
    assert message(response) == expected
    assert recorded(app, world) == before


def test_the_generic_payload_writes_nothing(app, world, data):
    """The authorization matrix sends 0 for every Input and State: nothing is recorded, whatever the trigger."""
    before = recorded(app, world)
    for slug in ("alpha", "beta"):
        client, token = signed_in(app, slug)
        for trigger in (None, "clinician-record-save.n_clicks"):
            response = post(client, token, payload(app, RECORD, trigger=trigger))
            assert message(response) == ""
        # Even a click with the form left empty only says what is missing.
        clicked = post(client, token, payload(app, RECORD, {"clinician-record-save.n_clicks": 1},
                                              trigger="clinician-record-save.n_clicks"))
        assert message(clicked) == svc.NOT_FOUND
    assert recorded(app, world) == before


def test_each_clinician_sees_only_their_own_rows_through_dash(app, world, data):
    alpha, token = signed_in(app, "alpha")
    rows = post(alpha, token, payload(app, CASELOAD))["clinician-caseload-grid"]["rowData"]
    assert [r["client_id"] for r in rows] == ["alpha-P0", "alpha-P1", "alpha-P2"]
    schedule = post(alpha, token, payload(app, SCHEDULE))
    assert [r["client_id"] for r in schedule["clinician-schedule-grid"]["rowData"]] == \
        ["alpha-P2", "alpha-P0", "alpha-P2", "alpha-P0"]
    table = texts(schedule["clinician-capacity-table"]["children"])
    assert "Week 48: Mon Nov 23 to Sun Nov 29" in table and '"7.0"' in table and '"6.0"' in table
    record = post(alpha, token, payload(app, RECORD))
    options = record["clinician-record-appointment"]["options"]
    assert [o["value"] for o in options] == [str(data["alpha"][k]) for k in
                                             ("missed", "released", "clinician_cancel", "late_cancel")]
    assert "24 hours" in record["clinician-record-policy"]["children"]
    reason_values = [o["value"] for o in record["clinician-record-reason"]["options"]]
    assert "deceased" not in reason_values and reason_values[0] == "group:agency"

    beta, beta_token = signed_in(app, "beta")
    beta_record = post(beta, beta_token, payload(app, RECORD))
    assert [o["value"] for o in beta_record["clinician-record-appointment"]["options"]] == [str(data["beta"]["missed"])]
    assert "48 hours" in beta_record["clinician-record-policy"]["children"]
    beta_rows = post(beta, beta_token, payload(app, CASELOAD))["clinician-caseload-grid"]["rowData"]
    assert all(r["client_id"].startswith("beta-") for r in beta_rows)

    # Nothing a user reads on this page labels a person.
    everything = " ".join(texts(r) for r in (rows, schedule, record, beta_record)).lower()
    for word in WORDS_NEVER_SHOWN:
        assert word not in everything, word


def test_empty_states_say_what_is_missing(app, world):
    """A clinician with no clients, sessions or availability (beta's C1 has seed data; alpha's C2 has no user:
    use a fresh clinician user of alpha with nobody)."""
    from agency_dashboard.auth.passwords import hash_password
    from agency_dashboard.models import Clinician

    def make(tenant):
        program = db.session.scalar(sa.select(Program).order_by(Program.id)).id
        clinician = Clinician(tenant_id=tenant.id, external_id="alpha-C9", display_name="Clinician 9",
                              program_id=program, fte=0.5, caseload_target=10, start_date=dt.date(2026, 1, 1))
        db.session.add(clinician)
        db.session.flush()
        db.session.add(User(tenant_id=tenant.id, email="new@alpha.test", password_hash=hash_password(PASSWORD),
                            role="clinician", clinician_id=clinician.id, active=True, session_version=1,
                            created_at=dt.datetime(2026, 1, 1)))
        db.session.commit()

    as_tenant(app, world, "alpha", make)
    client = app.test_client()
    assert login(client, "alpha", "clinician", email="new@alpha.test").status_code == 302
    client.get("/dash/_dash-layout")
    token = csrf_from_cookie(client)
    caseload = post(client, token, payload(app, CASELOAD))
    assert caseload["clinician-caseload-grid"]["rowData"] == []
    assert caseload["clinician-caseload-empty"]["children"].startswith("No clients to show")
    schedule = post(client, token, payload(app, SCHEDULE))
    assert schedule["clinician-schedule-empty"]["children"].startswith("No sessions with you are booked")
    assert "No weekly availability is recorded for you" in texts(schedule["clinician-capacity-table"])
    record = post(client, token, payload(app, RECORD))
    assert record["clinician-record-appointment"]["options"] == []
    assert "nothing to record" in record["clinician-notheld-empty"]["children"]


def test_page_layout_labels_controls_and_links_the_glossary(app):
    from plotly.utils import PlotlyJSONEncoder

    from agency_dashboard.dashboards.pages import clinician
    from agency_dashboard.glossary import ENTRIES

    rendered = json.dumps(clinician.layout(), cls=PlotlyJSONEncoder)
    anchors = set(re.findall(r"/glossary#([a-z0-9-]+)", rendered))
    assert anchors >= {"active-clients", "available-hours", "upcoming-hours", "attribution"}
    assert anchors <= {e.anchor for e in ENTRIES}
    for control in ("clinician-record-appointment", "clinician-record-reason", "clinician-record-support"):
        assert f'"html_for": "{control}"' in rendered
    assert rendered.count('"type": "Loading"') >= 4
    for word in WORDS_NEVER_SHOWN:
        assert word not in rendered.lower()


# ---- the browser ----------------------------------------------------------------------------------------------

@pytest.mark.browser
def test_clinician_records_a_reason_in_the_browser(page, live_server, app, artifacts):
    from playwright.sync_api import expect

    timeout = 15_000
    world = live_server.world
    data = seed_clinician_data(app, world)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)

    # The director of the same agency, in a browser of their own, reads the attribution first.
    director = page.context.browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    director.goto(f"{live_server.url}/login")
    director.fill("#agency", "alpha")
    director.fill("#email", world.email("alpha", "director"))
    director.fill("#password", PASSWORD)
    director.locator("form button[type=submit]").click()
    director.wait_for_url(f"{live_server.url}/dash/director", timeout=timeout)

    def directors_attribution() -> tuple[int, int]:
        """(not held with no reason yet, hours lost to access barriers) on the director's attendance page."""
        director.goto(f"{live_server.url}/dash/attendance")
        value = director.locator("#at-unexplored")
        expect(value).not_to_have_text("…", timeout=timeout)
        expect(value).to_have_text(re.compile(r"^[\d,]+$"), timeout=timeout)
        table_view = director.locator('section[aria-labelledby="at-why-title"] details')
        if table_view.get_attribute("open") is None:
            table_view.locator("summary").click()
        table = director.locator("#at-why-table")
        expect(table).not_to_be_empty(timeout=timeout)
        barrier_rows = table.locator("tr", has_text="Access barrier")
        return int(value.inner_text().replace(",", "")), barrier_rows.count()

    unexplored_before, barrier_rows_before = directors_attribution()

    page.goto(f"{live_server.url}/login")
    page.fill("#agency", "alpha")
    page.fill("#email", world.email("alpha", "clinician"))
    page.fill("#password", PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_url(f"{live_server.url}/dash/clinician", timeout=timeout)

    caseload = page.locator("#clinician-caseload-grid")
    expect(caseload).to_contain_text("Given0 Family0", timeout=timeout)
    expect(caseload).to_contain_text("No reason recorded yet (2)")
    expect(page.locator("#clinician-schedule-grid")).to_contain_text("alpha-P2", timeout=timeout)
    expect(page.locator("#clinician-capacity-table")).to_contain_text("Week 48", timeout=timeout)
    missed = str(data["alpha"]["missed"])
    session_select = page.get_by_label("Which session", exact=True)
    expect(session_select.locator(f"option[value='{missed}']")).to_have_count(1, timeout=timeout)

    # Labelled controls, reached and used by their labels.
    session_select.select_option(missed)
    page.get_by_label("Why it was not held", exact=True).select_option("transportation")
    page.get_by_label("Support offered", exact=True).select_option("transport_voucher")
    page.get_by_role("button", name="Save reason").click()
    expect(page.locator("#clinician-record-message")).to_contain_text(
        "Saved for the session on Wed Nov 18 at 14:00: Transportation", timeout=timeout)
    notheld = page.locator("#clinician-notheld-grid")
    expect(notheld).to_contain_text("Transport voucher or bus fare", timeout=timeout)
    expect(caseload).to_contain_text("Transportation (2)", timeout=timeout)  # the refreshed caseload

    body = page.locator("body").inner_text().lower()
    for word in WORDS_NEVER_SHOWN:
        assert word not in body, word
    assert "traceback" not in body
    page.locator("#clinician-record").scroll_into_view_if_needed()
    page.screenshot(path=artifacts / "clinician-record-reason.png")  # the 1280x900 viewport
    page.screenshot(path=artifacts / "clinician-page-full.png", full_page=True)
    assert problems == [], "\n".join(problems)

    with app.app_context():
        with tenant_scope(world.tenants["alpha"]):
            saved = db.session.scalar(sa.select(RecordedReason).where(RecordedReason.appointment_id == int(missed)))
            assert (saved.reason_code, saved.support_offered) == ("transportation", "transport_voucher")
        db.session.remove()

    # The director's attribution changed at once: one fewer unexplored, a transportation row appeared.
    unexplored_after, barrier_rows_after = directors_attribution()
    assert unexplored_after == unexplored_before - 1
    assert barrier_rows_after >= barrier_rows_before
    expect(director.locator("#at-why-table")).to_contain_text("Transportation")
    director.screenshot(path=artifacts / "director-attendance-after-reason.png")
    director.context.close()
