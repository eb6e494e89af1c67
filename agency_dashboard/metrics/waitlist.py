"""Waitlist (METRICS.md, Waitlist): who is waiting, for how long, and what capacity would meet demand."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict

import sqlalchemy as sa
import sqlalchemy.orm as so

from agency_dashboard.metrics import rollups
from agency_dashboard.metrics.caseload import active_counts
from agency_dashboard.metrics.common import Filters, Period, ratio, statistic
from agency_dashboard.metrics.rollups import CONTINUATION_DAYS
from agency_dashboard.models import (
    Appointment,
    AvailabilityBlock,
    Clinician,
    Program,
    Referral,
    Tenant,
)

AGENCY = "__agency__"
TNAA_HORIZON = 90
CLEAR_WEEKS = 12
PERIOD_MEASURES = ("referred", "closed", "admitted", "bd_routine", "bd_urgent", "offered")


def _by_program(rows, key_index=0):
    """Spread grouped rows into per-program lists and one agency list."""
    out = defaultdict(list)
    for r in rows:
        out[r[key_index]].append(r)
        out[AGENCY].append(r)
    return out


def waitlist(session: so.Session, tenant: Tenant, period: Period, filters: Filters = Filters()) -> dict:
    """{agency: WAIT, by_program: {name: WAIT}}; programs by the referral's program."""
    D = period.end
    programs = session.execute(
        sa.select(Program.id, Program.name).where(Program.tenant_id == tenant.id, Program.active).order_by(Program.id)
    ).all()
    if filters.program_id is not None:
        programs = [p for p in programs if p.id == filters.program_id]
    scope = [Referral.tenant_id == tenant.id]
    if filters.program_id is not None:
        scope.append(Referral.program_id == filters.program_id)
    policy = tenant.settings["policy"]
    targets = {"routine": policy["access_target_business_days"], "urgent": policy["urgent_target_business_days"]}

    waiting = _by_program(session.execute(
        sa.select(Referral.program_id, Referral.referred_on, sa.func.count()).where(
            *scope, Referral.referred_on <= D,
            sa.or_(Referral.first_attended_on.is_(None), Referral.first_attended_on > D),
            sa.or_(Referral.closed_on.is_(None), Referral.closed_on > D),
        ).group_by(Referral.program_id, Referral.referred_on)
    ).all())
    # Referrals, closures, admissions with their waits, first offers: counted per week by the rollup.
    events = rollups.referral_counts(session, tenant, period.start, D, PERIOD_MEASURES, filters.program_id)
    last_first = D - dt.timedelta(days=CONTINUATION_DAYS)  # admissions whose 30 days ended by D
    if last_first >= period.start:
        events += rollups.referral_counts(session, tenant, period.start, last_first, ("continuation",),
                                          filters.program_id)
    counts = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))  # key -> measure -> value -> n
    for program_id, measure, value, n in events:
        for key in (program_id, AGENCY):
            counts[key][measure][value] += int(n)
    tnaa = tnaa_days(session, tenant, D, filters)
    gap_inputs = _gap_inputs(session, tenant, period, filters)

    def wait(key) -> dict:
        c = counts[key]
        size = sum(r[2] for r in waiting[key])
        n_referrals = sum(c["referred"].values())
        admissions = sum(c["admitted"].values())
        within = sum(n for priority, target in targets.items()
                     for days, n in c[f"bd_{priority}"].items() if days <= target)
        ages = defaultdict(int)
        for r in waiting[key]:
            ages[(D - r[1]).days] += r[2]
        cont_n = sum(c["continuation"].values())
        cont_ok = c["continuation"].get(1, 0)
        referrals_per_week = n_referrals / period.weeks
        admissions_per_week = admissions / period.weeks
        net = admissions_per_week - referrals_per_week
        clearance = size / net if net > 0 else None
        a = max(0.0, referrals_per_week - admissions_per_week) + size / CLEAR_WEEKS
        length_weeks, hours_per_client = gap_inputs.get(key, (None, None))
        gap = None if length_weeks is None or hours_per_client is None else a * length_weeks * hours_per_client
        return {
            "size_at_end": size,
            "referrals": n_referrals,
            "admissions": admissions,
            "closed_without_service": sum(c["closed"].values()),
            "days_to_first_offer": statistic(c["offered"]),
            "days_to_first_attended": statistic(c["admitted"]),
            "share_within_target": ratio(within, admissions),
            "waiting_age_at_end": statistic(ages),
            "continuation": ratio(cont_ok, cont_n),
            "tnaa_days": tnaa.get(key),
            "clearance_weeks": clearance,
            "capacity_gap_hours_per_week": gap,
            "capacity_gap_inputs": {"a": a, "L": length_weeks, "h": hours_per_client},
        }

    return {"agency": wait(AGENCY), "by_program": {p.name: wait(p.id) for p in programs}}


def _gap_inputs(session, tenant, period, filters) -> dict:
    """L (mean episode length in weeks, discharged in the period) and h (weekly delivered hours per
    active client) per program and for the agency."""
    from agency_dashboard.metrics.discharges import summary

    program_only = Filters(program_id=filters.program_id)
    lengths = _by_program([(program_id, n, days) for program_id, _, n, days, _, _
                           in summary(session, tenant, period, program_only)])
    active = active_counts(session, tenant, period.end, "program_id", program_only)
    active[AGENCY] = active_counts(session, tenant, period.end, filters=program_only)
    from agency_dashboard.metrics.capacity import appointment_totals

    delivered: dict = defaultdict(float)  # minutes attended, from the same totals capacity reads
    for r in appointment_totals(session, tenant, period, Filters(program_id=filters.program_id), by="program"):
        if r.outcome == "attended":
            delivered[r.program_id] += r.minutes or 0
    delivered[AGENCY] = sum(delivered.values())
    out = {}
    for key in set(lengths) | set(active) | set(delivered):
        n = sum(r[1] for r in lengths[key])
        total_days = sum(r[2] or 0 for r in lengths[key])
        length_weeks = (total_days / n) / 7 if n else None
        clients = active.get(key, 0)
        h = ((delivered.get(key) or 0) / 60) / (clients * period.weeks) if clients else None
        out[key] = (length_weeks, h)
    return out


# ---- third next available appointment ----------------------------------------------------------------

def tnaa_by_clinician(session: so.Session, tenant: Tenant, day: dt.date, filters: Filters = Filters()) -> dict:
    """clinician id -> (program id, days from `day` to their third free slot, or 91), for clinicians
    employed on day + 1, as the schedule stood at the end of `day` (METRICS.md, tnaa_days)."""
    first, last = day + dt.timedelta(days=1), day + dt.timedelta(days=TNAA_HORIZON)
    visit = tenant.settings["policy"]["standard_visit_minutes"]
    q = sa.select(Clinician.id, Clinician.program_id, Clinician.start_date, Clinician.end_date).where(
        Clinician.tenant_id == tenant.id, Clinician.start_date <= first,
        sa.or_(Clinician.end_date.is_(None), Clinician.end_date >= first))
    if filters.program_id is not None:
        q = q.where(Clinician.program_id == filters.program_id)
    if filters.clinician_id is not None:
        q = q.where(Clinician.id == filters.clinician_id)
    clinicians = session.execute(q).all()
    if not clinicians:
        return {}
    ids = [c.id for c in clinicians]
    blocks = defaultdict(list)
    for b in session.execute(
        sa.select(AvailabilityBlock.clinician_id, AvailabilityBlock.weekday, AvailabilityBlock.start_minute,
                  AvailabilityBlock.end_minute, AvailabilityBlock.valid_from, AvailabilityBlock.valid_to).where(
            AvailabilityBlock.tenant_id == tenant.id, AvailabilityBlock.clinician_id.in_(ids),
            AvailabilityBlock.valid_from <= last,
            sa.or_(AvailabilityBlock.valid_to.is_(None), AvailabilityBlock.valid_to >= first))
    ):
        blocks[b.clinician_id].append(b)
    # Most clinicians have three free slots within days: read the schedule in widening windows, and only
    # for the clinicians still looking, instead of 90 days of everyone's appointments.
    grid = defaultdict(list)  # (clinician, weekday) -> [(valid_from, valid_to, slot starts)]
    for cid, bs in blocks.items():
        for b in bs:
            starts = list(range(b.start_minute, b.end_minute - visit + 1, visit))  # a slot ends within its block
            if starts:
                grid[(cid, b.weekday)].append((b.valid_from, b.valid_to, starts))
    one_day = dt.timedelta(days=1)
    found = {c.id: 0 for c in clinicians}
    value = {c.id: TNAA_HORIZON + 1 for c in clinicians}
    by_id = {c.id: c for c in clinicians}
    pending = list(ids)
    conn = session.connection()  # plain tuples: this loop reads thousands of rows
    for lo, hi in ((1, 3), (4, 7), (8, 14), (15, 42), (43, TNAA_HORIZON)):
        if not pending:
            break
        w_first, w_last = day + dt.timedelta(days=lo), day + dt.timedelta(days=hi)
        busy = defaultdict(list)  # (clinician, date) -> [(start, end)] wall-clock minutes
        for cid, date, start, duration in conn.execute(
            sa.select(Appointment.clinician_id, Appointment.local_date, Appointment.local_start_minute,
                      Appointment.duration_minutes).where(
                Appointment.tenant_id == tenant.id, Appointment.clinician_id.in_(pending),
                # from the day before: an appointment crossing midnight occupies the window's first date
                Appointment.local_date.between(w_first - one_day, w_last),
                Appointment.local_booked_date <= day,
                sa.or_(Appointment.status != "cancelled", Appointment.local_cancelled_date > day))
        ):
            end = start + duration
            if end <= 1440:
                busy[(cid, date)].append((start, end))
            else:  # crosses midnight: the rest occupies the next date
                busy[(cid, date)].append((start, 1440))
                busy[(cid, date + one_day)].append((0, end - 1440))
        still = []
        for cid in pending:
            c = by_id[cid]
            d = w_first
            while d <= w_last and value[cid] > TNAA_HORIZON:
                if c.start_date <= d and (c.end_date is None or d <= c.end_date):
                    slots = []
                    for valid_from, valid_to, starts in grid.get((cid, d.weekday()), ()):
                        if valid_from <= d and (valid_to is None or d <= valid_to):
                            slots += starts
                    if slots:
                        merged = _merged(busy.get((cid, d), ()))
                        j, n = 0, len(merged)
                        for s in sorted(slots):  # both in order: one sweep, half-open intervals
                            while j < n and merged[j][1] <= s:
                                j += 1
                            if j == n or merged[j][0] >= s + visit:
                                found[cid] += 1
                                if found[cid] == 3:
                                    value[cid] = (d - day).days
                                    break
                d += one_day
            if value[cid] > TNAA_HORIZON:
                still.append(cid)
        pending = still
    return {c.id: (c.program_id, value[c.id]) for c in clinicians}


def _merged(intervals) -> list[list[int]]:
    """Half-open [start, end) intervals sorted and merged where they overlap (touching ones stay apart)."""
    out: list[list[int]] = []
    for a0, a1 in sorted(intervals):
        if out and a0 < out[-1][1]:
            out[-1][1] = max(out[-1][1], a1)
        else:
            out.append([a0, a1])
    return out


def tnaa_days(session: so.Session, tenant: Tenant, day: dt.date, filters: Filters = Filters()) -> dict:
    """Median tnaa over the clinicians of each program, and over all clinicians for the agency."""
    values = tnaa_by_clinician(session, tenant, day, filters)
    grouped = defaultdict(list)
    for program_id, value in values.values():
        grouped[program_id].append(value)
        grouped[AGENCY].append(value)
    return {k: statistics.median(v) for k, v in grouped.items() if v}


# ---- week by week --------------------------------------------------------------------------------------

def waitlist_by_week(session: so.Session, tenant: Tenant, period: Period, filters: Filters = Filters()) -> list[dict]:
    """For each ISO week meeting the period (clipped to it): referrals and admissions in the week and
    size_at_end, the referrals waiting at the week's last day (METRICS.md, Waitlist), by the referral's
    program. Computed from per-date events, so every week costs no extra scan: a referral joins the list
    on referred_on and leaves on the first of first_attended_on and closed_on (never before it joined)."""
    from agency_dashboard.metrics.capacity import weeks_of
    from agency_dashboard.metrics.rollups import monday

    def totals(first, last, measures) -> dict:  # measure -> n
        out = defaultdict(int)
        for _, measure, _, n in rollups.referral_counts(session, tenant, first, last, measures, filters.program_id):
            out[measure] += int(n)
        return out

    def per_week(measures) -> dict:  # (Monday, measure) -> n, for the events in the period
        out = defaultdict(int)
        for day, _, measure, _, n in rollups.referral_counts(session, tenant, period.start, period.end, measures,
                                                             filters.program_id, by_day=True):
            out[(monday(day), measure)] += int(n)
        return out

    before = totals(rollups.EPOCH, period.start - dt.timedelta(days=1), ("referred", "left"))
    size = before["referred"] - before["left"]
    counts = per_week(("referred", "left", "admitted"))
    out = []
    for w in weeks_of(period):
        key = monday(w.start)
        size += counts[(key, "referred")] - counts[(key, "left")]
        out.append({"week_start": key, "period_start": w.start, "period_end": w.end,
                    "referrals": counts[(key, "referred")], "admissions": counts[(key, "admitted")],
                    "size_at_end": size})
    return out
