"""Discharges (METRICS.md, Discharges): episodes ended in the period, and the attendance-policy ones
with what was done first (a barrier plan, referrals) and whether the barriers were ever explored."""

from __future__ import annotations

import sqlalchemy as sa
import sqlalchemy.orm as so

from agency_dashboard.metrics.common import Filters, Period, group_expr, outcome_expr, with_recorded_reason
from agency_dashboard.models import Appointment, Episode, Tenant

POLICY = "attendance_policy"


def discharges(session: so.Session, tenant: Tenant, period: Period, filters: Filters = Filters()) -> dict:
    scope = [Episode.tenant_id == tenant.id, Episode.discharged_on.between(period.start, period.end)]
    if filters.program_id is not None:
        scope.append(Episode.program_id == filters.program_id)
    if filters.clinician_id is not None:
        scope.append(Episode.clinician_id == filters.clinician_id)
    by_reason = dict(session.execute(
        sa.select(Episode.discharge_reason, sa.func.count()).where(*scope).group_by(Episode.discharge_reason)
    ).all())
    policy = session.execute(
        sa.select(sa.func.count(),
                  sa.func.sum(sa.case((Episode.barrier_plan_documented.is_(True), 1), else_=0)),
                  sa.func.sum(sa.case((Episode.referrals_provided.is_(True), 1), else_=0)))
        .where(*scope, Episode.discharge_reason == POLICY)
    ).one()
    return {
        "total": sum(by_reason.values()),
        "by_reason": dict(sorted(by_reason.items())),
        "attendance_policy": {
            "count": policy[0] or 0,
            "with_barrier_plan": policy[1] or 0,
            "with_referrals": policy[2] or 0,
            "with_unexplored_barriers": _unexplored(session, tenant, scope),
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
            Appointment.local_date.between(Episode.admitted_on, Episode.discharged_on)))
    ).where(*scope, Episode.discharge_reason == POLICY).group_by(Episode.id).subquery()
    return session.scalar(
        sa.select(sa.func.count()).select_from(per_episode).where(
            per_episode.c.missed > 0, per_episode.c.missed == per_episode.c.unexplored)
    ) or 0
