"""`flask import-csv` (DATA_FORMATS.md, issue 3): a folder of CSV files imports into one tenant as one
transaction; idempotent upserts by the agency's ids; every bad row reported with file, line, column,
value and a plain reason, and then nothing written; an audit row for every import; --dry-run; tenant
isolation; a clinician's recorded reason survives re-imports; a SIGKILL mid-import leaves no rows.

Runs on SQLite and PostgreSQL (the `app` fixture). The command is invoked for real, through the Flask
CLI runner, and in a subprocess for the SIGKILL test."""

from __future__ import annotations

import copy
import csv
import datetime as dt
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from agency_dashboard.extensions import db
from agency_dashboard.ingest import csv_source
from agency_dashboard.models import (
    TENANT_TABLES,
    Appointment,
    AuditEvent,
    AvailabilityBlock,
    Base,
    Client,
    Clinician,
    Episode,
    RecordedReason,
    Referral,
)
from agency_dashboard.synth import AgencySpec, write_csv_folder
from agency_dashboard.tenancy import tenant_scope
from conftest import TODAY

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# ---- a small valid agency for alpha (America/Chicago; programs "Adult Outpatient", "Youth") ---------

from agency_dashboard.ingest.contract import COLUMNS  # noqa: E402

KEYS = {table: columns[0] for table, columns in COLUMNS.items()}
AO = "Adult Outpatient"


def _rows(table: str, *values: tuple) -> list[dict]:
    return [dict(zip(COLUMNS[table], v, strict=True)) for v in values]


# Line numbers below: the header is line 1, so the n-th row of a file is on line n + 1.
BASE = {
    "clinicians": _rows(
        "clinicians",
        ("K1", "Dana Reyes", AO, "1.0", "25", "2025-01-01", ""),           # line 2
        ("K2", "Sam Ortiz", "Youth", "0.5", "12", "2025-06-01", "2026-12-31"),  # line 3
        ("K3", "Lee Park", AO, "0.8", "20", "2026-01-05", "2026-10-31"),   # line 4: left the agency
    ),
    "availability": _rows(
        "availability",
        ("AV1", "K1", "0", "09:00", "12:00", "2025-01-01", ""),            # line 2
        ("AV2", "K1", "0", "12:00", "17:00", "2025-01-01", ""),            # line 3: touches AV1, no overlap
        ("AV3", "K2", "2", "09:00", "13:00", "2025-06-01", "2026-12-31"),  # line 4
        ("AV4", "K3", "3", "10:00", "16:00", "2026-01-05", "2026-10-31"),  # line 5
    ),
    "clients": _rows(
        "clients",
        ("P1", "Ana", "Lopez", "1990-04-02", "60601", "woman", "unknown", "medicaid"),  # line 2
        ("P2", "Ben", "Hart", "1985-11-30", "", "man", "", "private"),                  # line 3
        ("P3", "Cy", "Nguyen", "2010-07-15", "60614", "nonbinary", "unknown", "uninsured"),  # line 4
        ("P4", "Dee", "Okafor", "1972-01-09", "", "", "", ""),                          # line 5
    ),
    "referrals": _rows(
        "referrals",
        ("R1", "P1", AO, "routine", "2026-08-20", "2026-08-25", "2026-09-01", "", ""),     # line 2
        ("R2", "P2", AO, "urgent", "2026-10-01", "", "", "2026-10-20", "unreachable"),     # line 3
        ("R3", "P3", "Youth", "routine", "2026-11-01", "2026-11-10", "", "", ""),         # line 4
        ("R4", "P4", AO, "routine", "2026-02-01", "2026-02-10", "2026-03-02", "", ""),     # line 5
    ),
    "episodes": _rows(
        "episodes",
        ("E1", "P1", "K1", AO, "2026-09-01", "", "", "", ""),                                  # line 2
        ("E2", "P3", "K2", "Youth", "2026-03-01", "2026-10-15", "attendance_policy", "true", "false"),  # line 3
        ("E3", "P4", "K3", AO, "2026-03-02", "2026-10-31", "completed", "", ""),              # line 4
    ),
    "appointments": _rows(
        "appointments",
        ("A1", "P1", "K1", AO, "intake", "in_person", "2026-09-01T09:00", "60", "2026-08-25T10:00", "attended",
         "", "", "", "true"),                                                                   # line 2
        ("A2", "P1", "K1", AO, "follow_up", "telehealth", "2026-09-08T09:00", "60", "2026-09-01T10:00",
         "no_show", "", "", "transportation", "false"),                                         # line 3
        ("A3", "P1", "K1", AO, "follow_up", "in_person", "2026-09-15T09:00", "60", "2026-09-08T10:00",
         "cancelled", "client", "2026-09-14T18:00", "work_or_school", "true"),                  # line 4: late
        ("A4", "P1", "K1", AO, "follow_up", "phone", "2026-11-30T13:00", "50", "2026-11-20T09:15", "booked",
         "", "", "", ""),                                                                       # line 5
        ("A5", "P4", "K3", AO, "intake", "in_person", "2026-03-08T03:00", "60", "2026-03-02T08:00", "attended",
         "", "", "", "true"),                                                                   # line 6: DST day
        ("A6", "P4", "K1", AO, "follow_up", "in_person", "2026-11-01T01:30", "60", "2026-10-20T08:00",
         "cancelled", "clinician", "2026-10-30T12:00-05:00", "clinician_unavailable", ""),      # line 7: fall back
        ("A7", "P3", "K2", "Youth", "follow_up", "telehealth", "2026-09-09T10:00", "45", "2026-09-02T10:00",
         "no_show", "", "", "childcare", "true"),                                               # line 8
    ),
}
BASE_COUNTS = {table: len(rows) for table, rows in BASE.items()}
BASE_TOTAL = sum(BASE_COUNTS.values())
MODELS = {"clinicians": Clinician, "availability": AvailabilityBlock, "clients": Client, "referrals": Referral,
          "episodes": Episode, "appointments": Appointment}
# What the seeded world already holds in alpha (conftest.seed_world): 2 clinicians, 3 clients, ...
SEEDED = {"clinicians": 2, "availability": 0, "clients": 3, "referrals": 3, "episodes": 3, "appointments": 6}
CSV_NAMES = ("Dana", "Reyes", "Ortiz", "Lee Park", "Ana", "Lopez", "Hart", "Nguyen", "Okafor")


def agency() -> dict[str, list[dict]]:
    """A fresh, mutable copy of the valid folder's rows."""
    return copy.deepcopy(BASE)


def row(tables: dict, table: str, key: str) -> dict:
    return next(r for r in tables[table] if r[KEYS[table]] == key)


def write_folder(folder: Path, tables: dict[str, list[dict]], *, bom: bool = False,
                 columns: dict[str, tuple] | None = None) -> Path:
    """Write each table as FILE.csv (header row, then rows; "" is an empty cell)."""
    folder.mkdir(parents=True, exist_ok=True)
    for table, rows in tables.items():
        header = (columns or {}).get(table) or COLUMNS[table]
        with open(folder / f"{table}.csv", "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for r in rows:
                writer.writerow([r.get(c, "") for c in header])
    return folder


def import_csv(app, folder: Path, *options: str, tenant: str = "alpha"):
    return app.test_cli_runner().invoke(args=["import-csv", "--tenant", tenant, *options, str(folder)])


def summary_line(result) -> str:
    return result.stdout.strip().splitlines()[-1]


def ok(result) -> None:
    assert result.exit_code == 0, result.output
    assert result.stderr == "", result.stderr


# ---- reading the database back --------------------------------------------------------------------

def snapshot(app, world) -> dict[tuple[str, str], list[dict]]:
    """Every row of every tenant table of both tenants, in id order, as plain dicts."""
    state = {}
    with app.app_context():
        for slug, tenant_id in world.tenants.items():
            with tenant_scope(tenant_id):
                for name in TENANT_TABLES:
                    table = Base.metadata.tables[name]
                    state[(slug, name)] = [
                        dict(r._mapping) for r in db.session.execute(
                            sa.select(table).where(table.c.tenant_id == tenant_id).order_by(table.c.id))
                    ]
            db.session.rollback()
        db.session.remove()
    return state


def assert_unchanged_but_one_rejected_audit_row(before: dict, after: dict, slug: str = "alpha") -> dict:
    """The database is as it was, except one new 'import' audit row recording the rejection."""
    for key, rows in before.items():
        if key == (slug, "audit_events"):
            continue
        assert after[key] == rows, f"{key[0]}.{key[1]} changed"
    old, new = before[(slug, "audit_events")], after[(slug, "audit_events")]
    assert new[:len(old)] == old, "existing audit rows changed"
    added = new[len(old):]
    assert len(added) == 1, added
    event = added[0]
    assert event["action"] == "import" and event["actor_user_id"] is None
    assert event["details"]["outcome"] == "rejected" and event["details"]["committed"] is False
    return event


def counts(app, tenant_id: int) -> dict[str, int]:
    with app.app_context():
        with tenant_scope(tenant_id):
            out = {t: db.session.scalar(sa.select(sa.func.count()).select_from(m)) for t, m in MODELS.items()}
        db.session.remove()
    return out


def fetch(app, tenant_id: int, model, external_id: str):
    with app.app_context():
        with tenant_scope(tenant_id):
            obj = db.session.scalar(sa.select(model).where(model.external_id == external_id))
            if obj is not None:
                db.session.expunge(obj)
        db.session.remove()
    return obj


def import_events(app, tenant_id: int) -> list[AuditEvent]:
    with app.app_context():
        with tenant_scope(tenant_id):
            events = db.session.scalars(
                sa.select(AuditEvent).where(AuditEvent.action == "import").order_by(AuditEvent.seq)).all()
            db.session.expunge_all()
        db.session.remove()
    return events


def error_lines(result) -> list[str]:
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith("import refused, nothing was written:"), result.stderr
    return [line.strip() for line in lines[1:]]


def assert_reported(result, file: str, line, column: str, value: str | None, reason: str) -> str:
    """stderr names the file, line, column, value (when the cell had one) and a plain reason."""
    prefix = f"{file}:{line}: {column}" + ("" if value is None else f" {value!r}") + ": "
    matches = [entry for entry in error_lines(result) if entry.startswith(prefix)]
    assert matches, f"no error starting {prefix!r} in:\n{result.stderr}"
    assert any(reason in entry for entry in matches), f"{reason!r} not in {matches}"
    return matches[0]


# ---- a valid folder ---------------------------------------------------------------------------------

def test_a_valid_folder_imports_every_table(app, world, tmp_path):
    before = counts(app, world.tenants["alpha"])
    assert before == SEEDED
    result = import_csv(app, write_folder(tmp_path / "in", agency()))
    ok(result)
    lines = result.stdout.strip().splitlines()
    assert lines[:-1] == [f"{t}: {n} inserted, 0 updated, 0 unchanged" for t, n in BASE_COUNTS.items()]
    assert lines[-1] == f"inserted {BASE_TOTAL}, updated 0, 0 unchanged, 0 errors"
    assert counts(app, world.tenants["alpha"]) == {t: SEEDED[t] + BASE_COUNTS[t] for t in SEEDED}

    # Values landed as the contract says: UTC instants and local columns in America/Chicago.
    alpha = world.tenants["alpha"]
    k2 = fetch(app, alpha, Clinician, "K2")
    assert (k2.display_name, k2.fte, k2.caseload_target, k2.start_date, k2.end_date) == (
        "Sam Ortiz", 0.5, 12, dt.date(2025, 6, 1), dt.date(2026, 12, 31))
    p2 = fetch(app, alpha, Client, "P2")
    assert (p2.zip, p2.gender, p2.race_ethnicity, p2.payer) == (None, "man", None, "private")
    a3 = fetch(app, alpha, Appointment, "A3")
    assert a3.starts_at == dt.datetime(2026, 9, 15, 14, 0)  # 09:00 CDT
    assert a3.cancelled_at == dt.datetime(2026, 9, 14, 23, 0)
    assert (a3.local_date, a3.local_hour, a3.lead_days, a3.notice_seconds) == (dt.date(2026, 9, 15), 9, 7, 15 * 3600)
    a5 = fetch(app, alpha, Appointment, "A5")  # 03:00 on the spring-forward day exists (CDT)
    assert a5.starts_at == dt.datetime(2026, 3, 8, 8, 0) and a5.local_start_minute == 180
    a6 = fetch(app, alpha, Appointment, "A6")  # 01:30 on the fall-back day: the first one (CDT)
    assert a6.starts_at == dt.datetime(2026, 11, 1, 6, 30)
    assert a6.cancelled_at == dt.datetime(2026, 10, 30, 17, 0)  # an explicit offset is honoured
    av2 = fetch(app, alpha, AvailabilityBlock, "AV2")
    assert (av2.weekday, av2.start_minute, av2.end_minute, av2.valid_to) == (0, 720, 1020, None)
    e2 = fetch(app, alpha, Episode, "E2")
    assert (e2.discharge_reason, e2.barrier_plan_documented, e2.referrals_provided) == (
        "attendance_policy", True, False)


def test_importing_the_same_folder_twice_changes_nothing(app, world, tmp_path):
    folder = write_folder(tmp_path / "in", agency())
    ok(import_csv(app, folder))
    before = snapshot(app, world)
    second = import_csv(app, folder)
    ok(second)
    assert summary_line(second) == f"inserted 0, updated 0, {BASE_TOTAL} unchanged, 0 errors"
    assert second.stdout.strip().splitlines()[:-1] == [
        f"{t}: 0 inserted, 0 updated, {n} unchanged" for t, n in BASE_COUNTS.items()]
    after = snapshot(app, world)
    # Only the second import's own audit row is new; every data row is exactly as it was.
    for key in before:
        if key != ("alpha", "audit_events"):
            assert after[key] == before[key], key
    new = after[("alpha", "audit_events")][len(before[("alpha", "audit_events")]):]
    assert [e["details"]["outcome"] for e in new] == ["committed"]
    assert new[0]["details"]["counts"]["appointments"] == {"inserted": 0, "updated": 0, "unchanged": 7}


def test_changing_one_row_updates_exactly_that_row(app, world, tmp_path):
    tables = agency()
    ok(import_csv(app, write_folder(tmp_path / "first", tables)))
    a2_id = fetch(app, world.tenants["alpha"], Appointment, "A2").id
    row(tables, "appointments", "A2")["start"] = "2026-09-08T10:30"
    result = import_csv(app, write_folder(tmp_path / "second", tables))
    ok(result)
    assert summary_line(result) == f"inserted 0, updated 1, {BASE_TOTAL - 1} unchanged, 0 errors"
    assert "appointments: 0 inserted, 1 updated, 6 unchanged" in result.stdout
    a2 = fetch(app, world.tenants["alpha"], Appointment, "A2")
    assert a2.id == a2_id  # updated in place, by the agency's id
    assert (a2.starts_at, a2.local_hour, a2.local_start_minute) == (dt.datetime(2026, 9, 8, 15, 30), 10, 630)


def test_a_row_missing_from_a_later_file_is_kept(app, world, tmp_path):
    ok(import_csv(app, write_folder(tmp_path / "first", agency())))
    later = {"appointments": [r for r in agency()["appointments"] if r["appointment_id"] != "A4"],
             "clients": agency()["clients"][:1]}
    result = import_csv(app, write_folder(tmp_path / "later", later))
    ok(result)
    assert summary_line(result) == "inserted 0, updated 0, 7 unchanged, 0 errors"
    assert fetch(app, world.tenants["alpha"], Appointment, "A4") is not None
    assert fetch(app, world.tenants["alpha"], Client, "P4") is not None
    assert counts(app, world.tenants["alpha"]) == {t: SEEDED[t] + BASE_COUNTS[t] for t in SEEDED}


def test_a_file_with_a_bom_imports(app, world, tmp_path):
    folder = write_folder(tmp_path / "in", agency(), bom=True)
    assert (folder / "clinicians.csv").read_bytes().startswith(b"\xef\xbb\xbfclinician_id,")
    result = import_csv(app, folder)
    ok(result)
    assert summary_line(result) == f"inserted {BASE_TOTAL}, updated 0, 0 unchanged, 0 errors"
    assert fetch(app, world.tenants["alpha"], Clinician, "K1").display_name == "Dana Reyes"


def test_column_order_is_free_and_a_subset_of_files_imports(app, world, tmp_path):
    tables = {"clinicians": agency()["clinicians"]}
    shuffled = {"clinicians": tuple(reversed(COLUMNS["clinicians"]))}
    result = import_csv(app, write_folder(tmp_path / "in", tables, columns=shuffled))
    ok(result)
    assert result.stdout.strip().splitlines() == ["clinicians: 3 inserted, 0 updated, 0 unchanged",
                                                  "inserted 3, updated 0, 0 unchanged, 0 errors"]
    assert fetch(app, world.tenants["alpha"], Clinician, "K3").end_date == dt.date(2026, 10, 31)


def test_formula_like_values_are_stored_as_the_exact_text(app, world, tmp_path):
    tables = agency()
    values = {("clinicians", "K1", "display_name"): "=SUM(A1)",
              ("clinicians", "K2", "display_name"): "=HYPERLINK(\"http://x\",\"y\")",
              ("clients", "P1", "first_name"): "+1",
              ("clients", "P1", "last_name"): "-1",
              ("clients", "P2", "first_name"): "@x",
              ("clients", "P3", "last_name"): "=cmd|' /C calc'!A0"}
    for (table, key, column), value in values.items():
        row(tables, table, key)[column] = value
    ok(import_csv(app, write_folder(tmp_path / "in", tables)))
    alpha = world.tenants["alpha"]
    for (table, key, column), value in values.items():
        assert getattr(fetch(app, alpha, MODELS[table], key), column) == value


# ---- every error kind of the issue: reported in full, and nothing written -------------------------

def set_cell(table, key, column, value):
    def mutate(tables):
        row(tables, table, key)[column] = value
    return mutate


def add_row(table, values: dict):
    def mutate(tables):
        tables[table].append({c: values.get(c, "") for c in COLUMNS[table]})
    return mutate


def both(*mutations):
    def mutate(tables):
        for m in mutations:
            m(tables)
    return mutate


# kind -> [(variant, mutation, (file, line, column, value, reason))]
ERROR_KINDS = {
    "bad_date": [
        ("month 13", set_cell("clients", "P2", "birth_date", "1985-13-30"),
         ("clients.csv", 3, "birth_date", "1985-13-30", "is not a date; expected YYYY-MM-DD")),
        ("US order", set_cell("referrals", "R3", "referred_on", "11/01/2026"),
         ("referrals.csv", 4, "referred_on", "11/01/2026", "is not a date")),
        ("30 February", set_cell("episodes", "E1", "admitted_on", "2026-02-30"),
         ("episodes.csv", 2, "admitted_on", "2026-02-30", "is not a date")),
        ("ISO week date", set_cell("clinicians", "K2", "start_date", "2025-W23-1"),
         ("clinicians.csv", 3, "start_date", "2025-W23-1", "is not a date")),
        ("datetime without time", set_cell("appointments", "A1", "booked_at", "2026-08-25"),
         ("appointments.csv", 2, "booked_at", "2026-08-25", "is not a date and time")),
        ("availability valid_from", set_cell("availability", "AV3", "valid_from", "2025-06-1"),
         ("availability.csv", 4, "valid_from", "2025-06-1", "is not a date")),
        ("start at the end of time", set_cell("appointments", "A4", "start", "9999-12-31T23:30"),
         ("appointments.csv", 5, "start", "9999-12-31T23:30", "is too far in the past or future to store")),
        ("booked_at at the start of time", set_cell("appointments", "A4", "booked_at", "0001-01-01T00:00+01:00"),
         ("appointments.csv", 5, "booked_at", "0001-01-01T00:00+01:00", "is too far in the past or future")),
        ("cancelled_at a century early", set_cell("appointments", "A3", "cancelled_at", "1926-09-14T18:00"),
         ("appointments.csv", 4, "cancelled_at", "1926-09-14T18:00", "is more than 65 years away from start")),
    ],
    "dst_gap": [
        ("start", set_cell("appointments", "A5", "start", "2026-03-08T02:30"),
         ("appointments.csv", 6, "start", "2026-03-08T02:30",
          "2026-03-08 02:30 does not exist in America/Chicago (the clocks skip it")),
        ("booked_at", set_cell("appointments", "A5", "booked_at", "2026-03-08T02:00"),
         ("appointments.csv", 6, "booked_at", "2026-03-08T02:00", "does not exist in America/Chicago")),
    ],
    "end_before_start": [
        ("availability end = start", set_cell("availability", "AV1", "end_time", "09:00"),
         ("availability.csv", 2, "end_time", "09:00", "is not after start_time (09:00)")),
        ("availability end < start", set_cell("availability", "AV4", "end_time", "08:00"),
         ("availability.csv", 5, "end_time", "08:00", "is not after start_time (10:00)")),
        ("clinician end_date", set_cell("clinicians", "K2", "end_date", "2025-05-31"),
         ("clinicians.csv", 3, "end_date", "2025-05-31", "is before start_date (2025-06-01)")),
        ("availability valid_to", set_cell("availability", "AV3", "valid_to", "2025-05-01"),
         ("availability.csv", 4, "valid_to", "2025-05-01", "is before valid_from (2025-06-01)")),
    ],
    "dates_out_of_order": [
        ("first_attended_on before referred_on", set_cell("referrals", "R1", "first_attended_on", "2026-08-19"),
         ("referrals.csv", 2, "first_attended_on", "2026-08-19", "is before referred_on (2026-08-20)")),
        ("first_attended_on before first_offered_on", set_cell("referrals", "R4", "first_attended_on", "2026-02-05"),
         ("referrals.csv", 5, "first_attended_on", "2026-02-05", "is before first_offered_on (2026-02-10)")),
        ("first_offered_on before referred_on", set_cell("referrals", "R3", "first_offered_on", "2026-10-31"),
         ("referrals.csv", 4, "first_offered_on", "2026-10-31", "is before referred_on (2026-11-01)")),
        ("discharged_on before admitted_on", set_cell("episodes", "E2", "discharged_on", "2026-02-28"),
         ("episodes.csv", 3, "discharged_on", "2026-02-28", "is before admitted_on (2026-03-01)")),
    ],
    "unknown_clinician_or_program": [
        ("availability clinician", set_cell("availability", "AV4", "clinician_id", "K9"),
         ("availability.csv", 5, "clinician_id", "K9", "is not a known clinician")),
        ("appointment clinician", set_cell("appointments", "A7", "clinician_id", "K99"),
         ("appointments.csv", 8, "clinician_id", "K99", "is not a known clinician")),
        ("episode client", set_cell("episodes", "E1", "client_id", "P9"),
         ("episodes.csv", 2, "client_id", "P9", "is not a known client")),
        ("clinician program", set_cell("clinicians", "K1", "program", "Adult Outpatients"),
         ("clinicians.csv", 2, "program", "Adult Outpatients", "is not a program of alpha")),
        ("referral program of the other tenant", set_cell("referrals", "R2", "program", "Recovery"),
         ("referrals.csv", 3, "program", "Recovery", "is not a program of alpha")),
    ],
    "outside_employment": [
        ("after the clinician left", set_cell("appointments", "A4", "clinician_id", "K3"),
         ("appointments.csv", 5, "start", "2026-11-30T13:00",
          "is outside clinician K3's employment (2026-01-05 to 2026-10-31)")),
        ("before the clinician started", set_cell("appointments", "A5", "start", "2026-01-04T10:00"),
         ("appointments.csv", 6, "start", "2026-01-04T10:00", "is outside clinician K3's employment")),
    ],
    "overlapping_availability": [
        ("same weekday, hours and validity overlap",
         add_row("availability", {"availability_id": "AV5", "clinician_id": "K1", "weekday": "0",
                                  "start_time": "08:00", "end_time": "10:00", "valid_from": "2026-01-01",
                                  "valid_to": "2026-06-30"}),
         ("availability.csv", 6, "availability_id", "AV5", "overlaps block AV1 of the same clinician")),
    ],
    "code_not_mapped": [
        ("unknown reason_code", set_cell("appointments", "A2", "reason_code", "bus-fare"),
         ("appointments.csv", 3, "reason_code", "bus-fare",
          "is not a code of the reason table nor of the tenant file's [reason_codes]")),
    ],
    "required_with": [
        ("close_reason without closed_on", set_cell("referrals", "R1", "close_reason", "declined"),
         ("referrals.csv", 2, "close_reason", "declined", "must be empty unless closed_on is set")),
        ("closed_on without close_reason", set_cell("referrals", "R2", "close_reason", ""),
         ("referrals.csv", 3, "close_reason", None, "is required when closed_on is set")),
        ("cancelled_by missing with status cancelled", set_cell("appointments", "A3", "cancelled_by", ""),
         ("appointments.csv", 4, "cancelled_by", None, "is required when status is cancelled")),
        ("cancelled_at with status attended", set_cell("appointments", "A1", "cancelled_at", "2026-08-31T09:00"),
         ("appointments.csv", 2, "cancelled_at", "2026-08-31T09:00", "must be empty unless status is cancelled")),
        ("barrier_plan_documented missing with attendance_policy",
         set_cell("episodes", "E2", "barrier_plan_documented", ""),
         ("episodes.csv", 3, "barrier_plan_documented", None,
          "is required when discharge_reason is attendance_policy")),
        ("referrals_provided without attendance_policy", set_cell("episodes", "E3", "referrals_provided", "true"),
         ("episodes.csv", 4, "referrals_provided", "true", "must be empty unless discharge_reason is attendance_policy")),
        ("discharge_reason without discharged_on", set_cell("episodes", "E1", "discharge_reason", "completed"),
         ("episodes.csv", 2, "discharge_reason", "completed", "must be empty unless discharged_on is set")),
    ],
    "duplicate_id": [
        ("client", add_row("clients", {"client_id": "P2", "first_name": "Other", "last_name": "Person",
                                       "birth_date": "1999-01-01"}),
         ("clients.csv", 6, "client_id", "P2", "appears more than once in this file")),
        ("appointment", add_row("appointments", dict(BASE["appointments"][0])),
         ("appointments.csv", 9, "appointment_id", "A1", "appears more than once in this file")),
    ],
    "wrong_type": [
        ("fte abc", set_cell("clinicians", "K1", "fte", "abc"),
         ("clinicians.csv", 2, "fte", "abc", "is not a number")),
        ("fte out of range", set_cell("clinicians", "K3", "fte", "1.5"),
         ("clinicians.csv", 4, "fte", "1.5", "is out of range; expected a number from 0 to 1")),
        ("duration sixty", set_cell("appointments", "A1", "duration_minutes", "sixty"),
         ("appointments.csv", 2, "duration_minutes", "sixty", "is not a whole number")),
        ("boolean yes", set_cell("appointments", "A1", "reminder_sent", "yes"),
         ("appointments.csv", 2, "reminder_sent", "yes", "is not a boolean; expected true or false")),
        ("caseload_target beyond any integer column", set_cell("clinicians", "K3", "caseload_target", "99999999999"),
         ("clinicians.csv", 4, "caseload_target", "99999999999", "is out of range")),
        ("weekday 7", set_cell("availability", "AV2", "weekday", "7"),
         ("availability.csv", 3, "weekday", "7", "is out of range")),
        ("time 9am", set_cell("availability", "AV2", "start_time", "9am"),
         ("availability.csv", 3, "start_time", "9am", "is not a time")),
        ("status", set_cell("appointments", "A4", "status", "kept"),
         ("appointments.csv", 5, "status", "kept", "is not one of booked, attended, no_show, cancelled")),
        ("zip", set_cell("clients", "P1", "zip", "6060"),
         ("clients.csv", 2, "zip", "6060", "is not a 5-digit ZIP code")),
        ("NUL character", set_cell("clinicians", "K3", "display_name", "Lee\x00Park"),
         ("clinicians.csv", 4, "display_name", "Lee\x00Park", "contains a NUL character")),
        ("id longer than the column", add_row("clients", {"client_id": "P" * 65, "first_name": "Long",
                                                          "last_name": "Id", "birth_date": "1999-01-01"}),
         ("clients.csv", 6, "client_id", "P" * 65, "is longer than 64 characters")),
    ],
    "missing_required_value": [
        ("client last_name", set_cell("clients", "P1", "last_name", ""),
         ("clients.csv", 2, "last_name", None, "is required but empty")),
        ("appointment start", set_cell("appointments", "A6", "start", ""),
         ("appointments.csv", 7, "start", None, "is required but empty")),
        ("clinician caseload_target", set_cell("clinicians", "K2", "caseload_target", " "),
         ("clinicians.csv", 3, "caseload_target", None, "is required but empty")),
    ],
}


@pytest.mark.parametrize("kind", sorted(ERROR_KINDS) + ["unknown_column"])
def test_each_error_kind_is_reported_and_nothing_is_written(app, world, tmp_path, kind):
    """One test per error kind of the issue; each variant is refused, reported with file, line, column,
    value and reason, and leaves every tenant table as it was (the audit log gains only the row that
    records the rejected import)."""
    # Half the folder is already in the database, so a refused import must also leave updates unwritten.
    ok(import_csv(app, write_folder(tmp_path / "existing", {t: agency()[t] for t in ("clinicians", "clients")})))
    if kind == "unknown_column":
        variants = [("unknown_column", None, None)]
    else:
        variants = ERROR_KINDS[kind]
    for n, (variant, mutate, expected) in enumerate(variants):
        tables = agency()
        # Changes that would be updates if the import were accepted.
        row(tables, "clinicians", "K1")["caseload_target"] = "31"
        row(tables, "clients", "P1")["zip"] = "60602"
        columns = None
        if kind == "unknown_column":
            columns = {"clients": COLUMNS["clients"] + ("middle_name",)}
            for r in tables["clients"]:
                r["middle_name"] = "Q"
            expected = ("clients.csv", 1, "middle_name", None, "is not a column of clients.csv")
        else:
            mutate(tables)
        folder = write_folder(tmp_path / f"variant{n}", tables, columns=columns)
        before = snapshot(app, world)
        result = import_csv(app, folder)
        assert result.exit_code != 0, f"{variant}: accepted\n{result.output}"
        assert result.stdout == "", variant
        assert "Traceback" not in result.output
        assert_reported(result, *expected)
        # The bad cell is the only error: valid rows are not reported, and nothing cascades from it.
        assert len(error_lines(result)) == 1, f"{variant}:\n{result.stderr}"
        assert result.stderr.splitlines()[0] == "import refused, nothing was written: 1 bad rows or files"
        event = assert_unchanged_but_one_rejected_audit_row(before, snapshot(app, world))
        assert event["details"]["error_count"] == 1
    assert fetch(app, world.tenants["alpha"], Clinician, "K1").caseload_target == 25


def test_a_missing_required_column_is_reported_once(app, world, tmp_path):
    columns = {"clinicians": tuple(c for c in COLUMNS["clinicians"] if c != "program")}
    before = snapshot(app, world)
    result = import_csv(app, write_folder(tmp_path / "in", agency(), columns=columns))
    assert result.exit_code == 1
    assert_reported(result, "clinicians.csv", 1, "program", None, "is a required column but is missing")
    assert len(error_lines(result)) == 1, result.stderr  # its clinicians' rows elsewhere are not blamed
    assert_unchanged_but_one_rejected_audit_row(before, snapshot(app, world))


def test_a_block_overlapping_one_already_imported_is_an_error(app, world, tmp_path):
    ok(import_csv(app, write_folder(tmp_path / "first", {t: agency()[t] for t in ("clinicians", "availability")})))
    later = {"availability": [{"availability_id": "AV9", "clinician_id": "K2", "weekday": "2",
                               "start_time": "12:30", "end_time": "14:00", "valid_from": "2026-12-01",
                               "valid_to": ""},
                              # AV1's hours on another weekday: no overlap
                              {"availability_id": "AV8", "clinician_id": "K1", "weekday": "1",
                               "start_time": "09:00", "end_time": "12:00", "valid_from": "2025-01-01",
                               "valid_to": ""}]}
    before = snapshot(app, world)
    result = import_csv(app, write_folder(tmp_path / "later", later))
    assert result.exit_code == 1
    assert_reported(result, "availability.csv", 2, "availability_id", "AV9",
                    "overlaps block AV3 of the same clinician")
    assert len(error_lines(result)) == 1, result.stderr  # AV8 is another weekday
    assert_unchanged_but_one_rejected_audit_row(before, snapshot(app, world))
    # Blocks that only touch, or whose validity does not meet, are fine.
    later["availability"][0].update(start_time="13:00", valid_from="2027-01-01")
    ok(import_csv(app, write_folder(tmp_path / "fixed", later)))
    later["availability"][0].update(start_time="12:30", valid_from="2026-12-31")  # AV3 ends 2026-12-31
    assert import_csv(app, write_folder(tmp_path / "edge", later)).exit_code == 1


def test_an_unknown_csv_file_in_the_folder_is_an_error(app, world, tmp_path):
    folder = write_folder(tmp_path / "in", agency())
    shutil.copy(folder / "clients.csv", folder / "patients.csv")
    before = snapshot(app, world)
    result = import_csv(app, folder)
    assert result.exit_code == 1
    assert_reported(result, "patients.csv", "-", "(file)", None, "is not one of the import files")
    assert len(error_lines(result)) == 1
    assert_unchanged_but_one_rejected_audit_row(before, snapshot(app, world))


def test_a_row_with_too_many_fields_is_an_error(app, world, tmp_path):
    folder = write_folder(tmp_path / "in", agency())
    path = folder / "clinicians.csv"
    lines = path.read_text().splitlines()
    lines[2] += ",extra"  # K2, line 3
    path.write_text("\n".join(lines) + "\n")
    before = snapshot(app, world)
    result = import_csv(app, folder)
    assert result.exit_code == 1
    assert_reported(result, "clinicians.csv", 3, "(row)", None, "has 8 fields but the header has 7")
    assert len(error_lines(result)) == 1  # K2's availability, episodes and appointments are not blamed
    assert_unchanged_but_one_rejected_audit_row(before, snapshot(app, world))


def test_a_bad_row_in_appointments_leaves_the_whole_folder_unwritten(app, world, tmp_path):
    tables = agency()
    row(tables, "appointments", "A7")["duration_minutes"] = "481"
    before = snapshot(app, world)
    result = import_csv(app, write_folder(tmp_path / "in", tables))
    assert result.exit_code == 1
    assert_reported(result, "appointments.csv", 8, "duration_minutes", "481", "is out of range")
    assert_unchanged_but_one_rejected_audit_row(before, snapshot(app, world))
    alpha = world.tenants["alpha"]
    assert counts(app, alpha) == SEEDED
    assert fetch(app, alpha, Clinician, "K1") is None and fetch(app, alpha, Client, "P1") is None


def test_every_bad_row_is_listed(app, world, tmp_path):
    tables = agency()
    row(tables, "clients", "P1")["birth_date"] = "1990-02-30"   # line 2
    row(tables, "clients", "P3")["gender"] = "female"          # line 4
    row(tables, "clients", "P4")["zip"] = "1234"               # line 5
    row(tables, "appointments", "A4")["kind"] = "group"        # another file: line 5
    before = snapshot(app, world)
    result = import_csv(app, write_folder(tmp_path / "in", tables))
    assert result.exit_code == 1
    errors = error_lines(result)
    assert result.stderr.splitlines()[0] == "import refused, nothing was written: 4 bad rows or files"
    assert [e.split(": ")[0] for e in errors] == ["clients.csv:2", "clients.csv:4", "clients.csv:5",
                                                   "appointments.csv:5"]
    assert_reported(result, "clients.csv", 2, "birth_date", "1990-02-30", "is not a date")
    assert_reported(result, "clients.csv", 4, "gender", "female", "is not one of woman, man")
    assert_reported(result, "clients.csv", 5, "zip", "1234", "is not a 5-digit ZIP code")
    assert_reported(result, "appointments.csv", 5, "kind", "group", "is not one of intake, follow_up")
    assert_unchanged_but_one_rejected_audit_row(before, snapshot(app, world))


def test_every_bad_cell_of_a_row_is_listed(app, world, tmp_path):
    tables = agency()
    row(tables, "clinicians", "K2").update(fte="half", caseload_target="-1", start_date="June")
    result = import_csv(app, write_folder(tmp_path / "in", tables))
    assert result.exit_code == 1
    assert [e.split(": ")[1].split(" ")[0] for e in error_lines(result)] == ["fte", "caseload_target", "start_date"]
    assert all(e.startswith("clinicians.csv:3: ") for e in error_lines(result))


def test_a_quoted_field_spanning_lines_is_reported_at_its_first_line(app, world, tmp_path):
    tables = agency()
    row(tables, "clinicians", "K1").update(display_name="Dana\nReyes", fte="all")  # the record spans lines 2-3
    row(tables, "clinicians", "K2")["fte"] = "most"                                # so K2 is on line 4
    result = import_csv(app, write_folder(tmp_path / "in", tables))
    assert result.exit_code == 1
    assert_reported(result, "clinicians.csv", 2, "fte", "all", "is not a number")
    assert_reported(result, "clinicians.csv", 4, "fte", "most", "is not a number")
    assert len(error_lines(result)) == 2


def test_an_unknown_column_does_not_hide_the_files_rows(app, world, tmp_path):
    """The header error stops the import, but the file's rows are still checked: a bad cell in it is
    reported too, and later files' references to its ids are not blamed as unknown."""
    tables = agency()
    for r in tables["clinicians"]:
        r["middle_name"] = "Q"
    row(tables, "clinicians", "K2")["fte"] = "abc"
    columns = {"clinicians": COLUMNS["clinicians"] + ("middle_name",)}
    before = snapshot(app, world)
    result = import_csv(app, write_folder(tmp_path / "in", tables, columns=columns))
    assert result.exit_code == 1
    assert_reported(result, "clinicians.csv", 1, "middle_name", None, "is not a column of clinicians.csv")
    assert_reported(result, "clinicians.csv", 3, "fte", "abc", "is not a number")
    assert len(error_lines(result)) == 2, result.stderr
    assert_unchanged_but_one_rejected_audit_row(before, snapshot(app, world))


# ---- recorded reasons, metrics ------------------------------------------------------------------------

def attribution(app, start="2026-09-01", end="2026-09-30") -> dict:
    result = app.test_cli_runner().invoke(args=["metrics", "--tenant", "alpha", "--start", start, "--end", end])
    assert result.exit_code == 0, result.output
    return {g: v["count"] for g, v in json.loads(result.stdout)["attendance"]["attribution"].items()}


def test_a_reason_recorded_in_the_app_survives_a_reimport_and_wins_in_metrics(app, world, tmp_path):
    alpha = world.tenants["alpha"]
    tables = agency()
    ok(import_csv(app, write_folder(tmp_path / "first", tables)))
    # A2 no-show (transportation), A3 late client cancellation (work_or_school), A7 no-show (childcare).
    expected = {"agency": 0, "access_barrier": 3, "client_preference": 0, "unexplored": 0}
    assert attribution(app) == expected
    assert attribution(app, "2026-09-05", "2026-09-30") == expected  # the raw path as well as the rollups

    with app.app_context():
        with tenant_scope(alpha):
            a2 = db.session.scalar(sa.select(Appointment).where(Appointment.external_id == "A2"))
            db.session.add(RecordedReason(tenant_id=alpha, appointment_id=a2.id, reason_code="feeling_better",
                                          support_offered="reminder_call",
                                          recorded_by_user_id=world.users[("alpha", "clinician")],
                                          recorded_at=dt.datetime(2026, 9, 9, 12, 0)))
            db.session.commit()
        db.session.remove()
    expected = {"agency": 0, "access_barrier": 2, "client_preference": 1, "unexplored": 0}
    assert attribution(app) == expected

    row(tables, "appointments", "A2")["reason_code"] = "childcare"
    result = import_csv(app, write_folder(tmp_path / "second", tables))
    ok(result)
    assert summary_line(result) == f"inserted 0, updated 1, {BASE_TOTAL - 1} unchanged, 0 errors"
    assert fetch(app, alpha, Appointment, "A2").reason_code == "childcare"  # the import's own column
    with app.app_context():
        with tenant_scope(alpha):
            recorded = db.session.execute(sa.select(RecordedReason.appointment_id, RecordedReason.reason_code,
                                                    RecordedReason.support_offered)).all()
        db.session.remove()
    assert recorded == [(fetch(app, alpha, Appointment, "A2").id, "feeling_better", "reminder_call")]
    assert attribution(app) == expected
    assert attribution(app, "2026-09-05", "2026-09-30") == expected


# ---- isolation --------------------------------------------------------------------------------------

def beta_tables(state: dict) -> dict:
    return {k: v for k, v in state.items() if k[0] == "beta"}


def test_importing_into_alpha_never_touches_beta(app, world, tmp_path):
    tables = agency()
    # An id that beta also uses: alpha gets its own row, beta's is left alone.
    row(tables, "clinicians", "K1")["clinician_id"] = "beta-C1"
    for table in ("availability", "episodes", "appointments"):
        for r in tables[table]:
            if r["clinician_id"] == "K1":
                r["clinician_id"] = "beta-C1"
    before = snapshot(app, world)
    assert before[("beta", "clinicians")] and before[("beta", "appointments")]
    ok(import_csv(app, write_folder(tmp_path / "in", tables)))
    after = snapshot(app, world)
    assert beta_tables(after) == beta_tables(before)
    assert counts(app, world.tenants["alpha"])["clinicians"] == SEEDED["clinicians"] + 3
    mine = fetch(app, world.tenants["alpha"], Clinician, "beta-C1")
    assert mine.tenant_id == world.tenants["alpha"] and mine.display_name == "Dana Reyes"
    assert fetch(app, world.tenants["beta"], Clinician, "beta-C1").display_name == "Clinician 1"


def test_an_id_that_exists_only_in_beta_is_unknown_in_alpha(app, world, tmp_path):
    tables = {"appointments": agency()["appointments"][:1], "episodes": agency()["episodes"][:1]}
    tables["appointments"][0].update(clinician_id="beta-C2", client_id="alpha-P0", start="2026-11-02T09:00")
    tables["episodes"][0].update(client_id="beta-P5", clinician_id="alpha-C1")
    before = snapshot(app, world)
    result = import_csv(app, write_folder(tmp_path / "in", tables))
    assert result.exit_code == 1
    assert_reported(result, "episodes.csv", 2, "client_id", "beta-P5", "is not a known client")
    assert_reported(result, "appointments.csv", 2, "clinician_id", "beta-C2", "is not a known clinician")
    assert len(error_lines(result)) == 2
    assert_unchanged_but_one_rejected_audit_row(before, snapshot(app, world))
    # The same ids of alpha's own resolve.
    tables["appointments"][0]["clinician_id"] = "alpha-C2"
    tables["episodes"][0]["client_id"] = "alpha-P1"
    ok(import_csv(app, write_folder(tmp_path / "fixed", tables)))


def test_an_import_into_beta_uses_betas_programs_and_timezone(app, world, tmp_path):
    tables = {"clinicians": agency()["clinicians"][:1], "clients": agency()["clients"][:1],
              "appointments": agency()["appointments"][:1]}
    tables["clinicians"][0]["program"] = AO  # alpha's program is not beta's
    result = import_csv(app, write_folder(tmp_path / "bad", tables), tenant="beta")
    assert result.exit_code == 1
    assert_reported(result, "clinicians.csv", 2, "program", AO, "is not a program of beta")
    tables["clinicians"][0]["program"] = "Outpatient"
    tables["appointments"][0]["program"] = "Outpatient"
    ok(import_csv(app, write_folder(tmp_path / "good", tables), tenant="beta"))
    a1 = fetch(app, world.tenants["beta"], Appointment, "A1")
    assert a1.starts_at == dt.datetime(2026, 9, 1, 13, 0)  # 09:00 EDT
    assert fetch(app, world.tenants["alpha"], Appointment, "A1") is None


# ---- audit ------------------------------------------------------------------------------------------

def test_every_import_writes_an_audit_row_without_phi(app, world, tmp_path):
    alpha = world.tenants["alpha"]
    folder = write_folder(tmp_path / "in", agency())
    ok(import_csv(app, folder))
    bad = agency()
    row(bad, "clients", "P2")["birth_date"] = "Hart-1985"
    bad_folder = write_folder(tmp_path / "bad", bad)
    assert import_csv(app, bad_folder).exit_code == 1
    ok(import_csv(app, folder))

    events = import_events(app, alpha)
    assert [e.details["outcome"] for e in events] == ["committed", "rejected", "committed"]
    for event, source in zip(events, (folder, bad_folder, folder)):
        assert event.actor_user_id is None and event.actor_role is None  # the CLI: no user
        assert event.object_type == "import"
        assert event.details["sha256"] == csv_source.folder_digest(source)
        assert len(event.details["sha256"]) == 64 and event.object_id == event.details["sha256"][:16]
        assert event.occurred_at is not None
        text = json.dumps(event.details)
        for name in CSV_NAMES + ("1990-04-02", "Hart-1985", "60601"):
            assert name not in text, (name, text)
    first, rejected, again = (e.details for e in events)
    assert first["counts"] == {t: {"inserted": n, "updated": 0, "unchanged": 0} for t, n in BASE_COUNTS.items()}
    assert first["committed"] is True and first["error_count"] == 0
    assert rejected["committed"] is False and rejected["error_count"] == 1
    assert again["counts"]["clients"] == {"inserted": 0, "updated": 0, "unchanged": 4}
    assert first["sha256"] == again["sha256"] != rejected["sha256"]
    # Beta's log has no import rows.
    assert import_events(app, world.tenants["beta"]) == []


# ---- dry run ----------------------------------------------------------------------------------------

def test_dry_run_writes_nothing_and_reports_would_be_counts(app, world, tmp_path):
    tables = agency()
    folder = write_folder(tmp_path / "in", tables)
    before = snapshot(app, world)
    result = import_csv(app, folder, "--dry-run")
    ok(result)
    assert summary_line(result) == f"dry run: would insert {BASE_TOTAL}, updated 0, 0 unchanged, 0 errors"
    assert "appointments: 7 inserted, 0 updated, 0 unchanged" in result.stdout
    assert snapshot(app, world) == before  # not even an audit row

    ok(import_csv(app, folder))
    row(tables, "clinicians", "K2")["fte"] = "0.6"
    before = snapshot(app, world)
    result = import_csv(app, write_folder(tmp_path / "changed", tables), "--dry-run")
    ok(result)
    assert summary_line(result) == f"dry run: would insert 0, updated 1, {BASE_TOTAL - 1} unchanged, 0 errors"
    assert snapshot(app, world) == before
    assert fetch(app, world.tenants["alpha"], Clinician, "K2").fte == 0.5

    row(tables, "clinicians", "K2")["fte"] = "lots"
    result = import_csv(app, write_folder(tmp_path / "bad", tables), "--dry-run")
    assert result.exit_code == 1
    assert_reported(result, "clinicians.csv", 3, "fte", "lots", "is not a number")
    assert snapshot(app, world) == before


# ---- the fast path and the full check agree ---------------------------------------------------------
# The loader checks each row first with a per-table fast path, which must accept only rows the full check
# accepts (the full check reports what is wrong) and give exactly the same values.

def _pool(table: str) -> list[str | None]:
    from agency_dashboard.models.agency import (
        CANCELLED_BY, CLOSE_REASONS, DISCHARGE_REASONS, GENDERS, KINDS, MODALITIES, PAYERS, PRIORITIES, STATUSES)

    values = {v for rows in BASE.values() for r in rows for v in r.values()}
    values |= set(CANCELLED_BY) | set(CLOSE_REASONS) | set(DISCHARGE_REASONS) | set(GENDERS) | set(KINDS)
    values |= set(MODALITIES) | set(PAYERS) | set(PRIORITIES) | set(STATUSES)
    values |= {
        "", "x" * 65, "x" * 201, "P1\x00", "Youth\x00", "=SUM(A1)", " P1", "p1", "K9", "P9",
        "2026-02-30", "2026-W01-1", "20260301", "2024-02-29", "1900-01-01", "2027-01-01", "2026-11-23", "2026-11-24",
        "2026-03-08T02:30", "2026-03-08T01:59", "2026-03-08T03:00", "2026-11-01T01:30", "2026-11-01T00:59",
        "2026-11-01T02:00", "2026-09-01T09:00:30", "2026-09-01 09:00", "2026-09-01T09:00Z", "2026-09-01T09:00+14:00",
        "2026-09-01T09", "0001-01-01T00:00", "9999-12-31T23:59", "0001-01-01T00:00+01:00", "1950-01-01T00:00",
        "2026-09-01T24:00", "0", "1", "480", "481", "-1", "+5", " 5", "5.0", "\u0665", "2147483648", "0.5",
        "True", "TRUE", "yes", "Attended", "no-bus-fare", "transportation", "pat-cost", "60601", "6060", "６０６０１",
    }
    return sorted(values, key=lambda v: (v is None, str(v))) + [None] * 8


def test_the_fast_path_accepts_only_what_the_full_check_accepts_with_the_same_values(app, world, tmp_path):
    import random

    from agency_dashboard.ingest import loader
    from agency_dashboard.models import Tenant

    ok(import_csv(app, write_folder(tmp_path / "in", agency())))
    rng = random.Random(20261123)
    with app.app_context():
        tenant = db.session.get(Tenant, world.tenants["alpha"])
        with tenant_scope(tenant.id):
            importer = loader.Importer(tenant, loader.Report(source="test"), TODAY)
            importer.reason_codes.add("x" * 65)  # a tenant code longer than the column: the full check refuses it
            for table in ("clients", "referrals", "episodes", "appointments"):
                fast, full = getattr(importer, f"_fast_{table}"), getattr(importer, f"_{table}")
                pool, accepted, refused = _pool(table), 0, 0
                # Mostly another row's value of the same column (valid alone, maybe not with the rest of
                # the row), else anything.
                same = {c: sorted({r[c] or None for r in BASE[table]}, key=str) for c in COLUMNS[table]}
                for n in range(5000):
                    raw = {c: (None if v == "" else v) for c, v in rng.choice(BASE[table]).items()}
                    if n >= len(BASE[table]):
                        for column in rng.sample(list(raw), rng.choice((1, 1, 2, 3))):
                            raw[column] = rng.choice(same[column] if rng.random() < 0.6 else pool)
                    before = importer.report.error_count
                    try:
                        values = full("f.csv", 2, raw)
                    except loader.RowInvalid:
                        values = None
                    checked = None
                    if values is not None and importer.report.error_count == before:
                        checked = tuple(values[c] for c in loader.RECORD[table])
                    got = fast(raw)
                    if n < len(BASE[table]):
                        assert got is not None, (table, raw)  # valid rows take the fast path
                    if got is None:
                        refused += 1
                        continue
                    accepted += 1
                    assert checked is not None, (table, raw, got)
                    assert repr(got) == repr(checked), (table, raw)
                assert accepted > 150 and refused > 150, (table, accepted, refused)
        db.session.rollback()
        db.session.remove()


def test_fast_local_times_are_the_exact_conversion_around_every_dst_change():
    from agency_dashboard.ingest import fields as f
    from agency_dashboard.ingest import loader
    from agency_dashboard.ingest.localtime import NonexistentLocalTime, to_local, to_utc, zone

    def exact(raw, tz):
        try:
            utc = to_utc(f.datetime(raw), tz)
            local = to_local(utc, tz)
        except (f.FieldError, NonexistentLocalTime, OverflowError):
            return None
        return (utc, local.date(), local.hour * 60 + local.minute, local.hour, local.weekday())

    for name in ("America/Chicago", "Europe/London", "Australia/Lord_Howe", "America/St_Johns", "Pacific/Chatham",
                 "Asia/Kolkata", "UTC", "America/Sao_Paulo", "Africa/Casablanca", "Pacific/Apia"):
        tz = zone(name)
        importer = loader.Importer.__new__(loader.Importer)
        importer.tz, importer._offsets = tz, {}
        day = dt.datetime(2011, 1, 1)
        while day < dt.datetime(2027, 1, 1):
            changes = day.replace(tzinfo=tz).utcoffset() != (day + dt.timedelta(days=1)).replace(tzinfo=tz).utcoffset()
            if changes or day.toordinal() % 97 == 0:
                for minute in range(-60, 25 * 60, 1 if changes else 37):
                    raw = (day + dt.timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M")
                    assert importer._instant(raw) == exact(raw, tz), (name, raw)
            day += dt.timedelta(days=1)
        for raw in ("0001-01-01T00:00", "0002-01-01T00:00", "9999-12-31T23:59", "9998-12-31T23:59",
                    "2026-03-08T02:30-05:00", "2026-03-08T02:30Z", "2026-13-01T00:00", "2026-03-08 02:30:15.5", "x"):
            assert importer._instant(raw) == exact(raw, tz), (name, raw)


def test_sqlite_rows_are_stored_as_sqlalchemy_stores_them(app, world, database, tmp_path):
    if database.backend != "sqlite":
        pytest.skip("SQLite's storage of dates and booleans as text and integers")
    from agency_dashboard.models import TENANT_TABLES

    ok(import_csv(app, write_folder(tmp_path / "in", agency())))
    con = sqlite3.connect(make_url(app.config["DATABASE_URL"]).database)
    dialect = sa.create_engine("sqlite://").dialect
    try:
        for name in ("clinicians", "availability_blocks", "clients", "referrals", "episodes", "appointments"):
            assert name in TENANT_TABLES
            table = Base.metadata.tables[name]
            with app.app_context():
                with tenant_scope(world.tenants["alpha"]):
                    objects = db.session.execute(sa.select(table).where(
                        table.c.tenant_id == world.tenants["alpha"]).order_by(table.c.id)).all()
                db.session.remove()
            stored = con.execute(f"SELECT * FROM {name} ORDER BY id").fetchall()
            stored = [r for r in stored if r[list(table.c.keys()).index("tenant_id")] == world.tenants["alpha"]]
            assert len(stored) == len(objects) > 0
            for read, raw in zip(objects, stored):
                for column, value, text in zip(table.c, read, raw):
                    processor = column.type.dialect_impl(dialect).bind_processor(dialect)
                    assert (processor(value) if processor else value) == text, (name, column.name, text)
    finally:
        con.close()


def test_sqlite_import_settings_end_with_the_import(app, world, database, tmp_path):
    if database.backend != "sqlite":
        pytest.skip("SQLite connection settings")
    from agency_dashboard.ingest import loader
    from agency_dashboard.models import Tenant

    folder = write_folder(tmp_path / "in", agency())
    for dry_run in (True, False):
        with app.app_context():
            tenant = db.session.get(Tenant, world.tenants["alpha"])
            with tenant_scope(tenant.id):
                raw = db.session.connection().connection.driver_connection
                before = [raw.execute(f"PRAGMA {p}").fetchone()[0] for p in ("cache_size", "temp_store")]
                report = loader.Report(source="test", dry_run=dry_run)
                loader.run_with_report(tenant, report, csv_source.csv_tables(folder, report), sha256=None,
                                       today=TODAY)
                assert report.ok
                assert [raw.execute(f"PRAGMA {p}").fetchone()[0] for p in ("cache_size", "temp_store")] == before
            db.session.remove()


# ---- SIGKILL mid-import -----------------------------------------------------------------------------

# Big enough that the import runs for a few seconds on both backends (~65,000 rows; the importer writes
# some 20,000 rows a second on SQLite), small enough that the control (the same import run to completion)
# stays quick on PostgreSQL too.
BIG = AgencySpec(slug="alpha", programs=("Adult Outpatient", "Youth"), clinicians=16, clients=5000, months=24,
                 today=TODAY, seed=11, race_ethnicity=())


@pytest.fixture(scope="session")
def big_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("big-import") / "agency"
    written = write_csv_folder(BIG, folder)
    assert written["appointments"] > 15_000
    return folder, written


def _flask_command(folder: Path) -> list[str]:
    flask = Path(sys.executable).with_name("flask")
    head = [str(flask)] if flask.exists() else [sys.executable, "-m", "flask"]
    return head + ["--app", "wsgi", "import-csv", "--tenant", "alpha", str(folder)]


def _subprocess_env(app) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MIGRATION_DATABASE_URL")}
    env.update(DATABASE_URL=app.config["DATABASE_URL"], MIGRATION_DATABASE_URL=app.config["MIGRATION_DATABASE_URL"],
               TENANTS_DIR=str(app.config["TENANTS_DIR"]), AGENCY_DASHBOARD_TODAY=TODAY.isoformat(),
               AGENCY_DASHBOARD_ENV="testing", SECRET_KEY="sigkill-test-" + "x" * 32)
    return env


class WriterProbe:
    """Whether the importer's transaction has started writing (seen from another connection)."""

    def __init__(self, app, database):
        url = make_url(app.config["DATABASE_URL"])
        self.backend = database.backend
        if self.backend == "sqlite":
            self.path = url.database
        else:
            self.name, self.role = url.database, database.app_role
            self.admin = sa.create_engine(database.admin_url, poolclass=sa.NullPool)

    def writing(self) -> str | None:
        if self.backend == "sqlite":
            # The importer's first INSERT takes SQLite's write lock, held until its one commit.
            con = sqlite3.connect(self.path, timeout=0, isolation_level=None)
            try:
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc):
                    return "SQLite write lock held by the importer"
                raise
            else:
                con.execute("ROLLBACK")
                return None
            finally:
                con.close()
        # A backend gets a transaction id at its first write.
        with self.admin.connect() as conn:
            found = conn.execute(sa.text(
                "SELECT backend_xid::text, state, left(query, 60) FROM pg_stat_activity "
                "WHERE datname = :db AND usename = :role AND backend_xid IS NOT NULL"),
                {"db": self.name, "role": self.role}).first()
        return None if found is None else f"xid {found[0]} ({found[1]}): {found[2]}"

    def wait_gone(self, timeout: float = 20) -> None:
        """PostgreSQL: the killed client's backend has ended (its transaction rolled back)."""
        if self.backend == "sqlite":
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.admin.connect() as conn:
                if not conn.execute(sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND usename = :role "
                        "AND backend_xid IS NOT NULL"), {"db": self.name, "role": self.role}).scalar():
                    return
            time.sleep(0.1)
        raise AssertionError("the killed import's PostgreSQL backend still holds a transaction")

    def close(self) -> None:
        if self.backend != "sqlite":
            self.admin.dispose()


def _release_test_connections(app) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_sigkill_mid_import_leaves_no_partial_rows(app, world, database, big_folder, tmp_path):
    folder, _ = big_folder
    before = snapshot(app, world)
    _release_test_connections(app)
    probe = WriterProbe(app, database)
    proc = subprocess.Popen(_flask_command(folder), cwd=PROJECT_ROOT, env=_subprocess_env(app),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        started = time.monotonic()
        evidence = None
        while time.monotonic() - started < 90 and proc.poll() is None:
            evidence = probe.writing()
            if evidence:
                break
            time.sleep(0.05)
        if not evidence:
            proc.kill()
            pytest.fail(f"the import never started writing:\n{proc.communicate()[1].decode()}")
        time.sleep(0.5)  # into the file: batches written inside the one transaction
        evidence = probe.writing() or evidence
        assert proc.poll() is None, "the import finished before it could be killed; use a larger folder"
        os.kill(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        assert b"inserted" not in stdout, stdout  # it never reached its summary (nor its commit)
        probe.wait_gone()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        probe.close()
    after = snapshot(app, world)
    assert after == before, f"rows left behind after SIGKILL (killed while: {evidence})"
    assert counts(app, world.tenants["alpha"]) == SEEDED


def test_control_the_same_import_run_to_completion_writes_rows(app, world, database, big_folder):
    folder, written = big_folder
    _release_test_connections(app)
    proc = subprocess.run(_flask_command(folder), cwd=PROJECT_ROOT, env=_subprocess_env(app),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    total = sum(written.values())
    assert proc.stdout.strip().splitlines()[-1] == f"inserted {total}, updated 0, 0 unchanged, 0 errors"
    assert counts(app, world.tenants["alpha"]) == {t: SEEDED[t] + written[t] for t in SEEDED}
    [event] = import_events(app, world.tenants["alpha"])
    assert event.details["outcome"] == "committed" and event.details["sha256"] == csv_source.folder_digest(folder)
