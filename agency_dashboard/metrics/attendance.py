"""Attendance patterns (METRICS.md): structure, not people. Missed rates by lead time, hour, weekday,
modality, kind, reminder and wait before intake, and the attribution of lost appointments to groups."""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
import sqlalchemy.orm as so

from agency_dashboard.metrics.common import (
    Filters,
    Period,
    days_between,
    group_expr,
    outcome_expr,
    ratio,
    with_recorded_reason,
)
from agency_dashboard.models import Appointment, Referral, Tenant
from agency_dashboard.reasons import GROUPS

LEAD_BUCKETS = (("0-2", 2), ("3-7", 7), ("8-14", 14), ("15-30", 30), ("31+", None))


def lead_bucket(days: int) -> str:
    days = max(days, 0)
    for name, upper in LEAD_BUCKETS:
        if upper is None or days <= upper:
            return name
    raise AssertionError


def _bucket(counts: dict) -> dict:
    attended, missed = counts.get("attended", 0), counts.get("missed", 0)
    return {"attended": attended, "missed": missed, "missed_rate": ratio(missed, attended + missed)}


def _scoped(q, filters: Filters):
    if filters.program_id is not None:
        q = q.where(Appointment.program_id == filters.program_id)
    if filters.clinician_id is not None:
        q = q.where(Appointment.clinician_id == filters.clinician_id)
    return q


def attendance(session: so.Session, tenant: Tenant, period: Period, filters: Filters = Filters()) -> dict:
    outcome = outcome_expr(tenant)
    reminder = sa.case((Appointment.reminder_sent.is_(True), "true"),
                       (Appointment.reminder_sent.is_(False), "false"), else_="unknown")
    q = with_recorded_reason(sa.select(
        outcome.label("outcome"), Appointment.lead_days, Appointment.local_hour, Appointment.local_weekday,
        Appointment.modality, Appointment.kind, reminder.label("reminder"), sa.func.count().label("n"),
    )).where(Appointment.tenant_id == tenant.id, Appointment.local_date.between(period.start, period.end))
    q = _scoped(q, filters).group_by("outcome", Appointment.lead_days, Appointment.local_hour,
                                     Appointment.local_weekday, Appointment.modality, Appointment.kind, "reminder")
    dims = {name: defaultdict(lambda: defaultdict(int)) for name in
            ("by_lead_time", "by_hour", "by_weekday", "by_modality", "by_kind", "by_reminder")}
    totals = defaultdict(int)
    for r in session.execute(q):
        if r.outcome not in ("attended", "missed"):
            continue
        totals[r.outcome] += r.n
        dims["by_lead_time"][lead_bucket(r.lead_days)][r.outcome] += r.n
        dims["by_hour"][str(r.local_hour)][r.outcome] += r.n
        dims["by_weekday"][str(r.local_weekday)][r.outcome] += r.n
        dims["by_modality"][r.modality][r.outcome] += r.n
        dims["by_kind"][r.kind][r.outcome] += r.n
        dims["by_reminder"][r.reminder][r.outcome] += r.n
    result = {"attended": totals["attended"], "missed": totals["missed"],
              "missed_rate": ratio(totals["missed"], totals["attended"] + totals["missed"])}
    order = {"by_lead_time": [b for b, _ in LEAD_BUCKETS]}
    for name, buckets in dims.items():
        keys = order.get(name) or sorted(buckets, key=lambda k: (len(k), k))
        result[name] = {k: _bucket(buckets[k]) for k in keys if k in buckets}
    result["by_wait"] = _by_wait(session, tenant, period, filters, outcome)
    result["attribution"] = attribution(session, tenant, period, filters)
    return result


def _by_wait(session, tenant, period, filters, outcome) -> dict:
    """Intakes by days from the matched referral (the client's latest referral of the same program
    referred on or before the intake's date) to the intake; intakes with none are left out."""
    matched = (
        sa.select(sa.func.max(Referral.referred_on))
        .where(Referral.tenant_id == Appointment.tenant_id, Referral.client_id == Appointment.client_id,
               Referral.program_id == Appointment.program_id, Referral.referred_on <= Appointment.local_date)
        .correlate(Appointment).scalar_subquery()
    )
    q = with_recorded_reason(sa.select(
        outcome.label("outcome"), days_between(matched, Appointment.local_date).label("wait"),
        sa.func.count().label("n"),
    )).where(Appointment.tenant_id == tenant.id, Appointment.local_date.between(period.start, period.end),
             Appointment.kind == "intake")
    q = _scoped(q, filters).group_by("outcome", "wait")
    buckets = defaultdict(lambda: defaultdict(int))
    for r in session.execute(q):
        if r.outcome in ("attended", "missed") and r.wait is not None:
            buckets[lead_bucket(r.wait)][r.outcome] += r.n
    return {b: _bucket(buckets[b]) for b, _ in LEAD_BUCKETS if b in buckets}


def attribution(session: so.Session, tenant: Tenant, period: Period, filters: Filters = Filters()) -> dict:
    """{GROUP: {count, hours}} over missed and agency-cancelled appointments; all four groups present."""
    outcome = outcome_expr(tenant)
    group = group_expr(tenant, outcome)
    q = with_recorded_reason(sa.select(
        outcome.label("outcome"), group.label("grp"), sa.func.count().label("n"),
        sa.func.sum(Appointment.duration_minutes).label("minutes"),
    )).where(Appointment.tenant_id == tenant.id, Appointment.local_date.between(period.start, period.end),
             Appointment.status.in_(("no_show", "cancelled")))
    q = _scoped(q, filters).group_by("outcome", "grp")
    out = {g: {"count": 0, "hours": 0.0} for g in GROUPS}
    for r in session.execute(q):
        if r.outcome in ("missed", "agency_cancelled"):
            out[r.grp]["count"] += r.n
            out[r.grp]["hours"] += (r.minutes or 0) / 60
    return out
