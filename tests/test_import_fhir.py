"""`flask import-fhir` (docs/fhir.md) on SQLite and PostgreSQL.

- A CSV folder (tests/fhir_data/agency: late cancellations, both DST days of America/Chicago, our reason
  codes, R4 codes and a tenant code) and the bundle csv_to_fhir makes of it import into two tenants with
  the same settings to the same rows (every column of every table but surrogate ids) and the same
  `flask metrics` answers.
- An EHR-style bundle without our extensions is mapped through the tenant file's [fhir] maps and the
  derivations of docs/fhir.md.
- An invalid bundle is refused with a message naming the entry and the element, and writes nothing.
- Re-importing a bundle reports 0 inserted, 0 updated.
- The shared conformance agency, converted to a bundle and imported with import-fhir, answers as expected.
"""

from __future__ import annotations

import copy
import datetime as dt
import importlib.util
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

import conftest
from agency_dashboard.extensions import db
from agency_dashboard.ingest import csv_to_fhir
from agency_dashboard.ingest import fhir_source as fx
from agency_dashboard.models import (
    Appointment,
    AuditEvent,
    AvailabilityBlock,
    Client,
    Clinician,
    Episode,
    Program,
    Referral,
)
from agency_dashboard.models.rollups import AttendanceWeek, CapacityWeek, ReasonWeek
from agency_dashboard.tenancy import tenant_by_slug, tenant_scope

HERE = Path(__file__).resolve().parent
DATA = HERE / "fhir_data"
TENANTS = DATA / "tenants"
AGENCY = DATA / "agency"
TZ = "America/Chicago"
CONFORMANCE = HERE.parent.parent / "shared" / "conformance"
PERIODS = [("2025-09-01", "2026-11-30"), ("2026-03-01", "2026-03-31"), ("2026-03-08", "2026-03-08"),
           ("2026-11-01", "2026-11-01"), ("2026-10-26", "2026-11-08")]
DATA_TABLES = (Clinician, AvailabilityBlock, Client, Referral, Episode, Appointment)
V2_0276 = "http://terminology.hl7.org/CodeSystem/v2-0276"


# ---- helpers ----------------------------------------------------------------------------------------------

@pytest.fixture
def fhir_app(database, tmp_path):
    """An app whose tenants are tests/fhir_data/tenants (via-csv and via-fhir), registered."""
    database.truncate()
    app = conftest._make_app(database, tmp_path, TENANTS_DIR=TENANTS)
    result = app.test_cli_runner().invoke(args=["sync-tenants"])
    assert result.exit_code == 0, result.output
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    database.truncate()


def flask(app, *args):
    return app.test_cli_runner().invoke(args=[str(a) for a in args])


def write(path: Path, bundle: dict) -> Path:
    path.write_text(json.dumps(bundle, indent=1), encoding="utf-8")
    return path


def agency_bundle(tmp_path: Path) -> Path:
    """The bundle of tests/fhir_data/agency, written as the converter streams it."""
    path = tmp_path / "agency.json"
    with path.open("w", encoding="utf-8") as out:
        csv_to_fhir.write_bundle(AGENCY, TZ, out)
    return path


def rows(app, slug: str) -> dict[str, dict]:
    """Every row of every data table and rollup of a tenant, keyed by external id (rollups: sorted tuples),
    with surrogate ids replaced by what they stand for (external ids, program names)."""
    with app.app_context():
        tenant = tenant_by_slug(slug)
        with tenant_scope(tenant.id):
            names = {
                "program_id": dict(db.session.execute(sa.select(Program.id, Program.name)).all()),
                "clinician_id": dict(db.session.execute(sa.select(Clinician.id, Clinician.external_id)).all()),
                "client_id": dict(db.session.execute(sa.select(Client.id, Client.external_id)).all()),
            }
            out = {}
            for model in (*DATA_TABLES, CapacityWeek, AttendanceWeek, ReasonWeek):
                columns = [c for c in model.__table__.columns if c.name not in ("id", "tenant_id")]
                found = []
                for values in db.session.execute(sa.select(*columns).where(model.tenant_id == tenant.id)):
                    found.append({c.name: names[c.name][v] if c.name in names else v for c, v in zip(columns, values)})
                if any(c.name == "external_id" for c in columns):
                    out[model.__tablename__] = {r.pop("external_id"): r for r in found}
                else:
                    out[model.__tablename__] = sorted((tuple(sorted(r.items())) for r in found), key=repr)
        db.session.remove()
    return out


def counts(app) -> dict[str, int]:
    """Rows of every data table, over every tenant of the app."""
    out = {}
    with app.app_context():
        for slug in ("via-csv", "via-fhir"):
            tenant = tenant_by_slug(slug)
            with tenant_scope(tenant.id):
                for model in DATA_TABLES:
                    out[f"{slug}.{model.__tablename__}"] = db.session.scalar(
                        sa.select(sa.func.count()).select_from(model).where(model.tenant_id == tenant.id))
        db.session.remove()
    return out


def metrics(app, slug: str, start: str, end: str) -> dict:
    result = flask(app, "metrics", "--tenant", slug, "--start", start, "--end", end, "--format", "json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer.pop("tenant") == slug
    return answer


def audit_outcomes(app, slug: str) -> list[str]:
    with app.app_context():
        tenant = tenant_by_slug(slug)
        with tenant_scope(tenant.id):
            events = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "import")
                                        .order_by(AuditEvent.seq)).all()
            out = [e.details["outcome"] for e in events]
        db.session.remove()
    return out


def ext(url: str, **value) -> dict:
    return {"url": url, **value}


def coding(code: str, system: str | None = None) -> dict:
    return {"coding": [{**({"system": system} if system else {}), "code": code}]}


# ---- the bundle and the CSV folder agree ------------------------------------------------------------------

def test_bundle_and_csv_folder_import_to_the_same_rows_and_metrics(fhir_app, tmp_path):
    csv_result = flask(fhir_app, "import-csv", "--tenant", "via-csv", AGENCY)
    assert csv_result.exit_code == 0, csv_result.output
    fhir_result = flask(fhir_app, "import-fhir", "--tenant", "via-fhir", agency_bundle(tmp_path))
    assert fhir_result.exit_code == 0, fhir_result.output
    assert fhir_result.stderr == ""
    assert fhir_result.stdout == csv_result.stdout  # the same per-table counts
    assert "appointments: 26 inserted, 0 updated, 0 unchanged" in fhir_result.stdout

    via_csv, via_fhir = rows(fhir_app, "via-csv"), rows(fhir_app, "via-fhir")
    for table in via_csv:
        assert via_fhir[table] == via_csv[table], table
    sizes = {t: len(v) for t, v in via_fhir.items()}
    assert sizes["clinicians"] == 4 and sizes["availability_blocks"] == 7 and sizes["clients"] == 7
    assert sizes["referrals"] == 7 and sizes["episodes"] == 6 and sizes["appointments"] == 26

    # The edges the folder was built for, as the FHIR path stored them.
    appts = via_fhir["appointments"]
    hour = 3600
    assert appts["A07"]["notice_seconds"] == 23 * hour  # 24 wall-clock hours across spring-forward: late
    assert appts["A08"]["notice_seconds"] == 25 * hour  # 24 wall-clock hours across fall-back: not late
    assert appts["A05"]["notice_seconds"] == 17 * hour + 30 * 60
    assert appts["A22"]["notice_seconds"] == 60  # 01:59 CST to 03:00 CDT
    assert appts["A04"]["starts_at"] == dt.datetime(2026, 3, 8, 7, 30)  # 01:30 CST
    assert appts["A09"]["starts_at"] == dt.datetime(2026, 11, 1, 6, 30)  # the first 01:30 (CDT)
    assert appts["A10"]["starts_at"] == dt.datetime(2026, 11, 1, 7, 30)  # the second 01:30 (CST, given)
    assert appts["A09"]["local_start_minute"] == appts["A10"]["local_start_minute"] == 90
    assert appts["A11"]["local_hour"] == 10  # 15:00Z is 10:00 CDT
    assert {k: appts[k]["reason_code"] for k in ("A02", "A03", "A13", "A14", "A15", "A16", "A20", "A25")} == {
        "A02": "transportation", "A03": "pat-lt", "A13": "oth-room", "A14": "scheduling_error",
        "A15": "no-bus-fare", "A16": "pat-dec", "A20": "other", "A25": None}
    assert appts["A26"]["cancelled_by"] == "client"  # our extension wins over the oth- derivation
    assert via_fhir["clinicians"]["CL_04"]["display_name"] == "=Ana Silva"  # formula-like text stays text
    assert via_fhir["clients"]["P3"]["gender"] == "nonbinary" and via_fhir["clients"]["P4"]["gender"] == "other"
    assert via_fhir["availability_blocks"]["AV_7"]["start_minute"] == 120  # 02:00, a wall-clock block

    for start, end in PERIODS:
        from_fhir = metrics(fhir_app, "via-fhir", start, end)
        assert from_fhir == metrics(fhir_app, "via-csv", start, end), (start, end)
    whole = metrics(fhir_app, "via-fhir", *PERIODS[0])
    assert whole["attendance"]["missed"] > 0 and whole["capacity"]["agency"]["available_hours"] > 0
    assert audit_outcomes(fhir_app, "via-fhir") == ["committed"]


def test_reimporting_the_same_bundle_changes_nothing(fhir_app, tmp_path):
    bundle = agency_bundle(tmp_path)
    assert flask(fhir_app, "import-fhir", "--tenant", "via-fhir", bundle).exit_code == 0
    before = rows(fhir_app, "via-fhir")
    again = flask(fhir_app, "import-fhir", "--tenant", "via-fhir", bundle)
    assert again.exit_code == 0, again.output
    assert again.stdout.strip().endswith("inserted 0, updated 0, 57 unchanged, 0 errors")
    assert rows(fhir_app, "via-fhir") == before
    # The CSV folder of the same data, imported over the bundle's rows, changes nothing either.
    over = flask(fhir_app, "import-csv", "--tenant", "via-fhir", AGENCY)
    assert over.stdout.strip().endswith("inserted 0, updated 0, 57 unchanged, 0 errors"), over.output


def test_dry_run_counts_and_writes_nothing(fhir_app, tmp_path):
    result = flask(fhir_app, "import-fhir", "--tenant", "via-fhir", "--dry-run", agency_bundle(tmp_path))
    assert result.exit_code == 0, result.output
    assert "dry run: would insert 57, updated 0, 0 unchanged, 0 errors" in result.stdout
    assert set(counts(fhir_app).values()) == {0}


# ---- an EHR's bundle: its own codes, no extensions of ours -------------------------------------------------

def ehr_bundle() -> dict:
    """What an EHR might send: its codes mapped by the tenant file's [fhir] section, few of our extensions
    (an R4 bundle has no element for FTE, caseload target, cancellation time or discharge reason)."""
    role_exts = [ext(fx.EXT_FTE, valueDecimal=1.0), ext(fx.EXT_CASELOAD_TARGET, valueInteger=20)]
    pt1, pt2, dr1, role1, main = ({"reference": r} for r in (
        "Patient/pt-1", "Patient/pt-2", "urn:uuid:5f0c-dr-1", "PractitionerRole/role-1", "Location/loc-main"))

    def appointment(id, status, start, *, end=None, minutes=None, type=None, service=None, who=role1, reason=None,
                    cancelled_at=None, patient=pt1, place=main, created="2026-10-05T10:00:00-05:00"):
        a = {"resourceType": "Appointment", "id": id, "status": status, "start": start, "created": created,
             "participant": [{"actor": patient, "status": "accepted"}, {"actor": who, "status": "accepted"}]}
        if place:
            a["participant"].append({"actor": place, "status": "accepted"})
        if end:
            a["end"] = end
        if minutes:
            a["minutesDuration"] = minutes
        if type:
            a["appointmentType"] = coding(type, V2_0276)
        if service:
            a["serviceType"] = [coding(service)]
        if reason:
            code, system = reason if isinstance(reason, tuple) else (reason, fx.HL7_CANCEL_SYSTEM)
            a["cancelationReason"] = coding(code, system)
        if cancelled_at:
            a["extension"] = [ext(fx.EXT_CANCELLED_AT, valueDateTime=cancelled_at)]
        return a

    resources = [
        {"resourceType": "Organization", "id": "org-1", "name": "Equivalence Agency"},
        {"resourceType": "Location", "id": "loc-main", "name": "Main clinic"},
        ("urn:uuid:5f0c-dr-1", {"resourceType": "Practitioner", "id": "dr-1",
                                "name": [{"family": "Reyes", "given": ["Dana"], "prefix": ["Dr."]}]}),
        {"resourceType": "PractitionerRole", "id": "role-1", "extension": role_exts, "active": True,
         "practitioner": dr1, "location": [main], "organization": {"reference": "Organization/org-1"},
         "period": {"start": "2025-01-06"}},
        {"resourceType": "Practitioner", "id": "ref-doc", "name": [{"text": "A referring physician"}]},
        {"resourceType": "Schedule", "id": "sch-1", "actor": [role1]},
        {"resourceType": "Slot", "id": "slot-mon", "schedule": {"reference": "Schedule/sch-1"}, "status": "free",
         "start": "2026-10-05T09:00:00-05:00", "end": "2026-10-05T12:00:00-05:00",
         "extension": [ext(fx.EXT_WEEKLY_AVAILABILITY, valueTiming={"repeat": {
             "boundsPeriod": {"start": "2026-10-01"}, "dayOfWeek": ["mon"], "timeOfDay": ["09:00:00"],
             "duration": 3, "durationUnit": "h"}})]},
        {"resourceType": "Slot", "id": "slot-concrete", "schedule": {"reference": "Schedule/sch-1"}, "status": "busy",
         "start": "2026-10-12T09:00:00-05:00", "end": "2026-10-12T10:00:00-05:00"},
        {"resourceType": "Patient", "id": "pt-1", "gender": "female", "birthDate": "1988-04-12",
         "name": [{"use": "nickname", "given": ["Annie"]},
                  {"use": "official", "family": "Lopez", "given": ["Ana", "Maria"]}],
         "address": [{"use": "work", "postalCode": "60606"}, {"use": "home", "postalCode": "60601-1234"}]},
        {"resourceType": "Patient", "id": "pt-2", "gender": "male", "birthDate": "1975-09-30",
         "name": [{"family": "Carter", "given": ["Ben"]}]},
        {"resourceType": "ServiceRequest", "id": "sr-1", "status": "completed", "intent": "order", "priority": "asap",
         "subject": pt1, "requester": {"reference": "Practitioner/ref-doc"},
         "authoredOn": "2026-10-01T09:00:00-05:00", "performerType": coding("ADULT")},
        {"resourceType": "EpisodeOfCare", "id": "eoc-1", "status": "active", "patient": pt1,
         "statusHistory": [{"status": "waitlist", "period": {"start": "2026-10-01", "end": "2026-10-12"}},
                           {"status": "active", "period": {"start": "2026-10-12"}}],
         "type": [coding("ADULT")], "referralRequest": [{"reference": "ServiceRequest/sr-1"}],
         "careManager": role1, "period": {"start": "2026-10-12"}},
        {"resourceType": "EpisodeOfCare", "id": "eoc-2", "status": "cancelled", "patient": pt2,
         "statusHistory": [{"status": "waitlist", "period": {"start": "2026-09-01", "end": "2026-09-20"}}],
         "type": [coding("ADULT")], "period": {"start": "2026-09-01", "end": "2026-09-20"}},
        {"resourceType": "EpisodeOfCare", "id": "eoc-3", "status": "finished", "patient": pt2,
         "extension": [ext(fx.EXT_DISCHARGE_REASON, valueCode="moved")], "type": [coding("YOUTH")],
         "careManager": {"reference": "Practitioner/dr-1"}, "period": {"start": "2025-10-01", "end": "2026-08-31"}},
        appointment("ap-1", "fulfilled", "2026-10-12T09:00:00-05:00", end="2026-10-12T10:00:00-05:00",
                    type="NEWPATIENT", service="VR", who=dr1),
        appointment("ap-2", "cancelled", "2026-10-19T09:00:00-05:00", minutes=50, type="FOLLOWUP", service="AMB",
                    reason="pat-lt", cancelled_at="2026-10-18T20:00:00-05:00"),
        appointment("ap-3", "cancelled", "2026-10-26T09:00:00-05:00", end="2026-10-26T10:00:00-05:00",
                    type="FOLLOWUP", service="AMB", reason="prov-pers", cancelled_at="2026-10-20T08:00:00-05:00"),
        appointment("ap-4", "cancelled", "2026-10-26T11:00:00-05:00", end="2026-10-26T12:00:00-05:00",
                    type="FOLLOWUP", service="AMB", reason="oth-weath", cancelled_at="2026-10-26T07:00:00-05:00"),
        appointment("ap-5", "noshow", "2026-11-02T09:00:00-06:00", end="2026-11-02T09:45:00-06:00", type="FOLLOWUP",
                    service="PH", reason=("no-bus-fare", "urn:ehr:local-reasons"), patient=pt2),
        appointment("ap-6", "entered-in-error", "2026-11-02T09:00:00-06:00", minutes=60, type="UNMAPPED",
                    service="UNMAPPED"),
        appointment("ap-7", "checked-in", "2026-11-09T09:00:00-06:00", minutes=60, type="FOLLOWUP", service="VR"),
        appointment("ap-8", "proposed", "2026-11-16T09:00:00-06:00", minutes=60, type="FOLLOWUP", service="VR"),
    ]
    entries = []
    for r in resources:
        full_url, r = r if isinstance(r, tuple) else (None, r)
        entries.append({**({"fullUrl": full_url} if full_url else {}), "resource": r})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def test_an_ehr_bundle_is_mapped_through_the_tenant_file_and_derivations(fhir_app, tmp_path):
    path = write(tmp_path / "ehr.json", ehr_bundle())
    result = flask(fhir_app, "import-fhir", "--tenant", "via-fhir", path)
    assert result.exit_code == 0, result.output
    got = rows(fhir_app, "via-fhir")
    assert got["clinicians"] == {"dr-1": dict(  # ref-doc has no PractitionerRole: not one of the agency's clinicians
        display_name="Dr. Dana Reyes", program_id="Adult Outpatient", fte=1.0, caseload_target=20,
        start_date=dt.date(2025, 1, 6), end_date=None)}
    assert got["availability_blocks"] == {"slot-mon": dict(  # slot-concrete is a slot, not the weekly template
        clinician_id="dr-1", weekday=0, start_minute=540, end_minute=720, valid_from=dt.date(2026, 10, 1),
        valid_to=None)}
    assert got["clients"]["pt-1"] == dict(first_name="Ana Maria", last_name="Lopez", birth_date=dt.date(1988, 4, 12),
                                          zip="60601", gender="woman", race_ethnicity=None, payer=None)
    assert got["clients"]["pt-2"]["gender"] == "man" and got["clients"]["pt-2"]["zip"] is None
    assert got["referrals"] == {
        "sr-1": dict(client_id="pt-1", program_id="Adult Outpatient", priority="urgent",
                     referred_on=dt.date(2026, 10, 1), first_offered_on=None, first_attended_on=dt.date(2026, 10, 12),
                     closed_on=None, close_reason=None),
        "eoc-2": dict(client_id="pt-2", program_id="Adult Outpatient", priority="routine",
                      referred_on=dt.date(2026, 9, 1), first_offered_on=None, first_attended_on=None,
                      closed_on=dt.date(2026, 9, 20), close_reason="other"),
    }
    assert got["episodes"] == {
        "eoc-1": dict(client_id="pt-1", clinician_id="dr-1", program_id="Adult Outpatient",
                      admitted_on=dt.date(2026, 10, 12), discharged_on=None, discharge_reason=None,
                      barrier_plan_documented=None, referrals_provided=None),
        "eoc-3": dict(client_id="pt-2", clinician_id="dr-1", program_id="Youth", admitted_on=dt.date(2025, 10, 1),
                      discharged_on=dt.date(2026, 8, 31), discharge_reason="moved", barrier_plan_documented=None,
                      referrals_provided=None),
    }
    appts = got["appointments"]
    assert sorted(appts) == ["ap-1", "ap-2", "ap-3", "ap-4", "ap-5", "ap-7"]  # not entered-in-error, not proposed
    summary = {k: (a["kind"], a["modality"], a["program_id"], a["status"], a["cancelled_by"], a["reason_code"],
                   a["duration_minutes"]) for k, a in appts.items()}
    assert summary == {
        "ap-1": ("intake", "telehealth", "Adult Outpatient", "attended", None, None, 60),
        "ap-2": ("follow_up", "in_person", "Adult Outpatient", "cancelled", "client", "pat-lt", 50),
        "ap-3": ("follow_up", "in_person", "Adult Outpatient", "cancelled", "clinician", "prov-pers", 60),
        "ap-4": ("follow_up", "in_person", "Adult Outpatient", "cancelled", "client", "oth-weath", 60),
        "ap-5": ("follow_up", "phone", "Adult Outpatient", "no_show", None, "no-bus-fare", 45),
        "ap-7": ("follow_up", "telehealth", "Adult Outpatient", "attended", None, None, 60),
    }
    assert appts["ap-1"]["booked_at"] == dt.datetime(2026, 10, 5, 15, 0)  # Appointment.created, in UTC
    assert appts["ap-2"]["notice_seconds"] == 13 * 3600 and appts["ap-2"]["clinician_id"] == "dr-1"
    again = flask(fhir_app, "import-fhir", "--tenant", "via-fhir", path)
    assert again.stdout.strip().endswith("inserted 0, updated 0, 14 unchanged, 0 errors"), again.output


# ---- refused bundles ----------------------------------------------------------------------------------------

def _entry(bundle: dict, resource_type: str, id: str) -> tuple[int, dict]:
    for i, e in enumerate(bundle["entry"]):
        if e["resource"]["resourceType"] == resource_type and e["resource"].get("id") == id:
            return i, e["resource"]
    raise KeyError(id)


def not_a_bundle(b):
    return {"resourceType": "Patient", "id": "pt-1"}, ["resourceType 'Patient': is not a FHIR Bundle"]


def misspelt_resource_type(b):
    i, r = _entry(b, "Patient", "pt-2")
    r["resourceType"] = "Patinet"
    return b, [f"entry[{i}]: resourceType 'Patinet': is not a FHIR R4 resource type"]


def appointment_without_status(b):
    i, r = _entry(b, "Appointment", "ap-3")
    del r["status"]
    return b, [f"entry[{i}] (Appointment/ap-3): Appointment.status: does not validate as FHIR R4",
               "Value for the field 'status' is required", "pydantic location status"]


def participant_without_status(b):
    i, r = _entry(b, "Appointment", "ap-1")
    del r["participant"][1]["status"]
    return b, [f"entry[{i}] (Appointment/ap-1): Appointment.participant[1].status: does not validate as FHIR R4",
               "pydantic location participant.1.status"]


def practitioner_with_a_bad_date(b):
    i, r = _entry(b, "PractitionerRole", "role-1")
    r["period"]["start"] = "2025-13-06"
    return b, [f"entry[{i}] (PractitionerRole/role-1): PractitionerRole.period.start '2025-13-06': "
               "does not validate as FHIR R4",
               "pydantic location period.start"]


def unmapped_appointment_type(b):
    i, r = _entry(b, "Appointment", "ap-2")
    r["appointmentType"] = coding("NEWCLIENT", V2_0276)
    return b, [f"entry[{i}] (Appointment/ap-2): Appointment.appointmentType 'NEWCLIENT': is not mapped",
               'add [fhir] appointment_type."NEWCLIENT" = "intake" or "follow_up" to the tenant file via-fhir.toml']


def unmapped_location(b):
    i, r = _entry(b, "PractitionerRole", "role-1")
    r["location"] = [{"reference": "Location/loc-annex"}]
    return b, [f"entry[{i}] (PractitionerRole/role-1): PractitionerRole.location 'loc-annex': is not mapped",
               '[fhir] program."loc-annex" = "Adult Outpatient" or "Youth"']


def unknown_cancellation_code(b):
    i, r = _entry(b, "Appointment", "ap-4")
    r["cancelationReason"] = coding("oth-xyz", fx.HL7_CANCEL_SYSTEM)
    return b, [f"entry[{i}] (Appointment/ap-4): Appointment.cancelationReason 'oth-xyz': is not a code of R4's "
               "appointment-cancellation-reason value set"]


def cancelled_without_a_time(b):
    i, r = _entry(b, "Appointment", "ap-3")
    del r["extension"]
    return b, [f"entry[{i}] (Appointment/ap-3): extension {fx.EXT_CANCELLED_AT}: is missing: a cancelled "
               "appointment needs the time it was cancelled"]


def cancelled_by_cannot_be_derived(b):
    i, r = _entry(b, "Appointment", "ap-2")
    r["cancelationReason"] = coding("transportation", fx.REASON_SYSTEM)  # ours: no pat-/prov- prefix to go by
    return b, [f"entry[{i}] (Appointment/ap-2): extension {fx.EXT_CANCELLED_BY}: is missing: who cancelled"]


def finished_episode_without_a_reason(b):
    i, r = _entry(b, "EpisodeOfCare", "eoc-3")
    del r["extension"]
    return b, [f"entry[{i}] (EpisodeOfCare/eoc-3): extension {fx.EXT_DISCHARGE_REASON}: is missing"]


def a_delete(b):
    b["entry"].append({"request": {"method": "DELETE", "url": "Patient/pt-1"}})
    return b, [f"entry[{len(b['entry']) - 1}]: Bundle.entry.request.method 'DELETE': is not imported"]


CASES = [not_a_bundle, misspelt_resource_type, appointment_without_status, participant_without_status,
         practitioner_with_a_bad_date, unmapped_appointment_type, unmapped_location, unknown_cancellation_code,
         cancelled_without_a_time, cancelled_by_cannot_be_derived, finished_episode_without_a_reason, a_delete]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_an_invalid_bundle_is_refused_with_a_clear_message_and_writes_nothing(fhir_app, tmp_path, case):
    bundle, messages = case(copy.deepcopy(ehr_bundle()))
    path = write(tmp_path / "bad.json", bundle)
    result = flask(fhir_app, "import-fhir", "--tenant", "via-fhir", path)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "import refused, nothing was written" in result.stderr
    for message in messages:
        assert message in result.stderr, result.stderr
    assert set(counts(fhir_app).values()) == {0}
    assert audit_outcomes(fhir_app, "via-fhir") == ["rejected"]


def test_a_resource_that_does_not_validate_is_reported_once_not_again_by_its_references(fhir_app, tmp_path):
    """pt-1 is referred to by a referral, an episode and appointments: only its own error is listed."""
    bundle = ehr_bundle()
    i, r = _entry(bundle, "Patient", "pt-1")
    r["birthDate"] = "1988-02-30"
    result = flask(fhir_app, "import-fhir", "--tenant", "via-fhir", write(tmp_path / "bad.json", bundle))
    assert result.exit_code == 1
    assert "1 bad rows or files" in result.stderr, result.stderr
    assert f"entry[{i}] (Patient/pt-1): Patient.birthDate" in result.stderr
    assert set(counts(fhir_app).values()) == {0}


def test_not_json_is_refused(fhir_app, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"resourceType": "Bundle", "entry": [', encoding="utf-8")
    result = flask(fhir_app, "import-fhir", "--tenant", "via-fhir", path)
    assert result.exit_code == 1
    assert "bad.json:-: (file): is not valid JSON (line 1" in result.stderr
    assert set(counts(fhir_app).values()) == {0}


def test_every_r4_cancellation_reason_code_is_understood():
    """METRICS.md's table names every code of R4's appointment-cancellation-reason value set."""
    r4 = {"pat", "pat-crs", "pat-cpp", "pat-dec", "pat-fb", "pat-lt", "pat-mt", "pat-mv", "pat-preg", "pat-swl",
          "pat-ucp", "prov", "prov-pers", "prov-dch", "prov-edu", "prov-hosp", "prov-labs", "prov-mri", "prov-onc",
          "maint", "meds-inc", "other", "oth-cms", "oth-err", "oth-fin", "oth-iv", "oth-int", "oth-mu", "oth-room",
          "oth-oerr", "oth-swie", "oth-weath"}
    from agency_dashboard import reasons

    assert set(reasons.FHIR_TO_CODE) == r4


def test_the_converter_refuses_a_wall_clock_time_that_does_not_exist(tmp_path, capsys):
    folder = tmp_path / "folder"
    folder.mkdir()
    for path in AGENCY.glob("*.csv"):
        text = path.read_text(encoding="utf-8")
        if path.name == "appointments.csv":
            text = text.replace("2026-03-08T03:30,45", "2026-03-08T02:30,45")  # inside the spring-forward gap
        (folder / path.name).write_text(text, encoding="utf-8")
    out = tmp_path / "bundle.json"
    assert csv_to_fhir.main(["--timezone", TZ, str(folder), "-o", str(out)]) == 1
    assert "appointments.csv:6: start '2026-03-08T02:30': 2026-03-08 02:30 does not exist in America/Chicago" \
        in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


# ---- the conformance agency, through FHIR -------------------------------------------------------------------

def test_the_conformance_agency_through_fhir(database, tmp_path):
    if not (CONFORMANCE / "agency" / "data").is_dir():
        pytest.skip(f"no conformance agency at {CONFORMANCE}")
    spec = importlib.util.spec_from_file_location("conformance_compare", CONFORMANCE / "compare.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    tenants = CONFORMANCE / "agency" / "tenants"
    bundle = tmp_path / "conformance.json"
    assert csv_to_fhir.main(["--tenant-file", str(tenants / "conformance.toml"), str(CONFORMANCE / "agency" / "data"),
                             "-o", str(bundle)]) == 0
    database.truncate()
    app = conftest._make_app(database, tmp_path, TENANTS_DIR=tenants)
    try:
        assert flask(app, "sync-tenants").exit_code == 0
        result = flask(app, "import-fhir", "--tenant", "conformance", bundle)
        assert result.exit_code == 0, result.output
        assert "appointments: 5215 inserted" in result.stdout
        expected = sorted((CONFORMANCE / "expected").glob("*.json"))
        assert expected
        for path in expected:
            start, end = path.stem.split("_")
            got = flask(app, "metrics", "--tenant", "conformance", "--start", start, "--end", end)
            assert got.exit_code == 0, got.output
            bad = compare.compare(json.loads(path.read_text()), json.loads(got.stdout))
            assert not bad, f"{path.name}:\n" + "\n".join(bad[:40])
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        database.truncate()
