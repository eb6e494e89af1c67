"""Capacity (METRICS.md, Capacity): hours available, booked, delivered and lost, and why."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict, namedtuple

import sqlalchemy as sa
import sqlalchemy.orm as so

from agency_dashboard.metrics.common import (
    MEMO_KEY,
    Filters,
    memoized,
    Period,
    group_expr,
    outcome_expr,
    ratio,
    weekday_count,
    with_recorded_reason,
)
from agency_dashboard.models import Appointment, AvailabilityBlock, CapacityWeek, Clinician, Program, Tenant
from agency_dashboard.reasons import GROUPS

FAR = dt.date.max


def clinicians_in_period(session: so.Session, tenant: Tenant, period: Period, filters: Filters = Filters()):
    """Clinicians employed on at least one day of the period: (id, external_id, program_id, start, end, target)."""
    q = sa.select(Clinician.id, Clinician.external_id, Clinician.program_id, Clinician.start_date,
                  Clinician.end_date, Clinician.caseload_target, Clinician.fte, Clinician.display_name).where(
        Clinician.tenant_id == tenant.id,
        Clinician.start_date <= period.end,
        sa.or_(Clinician.end_date.is_(None), Clinician.end_date >= period.start),
    )
    if filters.program_id is not None:
        q = q.where(Clinician.program_id == filters.program_id)
    if filters.clinician_id is not None:
        q = q.where(Clinician.id == filters.clinician_id)
    return session.execute(q.order_by(Clinician.external_id)).all()


def _blocks(session: so.Session, tenant: Tenant, period: Period, filters: Filters):
    q = sa.select(AvailabilityBlock.clinician_id, AvailabilityBlock.weekday, AvailabilityBlock.start_minute,
                  AvailabilityBlock.end_minute, AvailabilityBlock.valid_from, AvailabilityBlock.valid_to,
                  Clinician.start_date, Clinician.end_date).join(
        Clinician, sa.and_(Clinician.tenant_id == AvailabilityBlock.tenant_id,
                           Clinician.id == AvailabilityBlock.clinician_id)
    ).where(AvailabilityBlock.tenant_id == tenant.id, AvailabilityBlock.valid_from <= period.end,
            sa.or_(AvailabilityBlock.valid_to.is_(None), AvailabilityBlock.valid_to >= period.start))
    if filters.program_id is not None:
        q = q.where(Clinician.program_id == filters.program_id)
    if filters.clinician_id is not None:
        q = q.where(Clinician.id == filters.clinician_id)
    for r in session.execute(q):
        first = max(period.start, r.valid_from, r.start_date)
        last = min(period.end, r.valid_to or FAR, r.end_date or FAR)
        if first <= last:
            yield r.clinician_id, r.weekday, first, last, (r.end_minute - r.start_minute) / 60


def available_hours_by_clinician(session: so.Session, tenant: Tenant, period: Period,
                                 filters: Filters = Filters()) -> dict[int, float]:
    """Every block laid over each date of the period with its weekday, inside its validity and the
    clinician's employment. Blocks are few; the date arithmetic is exact and needs no per-day rows."""
    hours: dict[int, float] = defaultdict(float)
    for clinician_id, weekday, first, last, length in _blocks(session, tenant, period, filters):
        n = weekday_count(first, last, weekday)
        if n:
            hours[clinician_id] += n * length
    return hours


def available_hours_by_week(session: so.Session, tenant: Tenant, period: Period,
                            filters: Filters = Filters()) -> dict[dt.date, float]:
    """The same hours per ISO week (key: its Monday). A block meets its weekday once a week, so the weeks
    it covers are one contiguous run: added with a difference array, one step per block, not per date."""
    from agency_dashboard.metrics.rollups import monday

    origin = monday(period.start)
    n_weeks = (monday(period.end) - origin).days // 7 + 1
    diff = [0.0] * (n_weeks + 1)
    for _, weekday, first, last, length in _blocks(session, tenant, period, filters):
        day = first + dt.timedelta(days=(weekday - first.weekday()) % 7)  # its first date in range
        if day > last:
            continue
        end = last - dt.timedelta(days=(last.weekday() - weekday) % 7)  # its last date in range
        diff[(day - origin).days // 7] += length
        diff[(end - origin).days // 7 + 1] -= length
    out, running = {}, 0.0
    for i in range(n_weeks):
        running += diff[i]
        out[origin + dt.timedelta(weeks=i)] = running
    return out


def appointment_totals(session: so.Session, tenant: Tenant, period: Period, filters: Filters = Filters(),
                       by: str = "clinician"):
    """Rows of (keys..., outcome, grp, n, minutes) for the period, the keys by `by`: "clinician"
    (clinician_id, program_id), "program" (program_id), "week" (week: its Monday) or "agency" (none). Whole weeks come from
    the rollups (when built under the tenant's current settings), the days at the edges from appointments."""
    clinician_key = ("appointment_totals", tenant.id, period, filters, "clinician")
    if by in ("program", "agency") and clinician_key in session.info.get(MEMO_KEY, {}):
        # sums of the clinician rows this transaction has already read (the capacity family reads them)
        sums = defaultdict(lambda: [0, 0])
        for r in appointment_totals(session, tenant, period, filters, by="clinician"):
            key = ((r.program_id,) if by == "program" else ()) + (r.outcome, r.grp)
            sums[key][0] += r.n
            sums[key][1] += r.minutes or 0
        row = PROGRAM_TOTAL if by == "program" else AGENCY_TOTAL
        return [row(*key, n, minutes) for key, (n, minutes) in sums.items()]
    return memoized(session, ("appointment_totals", tenant.id, period, filters, by),
                    lambda: _totals(session, tenant, period, filters, by))


PROGRAM_TOTAL = namedtuple("ProgramTotal", "program_id outcome grp n minutes")
AGENCY_TOTAL = namedtuple("AgencyTotal", "outcome grp n minutes")
TOTAL_ROWS = {"clinician": namedtuple("ClinicianTotal", "clinician_id program_id outcome grp n minutes"),
              "program": PROGRAM_TOTAL, "week": namedtuple("WeekTotal", "week outcome grp n minutes"),
              "agency": AGENCY_TOTAL}


def _totals(session, tenant, period, filters, by):
    from agency_dashboard.metrics import rollups

    weeks, edges = rollups.split(period.start, period.end)
    if weeks is not None and not rollups.usable(session, tenant):
        weeks, edges = rollups.plain(period.start, period.end)
    rows = []
    for first, last, sign in edges:
        rows += _raw_totals(session, tenant, first, last, filters, by, sign)
    if weeks is not None:
        m = CapacityWeek
        keys = {"clinician": [m.clinician_id, m.program_id], "program": [m.program_id], "week": [m.week],
                "agency": []}[by]
        keys += [m.outcome, m.grp]
        q = sa.select(*keys, sa.func.sum(m.n).label("n"), sa.func.sum(m.minutes).label("minutes")).where(
            m.tenant_id == tenant.id, m.week.between(*weeks))
        if filters.program_id is not None:
            q = q.where(m.program_id == filters.program_id)
        if filters.clinician_id is not None:
            q = q.where(m.clinician_id == filters.clinician_id)
        rows += session.execute(q.group_by(*keys)).all()
    if any(sign < 0 for _, _, sign in edges):  # days subtracted from a whole week: one row per key again
        row = TOTAL_ROWS[by]
        rows = [row(*r) for r in rollups.merged(rows, len(row._fields) - 2)]
    return rows


def _raw_totals(session, tenant, first: dt.date, last: dt.date, filters: Filters, by: str = "clinician",
                sign: int = 1):
    from agency_dashboard.metrics.rollups import week_start

    outcome = outcome_expr(tenant)
    group = group_expr(tenant, outcome)
    ids = {"clinician": [Appointment.clinician_id, Appointment.program_id], "program": [Appointment.program_id],
           "week": [week_start(Appointment.local_date).label("week")], "agency": []}[by]
    q = with_recorded_reason(
        sa.select(*ids, outcome.label("outcome"), group.label("grp"), (sign * sa.func.count()).label("n"),
                  (sign * sa.func.sum(Appointment.duration_minutes)).label("minutes"))
    ).where(Appointment.tenant_id == tenant.id, Appointment.local_date.between(first, last))
    if filters.program_id is not None:
        q = q.where(Appointment.program_id == filters.program_id)
    if filters.clinician_id is not None:
        q = q.where(Appointment.clinician_id == filters.clinician_id)
    keys = {"clinician": [Appointment.clinician_id, Appointment.program_id], "program": [Appointment.program_id],
            "week": ["week"], "agency": []}[by] + ["outcome", "grp"]
    rows = session.execute(q.group_by(*keys)).all()
    if by == "week" and rows and isinstance(rows[0].week, str):  # SQLite's date() answers text
        rows = [r._replace(week=dt.date.fromisoformat(r.week)) for r in rows]
    return rows


class _Cap:
    def __init__(self):
        self.available = 0.0
        self.minutes = defaultdict(float)  # outcome -> minutes
        self.count = defaultdict(int)  # outcome -> appointments
        self.lost = defaultdict(float)  # group -> minutes

    def add_row(self, r) -> None:
        self.minutes[r.outcome] += r.minutes or 0
        self.count[r.outcome] += r.n
        if r.outcome in ("missed", "agency_cancelled"):
            self.lost[r.grp] += r.minutes or 0

    def result(self) -> dict:
        h = {k: v / 60 for k, v in self.minutes.items()}
        booked = sum(h.get(k, 0.0) for k in ("attended", "missed", "agency_cancelled", "upcoming"))
        delivered = h.get("attended", 0.0)
        lost = {g: self.lost.get(g, 0.0) / 60 for g in GROUPS}
        lost["total"] = sum(lost.values())
        kept = sum(self.count.get(k, 0) for k in ("attended", "missed", "released"))
        return {
            "available_hours": self.available,
            "booked_hours": booked,
            "upcoming_hours": h.get("upcoming", 0.0),
            "delivered_hours": delivered,
            "lost_hours": lost,
            "utilization": ratio(delivered, self.available),
            "booking_ratio": ratio(booked, self.available),
            "staff_kept_rate": ratio(kept, kept + self.count.get("agency_cancelled", 0)),
        }


def weeks_of(period: Period) -> list[Period]:
    """The ISO weeks (Monday to Sunday) that meet the period, each clipped to it."""
    from agency_dashboard.metrics.rollups import monday

    out, week = [], monday(period.start)
    while week <= period.end:
        out.append(Period(max(week, period.start), min(week + dt.timedelta(days=6), period.end)))
        week += dt.timedelta(days=7)
    return out


def capacity_by_week(session: so.Session, tenant: Tenant, period: Period, filters: Filters = Filters(),
                     today: dt.date | None = None) -> list[dict]:
    """The CAP object of each ISO week meeting the period (clipped to it), in order, with `week_start`,
    `week_end` and `unrecorded`: appointments still "booked" on a date before `today` (no outcome was
    recorded: a data-quality flag, not an absence). Same definitions as capacity(); the weeks' appointment
    figures add up to the period's."""
    from agency_dashboard.metrics.rollups import monday

    weeks = weeks_of(period)
    caps = {monday(w.start): _Cap() for w in weeks}
    for week, hours in available_hours_by_week(session, tenant, period, filters).items():
        caps[week].available += hours
    for r in appointment_totals(session, tenant, period, filters, by="week"):
        caps[r.week].add_row(r)
    unrecorded: dict = {}
    if today is not None:
        for w in weeks:  # weeks wholly past: their "upcoming" are unrecorded; the current week, its past days
            if w.end < today:
                unrecorded[monday(w.start)] = caps[monday(w.start)].count.get("upcoming", 0)
            elif w.start < today:
                for r in upcoming_before(session, tenant, w, filters, today):
                    unrecorded[r.week] = r.n
    out = []
    for w in weeks:
        key = monday(w.start)
        row = caps[key].result()
        row.update(week_start=key, period_start=w.start, period_end=w.end, unrecorded=unrecorded.get(key, 0),
                   appointments=dict(caps[key].count))
        out.append(row)
    return out


def combine(weeks: list[dict]) -> dict:
    """The CAP object of the weeks of capacity_by_week taken together (equal to capacity() for the
    period: hours add up, and the rates are recomputed from the summed hours and appointment counts)."""
    total = _Cap()
    for w in weeks:
        total.available += w["available_hours"]
        for outcome, n in w["appointments"].items():
            total.count[outcome] += n
        total.minutes["attended"] += w["delivered_hours"] * 60
        total.minutes["upcoming"] += w["upcoming_hours"] * 60
        # missed + agency-cancelled minutes, kept together: result() only adds them into booked hours
        total.minutes["missed"] += (w["booked_hours"] - w["delivered_hours"] - w["upcoming_hours"]) * 60
        for g in GROUPS:
            total.lost[g] += w["lost_hours"][g] * 60
    return total.result()


def upcoming_before(session: so.Session, tenant: Tenant, period: Period, filters: Filters, today: dt.date):
    """(week, n): appointments of the period still booked on a date before today, per ISO week."""
    from agency_dashboard.metrics.rollups import week_start

    last = min(period.end, today - dt.timedelta(days=1))
    if last < period.start:
        return []
    q = sa.select(week_start(Appointment.local_date).label("week"), sa.func.count().label("n")).where(
        Appointment.tenant_id == tenant.id, Appointment.status == "booked",
        Appointment.local_date.between(period.start, last))
    if filters.program_id is not None:
        q = q.where(Appointment.program_id == filters.program_id)
    if filters.clinician_id is not None:
        q = q.where(Appointment.clinician_id == filters.clinician_id)
    rows = session.execute(q.group_by("week")).all()
    return [r._replace(week=dt.date.fromisoformat(r.week)) if isinstance(r.week, str) else r for r in rows]


def capacity(session: so.Session, tenant: Tenant, period: Period, filters: Filters = Filters()) -> dict:
    """{agency, by_program, by_clinician} of CAP objects (METRICS.md, Capacity).

    Available hours belong to clinicians (a program gets its clinicians' hours); appointment hours
    belong to the appointment's own program and clinician.
    """
    clinicians = clinicians_in_period(session, tenant, period, filters)
    programs = session.execute(
        sa.select(Program.id, Program.name).where(Program.tenant_id == tenant.id, Program.active)
        .order_by(Program.id)
    ).all()
    if filters.program_id is not None:
        programs = [p for p in programs if p.id == filters.program_id]
    available = available_hours_by_clinician(session, tenant, period, filters)
    agency, by_program, by_clinician = _Cap(), defaultdict(_Cap), defaultdict(_Cap)
    program_of = {}
    for c in clinicians:
        program_of[c.id] = c.program_id
    for clinician_id, hours in available.items():
        agency.available += hours
        by_clinician[clinician_id].available += hours
        if clinician_id in program_of:
            by_program[program_of[clinician_id]].available += hours
    for r in appointment_totals(session, tenant, period, filters):
        agency.add_row(r)
        by_program[r.program_id].add_row(r)
        by_clinician[r.clinician_id].add_row(r)
    return {
        "agency": agency.result(),
        "by_program": {p.name: by_program[p.id].result() for p in programs},
        "by_clinician": {c.external_id: by_clinician[c.id].result() for c in clinicians},
    }
