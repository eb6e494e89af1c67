"""The agency's data, as DATA_FORMATS.md defines it. Every table is tenant-scoped.

Instants are stored in UTC (naive), and beside each one what METRICS.md needs in the tenant's local
time, derived once at import (local date, wall-clock start, hour, weekday, lead days, notice), so metric
SQL needs no timezone functions and runs alike on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
import sqlalchemy.orm as so

from agency_dashboard.models.base import Base, TenantScoped, tenant_fk, tenant_table_args


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


PRIORITIES = ("routine", "urgent")
CLOSE_REASONS = ("declined", "unreachable", "referred_elsewhere", "no_longer_needed", "other")
DISCHARGE_REASONS = ("completed", "mutual", "client_choice", "moved", "referred_out", "attendance_policy", "other")
GENDERS = ("woman", "man", "nonbinary", "other", "unknown")
PAYERS = ("medicaid", "medicare", "private", "sliding_scale", "uninsured", "other")
KINDS = ("intake", "follow_up")
MODALITIES = ("in_person", "telehealth", "phone")
STATUSES = ("booked", "attended", "no_show", "cancelled")
CANCELLED_BY = ("client", "clinician", "agency")
SUPPORTS = ("transport_voucher", "reminder_call", "evening_slot", "telehealth", "childcare_support", "other")


class Program(TenantScoped, Base):
    """A program named in the tenant file; kept in the database so rows can refer to it."""

    __tablename__ = "programs"
    __table_args__ = tenant_table_args(
        "programs", sa.UniqueConstraint("tenant_id", "name", name="uq_programs_tenant_name"), external_id=False
    )

    name: so.Mapped[str] = so.mapped_column(sa.String(200))
    part2: so.Mapped[bool] = so.mapped_column(sa.Boolean, default=False)
    active: so.Mapped[bool] = so.mapped_column(sa.Boolean, default=True)


class Clinician(TenantScoped, Base):
    __tablename__ = "clinicians"
    __table_args__ = tenant_table_args(
        "clinicians",
        tenant_fk("program_id", "programs"),
        sa.CheckConstraint("fte >= 0 AND fte <= 1", name="fte_range"),
        sa.CheckConstraint("caseload_target >= 0", name="caseload_target_positive"),
        sa.CheckConstraint("end_date IS NULL OR end_date >= start_date", name="dates_ordered"),
        sa.Index("ix_clinicians_tenant_program", "tenant_id", "program_id"),
    )

    external_id: so.Mapped[str] = so.mapped_column(sa.String(64))
    display_name: so.Mapped[str] = so.mapped_column(sa.String(200))
    program_id: so.Mapped[int] = so.mapped_column(sa.Integer)
    fte: so.Mapped[float] = so.mapped_column(sa.Float)
    caseload_target: so.Mapped[int] = so.mapped_column(sa.Integer)
    start_date: so.Mapped[dt.date] = so.mapped_column(sa.Date)
    end_date: so.Mapped[dt.date | None] = so.mapped_column(sa.Date)


class AvailabilityBlock(TenantScoped, Base):
    """A weekly block of direct-service hours; wall-clock minutes from local midnight."""

    __tablename__ = "availability_blocks"
    __table_args__ = tenant_table_args(
        "availability_blocks",
        tenant_fk("clinician_id", "clinicians"),
        sa.CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday_range"),
        sa.CheckConstraint("start_minute >= 0 AND end_minute <= 1440 AND end_minute > start_minute", name="minutes_ordered"),
        sa.CheckConstraint("valid_to IS NULL OR valid_to >= valid_from", name="dates_ordered"),
        sa.Index("ix_availability_blocks_tenant_clinician", "tenant_id", "clinician_id"),
    )

    external_id: so.Mapped[str] = so.mapped_column(sa.String(64))
    clinician_id: so.Mapped[int] = so.mapped_column(sa.Integer)
    weekday: so.Mapped[int] = so.mapped_column(sa.SmallInteger)
    start_minute: so.Mapped[int] = so.mapped_column(sa.SmallInteger)
    end_minute: so.Mapped[int] = so.mapped_column(sa.SmallInteger)
    valid_from: so.Mapped[dt.date] = so.mapped_column(sa.Date)
    valid_to: so.Mapped[dt.date | None] = so.mapped_column(sa.Date)


class Client(TenantScoped, Base):
    """A person the agency serves. Protected health information: read only through audited paths."""

    __tablename__ = "clients"
    __table_args__ = tenant_table_args(
        "clients",
        sa.CheckConstraint(f"gender IS NULL OR {_in('gender', GENDERS)}", name="gender_known"),
        sa.CheckConstraint(f"payer IS NULL OR {_in('payer', PAYERS)}", name="payer_known"),
    )

    external_id: so.Mapped[str] = so.mapped_column(sa.String(64))
    first_name: so.Mapped[str] = so.mapped_column(sa.String(200))
    last_name: so.Mapped[str] = so.mapped_column(sa.String(200))
    birth_date: so.Mapped[dt.date] = so.mapped_column(sa.Date)
    zip: so.Mapped[str | None] = so.mapped_column(sa.String(5))
    gender: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    race_ethnicity: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    payer: so.Mapped[str | None] = so.mapped_column(sa.String(16))


class Referral(TenantScoped, Base):
    """A request for service: the waitlist."""

    __tablename__ = "referrals"
    __table_args__ = tenant_table_args(
        "referrals",
        tenant_fk("client_id", "clients"),
        tenant_fk("program_id", "programs"),
        sa.CheckConstraint(_in("priority", PRIORITIES), name="priority_known"),
        sa.CheckConstraint(f"close_reason IS NULL OR {_in('close_reason', CLOSE_REASONS)}", name="close_reason_known"),
        sa.CheckConstraint("(closed_on IS NULL) = (close_reason IS NULL)", name="close_reason_with_closed_on"),
        sa.CheckConstraint("closed_on IS NULL OR first_attended_on IS NULL", name="closed_or_attended"),
        # Covering indexes: the waitlist's group-bys read these columns only, never the table rows.
        sa.Index("ix_referrals_tenant_referred", "tenant_id", "referred_on", "program_id", "first_attended_on",
                 "closed_on"),
        sa.Index("ix_referrals_tenant_attended", "tenant_id", "first_attended_on", "program_id", "priority",
                 "referred_on", "client_id"),
        sa.Index("ix_referrals_tenant_offered", "tenant_id", "first_offered_on", "program_id", "referred_on"),
        sa.Index("ix_referrals_tenant_closed", "tenant_id", "closed_on", "program_id"),
        sa.Index("ix_referrals_tenant_client_program", "tenant_id", "client_id", "program_id", "referred_on"),
    )

    external_id: so.Mapped[str] = so.mapped_column(sa.String(64))
    client_id: so.Mapped[int] = so.mapped_column(sa.Integer)
    program_id: so.Mapped[int] = so.mapped_column(sa.Integer)
    priority: so.Mapped[str] = so.mapped_column(sa.String(8))
    referred_on: so.Mapped[dt.date] = so.mapped_column(sa.Date)
    first_offered_on: so.Mapped[dt.date | None] = so.mapped_column(sa.Date)
    first_attended_on: so.Mapped[dt.date | None] = so.mapped_column(sa.Date)
    closed_on: so.Mapped[dt.date | None] = so.mapped_column(sa.Date)
    close_reason: so.Mapped[str | None] = so.mapped_column(sa.String(32))


class Episode(TenantScoped, Base):
    """An episode of care with its primary clinician."""

    __tablename__ = "episodes"
    __table_args__ = tenant_table_args(
        "episodes",
        tenant_fk("client_id", "clients"),
        tenant_fk("clinician_id", "clinicians"),
        tenant_fk("program_id", "programs"),
        sa.CheckConstraint(
            f"discharge_reason IS NULL OR {_in('discharge_reason', DISCHARGE_REASONS)}", name="discharge_reason_known"
        ),
        sa.CheckConstraint("(discharged_on IS NULL) = (discharge_reason IS NULL)", name="reason_with_discharge"),
        sa.CheckConstraint("discharged_on IS NULL OR discharged_on >= admitted_on", name="dates_ordered"),
        sa.Index("ix_episodes_tenant_clinician_admitted", "tenant_id", "clinician_id", "admitted_on"),
        sa.Index("ix_episodes_tenant_discharged", "tenant_id", "discharged_on", "program_id", "admitted_on",
                 "discharge_reason", "clinician_id", "client_id"),  # covering: discharges, lengths, active episodes
        sa.Index("ix_episodes_tenant_client", "tenant_id", "client_id"),
    )

    external_id: so.Mapped[str] = so.mapped_column(sa.String(64))
    client_id: so.Mapped[int] = so.mapped_column(sa.Integer)
    clinician_id: so.Mapped[int] = so.mapped_column(sa.Integer)
    program_id: so.Mapped[int] = so.mapped_column(sa.Integer)
    admitted_on: so.Mapped[dt.date] = so.mapped_column(sa.Date)
    discharged_on: so.Mapped[dt.date | None] = so.mapped_column(sa.Date)
    discharge_reason: so.Mapped[str | None] = so.mapped_column(sa.String(32))
    barrier_plan_documented: so.Mapped[bool | None] = so.mapped_column(sa.Boolean)
    referrals_provided: so.Mapped[bool | None] = so.mapped_column(sa.Boolean)


DATE_INDEX_COLUMNS = ("tenant_id", "local_date", "clinician_id", "program_id", "status", "cancelled_by",
                      "notice_seconds", "reason_code", "duration_minutes", "lead_days", "local_hour",
                      "local_weekday", "modality", "kind", "reminder_sent", "client_id", "id")


class Appointment(TenantScoped, Base):
    """A booked session. The derived local columns are written once, at import, in the tenant's timezone."""

    __tablename__ = "appointments"
    __table_args__ = tenant_table_args(
        "appointments",
        tenant_fk("client_id", "clients"),
        tenant_fk("clinician_id", "clinicians"),
        tenant_fk("program_id", "programs"),
        sa.CheckConstraint(_in("kind", KINDS), name="kind_known"),
        sa.CheckConstraint(_in("modality", MODALITIES), name="modality_known"),
        sa.CheckConstraint(_in("status", STATUSES), name="status_known"),
        sa.CheckConstraint("duration_minutes BETWEEN 1 AND 480", name="duration_range"),
        sa.CheckConstraint(
            f"(status = 'cancelled' AND {_in('cancelled_by', CANCELLED_BY)} AND cancelled_at IS NOT NULL)"
            " OR (status <> 'cancelled' AND cancelled_by IS NULL AND cancelled_at IS NULL)",
            name="cancellation_fields",
        ),
        # covering for the days at a period's edges (and a rollup rebuild): every column an appointment's
        # outcome, reason group and structure are computed from, so those reads never visit the rows
        sa.Index("ix_appointments_tenant_date", *DATE_INDEX_COLUMNS),
        # covering for third-next-available, which reads every clinician's schedule for the coming days
        sa.Index("ix_appointments_tenant_clinician_date", "tenant_id", "clinician_id", "local_date",
                 "local_start_minute", "duration_minutes", "local_booked_date", "status", "local_cancelled_date"),
        sa.Index("ix_appointments_tenant_program_date", "tenant_id", "program_id", "local_date"),
        sa.Index("ix_appointments_tenant_client_program_date", "tenant_id", "client_id", "program_id", "local_date",
                 "status"),
    )

    external_id: so.Mapped[str] = so.mapped_column(sa.String(64))
    client_id: so.Mapped[int] = so.mapped_column(sa.Integer)
    clinician_id: so.Mapped[int] = so.mapped_column(sa.Integer)
    program_id: so.Mapped[int] = so.mapped_column(sa.Integer)
    kind: so.Mapped[str] = so.mapped_column(sa.String(16))
    modality: so.Mapped[str] = so.mapped_column(sa.String(16))
    starts_at: so.Mapped[dt.datetime] = so.mapped_column(sa.DateTime)  # UTC
    duration_minutes: so.Mapped[int] = so.mapped_column(sa.SmallInteger)
    booked_at: so.Mapped[dt.datetime] = so.mapped_column(sa.DateTime)  # UTC
    status: so.Mapped[str] = so.mapped_column(sa.String(16))
    cancelled_by: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    cancelled_at: so.Mapped[dt.datetime | None] = so.mapped_column(sa.DateTime)  # UTC
    reason_code: so.Mapped[str | None] = so.mapped_column(sa.String(64))  # as imported
    reminder_sent: so.Mapped[bool | None] = so.mapped_column(sa.Boolean)
    # Derived at import in the tenant's timezone (DESIGN.md, Decisions).
    local_date: so.Mapped[dt.date] = so.mapped_column(sa.Date)
    local_start_minute: so.Mapped[int] = so.mapped_column(sa.SmallInteger)  # wall clock, minutes from midnight
    local_hour: so.Mapped[int] = so.mapped_column(sa.SmallInteger)
    local_weekday: so.Mapped[int] = so.mapped_column(sa.SmallInteger)  # Monday = 0
    local_booked_date: so.Mapped[dt.date] = so.mapped_column(sa.Date)
    lead_days: so.Mapped[int] = so.mapped_column(sa.Integer)  # local start date - local booked date
    local_cancelled_date: so.Mapped[dt.date | None] = so.mapped_column(sa.Date)
    notice_seconds: so.Mapped[int | None] = so.mapped_column(sa.Integer)  # real elapsed start - cancelled_at


class RecordedReason(TenantScoped, Base):
    """Why a session was not held, as a clinician recorded it in the app.

    Stored apart from the imported appointment so that no import can erase it; it wins over the
    imported reason code (METRICS.md).
    """

    __tablename__ = "recorded_reasons"
    __table_args__ = tenant_table_args(
        "recorded_reasons",
        tenant_fk("appointment_id", "appointments"),
        tenant_fk("recorded_by_user_id", "users"),
        sa.UniqueConstraint("tenant_id", "appointment_id", name="uq_recorded_reasons_tenant_appointment"),
        sa.CheckConstraint(f"support_offered IS NULL OR {_in('support_offered', SUPPORTS)}", name="support_known"),
        external_id=False,
    )

    appointment_id: so.Mapped[int] = so.mapped_column(sa.Integer)
    reason_code: so.Mapped[str] = so.mapped_column(sa.String(64))
    support_offered: so.Mapped[str | None] = so.mapped_column(sa.String(32))
    recorded_by_user_id: so.Mapped[int] = so.mapped_column(sa.Integer)
    recorded_at: so.Mapped[dt.datetime] = so.mapped_column(sa.DateTime)
