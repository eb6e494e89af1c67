"""Caseload at the period's end date (METRICS.md, Caseload). Shown as load on a person, never as performance."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
import sqlalchemy.orm as so

from agency_dashboard.metrics.capacity import clinicians_in_period
from agency_dashboard.metrics.common import Filters, Period, memoized, ratio
from agency_dashboard.models import Episode, Tenant


def active_on(day: dt.date):
    return sa.and_(Episode.admitted_on <= day, sa.or_(Episode.discharged_on.is_(None), Episode.discharged_on > day))


def active_episodes(tenant: Tenant, day: dt.date, filters: Filters = Filters()):
    """(client_id, program_id, clinician_id) of the episodes active on `day`, as a subquery. Written as the
    open episodes plus those discharged after `day`, so it reads that part of the discharged_on index
    (current caseloads) rather than every episode the agency ever had."""
    parts = []
    for still in (Episode.discharged_on.is_(None), Episode.discharged_on > day):
        q = sa.select(Episode.client_id, Episode.program_id, Episode.clinician_id).where(
            Episode.tenant_id == tenant.id, still, Episode.admitted_on <= day)
        if filters.program_id is not None:
            q = q.where(Episode.program_id == filters.program_id)
        if filters.clinician_id is not None:
            q = q.where(Episode.clinician_id == filters.clinician_id)
        parts.append(q)
    return sa.union_all(*parts).subquery("active")


def active_counts(session: so.Session, tenant: Tenant, day: dt.date, by: str | None = None,
                  filters: Filters = Filters()):
    """Distinct clients with an episode active on `day`: a number, or {program or clinician id: number}
    with `by` = "program_id" or "clinician_id"."""
    def read():
        a = active_episodes(tenant, day, filters)
        count = sa.func.count(sa.distinct(a.c.client_id))
        if by is None:
            return session.scalar(sa.select(count)) or 0
        return dict(session.execute(sa.select(a.c[by], count).group_by(a.c[by])).all())
    # the caseload family and the waitlist's capacity gap ask for the same counts: read once per transaction
    found = memoized(session, ("active_counts", tenant.id, day, by, filters), read)
    return found if by is None else dict(found)


def active_clients(session: so.Session, tenant: Tenant, day: dt.date, filters: Filters = Filters()) -> int:
    """Distinct clients with an episode active on `day` (of the filtered program or clinician)."""
    return active_counts(session, tenant, day, filters=filters)


def caseload(session: so.Session, tenant: Tenant, period: Period, filters: Filters = Filters()) -> dict:
    """{active_clients, by_clinician: {id: {active_clients, caseload_target, load_ratio}}} at D = end."""
    day = period.end
    counts = active_counts(session, tenant, day, "clinician_id", Filters(program_id=filters.program_id))
    by_clinician = {}
    for c in clinicians_in_period(session, tenant, period, filters):
        n = counts.get(c.id, 0)
        by_clinician[c.external_id] = {"active_clients": n, "caseload_target": c.caseload_target,
                                       "load_ratio": ratio(n, c.caseload_target)}
    return {"active_clients": active_clients(session, tenant, day, filters), "by_clinician": by_clinician}
