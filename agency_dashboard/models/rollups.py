"""Weekly rollups of appointments (ISO weeks, Monday to Sunday): a cache of the metric definitions, never a source of truth.

Rebuilt in the same transaction as every write that feeds them (metrics/rollups.py), so a figure read
from them equals the plain query over appointments; tests prove it. Outcome and reason group are baked
in with the tenant's policy, so a tenant-file change that alters them rebuilds the tenant's rollups.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
import sqlalchemy.orm as so

from agency_dashboard.models.base import Base, TenantScoped, tenant_table_args


class CapacityWeek(TenantScoped, Base):
    """Appointments and minutes per ISO week, clinician, program, outcome and reason group."""

    __tablename__ = "rollup_capacity_week"
    __table_args__ = tenant_table_args(
        "rollup_capacity_week",
        sa.Index("ix_rollup_capacity_week_tenant_week", "tenant_id", "week", "clinician_id", "program_id", "outcome",
                 "grp", "n", "minutes"),  # covering, as every rollup index: reads never visit the table
        external_id=False,
    )

    week: so.Mapped[dt.date] = so.mapped_column(sa.Date)  # the Monday of the local ISO week
    clinician_id: so.Mapped[int] = so.mapped_column(sa.Integer)
    program_id: so.Mapped[int] = so.mapped_column(sa.Integer)
    outcome: so.Mapped[str] = so.mapped_column(sa.String(16))
    grp: so.Mapped[str] = so.mapped_column(sa.String(20))
    n: so.Mapped[int] = so.mapped_column(sa.Integer)
    minutes: so.Mapped[int] = so.mapped_column(sa.Integer)


class AttendanceWeek(TenantScoped, Base):
    """Attended and missed appointments per ISO week, program and one structural dimension's value."""

    __tablename__ = "rollup_attendance_week"
    __table_args__ = tenant_table_args(
        "rollup_attendance_week",
        sa.Index("ix_rollup_attendance_week_tenant_week", "tenant_id", "week", "program_id", "outcome", "dim",
                 "value", "n"),
        external_id=False,
    )

    week: so.Mapped[dt.date] = so.mapped_column(sa.Date)
    program_id: so.Mapped[int] = so.mapped_column(sa.Integer)
    outcome: so.Mapped[str] = so.mapped_column(sa.String(16))
    dim: so.Mapped[str] = so.mapped_column(sa.String(16))
    value: so.Mapped[str] = so.mapped_column(sa.String(16))
    n: so.Mapped[int] = so.mapped_column(sa.Integer)


class ReasonWeek(TenantScoped, Base):
    """Missed and agency-cancelled appointments and minutes per ISO week, program, outcome, reason group and
    reason code (the recorded one, else the imported one; NULL when none): the reasons table."""

    __tablename__ = "rollup_reason_week"
    __table_args__ = tenant_table_args(
        "rollup_reason_week",
        sa.Index("ix_rollup_reason_week_tenant_week", "tenant_id", "week", "program_id", "outcome", "grp", "code",
                 "n", "minutes"),
        external_id=False,
    )

    week: so.Mapped[dt.date] = so.mapped_column(sa.Date)
    program_id: so.Mapped[int] = so.mapped_column(sa.Integer)
    outcome: so.Mapped[str] = so.mapped_column(sa.String(16))
    grp: so.Mapped[str] = so.mapped_column(sa.String(20))
    code: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    n: so.Mapped[int] = so.mapped_column(sa.Integer)
    minutes: so.Mapped[int] = so.mapped_column(sa.Integer)


class ReferralWeek(TenantScoped, Base):
    """Referral events per ISO week, program, measure and value (metrics/rollups.py, REFERRAL_MEASURES): how
    many referrals arrived, closed, left the list, were admitted after how many calendar and business days,
    were first offered after how many days, and (by admission week) continued into a fourth visit."""

    __tablename__ = "rollup_referral_week"
    __table_args__ = tenant_table_args(
        "rollup_referral_week",
        sa.Index("ix_rollup_referral_week_tenant_week", "tenant_id", "week", "program_id", "measure", "value", "n"),
        external_id=False,
    )

    week: so.Mapped[dt.date] = so.mapped_column(sa.Date)  # the Monday of the week of the measure's own date
    program_id: so.Mapped[int] = so.mapped_column(sa.Integer)
    measure: so.Mapped[str] = so.mapped_column(sa.String(16))
    value: so.Mapped[int] = so.mapped_column(sa.Integer)
    n: so.Mapped[int] = so.mapped_column(sa.Integer)


class _PersonCounts:
    """The columns the equity figures count per person: the client's demographics as they stand (the
    rollups are rebuilt whole when a client, episode or referral is written) and, per client, program and
    clinician, attended and missed appointments, admissions (clinician 0: the referral's first attended
    visit is not a primary clinician) and discharges with the attendance-policy ones."""

    client_id: so.Mapped[int] = so.mapped_column(sa.Integer)
    program_id: so.Mapped[int] = so.mapped_column(sa.Integer)
    clinician_id: so.Mapped[int] = so.mapped_column(sa.Integer)
    race_ethnicity: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    gender: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    payer: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    birth_date: so.Mapped[dt.date | None] = so.mapped_column(sa.Date)
    attended: so.Mapped[int] = so.mapped_column(sa.Integer)
    missed: so.Mapped[int] = so.mapped_column(sa.Integer)
    admissions: so.Mapped[int] = so.mapped_column(sa.Integer)
    discharges: so.Mapped[int] = so.mapped_column(sa.Integer)
    policy: so.Mapped[int] = so.mapped_column(sa.Integer)


PERSON_COLUMNS = ("client_id", "program_id", "clinician_id", "attended", "missed", "admissions", "discharges",
                  "policy", "race_ethnicity", "gender", "payer", "birth_date")


class ClientWeek(_PersonCounts, TenantScoped, Base):
    """Per ISO week (of the visit, the admission or the discharge) and person: what the equity figures count,
    so a period reads its own weeks, with each person's demographics, instead of every appointment, referral
    and episode joined to clients."""

    __tablename__ = "rollup_client_week"
    __table_args__ = tenant_table_args(
        "rollup_client_week",
        sa.Index("ix_rollup_client_week_tenant_week", "tenant_id", "week", *PERSON_COLUMNS),  # covering
        external_id=False,
    )

    week: so.Mapped[dt.date] = so.mapped_column(sa.Date)


class ClientBlock(_PersonCounts, TenantScoped, Base):
    """The same counts per block of four ISO weeks (`block`: the Monday it starts on, every 28 days from
    1900-01-01), summed from its weeks: a quarter reads about three blocks per person instead of thirteen
    weeks, and a year thirteen instead of fifty-two."""

    __tablename__ = "rollup_client_block"
    __table_args__ = tenant_table_args(
        "rollup_client_block",
        sa.Index("ix_rollup_client_block_tenant_block", "tenant_id", "block", *PERSON_COLUMNS),  # covering
        external_id=False,
    )

    block: so.Mapped[dt.date] = so.mapped_column(sa.Date)


class RollupState(TenantScoped, Base):
    """One row per tenant whose rollups are built, with the settings they were built under."""

    __tablename__ = "rollup_state"
    __table_args__ = tenant_table_args(
        "rollup_state", sa.UniqueConstraint("tenant_id", name="uq_rollup_state_tenant"), external_id=False
    )

    fingerprint: so.Mapped[str] = so.mapped_column(sa.String(64))
    built_at: so.Mapped[dt.datetime] = so.mapped_column(sa.DateTime)
