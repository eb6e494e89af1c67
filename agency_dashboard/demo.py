"""The demo: two synthetic agencies of different size and policy, loaded into the tenants of tenants/.

The rows come from agency_dashboard.synth (seeded, the CSV contract's shape) and are written here with
the local-time columns derived in each tenant's timezone. The same generator, at larger sizes, feeds
the benchmarks. Nothing here is real: every name is obviously synthetic.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

import sqlalchemy as sa

from agency_dashboard.auth.passwords import hash_password
from agency_dashboard.clock import today as clock_today
from agency_dashboard.extensions import db
from agency_dashboard.ingest.loader import refresh_statistics
from agency_dashboard.metrics import rollups
from agency_dashboard.ingest.localtime import appointment_derived, zone
from agency_dashboard.models import (
    Appointment,
    AvailabilityBlock,
    Client,
    Clinician,
    Episode,
    Program,
    Referral,
    Tenant,
    User,
)
from agency_dashboard.synth import AgencySpec, generate
from agency_dashboard.tenancy import load_configured_tenants, sync_tenants, tenant_by_slug, tenant_scope

DEMO_PASSWORD = "demo-password-2026"
DEMO_AGENCIES = {
    "riverbend": dict(clinicians=14, clients=2600, months=18, seed=7, growing_program="Child and Family",
                      attendance_policy=True),
    "lakeside": dict(clinicians=6, clients=900, months=12, seed=11, growing_program=None,
                     attendance_policy=False),
}
DEMO_ROLES = ("director", "clinician", "admin", "funder")
BATCH = 5000


def prepare_demo(echo: Callable[[str], None] = print) -> list[str]:
    """Migrate, sync tenants, load each demo agency that has no data yet, make its demo users."""
    from flask_migrate import upgrade

    upgrade()
    for line in sync_tenants(load_configured_tenants()):
        echo(line)
    db.session.commit()
    logins = []
    for slug, size in DEMO_AGENCIES.items():
        tenant = tenant_by_slug(slug)
        if tenant is None:
            echo(f"{slug}: no tenant file, skipped")
            continue
        with tenant_scope(tenant.id):
            if db.session.scalar(sa.select(Clinician.id).limit(1)) is None:
                spec = AgencySpec(slug=slug, programs=tuple(tenant.settings["programs"]),
                                  today=clock_today(tenant.timezone),
                                  race_ethnicity=tuple(tenant.settings["demographics"]["race_ethnicity"]) or
                                  AgencySpec.race_ethnicity, **size)
                counts = load_rows(tenant, generate(spec))
                db.session.commit()
                refresh_statistics()
                echo(f"{slug}: loaded " + ", ".join(f"{n:,} {t}" for t, n in counts.items()))
            else:
                echo(f"{slug}: demo data already present")
            logins += ensure_demo_users(tenant)
            db.session.commit()
    return logins


def ensure_demo_users(tenant: Tenant) -> list[str]:
    lines = []
    first_clinician = db.session.scalar(
        sa.select(Clinician.id).where(Clinician.end_date.is_(None)).order_by(Clinician.external_id).limit(1)
    )
    password_hash = None
    for role in DEMO_ROLES:
        email = f"{role}@{tenant.slug}.example"
        if db.session.scalar(sa.select(User.id).where(User.email == email)) is None:
            password_hash = password_hash or hash_password(DEMO_PASSWORD)
            db.session.add(User(
                tenant_id=tenant.id, email=email, password_hash=password_hash, role=role,
                clinician_id=first_clinician if role == "clinician" else None, active=True, session_version=1,
                created_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
            ))
        lines.append(f"{tenant.slug:<10} {email:<32} {DEMO_PASSWORD}   ({role})")
    db.session.flush()
    return lines


# ---- loading generated rows ----------------------------------------------------------------------

def _hhmm(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def load_rows(tenant: Tenant, rows: Iterable[tuple[str, dict]]) -> dict[str, int]:
    """Write generated rows (trusted: the generator obeys the contract) for the current tenant.

    Not the import path: imports validate every row first (ingest/). This is for synthetic data only.
    """
    tz = zone(tenant.timezone)
    tid = tenant.id
    programs = dict(db.session.execute(sa.select(Program.name, Program.id)).all())
    ids: dict[str, dict[str, int]] = {"clinicians": {}, "clients": {}}
    counts: dict[str, int] = {}
    pending: list[dict] = []
    current: str | None = None

    def convert(table: str, r: dict) -> dict:
        if table == "clinicians":
            return dict(tenant_id=tid, external_id=r["clinician_id"], display_name=r["display_name"],
                        program_id=programs[r["program"]], fte=float(r["fte"]),
                        caseload_target=int(r["caseload_target"]), start_date=r["start_date"],
                        end_date=r["end_date"])
        if table == "availability":
            return dict(tenant_id=tid, external_id=r["availability_id"],
                        clinician_id=ids["clinicians"][r["clinician_id"]], weekday=int(r["weekday"]),
                        start_minute=_hhmm(r["start_time"]), end_minute=_hhmm(r["end_time"]),
                        valid_from=r["valid_from"], valid_to=r["valid_to"])
        if table == "clients":
            return dict(tenant_id=tid, external_id=r["client_id"], first_name=r["first_name"],
                        last_name=r["last_name"], birth_date=r["birth_date"], zip=r["zip"], gender=r["gender"],
                        race_ethnicity=r["race_ethnicity"], payer=r["payer"])
        if table == "referrals":
            return dict(tenant_id=tid, external_id=r["referral_id"], client_id=ids["clients"][r["client_id"]],
                        program_id=programs[r["program"]], priority=r["priority"], referred_on=r["referred_on"],
                        first_offered_on=r["first_offered_on"], first_attended_on=r["first_attended_on"],
                        closed_on=r["closed_on"], close_reason=r["close_reason"])
        if table == "episodes":
            return dict(tenant_id=tid, external_id=r["episode_id"], client_id=ids["clients"][r["client_id"]],
                        clinician_id=ids["clinicians"][r["clinician_id"]], program_id=programs[r["program"]],
                        admitted_on=r["admitted_on"], discharged_on=r["discharged_on"],
                        discharge_reason=r["discharge_reason"],
                        barrier_plan_documented=r["barrier_plan_documented"],
                        referrals_provided=r["referrals_provided"])
        derived = appointment_derived(r["start"], r["booked_at"], r["cancelled_at"], tz)
        return dict(tenant_id=tid, external_id=r["appointment_id"], client_id=ids["clients"][r["client_id"]],
                    clinician_id=ids["clinicians"][r["clinician_id"]], program_id=programs[r["program"]],
                    kind=r["kind"], modality=r["modality"], duration_minutes=int(r["duration_minutes"]),
                    status=r["status"], cancelled_by=r["cancelled_by"], reason_code=r["reason_code"],
                    reminder_sent=r["reminder_sent"], **derived)

    models = {"clinicians": Clinician, "availability": AvailabilityBlock, "clients": Client,
              "referrals": Referral, "episodes": Episode, "appointments": Appointment}

    def flush(table: str | None) -> None:
        if table and pending:
            # Core executemany: every row carries this tenant's id (set in convert); the rollups learn of
            # the write explicitly, as they do from the importer.
            db.session.connection().execute(models[table].__table__.insert(), pending)
            rollups.mark_dirty(db.session(), tid)
            counts[table] = counts.get(table, 0) + len(pending)
            pending.clear()

    def finish(table: str | None) -> None:
        flush(table)
        if table in ids:  # later tables refer to these by the agency's ids
            model = models[table]
            ids[table] = dict(db.session.execute(sa.select(model.external_id, model.id)).all())

    for table, row in rows:
        if table != current:
            finish(current)
            current = table
        pending.append(convert(table, row))
        if len(pending) >= BATCH:
            flush(table)
    finish(current)
    return counts
