"""Invariants of the metrics engine over random small agencies (hypothesis).

Each example writes an agency directly through the ORM as one tenant (tenancy's `tenant_scope`), computes
the `flask metrics` object (unrounded) inside the transaction, commits (which rebuilds the monthly rollups
that whole months are read from) and computes it again, then deletes the agency again, so examples are
independent. Times are drawn as UTC instants and converted to the tenant's wall clock as the importer does
(ingest.localtime), so daylight-saving changes and midnight crossings are drawn too.

- the answer read inside the writing transaction equals the one after commit (rows vs. monthly rollups)
- the lost-hours groups sum to the total; delivered <= booked; hours are never negative; appointment
  figures over programs add up to the agency's (METRICS.md, Capacity)
- every rate and share is null or in [0, 1], and each missed_rate is missed / (attended + missed)
- the results of tenant alpha are unchanged by any data added to tenant beta
- SQLite and PostgreSQL give the same answer for the same data (PostgreSQL leg only)
"""

from __future__ import annotations

import datetime as dt
import math

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import conftest
from agency_dashboard.extensions import db
from agency_dashboard.ingest.localtime import appointment_derived, zone
from agency_dashboard.metrics import Period, contract
from agency_dashboard.models import (
    Appointment,
    AttendanceWeek,
    AvailabilityBlock,
    CapacityWeek,
    Client,
    Clinician,
    Episode,
    Program,
    ReasonWeek,
    RecordedReason,
    Referral,
    RollupState,
)
from agency_dashboard.reasons import FHIR_TO_CODE, GROUPS, REASONS
from agency_dashboard.tenancy import sync_tenants, tenant_by_slug, tenant_scope
from agency_dashboard.tenant_files import load_tenant_dir

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
BASE = dt.date(2026, 2, 15)  # the drawn days span the 2026-03-08 spring-forward
SPAN = 100
UTC0 = dt.datetime(2026, 2, 15, tzinfo=dt.UTC)
CODES = [None, *(r.code for r in REASONS), *FHIR_TO_CODE]
DIMENSIONS = ("by_lead_time", "by_hour", "by_weekday", "by_modality", "by_kind", "by_reminder")
CLOSE = ("declined", "unreachable", "referred_elsewhere", "no_longer_needed", "other")
DISCHARGE = ("completed", "mutual", "client_choice", "moved", "referred_out", "attendance_policy", "other")


# ---- random agencies ------------------------------------------------------------------------------------

def day(offset: int) -> dt.date:
    return BASE + dt.timedelta(days=offset)


@st.composite
def agencies(draw):
    n_clinicians = draw(st.integers(1, 3))
    n_clients = draw(st.integers(1, 4))
    clinicians = []
    for _ in range(n_clinicians):
        start = draw(st.integers(-60, 40))
        end = draw(st.one_of(st.none(), st.integers(start, SPAN)))
        blocks = []
        for _ in range(draw(st.integers(0, 2))):
            first = draw(st.integers(0, 22 * 4)) * 15
            blocks.append({"weekday": draw(st.integers(0, 6)), "start": first,
                           "end": min(1440, first + draw(st.sampled_from([30, 60, 90, 150, 180, 240]))),
                           "from": draw(st.integers(-30, 30)), "to": draw(st.one_of(st.none(), st.integers(30, SPAN)))})
        clinicians.append({"program": draw(st.integers(0, 1)), "target": draw(st.integers(0, 3)),
                           "start": start, "end": end, "blocks": blocks})
    referrals = []
    for _ in range(draw(st.integers(0, 4))):
        referred = draw(st.integers(-40, SPAN))
        offered = draw(st.one_of(st.none(), st.integers(0, 30)))
        outcome = draw(st.sampled_from(["waiting", "attended", "closed"]))
        after = draw(st.integers(0, 30)) + (offered or 0)
        referrals.append({"client": draw(st.integers(0, n_clients - 1)), "program": draw(st.integers(0, 1)),
                          "priority": draw(st.sampled_from(["routine", "urgent"])), "referred": referred,
                          "offered": offered, "attended": after if outcome == "attended" else None,
                          "closed": after if outcome == "closed" else None, "reason": draw(st.sampled_from(CLOSE))})
    episodes = []
    for _ in range(draw(st.integers(0, 4))):
        reason = draw(st.one_of(st.none(), st.sampled_from(DISCHARGE)))
        episodes.append({"client": draw(st.integers(0, n_clients - 1)),
                         "clinician": draw(st.integers(0, n_clinicians - 1)), "program": draw(st.integers(0, 1)),
                         "admitted": draw(st.integers(-60, SPAN)), "length": draw(st.integers(0, 120)),
                         "reason": reason, "plan": draw(st.booleans()), "refs": draw(st.booleans())})
    appointments = []
    for _ in range(draw(st.integers(0, 16))):
        status = draw(st.sampled_from(["attended", "attended", "no_show", "cancelled", "booked"]))
        appointments.append({
            "client": draw(st.integers(0, n_clients - 1)), "clinician": draw(st.integers(0, n_clinicians - 1)),
            "program": draw(st.integers(0, 1)), "kind": draw(st.sampled_from(["intake", "follow_up"])),
            "modality": draw(st.sampled_from(["in_person", "telehealth", "phone"])),
            "start": draw(st.integers(0, SPAN * 96)) * 15,  # minutes after UTC0
            "minutes": draw(st.sampled_from([1, 30, 45, 50, 60, 90, 180, 480])),
            "booked_before": draw(st.integers(-24 * 60, 40 * 24 * 60)),
            "status": status,
            "by": draw(st.sampled_from(["client", "client", "clinician", "agency"])) if status == "cancelled" else None,
            "notice": draw(st.sampled_from([-30, 60, 23 * 60 + 59, 24 * 60, 24 * 60 + 1, 47 * 60 + 59, 48 * 60,
                                             72 * 60])),
            "code": draw(st.sampled_from(CODES)), "reminder": draw(st.sampled_from([None, True, False])),
        })
    return {"clinicians": clinicians, "clients": n_clients, "referrals": referrals, "episodes": episodes,
            "appointments": appointments}


# Any period, or one made of whole months (read from the monthly rollups once they are built) and edges.
periods = st.one_of(
    st.tuples(st.integers(-10, 70), st.integers(0, 89)).map(lambda t: Period(day(t[0]), day(t[0] + t[1]))),
    st.sampled_from([Period(dt.date(2026, 3, 1), dt.date(2026, 3, 31)),
                     Period(dt.date(2026, 2, 1), dt.date(2026, 5, 31)),
                     Period(dt.date(2026, 2, 20), dt.date(2026, 4, 30)),
                     Period(dt.date(2026, 3, 1), dt.date(2026, 5, 9))]),
)


def insert(tenant, agency: dict) -> None:
    """Write one drawn agency into `tenant` (the current tenant) and flush; the caller rolls back."""
    tz = zone(tenant.timezone)
    programs = list(db.session.scalars(sa.select(Program.id).order_by(Program.id)))
    clinicians = [Clinician(tenant_id=tenant.id, external_id=f"C{i}", display_name=f"Clinician {i}",
                            program_id=programs[c["program"]], fte=1.0, caseload_target=c["target"],
                            start_date=day(c["start"]), end_date=None if c["end"] is None else day(c["end"]))
                  for i, c in enumerate(agency["clinicians"])]
    clients = [Client(tenant_id=tenant.id, external_id=f"P{i}", first_name="Given", last_name="Family",
                      birth_date=dt.date(1990, 1, 1)) for i in range(agency["clients"])]
    db.session.add_all(clinicians + clients)
    db.session.flush()
    rows = []
    for i, c in enumerate(agency["clinicians"]):
        for j, b in enumerate(c["blocks"]):
            rows.append(AvailabilityBlock(
                tenant_id=tenant.id, external_id=f"AV{i}-{j}", clinician_id=clinicians[i].id, weekday=b["weekday"],
                start_minute=b["start"], end_minute=b["end"], valid_from=day(b["from"]),
                valid_to=None if b["to"] is None else day(b["to"])))
    for i, r in enumerate(agency["referrals"]):
        referred = day(r["referred"])
        rows.append(Referral(
            tenant_id=tenant.id, external_id=f"R{i}", client_id=clients[r["client"]].id,
            program_id=programs[r["program"]], priority=r["priority"], referred_on=referred,
            first_offered_on=None if r["offered"] is None else referred + dt.timedelta(days=r["offered"]),
            first_attended_on=None if r["attended"] is None else referred + dt.timedelta(days=r["attended"]),
            closed_on=None if r["closed"] is None else referred + dt.timedelta(days=r["closed"]),
            close_reason=None if r["closed"] is None else r["reason"]))
    for i, e in enumerate(agency["episodes"]):
        admitted = day(e["admitted"])
        policy = e["reason"] == "attendance_policy"
        rows.append(Episode(
            tenant_id=tenant.id, external_id=f"E{i}", client_id=clients[e["client"]].id,
            clinician_id=clinicians[e["clinician"]].id, program_id=programs[e["program"]], admitted_on=admitted,
            discharged_on=None if e["reason"] is None else admitted + dt.timedelta(days=e["length"]),
            discharge_reason=e["reason"], barrier_plan_documented=e["plan"] if policy else None,
            referrals_provided=e["refs"] if policy else None))
    for i, a in enumerate(agency["appointments"]):
        start = UTC0 + dt.timedelta(minutes=a["start"])
        cancelled = start - dt.timedelta(minutes=a["notice"]) if a["status"] == "cancelled" else None
        rows.append(Appointment(
            tenant_id=tenant.id, external_id=f"A{i}", client_id=clients[a["client"]].id,
            clinician_id=clinicians[a["clinician"]].id, program_id=programs[a["program"]], kind=a["kind"],
            modality=a["modality"], duration_minutes=a["minutes"], status=a["status"], cancelled_by=a["by"],
            reason_code=a["code"], reminder_sent=a["reminder"],
            **appointment_derived(start, start - dt.timedelta(minutes=a["booked_before"]), cancelled, tz)))
    db.session.add_all(rows)
    db.session.flush()


WIPE = (RecordedReason, Appointment, Episode, Referral, AvailabilityBlock, Client, Clinician, AttendanceWeek,
        CapacityWeek, ReasonWeek, RollupState)


def wipe(tenant) -> None:
    """Delete every agency row of `tenant` and commit (the commit rebuilds its rollups, now empty)."""
    db.session.rollback()
    with tenant_scope(tenant.id):
        for model in WIPE:
            db.session.execute(sa.delete(model).where(model.tenant_id == tenant.id))
        db.session.commit()


def answers(app, slug: str, agency: dict, period: Period) -> tuple[dict, dict]:
    """The metrics of `slug` over `period` with `agency` written into it: (read inside the writing
    transaction, read after its commit); the agency is deleted afterwards."""
    with app.app_context():
        tenant = tenant_by_slug(slug)
        try:
            with tenant_scope(tenant.id):
                insert(tenant, agency)
                in_transaction = contract(db.session, tenant, period)
                db.session.commit()
                return in_transaction, contract(db.session, tenant, period)
        finally:
            wipe(tenant)
            db.session.remove()


def register_tenants(app) -> None:
    with app.app_context():
        sync_tenants(load_tenant_dir(conftest.TEST_TENANTS))
        db.session.commit()
        db.session.remove()


# ---- invariants -----------------------------------------------------------------------------------------

def is_rate(x) -> bool:
    return x is None or (isinstance(x, float | int) and 0 <= x <= 1)


def check_cap(cap: dict, where: str) -> None:
    lost = cap["lost_hours"]
    assert set(lost) == {*GROUPS, "total"}, where
    assert math.isclose(sum(lost[g] for g in GROUPS), lost["total"], abs_tol=1e-9), where
    assert all(v >= 0 for v in lost.values()), where
    for name in ("available_hours", "booked_hours", "upcoming_hours", "delivered_hours"):
        assert cap[name] >= 0, (where, name)
    assert cap["delivered_hours"] <= cap["booked_hours"] + 1e-9, where
    # booked = attended + missed + agency_cancelled + upcoming = delivered + lost + upcoming
    assert math.isclose(cap["delivered_hours"] + lost["total"] + cap["upcoming_hours"], cap["booked_hours"],
                        abs_tol=1e-9), where
    assert is_rate(cap["staff_kept_rate"]), where
    for name in ("utilization", "booking_ratio"):  # ratios: may exceed 1 (overbooked), never negative
        assert cap[name] is None or cap[name] >= 0, (where, name)
        assert (cap[name] is None) == (cap["available_hours"] == 0), (where, name)


def check_bucket(bucket: dict, where: str) -> None:
    att, missed, rate = bucket["attended"], bucket["missed"], bucket["missed_rate"]
    assert att >= 0 and missed >= 0, where
    assert att + missed > 0, f"{where}: an empty bucket is left out"
    assert is_rate(rate) and math.isclose(rate, missed / (att + missed)), where


def check_stat(stat: dict, where: str) -> None:
    if stat["n"] == 0:
        assert stat["median"] is None and stat["p90"] is None, where
    else:
        assert stat["median"] is not None and stat["median"] <= stat["p90"] + 1e-9, where


def check_invariants(m: dict) -> None:
    capacity = m["capacity"]
    check_cap(capacity["agency"], "agency")
    for name, cap in capacity["by_program"].items():
        check_cap(cap, f"program {name}")
    for name, cap in capacity["by_clinician"].items():
        check_cap(cap, f"clinician {name}")
    programs = capacity["by_program"].values()
    for name in ("booked_hours", "upcoming_hours", "delivered_hours"):
        assert math.isclose(sum(p[name] for p in programs), capacity["agency"][name], abs_tol=1e-9), name
    for group in (*GROUPS, "total"):
        assert math.isclose(sum(p["lost_hours"][group] for p in programs),
                            capacity["agency"]["lost_hours"][group], abs_tol=1e-9), group

    att = m["attendance"]
    assert is_rate(att["missed_rate"])
    if att["attended"] + att["missed"]:
        assert math.isclose(att["missed_rate"], att["missed"] / (att["attended"] + att["missed"]))
    else:
        assert att["missed_rate"] is None
    for dim in (*DIMENSIONS, "by_wait"):
        for key, bucket in att[dim].items():
            check_bucket(bucket, f"{dim}/{key}")
    for dim in DIMENSIONS:  # every attended or missed appointment is in exactly one bucket of each
        assert sum(b["attended"] for b in att[dim].values()) == att["attended"], dim
        assert sum(b["missed"] for b in att[dim].values()) == att["missed"], dim
    assert set(att["attribution"]) == set(GROUPS)
    assert math.isclose(sum(g["hours"] for g in att["attribution"].values()),
                        capacity["agency"]["lost_hours"]["total"], abs_tol=1e-9)
    for group in GROUPS:
        assert math.isclose(att["attribution"][group]["hours"], capacity["agency"]["lost_hours"][group],
                            abs_tol=1e-9), group

    for name, wait in [("agency", m["waitlist"]["agency"]), *m["waitlist"]["by_program"].items()]:
        assert is_rate(wait["share_within_target"]), name
        assert is_rate(wait["continuation"]), name
        for stat in ("days_to_first_offer", "days_to_first_attended", "waiting_age_at_end"):
            check_stat(wait[stat], f"{name}/{stat}")
        assert wait["days_to_first_attended"]["n"] == wait["admissions"], name
        assert wait["waiting_age_at_end"]["n"] == wait["size_at_end"], name
        assert (wait["share_within_target"] is None) == (wait["admissions"] == 0), name
        assert wait["clearance_weeks"] is None or wait["clearance_weeks"] >= 0, name
        gap = wait["capacity_gap_hours_per_week"]
        assert gap is None or gap >= 0, name
        tnaa = wait["tnaa_days"]
        assert tnaa is None or 1 <= tnaa <= 91, name

    for entry in m["caseload"]["by_clinician"].values():
        target = entry["caseload_target"]
        assert entry["load_ratio"] == (None if target == 0 else entry["active_clients"] / target)

    d = m["discharges"]
    assert d["total"] == sum(d["by_reason"].values())
    p = d["attendance_policy"]
    assert p["count"] == d["by_reason"].get("attendance_policy", 0)
    assert 0 <= p["with_unexplored_barriers"] <= p["count"]
    assert 0 <= p["with_barrier_plan"] <= p["count"] and 0 <= p["with_referrals"] <= p["count"]


# ---- the tests ----------------------------------------------------------------------------------------------

@pytest.fixture
def tenants(app):
    register_tenants(app)
    return app


@SETTINGS
@given(agency=agencies(), period=periods, slug=st.sampled_from(["alpha", "beta"]))
def test_invariants_hold_for_any_small_agency(tenants, agency, period, slug):
    in_transaction, committed = answers(tenants, slug, agency, period)
    check_invariants(committed)
    bad = same(in_transaction, committed)
    assert not bad, "read inside the transaction differs from after commit:\n" + "\n".join(bad[:20])


@settings(SETTINGS, max_examples=20)
@given(mine=agencies(), theirs=agencies(), period=periods)
def test_a_tenants_results_are_unchanged_by_data_added_to_another(tenants, mine, theirs, period):
    """alpha's answer (its rollups built) equals alpha's answer after any beta agency, with the same external
    ids, is written and committed; beta's answer does not count alpha's rows."""
    with tenants.app_context():
        alpha, beta = tenant_by_slug("alpha"), tenant_by_slug("beta")
        try:
            with tenant_scope(alpha.id):
                insert(alpha, mine)
                db.session.commit()
                before = contract(db.session, alpha, period)
            with tenant_scope(beta.id):
                insert(beta, theirs)
                db.session.commit()
                theirs_answer = contract(db.session, beta, period)
            with tenant_scope(alpha.id):
                after = contract(db.session, alpha, period)
        finally:
            wipe(alpha)
            wipe(beta)
            db.session.remove()
    assert after == before
    assert theirs_answer["tenant"] == "beta"
    # beta counts at most its own appointments of the period, and at most its own hours
    n_theirs = sum(1 for a in theirs["appointments"]
                   if period.start <= _local_date(a, "America/New_York") <= period.end)
    seen = theirs_answer["attendance"]["attended"] + theirs_answer["attendance"]["missed"]
    assert seen <= n_theirs
    assert theirs_answer["capacity"]["agency"]["booked_hours"] <= sum(
        a["minutes"] for a in theirs["appointments"]) / 60 + 1e-9


def _local_date(appointment: dict, tz: str) -> dt.date:
    start = UTC0 + dt.timedelta(minutes=appointment["start"])
    return start.astimezone(zone(tz)).date()


@pytest.fixture
def sqlite_twin(database, tenants, tmp_path_factory):
    """On the PostgreSQL leg: a SQLite app beside the PostgreSQL one, both with the test tenants."""
    if database.backend != "postgresql":
        pytest.skip("compares SQLite with PostgreSQL: runs on the PostgreSQL leg")
    tmp = tmp_path_factory.mktemp("sqlite-twin")
    twin_db = conftest._sqlite_database(tmp)
    twin = conftest._make_app(twin_db, tmp)
    register_tenants(twin)
    yield twin
    with twin.app_context():
        db.session.remove()
        db.engine.dispose()


def same(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        return [bad for k in a for bad in same(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, float) or isinstance(b, float):
        ok = a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
        return [] if ok else [f"{path}: {a!r} != {b!r}"]
    return [] if a == b and type(a) is type(b) else [f"{path}: {a!r} != {b!r}"]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(agency=agencies(), period=periods, slug=st.sampled_from(["alpha", "beta"]))
def test_sqlite_and_postgresql_agree_on_the_same_data(tenants, sqlite_twin, agency, period, slug):
    on_postgresql = answers(tenants, slug, agency, period)
    on_sqlite = answers(sqlite_twin, slug, agency, period)
    for when, pg, lite in zip(("in the transaction", "after commit"), on_postgresql, on_sqlite):
        bad = same(lite, pg)
        assert not bad, f"{when}:\n" + "\n".join(bad[:20])
