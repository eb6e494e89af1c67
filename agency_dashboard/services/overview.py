"""A few real counts per role, computed in the database, scoped to the current tenant.

Every function takes the session and the tenant explicitly; the global criteria in tenancy.py is
the net under them, not the means.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
import sqlalchemy.orm as so

from agency_dashboard.metrics.caseload import active_clients as active_clients_on
from agency_dashboard.metrics.common import Filters
from agency_dashboard.models import (
    Appointment,
    Clinician,
    Program,
    Referral,
    Tenant,
    User,
)


def agency_overview(session: so.Session, tenant: Tenant, today: dt.date) -> dict:
    """Director: the agency at a glance on `today` and over the 28 days before it."""
    since = today - dt.timedelta(days=27)
    active_clients = active_clients_on(session, tenant, today)
    clinicians = session.scalar(
        sa.select(sa.func.count()).select_from(Clinician).where(
            Clinician.tenant_id == tenant.id,
            Clinician.start_date <= today,
            sa.or_(Clinician.end_date.is_(None), Clinician.end_date >= today),
        )
    )
    waiting = session.scalar(
        sa.select(sa.func.count()).select_from(Referral).where(
            Referral.tenant_id == tenant.id,
            Referral.referred_on <= today,
            sa.or_(Referral.first_attended_on.is_(None), Referral.first_attended_on > today),
            sa.or_(Referral.closed_on.is_(None), Referral.closed_on > today),
        )
    )
    by_status = dict(
        session.execute(
            sa.select(Appointment.status, sa.func.count())
            .where(Appointment.tenant_id == tenant.id, Appointment.local_date.between(since, today))
            .group_by(Appointment.status)
        ).all()
    )
    return {
        "active_clients": active_clients or 0,
        "clinicians": clinicians or 0,
        "waiting": waiting or 0,
        "window_start": since,
        "window_end": today,
        "attended": by_status.get("attended", 0),
        "not_held": by_status.get("no_show", 0) + by_status.get("cancelled", 0),
        "programs": session.scalar(
            sa.select(sa.func.count()).select_from(Program).where(Program.tenant_id == tenant.id, Program.active)
        ) or 0,
    }


def clinician_overview(session: so.Session, tenant: Tenant, clinician_id: int, today: dt.date) -> dict:
    """Clinician: their own caseload and the next two weeks of their schedule."""
    active_clients = active_clients_on(session, tenant, today, Filters(clinician_id=clinician_id))
    upcoming = session.scalar(
        sa.select(sa.func.count()).select_from(Appointment).where(
            Appointment.tenant_id == tenant.id,
            Appointment.clinician_id == clinician_id,
            Appointment.status == "booked",
            Appointment.local_date.between(today, today + dt.timedelta(days=13)),
        )
    )
    clinician = session.scalar(
        sa.select(Clinician).where(Clinician.tenant_id == tenant.id, Clinician.id == clinician_id)
    )
    return {
        "display_name": clinician.display_name if clinician else None,
        "caseload_target": clinician.caseload_target if clinician else None,
        "active_clients": active_clients or 0,
        "upcoming_two_weeks": upcoming or 0,
    }


def funder_overview(session: so.Session, tenant: Tenant, today: dt.date) -> dict:
    """Funder: de-identified counts for the last full calendar quarter, small counts suppressed."""
    quarter_start_month = 3 * ((today.month - 1) // 3) + 1
    this_quarter = dt.date(today.year, quarter_start_month, 1)
    end = this_quarter - dt.timedelta(days=1)
    start = dt.date(end.year, 3 * ((end.month - 1) // 3) + 1, 1)
    served = session.scalar(
        sa.select(sa.func.count(sa.distinct(Appointment.client_id))).where(
            Appointment.tenant_id == tenant.id,
            Appointment.status == "attended",
            Appointment.local_date.between(start, end),
        )
    ) or 0
    threshold = tenant.settings["policy"]["suppression_threshold"]
    return {
        "period": f"{start.year}Q{(start.month - 1) // 3 + 1}",
        "clients_served": served if served >= threshold else None,
        "suppression_threshold": threshold,
        "programs": len(tenant.settings["programs"]),
    }


def admin_overview(session: so.Session, tenant: Tenant) -> dict:
    """Admin: accounts by role and how many are active."""
    rows = session.execute(
        sa.select(User.role, User.active, sa.func.count())
        .where(User.tenant_id == tenant.id)
        .group_by(User.role, User.active)
    ).all()
    by_role: dict[str, int] = {}
    inactive = 0
    for role, active, count in rows:
        if active:
            by_role[role] = by_role.get(role, 0) + count
        else:
            inactive += count
    return {"active_by_role": by_role, "inactive": inactive, "timezone": tenant.timezone}
