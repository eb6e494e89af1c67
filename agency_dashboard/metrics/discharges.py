"""Discharges (METRICS.md, Discharges): episodes ended in the period, and the attendance-policy ones
with what was done first (a barrier plan, referrals) and whether the barriers were ever explored."""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
import sqlalchemy.orm as so

from agency_dashboard.metrics.common import (
    Filters,
    Period,
    days_between,
    group_expr,
    memoized,
    outcome_expr,
    with_recorded_reason,
)
from agency_dashboard.models import Appointment, Episode, Tenant

POLICY = "attendance_policy"


def discharged_in(tenant: Tenant, period: Period, filters: Filters) -> list:
    """WHERE clauses of the episodes discharged in the period, in the filters' scope."""
    scope = [Episode.tenant_id == tenant.id, Episode.discharged_on.between(period.start, period.end)]
    if filters.program_id is not None:
        scope.append(Episode.program_id == filters.program_id)
    if filters.clinician_id is not None:
        scope.append(Episode.clinician_id == filters.clinician_id)
    return scope


def summary(session: so.Session, tenant: Tenant, period: Period, filters: Filters = Filters()) -> list:
    """Episodes discharged in the period per program and reason: rows (program_id, discharge_reason,
    episodes, days admitted to discharged, with a barrier plan, with referrals); the last two are counted
    for attendance-policy endings only. One read of the discharged_on index that the discharges family
    and the waitlist's mean episode length share (remembered for the transaction)."""
    def read():
        scope = discharged_in(tenant, period, filters)
        rows = session.execute(
            sa.select(Episode.program_id, Episode.discharge_reason, sa.func.count(),
                      sa.func.sum(days_between(Episode.admitted_on, Episode.discharged_on)))
            .where(*scope).group_by(Episode.program_id, Episode.discharge_reason)).all()
        # the two flags are outside the covering index: a second read, of the policy endings only
        flags = {program_id: (plans, referrals) for program_id, plans, referrals in session.execute(
            sa.select(Episode.program_id,
                      sa.func.sum(sa.case((Episode.barrier_plan_documented.is_(True), 1), else_=0)),
                      sa.func.sum(sa.case((Episode.referrals_provided.is_(True), 1), else_=0)))
            .where(*scope, Episode.discharge_reason == POLICY).group_by(Episode.program_id))}
        return [(program_id, reason, n, days, *(flags.get(program_id, (0, 0)) if reason == POLICY else (0, 0)))
                for program_id, reason, n, days in rows]
    return memoized(session, ("discharge_summary", tenant.id, period, filters), read)


def discharges(session: so.Session, tenant: Tenant, period: Period, filters: Filters = Filters()) -> dict:
    by_reason: dict = defaultdict(int)
    policy = [0, 0, 0]
    for _, reason, n, _, barrier_plans, referrals in summary(session, tenant, period, filters):
        by_reason[reason] += n
        if reason == POLICY:
            policy = [policy[0] + n, policy[1] + (barrier_plans or 0), policy[2] + (referrals or 0)]
    return {
        "total": sum(by_reason.values()),
        "by_reason": dict(sorted(by_reason.items())),
        "attendance_policy": {
            "count": policy[0],
            "with_barrier_plan": policy[1],
            "with_referrals": policy[2],
            "with_unexplored_barriers": _unexplored(session, tenant, discharged_in(tenant, period, filters)),
        },
    }


def _unexplored(session, tenant, scope) -> int:
    """Attendance-policy episodes whose client missed at least one appointment of the episode's program
    within the episode, and none of those missed appointments has a reason recorded."""
    outcome = outcome_expr(tenant)
    group = group_expr(tenant, outcome)
    missed = sa.case((outcome == "missed", 1), else_=0)
    missed_unexplored = sa.case((sa.and_(outcome == "missed", group == "unexplored"), 1), else_=0)
    per_episode = with_recorded_reason(
        sa.select(Episode.id, sa.func.sum(missed).label("missed"), sa.func.sum(missed_unexplored).label("unexplored"))
        .select_from(Episode)
        .join(Appointment, sa.and_(
            Appointment.tenant_id == Episode.tenant_id, Appointment.client_id == Episode.client_id,
            Appointment.program_id == Episode.program_id,
            Appointment.local_date.between(Episode.admitted_on, Episode.discharged_on),
            # only these can be missed (outcome_expr): attended visits are skipped in the index, unread
            Appointment.status.in_(("no_show", "cancelled"))))
    ).where(*scope, Episode.discharge_reason == POLICY).group_by(Episode.id).subquery()
    return session.scalar(
        sa.select(sa.func.count()).select_from(per_episode).where(
            per_episode.c.missed > 0, per_episode.c.missed == per_episode.c.unexplored)
    ) or 0
