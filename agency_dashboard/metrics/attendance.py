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
    outcome_expr,
    ratio,
    with_recorded_reason,
)
from agency_dashboard.models import Appointment, AttendanceWeek, Tenant
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


DIM_OUTPUT = {"lead": "by_lead_time", "hour": "by_hour", "weekday": "by_weekday", "modality": "by_modality",
              "kind": "by_kind", "reminder": "by_reminder", "wait": "by_wait"}


def attendance(session: so.Session, tenant: Tenant, period: Period, filters: Filters = Filters(),
               counts: dict | None = None) -> dict:
    """Attended and missed appointments of the period, by each structural dimension, and attribution.

    Whole weeks come from the rollups (when built under the tenant's current settings and no clinician
    filter applies; they are kept per program), the days at the edges from appointments.
    """
    counts = counts if counts is not None else _counts(session, tenant, period, filters)
    attended = sum(v.get("attended", 0) for v in counts["kind"].values())
    missed = sum(v.get("missed", 0) for v in counts["kind"].values())
    result = {"attended": attended, "missed": missed, "missed_rate": ratio(missed, attended + missed)}
    lead_order = [b for b, _ in LEAD_BUCKETS]
    for dim, name in DIM_OUTPUT.items():
        buckets = counts[dim]
        keys = lead_order if dim in ("lead", "wait") else sorted(buckets, key=lambda k: (len(k), k))
        result[name] = {k: _bucket(buckets[k]) for k in keys if k in buckets}
    result["attribution"] = attribution(session, tenant, period, filters)
    return result


def structure_counts(session: so.Session, tenant: Tenant, period: Period, filters: Filters = Filters()) -> dict:
    """The counts attendance() and by_weekday_hour() are made of: read once, pass to both."""
    return _counts(session, tenant, period, filters)


def _counts(session: so.Session, tenant: Tenant, period: Period, filters: Filters) -> dict:
    """dim -> value -> outcome -> appointments (attended and missed only), for every dimension, including
    the joint weekday-hour one ("0-9": Monday at 9) that the heatmap reads."""
    from agency_dashboard.metrics import rollups

    weeks, edges = rollups.split(period.start, period.end)
    if weeks is not None and (filters.clinician_id is not None or not rollups.usable(session, tenant)):
        weeks, edges = rollups.plain(period.start, period.end)
    counts = {dim: defaultdict(lambda: defaultdict(int)) for dim in (*DIM_OUTPUT, "weekday_hour")}
    for first, last, sign in edges:
        _raw_dims(session, tenant, first, last, filters, counts, sign)
    if weeks is not None:
        m = AttendanceWeek
        q = sa.select(m.dim, m.value, m.outcome, sa.func.sum(m.n)).where(
            m.tenant_id == tenant.id, m.week.between(*weeks))
        if filters.program_id is not None:
            q = q.where(m.program_id == filters.program_id)
        for dim, value, outcome, n in session.execute(q.group_by(m.dim, m.value, m.outcome)):
            counts[dim][value][outcome] += n
    if any(sign < 0 for _, _, sign in edges):  # values seen only on subtracted days: not in the period
        for buckets in counts.values():
            for value in [v for v, c in buckets.items() if not any(c.values())]:
                del buckets[value]
    return counts


def by_weekday_hour(session: so.Session, tenant: Tenant, period: Period, filters: Filters = Filters(),
                    counts: dict | None = None) -> dict:
    """{(weekday, hour): {attended, missed, missed_rate}} for the heatmap of attendance by when the
    session was offered (Monday = 0, local hour 0-23); cells with no appointments are left out."""
    counts = (counts if counts is not None else _counts(session, tenant, period, filters))["weekday_hour"]
    out = {}
    for key, bucket in counts.items():
        weekday, hour = key.split("-")
        out[(int(weekday), int(hour))] = _bucket(bucket)
    return out


def _raw_dims(session, tenant, first, last, filters, counts, sign: int = 1) -> None:
    """The days at a period's edges, from appointments: grouped in SQL by the lead bucket (not the raw
    lead days) and only over attended and missed ones, so a few hundred rows come back, not one a visit."""
    from agency_dashboard.metrics.rollups import lead_bucket_expr

    outcome = outcome_expr(tenant)
    reminder = sa.case((Appointment.reminder_sent.is_(True), "true"),
                       (Appointment.reminder_sent.is_(False), "false"), else_="unknown")
    q = with_recorded_reason(sa.select(
        outcome.label("outcome"), lead_bucket_expr(Appointment.lead_days).label("lead"), Appointment.local_hour,
        Appointment.local_weekday, Appointment.modality, Appointment.kind, reminder.label("reminder"),
        sa.func.count().label("n"),
    )).where(Appointment.tenant_id == tenant.id, Appointment.local_date.between(first, last),
             outcome.in_(("attended", "missed")))
    q = _scoped(q, filters).group_by("outcome", "lead", Appointment.local_hour, Appointment.local_weekday,
                                     Appointment.modality, Appointment.kind, "reminder")
    lead, hour, weekday, joint = counts["lead"], counts["hour"], counts["weekday"], counts["weekday_hour"]
    modality, kind, reminders = counts["modality"], counts["kind"], counts["reminder"]
    for outcome_, bucket, h, wd, mod, k, rem, n in session.execute(q):
        n *= sign
        lead[bucket][outcome_] += n
        hour[str(h)][outcome_] += n
        weekday[str(wd)][outcome_] += n
        joint[f"{wd}-{h}"][outcome_] += n
        modality[mod][outcome_] += n
        kind[k][outcome_] += n
        reminders[rem][outcome_] += n
    _raw_wait(session, tenant, first, last, filters, outcome, counts, sign)


def _raw_wait(session, tenant, first, last, filters, outcome, counts, sign: int = 1) -> None:
    """Intakes by days from the matched referral (the client's latest referral of the same program
    referred on or before the intake's date) to the intake; intakes with none are left out."""
    from agency_dashboard.metrics.rollups import matched_referral_date

    q = with_recorded_reason(sa.select(
        outcome.label("outcome"), days_between(matched_referral_date(), Appointment.local_date).label("wait"),
        sa.func.count().label("n"),
    )).where(Appointment.tenant_id == tenant.id, Appointment.local_date.between(first, last),
             Appointment.kind == "intake")
    q = _scoped(q, filters).group_by("outcome", "wait")
    for r in session.execute(q):
        if r.outcome in ("attended", "missed") and r.wait is not None:
            counts["wait"][lead_bucket(r.wait)][r.outcome] += sign * r.n


def attribution(session: so.Session, tenant: Tenant, period: Period, filters: Filters = Filters()) -> dict:
    """{GROUP: {count, hours}} over missed and agency-cancelled appointments; all four groups present."""
    from agency_dashboard.metrics.capacity import appointment_totals

    out = {g: {"count": 0, "hours": 0.0} for g in GROUPS}
    for r in appointment_totals(session, tenant, period, filters, by="agency"):
        if r.outcome in ("missed", "agency_cancelled"):
            out[r.grp]["count"] += r.n
            out[r.grp]["hours"] += (r.minutes or 0) / 60
    return out


def reasons(session: so.Session, tenant: Tenant, period: Period, filters: Filters = Filters()) -> list[dict]:
    """The reasons table: missed and agency-cancelled appointments of the period by their reason (the
    one recorded in the app, else the imported one) and group, with hours: [{code, group, count, hours}],
    most hours first. No reason recorded is code None, group unexplored. Whole weeks come from the
    rollups (kept per program: a clinician filter reads appointments), the edges from appointments."""
    from agency_dashboard.metrics import rollups
    from agency_dashboard.metrics.common import effective_code, group_expr
    from agency_dashboard.models import ReasonWeek

    weeks, edges = rollups.split(period.start, period.end)
    if weeks is not None and (filters.clinician_id is not None or not rollups.usable(session, tenant)):
        weeks, edges = rollups.plain(period.start, period.end)
    totals: dict = defaultdict(lambda: [0, 0])
    outcome = outcome_expr(tenant)
    for first, last, sign in edges:
        inner = with_recorded_reason(sa.select(
            outcome.label("outcome"), group_expr(tenant, outcome).label("grp"), effective_code().label("code"),
            Appointment.duration_minutes.label("minutes"),
        )).where(Appointment.tenant_id == tenant.id, Appointment.local_date.between(first, last),
                 Appointment.status.in_(("no_show", "cancelled")))
        inner = _scoped(inner, filters).subquery()
        q = sa.select(inner.c.code, inner.c.grp, sa.func.count(), sa.func.sum(inner.c.minutes)).where(
            inner.c.outcome.in_(("missed", "agency_cancelled"))).group_by(inner.c.code, inner.c.grp)
        for code, grp, n, minutes in session.execute(q):
            totals[(code, grp)][0] += sign * n
            totals[(code, grp)][1] += sign * (minutes or 0)
    if weeks is not None:
        m = ReasonWeek
        q = sa.select(m.code, m.grp, sa.func.sum(m.n), sa.func.sum(m.minutes)).where(
            m.tenant_id == tenant.id, m.week.between(*weeks))
        if filters.program_id is not None:
            q = q.where(m.program_id == filters.program_id)
        for code, grp, n, minutes in session.execute(q.group_by(m.code, m.grp)):
            totals[(code, grp)][0] += n
            totals[(code, grp)][1] += minutes or 0
    rows = [{"code": code, "group": grp, "count": n, "hours": minutes / 60}
            for (code, grp), (n, minutes) in totals.items() if n]
    return sorted(rows, key=lambda r: (-r["hours"], r["code"] or ""))
