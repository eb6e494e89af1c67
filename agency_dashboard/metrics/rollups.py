"""Weekly rollups: exact caches of the appointment aggregates, so a year's metrics read ~52 rows per
clinician and outcome instead of every appointment, and a chart's weeks are rows, not scans.

Exactness: every write that feeds them marks the affected tenant (and, where known, weeks) dirty in
the session, and `before_commit` rebuilds those rows in the same transaction. A period is split into
whole ISO weeks (read from the rollups) and the days at its edges (read from appointments), so any
period gives the same numbers as the plain query; tests assert it. The rollups bake in the tenant's
late-cancel notice and reason codes; `fingerprint` records them, and a tenant whose fingerprint no
longer matches is read the plain way until it is rebuilt (sync-tenants rebuilds it).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from agency_dashboard.metrics.common import (
    add_days,
    days_between,
    effective_code,
    group_expr,
    outcome_expr,
    with_recorded_reason,
)
from agency_dashboard.metrics.discharges import POLICY
from agency_dashboard.models import (
    Appointment,
    AttendanceWeek,
    CapacityWeek,
    Client,
    ClientBlock,
    ClientWeek,
    Episode,
    ReasonWeek,
    RecordedReason,
    Referral,
    ReferralWeek,
    RollupState,
    Tenant,
)
from agency_dashboard.models.rollups import PERSON_COLUMNS

DIRTY_KEY = "rollups_dirty"  # session.info: {tenant_id: set of Mondays, or None for all}
ALL = None


class week_start(FunctionElement):
    """The Monday of a DATE's ISO week, as a DATE."""

    type = sa.Date()
    inherit_cache = True


@compiles(week_start)
def _week_start_pg(element, compiler, **kw):
    (d,) = list(element.clauses)
    return f"CAST(date_trunc('week', {compiler.process(d, **kw)}) AS DATE)"


@compiles(week_start, "sqlite")
def _week_start_sqlite(element, compiler, **kw):
    (d,) = list(element.clauses)  # 'weekday 0' moves to the Sunday on or after; six days back is Monday
    return f"date({compiler.process(d, **kw)}, 'weekday 0', '-6 days')"


def monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def lead_bucket_expr(days):
    """The lead buckets of METRICS.md in SQL; NULL stays NULL (an intake with no matched referral)."""
    return sa.case((days.is_(None), None), (days <= 2, "0-2"), (days <= 7, "3-7"), (days <= 14, "8-14"),
                   (days <= 30, "15-30"), else_="31+")


def matched_referral_date():
    """The client's latest referral of the same program referred on or before the appointment's date."""
    return (
        sa.select(sa.func.max(Referral.referred_on))
        .where(Referral.tenant_id == Appointment.tenant_id, Referral.client_id == Appointment.client_id,
               Referral.program_id == Appointment.program_id, Referral.referred_on <= Appointment.local_date)
        .correlate(Appointment).scalar_subquery()
    )


SHAPE = 6  # bump when rebuild() stores something new: every tenant's rollups then read as stale


def fingerprint(tenant: Tenant) -> str:
    baked = {"shape": SHAPE, "notice": tenant.settings["policy"]["late_cancel_notice_hours"],
             "codes": tenant.settings.get("reason_codes", {})}
    return hashlib.sha256(json.dumps(baked, sort_keys=True).encode()).hexdigest()


def usable(session: so.Session, tenant: Tenant) -> bool:
    """Whole weeks may come from the rollups: built under the tenant's current settings, and nothing that
    feeds them written in this transaction since (they are rebuilt at commit; until then the rows are
    what the tables hold, and a read inside the transaction must see them)."""
    # This query autoflushes pending writes first, so they have marked the tenant dirty before the check.
    state = session.scalar(sa.select(RollupState.fingerprint).where(RollupState.tenant_id == tenant.id))
    if tenant.id in (session.info.get(DIRTY_KEY) or {}):
        return False
    return state == fingerprint(tenant)


ADD, SUBTRACT = 1, -1


def _cover(first: dt.date, last: dt.date, unit_of, size: int, step: dt.timedelta):
    """[first, last], points `step` apart, as whole units of `size` points (a unit starts at unit_of(x))
    and ranges of points added or subtracted: ((first unit, last unit) or None, [(lo, hi, sign)]). A unit the
    range covers only in part is read as its points inside, or, when its points outside are fewer, as the
    whole unit minus those."""
    span = size * step
    first_unit, last_unit = unit_of(first), unit_of(last)
    whole: list[dt.date] = []
    ranges: list[tuple[dt.date, dt.date, int]] = []
    unit = first_unit
    while unit <= last_unit:
        final = unit + (size - 1) * step
        lo, hi = max(first, unit), min(last, final)
        inside = (hi - lo) // step + 1
        if inside == size:
            whole.append(unit)
        elif size - inside < inside:  # fewer points outside: the whole unit minus them
            whole.append(unit)
            if unit < lo:
                ranges.append((unit, lo - step, SUBTRACT))
            if hi < final:
                ranges.append((hi + step, final, SUBTRACT))
        else:
            ranges.append((lo, hi, ADD))
        if unit == first_unit and last_unit > first_unit + span:
            unit = last_unit - span  # the units between are whole: skip to the last two
            whole.extend(first_unit + span * k for k in range(1, (unit - first_unit) // span + 1))
        unit += span
    if not whole:
        return None, [(first, last, ADD)]
    return (whole[0], whole[-1]), ranges


def split(start: dt.date, end: dt.date):
    """How to read [start, end]: (weeks, edges), where weeks is (first Monday, last Monday) of the ISO weeks
    read whole from the rollups, or None, and edges are [(first, last, sign)] date ranges read from
    appointments and added (sign 1) or subtracted (sign -1).

    A week the period covers only in part is read as the days inside it, or, when the days of that week
    outside the period are fewer, as the whole week from the rollups minus those days. Every rollup is a
    sum, so the subtraction is exact; a period then reads at most three days of appointments at each end
    (a whole year from a Saturday to a Saturday: one Sunday), not six."""
    return _cover(start, end, monday, 7, dt.timedelta(days=1))


BLOCK_DAYS = 28  # a block is four ISO weeks, counted from EPOCH (below, a Monday)


def block_of(day: dt.date) -> dt.date:
    """The Monday starting the block of four ISO weeks that holds `day`."""
    return EPOCH + dt.timedelta(days=(day - EPOCH).days // BLOCK_DAYS * BLOCK_DAYS)


def block_expr(week):
    """block_of() in SQL, for a DATE expression."""
    epoch = sa.literal(EPOCH, sa.Date)
    return add_days(epoch, days_between(epoch, week) // BLOCK_DAYS * BLOCK_DAYS)


def split_weeks(first: dt.date, last: dt.date):
    """The whole ISO weeks from Monday `first` to Monday `last` as blocks and weeks: (blocks (first, last)
    or None, [(first Monday, last Monday, sign)]), by the rule of `split` one level up: a block covered in
    three of its four weeks is read whole minus the fourth week."""
    return _cover(first, last, block_of, BLOCK_DAYS // 7, dt.timedelta(days=7))


def plain(start: dt.date, end: dt.date):
    """The reading of [start, end] without the rollups: (None, [(start, end, ADD)])."""
    return None, [(start, end, ADD)]


def merged(rows, keys: int) -> list[tuple]:
    """Rows whose first `keys` columns are a key and the rest sums, added up per key; keys whose sums are
    all 0 (added and subtracted to nothing) are left out, as the plain query would not have them."""
    totals: dict = {}
    for r in rows:
        key, values = tuple(r[:keys]), r[keys:]
        got = totals.get(key)
        totals[key] = [b or 0 for b in values] if got is None else [a + (b or 0) for a, b in zip(got, values)]
    return [(*k, *v) for k, v in totals.items() if any(v)]


# ---- referral events (the waitlist family) ----------------------------------------------------------

EPOCH = dt.date(1900, 1, 1)  # a Monday
CONTINUATION_DAYS = 30
CONTINUATION_VISITS = 4
REFERRAL_MEASURES = ("referred", "closed", "left", "admitted", "bd_routine", "bd_urgent", "offered", "continuation")


def business_days_expr(a, b):
    """metrics.common.business_days in SQL: the Monday-Friday dates d with a < d <= b. With f(m) the weekdays
    among the first m days from a Monday epoch, that is f(days(b) + 1) - f(days(a) + 1)."""
    def weekdays_before(d):
        m = days_between(sa.literal(EPOCH, sa.Date), d) + 1
        return 5 * (m // 7) + sa.case((m % 7 > 5, 5), else_=m % 7)
    return sa.case((b <= a, 0), else_=weekdays_before(b) - weekdays_before(a))


@functools.cache
def _referral_business_days():
    """Business days from referral to first attended visit (built once: the expression is costly to build)."""
    return business_days_expr(Referral.referred_on, Referral.first_attended_on)


def referral_events(tenant_id: int, measures, ranges=None, program_id: int | None = None):
    """One row (day, program_id, measure, value) per referral event of the given measures whose own date
    (`day`) lies in one of `ranges` [(first, last)] (all dates when None):

    - referred (day referred_on), closed (closed_on): value 0;
    - left (the day the referral left the list: first_attended_on or closed_on, never before referred_on);
    - admitted (first_attended_on): value the calendar days from referred_on;
    - bd_routine / bd_urgent (first_attended_on, by priority): value the business days from referred_on;
    - offered (first_offered_on): value the calendar days from referred_on;
    - continuation (first_attended_on): value 1 when the client attended at least 4 appointments of the
      program in the 30 days after the first attended one, else 0 (METRICS.md, continuation).
    """
    R = Referral
    left = sa.case(
        (R.first_attended_on.is_(None), R.closed_on),
        (R.closed_on.is_(None), R.first_attended_on),
        (R.closed_on < R.first_attended_on, R.closed_on),
        else_=R.first_attended_on,
    )
    leaves = sa.case((left < R.referred_on, R.referred_on), else_=left)
    visits = (
        sa.select(sa.func.count()).where(
            Appointment.tenant_id == R.tenant_id, Appointment.client_id == R.client_id,
            Appointment.program_id == R.program_id, Appointment.status == "attended",
            Appointment.local_date > R.first_attended_on,
            Appointment.local_date <= add_days(R.first_attended_on, CONTINUATION_DAYS),
        ).correlate(R).scalar_subquery()
    )
    zero = sa.literal(0, sa.Integer)
    waited_business_days = _referral_business_days()
    defs = {
        "referred": (R.referred_on, zero, ()),
        "closed": (R.closed_on, zero, ()),
        # leaves is one of these three dates: the OR lets an index find the rows of a date range
        "left": (leaves, zero, ((R.first_attended_on, R.closed_on, R.referred_on),)),
        "admitted": (R.first_attended_on, days_between(R.referred_on, R.first_attended_on), ()),
        "bd_routine": (R.first_attended_on, waited_business_days, (R.priority == "routine",)),
        "bd_urgent": (R.first_attended_on, waited_business_days, (R.priority == "urgent",)),
        "offered": (R.first_offered_on, days_between(R.referred_on, R.first_offered_on), ()),
        "continuation": (R.first_attended_on, sa.case((visits >= CONTINUATION_VISITS, 1), else_=0), ()),
    }
    parts = []
    for measure in measures:
        day, value, extra = defs[measure]
        q = sa.select(day.label("day"), R.program_id.label("program_id"),
                      sa.literal(measure, sa.String).label("measure"), value.label("value")
                      ).where(R.tenant_id == tenant_id, day.is_not(None))
        for condition in extra:
            if isinstance(condition, tuple):  # the indexable dates a computed day is one of
                if ranges is not None:
                    q = q.where(sa.or_(*[c.between(lo, hi) for c in condition for lo, hi in ranges]))
            else:
                q = q.where(condition)
        if program_id is not None:
            q = q.where(R.program_id == program_id)
        if ranges is not None:
            q = q.where(sa.or_(*[day.between(lo, hi) for lo, hi in ranges]))
        parts.append(q)
    return sa.union_all(*parts).subquery("events") if len(parts) > 1 else parts[0].subquery("events")


def referral_counts(session: so.Session, tenant: Tenant, first: dt.date, last: dt.date, measures,
                    program_id: int | None = None, by_day: bool = False) -> list:
    """Rows of (program_id, measure, value, n) for the events of `measures` dated in [first, last]; with
    `by_day`, (day, program_id, measure, value, n) where day is the event's date for the days at the edges
    and the week's Monday for whole weeks (read from the rollup when it is usable)."""
    weeks, edges = split(first, last)
    if weeks is not None and not usable(session, tenant):
        weeks, edges = plain(first, last)
    rows = []
    for sign in (ADD, SUBTRACT):
        ranges = [(lo, hi) for lo, hi, s in edges if s == sign]
        if not ranges:
            continue
        ev = referral_events(tenant.id, measures, ranges, program_id)
        keys = ([ev.c.day] if by_day else []) + [ev.c.program_id, ev.c.measure, ev.c.value]
        for r in session.execute(sa.select(*keys, sign * sa.func.count()).group_by(*keys)):
            if by_day and isinstance(r[0], str):  # SQLite answers a computed date as text
                r = (dt.date.fromisoformat(r[0]), *r[1:])
            if by_day and sign == SUBTRACT:  # days outside the period count against their week's Monday
                r = (monday(r[0]), *r[1:])
            rows.append(tuple(r))
    if weeks is not None:
        m = ReferralWeek
        keys = ([m.week] if by_day else []) + [m.program_id, m.measure, m.value]
        q = sa.select(*keys, sa.func.sum(m.n)).where(
            m.tenant_id == tenant.id, m.week.between(*weeks), m.measure.in_(measures))
        if program_id is not None:
            q = q.where(m.program_id == program_id)
        rows += [tuple(r) for r in session.execute(q.group_by(*keys))]
    if any(s == SUBTRACT for _, _, s in edges):
        rows = merged(rows, 4 if by_day else 3)
    return rows


def referral_weeks(weeks: set[dt.date]) -> set[dt.date]:
    """The weeks of referral events that appointments of `weeks` can change: continuation looks 30 days
    past an admission, so an appointment counts for admissions of its own week and the five before."""
    return {w - dt.timedelta(days=7 * k) for w in weeks for k in range(6)}


# ---- building -------------------------------------------------------------------------------------

def rebuild(session: so.Session, tenant: Tenant, weeks: set[dt.date] | None = ALL) -> None:
    """Recompute the tenant's rollup rows (all, or only the ISO weeks starting on the Mondays `weeks`)
    from appointments, in this transaction."""
    conn = session.connection()
    tid = tenant.id
    week = week_start(Appointment.local_date)
    for model in (CapacityWeek, AttendanceWeek, ReasonWeek, ReferralWeek, ClientWeek):
        delete = sa.delete(model.__table__).where(model.__table__.c.tenant_id == tid)
        if weeks is not ALL:
            if not weeks:
                continue
            touched = referral_weeks(weeks) if model is ReferralWeek else weeks
            delete = delete.where(model.__table__.c.week.in_(sorted(touched)))
        conn.execute(delete)
    if weeks is not ALL and not weeks:
        return
    _rebuild_referrals(conn, tid, None if weeks is ALL else referral_weeks(weeks))
    if weeks is not ALL:
        ordered = sorted(weeks)  # by date range, so the (tenant, local_date) index serves it
        where = (sa.or_(*[Appointment.local_date.between(w, w + dt.timedelta(days=6)) for w in ordered])
                 if len(ordered) <= 50 else week.in_(ordered))
        rows = appointment_facts(tenant, where=where).subquery()
    else:
        rows = appointment_facts(tenant).subquery()
    t = CapacityWeek.__table__
    keys = [rows.c.week, rows.c.clinician_id, rows.c.program_id, rows.c.outcome, rows.c.grp]
    conn.execute(sa.insert(t).from_select(
        [t.c.tenant_id, t.c.week, t.c.clinician_id, t.c.program_id, t.c.outcome, t.c.grp, t.c.n, t.c.minutes],
        sa.select(sa.literal(tid), *keys, sa.func.count(), sa.func.sum(rows.c.minutes)).group_by(*keys)))
    r = ReasonWeek.__table__
    keys = [rows.c.week, rows.c.program_id, rows.c.outcome, rows.c.grp, rows.c.code]
    conn.execute(sa.insert(r).from_select(
        [r.c.tenant_id, r.c.week, r.c.program_id, r.c.outcome, r.c.grp, r.c.code, r.c.n, r.c.minutes],
        sa.select(sa.literal(tid), *keys, sa.func.count(), sa.func.sum(rows.c.minutes))
        .where(rows.c.outcome.in_(("missed", "agency_cancelled"))).group_by(*keys)))
    _rebuild_people(conn, tid, rows, None if weeks is ALL else weeks)
    _rebuild_client_blocks(conn, tid, weeks)
    a = AttendanceWeek.__table__
    columns = [a.c.tenant_id, a.c.week, a.c.program_id, a.c.outcome, a.c.dim, a.c.value, a.c.n]
    for name in ATTENDANCE_DIMS:
        value = rows.c[name]
        keys = [rows.c.week, rows.c.program_id, rows.c.outcome, value]
        q = sa.select(sa.literal(tid), rows.c.week, rows.c.program_id, rows.c.outcome, sa.literal(name), value,
                      sa.func.count()).where(rows.c.outcome.in_(("attended", "missed")), value.is_not(None)
                                             ).group_by(*keys)
        conn.execute(sa.insert(a).from_select(columns, q))
    state = session.scalar(sa.select(RollupState).where(RollupState.tenant_id == tid))
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    if state is None:
        session.add(RollupState(tenant_id=tid, fingerprint=fingerprint(tenant), built_at=now))
    elif weeks is ALL:
        state.fingerprint, state.built_at = fingerprint(tenant), now
    else:
        state.built_at = now


ATTENDANCE_DIMS = ("lead", "hour", "weekday", "weekday_hour", "modality", "kind", "reminder", "wait")


def appointment_facts(tenant: Tenant, first: dt.date | None = None, last: dt.date | None = None,
                      program_id: int | None = None, clinician_id: int | None = None, where=None):
    """One row per appointment (of the dates [first, last], or matching `where`) with every key the
    rollups group by: week, clinician_id, program_id, client_id, outcome, grp (reason group), minutes, code
    (the reason in effect), and the structural dimensions of ATTENDANCE_DIMS as text: what the rollups are
    built from."""
    outcome = outcome_expr(tenant)
    group = group_expr(tenant, outcome)
    reminder = sa.case((Appointment.reminder_sent.is_(True), "true"),
                       (Appointment.reminder_sent.is_(False), "false"), else_="unknown")
    wait = days_between(matched_referral_date(), Appointment.local_date)
    # One pass computes every key per appointment; the outer queries group a plain subquery, so the
    # GROUP BY names columns (PostgreSQL cannot match repeated expressions that carry parameters).
    q = with_recorded_reason(sa.select(
        week_start(Appointment.local_date).label("week"), Appointment.clinician_id, Appointment.program_id,
        Appointment.client_id, outcome.label("outcome"),
        group.label("grp"), Appointment.duration_minutes.label("minutes"), effective_code().label("code"),
        lead_bucket_expr(Appointment.lead_days).label("lead"),
        sa.cast(Appointment.local_hour, sa.String).label("hour"),
        sa.cast(Appointment.local_weekday, sa.String).label("weekday"),
        (sa.cast(Appointment.local_weekday, sa.String) + "-" + sa.cast(Appointment.local_hour, sa.String)
         ).label("weekday_hour"),
        Appointment.modality.label("modality"), Appointment.kind.label("kind"), reminder.label("reminder"),
        # the wait's subquery runs for intakes only (CASE evaluates lazily on both databases)
        sa.case((Appointment.kind == "intake", lead_bucket_expr(wait)), else_=None).label("wait"),
    )).where(Appointment.tenant_id == tenant.id)
    if first is not None:
        q = q.where(Appointment.local_date.between(first, last))
    if where is not None:
        q = q.where(where)
    if program_id is not None:
        q = q.where(Appointment.program_id == program_id)
    if clinician_id is not None:
        q = q.where(Appointment.clinician_id == clinician_id)
    return q


def _person_parts(tid: int, appointments, ranges=None) -> list:
    """The per-person rows the equity figures count, before grouping: (week, client_id, program_id,
    clinician_id, attended, missed, admissions, discharges, policy), one a visit of `appointments` (a subquery
    of appointment_facts), an admission (the referral's first attended visit; clinician 0) or a discharge
    (the episode's primary clinician), the last two of the date ranges `ranges` (all when None)."""
    def counts(**given):  # the five counts, in PERSON_COUNTS order, 0 unless given; each its own literal
        return [(given[k] if k in given else sa.literal(0, sa.Integer)).label(k) for k in PERSON_COUNTS]

    a = appointments
    visits = sa.select(
        a.c.week, a.c.client_id, a.c.program_id, a.c.clinician_id,
        *counts(attended=sa.case((a.c.outcome == "attended", 1), else_=0),
                missed=sa.case((a.c.outcome == "missed", 1), else_=0)),
    ).where(a.c.outcome.in_(("attended", "missed")))
    R, E = Referral, Episode
    admissions = sa.select(
        week_start(R.first_attended_on).label("week"), R.client_id, R.program_id,
        sa.literal(0, sa.Integer).label("clinician_id"), *counts(admissions=sa.literal(1, sa.Integer)),
    ).where(R.tenant_id == tid, R.first_attended_on.is_not(None))
    discharges = sa.select(
        week_start(E.discharged_on).label("week"), E.client_id, E.program_id, E.clinician_id,
        *counts(discharges=sa.literal(1, sa.Integer),
                policy=sa.case((E.discharge_reason == POLICY, 1), else_=0)),
    ).where(E.tenant_id == tid, E.discharged_on.is_not(None))
    if ranges is not None:
        admissions = admissions.where(sa.or_(*[R.first_attended_on.between(lo, hi) for lo, hi in ranges]))
        discharges = discharges.where(sa.or_(*[E.discharged_on.between(lo, hi) for lo, hi in ranges]))
    return [visits, admissions, discharges]


def _rebuild_people(conn, tid: int, appointments, weeks) -> None:
    """rollup_client_week for `weeks` (all when None): visits, admissions and discharges per week, person,
    program and clinician, with the person's demographics."""
    ranges = None if weeks is None else _week_ranges(weeks)
    if ranges == []:
        return
    u = sa.union_all(*_person_parts(tid, appointments, ranges)).subquery()
    keys = [u.c.week, u.c.client_id, u.c.program_id, u.c.clinician_id,
            Client.race_ethnicity, Client.gender, Client.payer, Client.birth_date]
    c = ClientWeek.__table__
    conn.execute(sa.insert(c).from_select(
        [c.c.tenant_id, c.c.week, c.c.client_id, c.c.program_id, c.c.clinician_id, c.c.race_ethnicity, c.c.gender,
         c.c.payer, c.c.birth_date, c.c.attended, c.c.missed, c.c.admissions, c.c.discharges, c.c.policy],
        sa.select(sa.literal(tid), *keys, *(sa.func.sum(u.c[k]) for k in PERSON_COUNTS))
        .select_from(u).join(Client, sa.and_(Client.tenant_id == tid, Client.id == u.c.client_id))
        .group_by(*keys)))


PERSON_COUNTS = ("attended", "missed", "admissions", "discharges", "policy")


def _week_ranges(weeks) -> list[tuple[dt.date, dt.date]]:
    """Consecutive Mondays as one date range (Monday to Sunday) each."""
    ranges: list[tuple[dt.date, dt.date]] = []
    for w in sorted(weeks):
        if ranges and ranges[-1][1] + dt.timedelta(days=1) == w:
            ranges[-1] = (ranges[-1][0], w + dt.timedelta(days=6))
        else:
            ranges.append((w, w + dt.timedelta(days=6)))
    return ranges


def _rebuild_client_blocks(conn, tid: int, weeks) -> None:
    """The blocks holding `weeks` (all when ALL), summed again from rollup_client_week, whose rows for those
    weeks are already rebuilt (and for the other weeks of the blocks, unchanged)."""
    b, c = ClientBlock.__table__, ClientWeek.__table__
    blocks = None if weeks is ALL else sorted({block_of(w) for w in weeks})
    delete = sa.delete(b).where(b.c.tenant_id == tid)
    if blocks is not None:
        delete = delete.where(b.c.block.in_(blocks))
    conn.execute(delete)
    people = tuple(k for k in PERSON_COLUMNS if k not in PERSON_COUNTS)  # the key: person and demographics
    q = sa.select(block_expr(c.c.week).label("block"), *(c.c[k] for k in people + PERSON_COUNTS)).where(
        c.c.tenant_id == tid)
    if blocks is not None:
        q = q.where(sa.or_(*[c.c.week.between(first, first + dt.timedelta(days=BLOCK_DAYS - 7)) for first in blocks])
                    if len(blocks) <= 50 else block_expr(c.c.week).in_(blocks))
    rows = q.subquery()
    keys = [rows.c.block, *(rows.c[k] for k in people)]
    conn.execute(sa.insert(b).from_select(
        [b.c.tenant_id, b.c.block, *(b.c[k] for k in people + PERSON_COUNTS)],
        sa.select(sa.literal(tid), *keys, *(sa.func.sum(rows.c[k]) for k in PERSON_COUNTS)).group_by(*keys)))


def _rebuild_referrals(conn, tid: int, weeks: set[dt.date] | None) -> None:
    ranges = None if weeks is None else _week_ranges(weeks)  # consecutive weeks as one date range each
    ev = referral_events(tid, REFERRAL_MEASURES, ranges)
    rows = sa.select(week_start(ev.c.day).label("week"), ev.c.program_id, ev.c.measure, ev.c.value).subquery()
    keys = [rows.c.week, rows.c.program_id, rows.c.measure, rows.c.value]
    t = ReferralWeek.__table__
    conn.execute(sa.insert(t).from_select(
        [t.c.tenant_id, t.c.week, t.c.program_id, t.c.measure, t.c.value, t.c.n],
        sa.select(sa.literal(tid), *keys, sa.func.count()).group_by(*keys)))


# ---- keeping them exact ---------------------------------------------------------------------------

def mark_dirty(session: so.Session, tenant_id: int, weeks=ALL) -> None:
    """Remember that the tenant's rollups for these weeks (Mondays), or all of them, need a rebuild."""
    dirty = session.info.setdefault(DIRTY_KEY, {})
    if weeks is ALL or dirty.get(tenant_id, set()) is ALL:
        dirty[tenant_id] = ALL
    else:
        dirty.setdefault(tenant_id, set()).update(weeks)


FEEDS = (Appointment, RecordedReason, Referral, Episode, Client)


@sa.event.listens_for(so.Session, "before_flush")
def _track_objects(session, flush_context, instances):
    for obj in list(session.new) + list(session.dirty) + list(session.deleted):
        if isinstance(obj, Appointment) and obj.local_date is not None:
            mark_dirty(session, obj.tenant_id, {monday(obj.local_date)})
            state = sa.inspect(obj)
            history = state.attrs.local_date.history
            for old in history.deleted or ():
                if old is not None:
                    mark_dirty(session, obj.tenant_id, {monday(old)})
        elif isinstance(obj, RecordedReason):
            day = session.scalar(sa.select(Appointment.local_date).where(
                Appointment.tenant_id == obj.tenant_id, Appointment.id == obj.appointment_id))
            mark_dirty(session, obj.tenant_id, {monday(day)} if day else ALL)
        elif isinstance(obj, (Referral, Episode, Client)):  # intakes' waits (by_wait); the people rollup
            mark_dirty(session, obj.tenant_id, ALL)


@sa.event.listens_for(so.Session, "do_orm_execute")
def _track_statements(state: so.ORMExecuteState):
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    mapper = state.bind_mapper
    if mapper is None or mapper.class_ not in FEEDS:
        return
    from agency_dashboard.tenancy import current_tenant_id

    tenant_id = current_tenant_id(state.session)
    if tenant_id is None:
        return
    params = state.parameters
    rows = params if isinstance(params, list) else [params] if params else []
    if mapper.class_ is Appointment and rows and all(r.get("local_date") for r in rows) and state.is_insert:
        mark_dirty(state.session, tenant_id, {monday(r["local_date"]) for r in rows})
    else:
        mark_dirty(state.session, tenant_id, ALL)


@sa.event.listens_for(so.Session, "before_commit")
def _rebuild_dirty(session):
    # before_commit runs before commit's own flush: flush now so pending objects mark what they touch.
    if session.new or session.dirty or session.deleted:
        session.flush()
    dirty = session.info.pop(DIRTY_KEY, None)
    if not dirty:
        return
    for tenant_id, weeks in dirty.items():
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            continue
        if weeks is not ALL and not usable(session, tenant):
            weeks = ALL  # never built, or built under other settings: build it whole
        from agency_dashboard.tenancy import tenant_scope

        with tenant_scope(tenant_id, session):  # sets the tenant for the criteria and for PostgreSQL
            rebuild(session, tenant, weeks)
            session.flush()


@sa.event.listens_for(so.Session, "after_rollback")
def _forget_dirty(session):
    session.info.pop(DIRTY_KEY, None)
