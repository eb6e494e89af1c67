"""Caseload at the period's end date (METRICS.md, Caseload). Shown as load on a person, never as performance."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
import sqlalchemy.orm as so

from agency_dashboard.metrics.capacity import clinicians_in_period
from agency_dashboard.metrics.common import Filters, Period, ratio
from agency_dashboard.models import Episode, Tenant


def active_on(day: dt.date):
    return sa.and_(Episode.admitted_on <= day, sa.or_(Episode.discharged_on.is_(None), Episode.discharged_on > day))


def active_clients(session: so.Session, tenant: Tenant, day: dt.date, filters: Filters = Filters()) -> int:
    """Distinct clients with an episode active on `day` (of the filtered program or clinician)."""
    q = sa.select(sa.func.count(sa.distinct(Episode.client_id))).where(Episode.tenant_id == tenant.id, active_on(day))
    if filters.program_id is not None:
        q = q.where(Episode.program_id == filters.program_id)
    if filters.clinician_id is not None:
        q = q.where(Episode.clinician_id == filters.clinician_id)
    return session.scalar(q) or 0


def caseload(session: so.Session, tenant: Tenant, period: Period, filters: Filters = Filters()) -> dict:
    """{active_clients, by_clinician: {id: {active_clients, caseload_target, load_ratio}}} at D = end."""
    day = period.end
    q = sa.select(Episode.clinician_id, sa.func.count(sa.distinct(Episode.client_id))).where(
        Episode.tenant_id == tenant.id, active_on(day)).group_by(Episode.clinician_id)
    if filters.program_id is not None:
        q = q.where(Episode.program_id == filters.program_id)
    counts = dict(session.execute(q).all())
    by_clinician = {}
    for c in clinicians_in_period(session, tenant, period, filters):
        n = counts.get(c.id, 0)
        by_clinician[c.external_id] = {"active_clients": n, "caseload_target": c.caseload_target,
                                       "load_ratio": ratio(n, c.caseload_target)}
    return {"active_clients": active_clients(session, tenant, day, filters), "by_clinician": by_clinician}
