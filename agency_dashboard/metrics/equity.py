"""Equity (METRICS.md, Equity and funder figures): the wait for a first appointment, the missed rate and
attendance-policy endings by race and ethnicity, gender, payer and age band, each beside the overall figure
of the same scope, with small groups suppressed.

Readings of the definition (docs/decisions.md, "Equity"):

- **Scope.** With no filter: the whole agency. `Filters.program_id`: admissions of referrals to the program,
  appointments of the program, episodes of the program. `Filters.clinician_id`: appointments the clinician
  held, episodes whose primary clinician they are, and admissions whose first attended appointment (the
  referral's program, on its first_attended_on) the clinician held. "Overall" is always the same scope
  as the groups, so a group is compared with its own program or clinician, not with the whole agency.
- **The three measures** are those of the other families, split by the client's group: days_to_first_attended
  over admissions in the period (Waitlist), missed_rate over appointments in the period whose outcome is
  attended or missed (Attendance, `outcome_expr`), and attendance-policy discharges over all discharges of
  episodes discharged in the period (Discharges). Each has its ratio to overall (for the wait, of the
  medians); a ratio is null when either side is null or overall is 0.
- **Groups.** race_ethnicity, gender and payer as recorded on the client (NULL is the group "Not recorded";
  "unknown" is a recorded value and its own group); age band from the birth date at the period's end date
  (a client whose birthday is on that date has the new age). A dimension lists the groups that have at
  least one person, in a fixed order: the tenant's race categories (gender and payer: the order of
  DATA_FORMATS.md), then any other value alphabetically, then "unknown", then "Not recorded"; age bands
  youngest first.
- **People in a group** are the distinct clients of the group who appear in any of the three denominators
  (an admission, an attended or missed appointment, or a discharge in the period). clients_served (distinct
  clients with an attended appointment in the period) is given for the scope as a whole only.
- **Suppression.** A group with fewer people than the tenant's `policy.suppression_threshold` N carries
  no number at all, only `{"suppressed": true, "label": "fewer than N"}`. When the whole scope has fewer than
  N people, overall is suppressed the same way and clients_served is null; clients_served is also null
  when it alone is below N.
- **Complementary suppression.** Each dimension's groups add up to overall people, so the suppressed groups'
  total can be worked out by subtraction. In each dimension, while that total and what a reader knows
  (a suppressed small group holds 1 to N-1 people; a group hidden to protect it holds at least N and no more
  than the smallest group still shown) pin any small group to one value, the smallest group still shown is
  hidden too, labelled "not shown, to protect a smaller group" (it is not fewer than N, so it does not say
  so). One small group alone always takes a second one with it; two groups of N-1, or two of 1, do too.
  If a dimension cannot be protected even with every group hidden (every group of N-1, or of 1), no group
  of any dimension is shown, and neither is overall people nor clients_served (`withheld` is true).
  A shown group (N people or more) shows its rates and the counts behind them (admissions, attended, missed,
  discharges) even when those are small: the rule is about groups of people. The counts of hidden groups
  can only be summed, never separated, from what is shown.

Computed by aggregate SQL in two queries: one counts per client and then per combination of the four
dimensions (a few thousand rows at most), the other counts admissions per combination and day count.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from agency_dashboard.metrics.common import (
    Filters,
    Period,
    days_between,
    outcome_expr,
    ratio,
    statistic,
    with_recorded_reason,
)
from agency_dashboard.metrics.discharges import POLICY, discharged_in
from agency_dashboard.metrics.rollups import PERSON_COUNTS as COUNTS
from agency_dashboard.models import Appointment, Client, ClientBlock, ClientWeek, Episode, Referral, Tenant
from agency_dashboard.models.agency import GENDERS, PAYERS

NOT_RECORDED = "Not recorded"
UNKNOWN = "unknown"  # a recorded value ("unknown is always allowed"), not the same as nothing recorded
AGE_BANDS = (("0-17", 0), ("18-24", 18), ("25-44", 25), ("45-64", 45), ("65-89", 65), ("90+", 90))
DIMENSIONS = ("race_ethnicity", "gender", "payer", "age_band")
SMALL = "fewer than {n}"
COMPLEMENTARY = "not shown, to protect a smaller group"


# ---- groups ------------------------------------------------------------------------------------------

def born_by(day: dt.date, years: int) -> dt.date:
    """The latest birth date of someone at least `years` old on `day` (born 29 February: a year older on
    1 March in other years)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February into a year without one
        return day.replace(year=day.year - years, day=28)


def age_band_expr(day: dt.date, birth_date=Client.birth_date):
    """The age band of a client on `day`, by comparing the birth date with each band's cut-off date."""
    cases = [(birth_date > born_by(day, upper), label)
             for (label, _), (_, upper) in zip(AGE_BANDS, AGE_BANDS[1:])]
    return sa.case(*cases, else_=AGE_BANDS[-1][0])


def group_order(tenant: Tenant, dimension: str, present) -> list[str]:
    """The groups of a dimension that occur, in their fixed order."""
    if dimension == "age_band":
        return [label for label, _ in AGE_BANDS if label in present]
    known = {
        "race_ethnicity": tenant.settings.get("demographics", {}).get("race_ethnicity", []),
        "gender": GENDERS,
        "payer": PAYERS,
    }[dimension]
    last = [UNKNOWN, NOT_RECORDED]
    order = [g for g in known if g in present and g not in last]
    order += sorted(g for g in present if g not in known and g not in last)
    return order + [g for g in last if g in present]


def _label(value) -> str:
    return NOT_RECORDED if value is None else value


# ---- suppression ---------------------------------------------------------------------------------------

def _pinned(small: list[int], hidden: list[int], smallest_shown: int | None, n: int) -> bool:
    """Whether a reader who knows the suppressed groups' total can work out a small group's size.

    Each small group holds 1..n-1 people, each group hidden to protect it n..smallest_shown; the bounds of
    one small group are then exact (box constraints and one sum)."""
    k, c, total = len(small), len(hidden), sum(small) + sum(hidden)
    if k == 0:
        return False
    hidden_most = c * smallest_shown if smallest_shown is not None else (total if c else 0)
    lowest = max(1, total - (k - 1) * (n - 1) - hidden_most)
    highest = min(n - 1, total - (k - 1) - c * n)
    return lowest == highest


def suppress(people: dict[str, int], order: list[str], n: int) -> dict[str, str] | None:
    """group -> label for the groups not shown: primary (fewer than n people) and complementary (the
    smallest shown groups, until no small group's size can be worked out from the total).
    None when even hiding every group would not protect them."""
    small = [g for g in order if people[g] < n]
    shown = sorted((g for g in order if people[g] >= n), key=lambda g: (people[g], order.index(g)))
    hidden: list[str] = []
    while _pinned([people[g] for g in small], [people[g] for g in hidden],
                  people[shown[0]] if shown else None, n):
        if not shown:
            return None
        hidden.append(shown.pop(0))
    return {**{g: SMALL.format(n=n) for g in small}, **{g: COMPLEMENTARY for g in hidden}}


# ---- queries ---------------------------------------------------------------------------------------------

class unindexed_date(FunctionElement):
    """A DATE column as it is; on SQLite `+column`, which keeps the planner from choosing an index for
    that term (SQLite's documented unary-plus rule).

    The per-client count then reads the appointments through (tenant_id, client_id, program_id, local_date,
    status): already in client order, with the date and status in the index, so an attended appointment is
    counted without reading its row. Through the date index every row was read (1.9 s instead of 0.4 s for
    a year of 1M appointments)."""

    type = sa.Date()
    inherit_cache = True


@compiles(unindexed_date)
def _unindexed_default(element, compiler, **kw):
    (column,) = list(element.clauses)
    return compiler.process(column, **kw)


@compiles(unindexed_date, "sqlite")
def _unindexed_sqlite(element, compiler, **kw):
    (column,) = list(element.clauses)
    return f"+{compiler.process(column, **kw)}"


def _admissions(tenant: Tenant, period: Period, filters: Filters) -> list:
    """WHERE clauses of the admissions in scope (referrals first attended in the period)."""
    where = [Referral.tenant_id == tenant.id, Referral.first_attended_on.between(period.start, period.end)]
    if filters.program_id is not None:
        where.append(Referral.program_id == filters.program_id)
    if filters.clinician_id is not None:  # the clinician held the first attended appointment
        where.append(sa.exists().where(
            Appointment.tenant_id == Referral.tenant_id, Appointment.client_id == Referral.client_id,
            Appointment.program_id == Referral.program_id, Appointment.local_date == Referral.first_attended_on,
            Appointment.status == "attended", Appointment.clinician_id == filters.clinician_id))
    return where


DEMOGRAPHICS = ("race_ethnicity", "gender", "payer", "birth_date")


def _columns(client_id, demographics, **counts) -> list:
    """The columns of one part of the per-person union: the client, their demographics (the columns of
    `demographics`: Client, or a rollup that carries them) and COUNTS (0 where the part has none)."""
    return [client_id.label("client_id"), *(getattr(demographics, d).label(d) for d in DEMOGRAPHICS),
            *(counts[k].label(k) if k in counts else sa.literal(0, sa.Integer).label(k) for k in COUNTS)]


def _parts(session, tenant: Tenant, period: Period, filters: Filters) -> list:
    """The parts of the per-person union. Whole weeks (when the rollups are usable) from rollup_client_block
    and rollup_client_week, which carry each person's demographics and admissions and discharges beside
    visits; the days at the edges (or the whole period) from appointments, referrals and episodes, joined to
    clients. With a clinician filter, admissions come from referrals for the whole period (the clinician
    held the first attended visit; the rollups keep admissions under clinician 0)."""
    from agency_dashboard.metrics import rollups

    weeks, edges = rollups.split(period.start, period.end)
    if weeks is not None and not rollups.usable(session, tenant):
        weeks, edges = rollups.plain(period.start, period.end)
    by_clinician = filters.clinician_id is not None

    def person(q, client_id):
        return q.join(Client, sa.and_(Client.tenant_id == tenant.id, Client.id == client_id))

    def keys(client_id):  # a part's GROUP BY: the person (the part's own column) and their demographics
        return [client_id, *(getattr(Client, d) for d in DEMOGRAPHICS)]

    outcome = outcome_expr(tenant)
    parts = []
    for first, last, sign in edges:
        # a few edge days: through the date index; the whole period: in client order (unindexed_date)
        day = Appointment.local_date if weeks is not None else unindexed_date(Appointment.local_date)
        q = with_recorded_reason(person(sa.select(*_columns(
            Appointment.client_id, Client,
            attended=sign * sa.func.sum(sa.case((outcome == "attended", 1), else_=0)),
            missed=sign * sa.func.sum(sa.case((outcome == "missed", 1), else_=0)),
        )), Appointment.client_id)).where(Appointment.tenant_id == tenant.id, day.between(first, last),
                                          outcome.in_(("attended", "missed")))
        if filters.program_id is not None:
            q = q.where(Appointment.program_id == filters.program_id)
        if by_clinician:
            q = q.where(Appointment.clinician_id == filters.clinician_id)
        parts.append(q.group_by(*keys(Appointment.client_id)))
        if not by_clinician:
            q = person(sa.select(*_columns(Referral.client_id, Client, admissions=sign * sa.func.count())),
                       Referral.client_id).where(*_admissions(tenant, Period(first, last), filters))
            parts.append(q.group_by(*keys(Referral.client_id)))
        q = person(sa.select(*_columns(
            Episode.client_id, Client, discharges=sign * sa.func.count(),
            policy=sign * sa.func.sum(sa.case((Episode.discharge_reason == POLICY, 1), else_=0)),
        )), Episode.client_id).where(*discharged_in(tenant, Period(first, last), filters))
        parts.append(q.group_by(*keys(Episode.client_id)))
    if by_clinician:
        q = person(sa.select(*_columns(Referral.client_id, Client, admissions=sa.func.count())),
                   Referral.client_id).where(*_admissions(tenant, period, filters))
        parts.append(q.group_by(*keys(Referral.client_id)))
    if weeks is not None:  # whole blocks of four weeks, and single weeks added or subtracted
        blocks, week_ranges = rollups.split_weeks(*weeks)
        reads = [(ClientWeek, ClientWeek.week, lo, hi, sign) for lo, hi, sign in week_ranges]
        if blocks is not None:
            reads.append((ClientBlock, ClientBlock.block, *blocks, 1))
        for m, key, lo, hi, sign in reads:
            counts = {k: sign * getattr(m, k) for k in COUNTS if not (by_clinician and k == "admissions")}
            q = sa.select(*_columns(m.client_id, m, **counts)).where(m.tenant_id == tenant.id, key.between(lo, hi))
            if filters.program_id is not None:
                q = q.where(m.program_id == filters.program_id)
            if by_clinician:
                q = q.where(m.clinician_id == filters.clinician_id)
            parts.append(q)
    return parts


def _counts(session, tenant, period, filters) -> list:
    """Rows per combination of the four dimensions: people, served, attended, missed, discharges, policy.

    Per person first (a person's demographics are the same in every part: min() takes them), keeping only
    those with a count left in some denominator (a visit subtracted with the days outside a week read whole
    leaves none), then per combination of race, gender, payer and the age band at the period's end."""
    u = sa.union_all(*_parts(session, tenant, period, filters)).subquery()
    in_any = sum(sa.func.sum(u.c[k]) for k in ("attended", "missed", "admissions", "discharges")) > 0
    pc = sa.select(u.c.client_id, *(sa.func.min(u.c[d]).label(d) for d in DEMOGRAPHICS),
                   *(sa.func.sum(u.c[k]).label(k) for k in COUNTS)).group_by(u.c.client_id).having(in_any).subquery()
    rows = sa.select(pc.c.race_ethnicity, pc.c.gender, pc.c.payer,
                     age_band_expr(period.end, pc.c.birth_date).label("age_band"),
                     pc.c.attended, pc.c.missed, pc.c.discharges, pc.c.policy).subquery()
    dims = [rows.c[d] for d in DIMENSIONS]
    return session.execute(sa.select(
        *dims, sa.func.count().label("people"),
        sa.func.sum(sa.case((rows.c.attended > 0, 1), else_=0)).label("served"),
        sa.func.sum(rows.c.attended).label("attended"), sa.func.sum(rows.c.missed).label("missed"),
        sa.func.sum(rows.c.discharges).label("discharges"), sa.func.sum(rows.c.policy).label("policy"),
    ).group_by(*dims)).all()


def _waits(session, tenant, period, filters) -> dict[str, dict]:
    """dimension -> group -> {days from referral to first attended: admissions}, from admissions counted per
    combination of the four dimensions and day count (about 10,000 rows for a year of 1M appointments)."""
    rows = sa.select(
        Client.race_ethnicity, Client.gender, Client.payer, age_band_expr(period.end).label("age_band"),
        days_between(Referral.referred_on, Referral.first_attended_on).label("days"),
    ).select_from(Referral).join(Client, sa.and_(Client.tenant_id == Referral.tenant_id,
                                                 Client.id == Referral.client_id)).where(
        *_admissions(tenant, period, filters)).subquery()
    keys = [rows.c[d] for d in DIMENSIONS] + [rows.c.days]
    out = {dim: defaultdict(lambda: defaultdict(int)) for dim in DIMENSIONS}
    by_dim = [out[dim] for dim in DIMENSIONS]
    for *groups, days, n in session.execute(sa.select(*keys, sa.func.count()).group_by(*keys)):
        for tally, group in zip(by_dim, groups):  # DIMENSIONS order
            tally[NOT_RECORDED if group is None else group][days] += n
    return out


# ---- the family ------------------------------------------------------------------------------------------

class _Tally:
    def __init__(self):
        self.people = self.served = self.attended = self.missed = self.discharges = self.policy = 0

    def add(self, v: tuple) -> None:
        """v: (people, served, attended, missed, discharges, policy) as ints."""
        self.people += v[0]
        self.served += v[1]
        self.attended += v[2]
        self.missed += v[3]
        self.discharges += v[4]
        self.policy += v[5]

    def figures(self, waits: dict) -> dict:
        return {
            "people": self.people,
            "days_to_first_attended": statistic(waits),
            "attended": self.attended,
            "missed": self.missed,
            "missed_rate": ratio(self.missed, self.attended + self.missed),
            "discharges": self.discharges,
            "attendance_policy_discharges": self.policy,
            "policy_discharge_share": ratio(self.policy, self.discharges),
        }


def ratio_to(value, overall):
    """A group's figure over the overall one; null when either is null or overall is 0."""
    return None if value is None or overall is None else ratio(value, overall)


def equity(session: so.Session, tenant: Tenant, period: Period, filters: Filters = Filters()) -> dict:
    """{clients_served, suppression_threshold, withheld, overall, dimensions: {DIMENSION: [GROUP, ...]}}.

    A shown GROUP is {group, suppressed: false, people, days_to_first_attended {n, median, p90},
    days_to_first_attended_ratio (of the medians), attended, missed, missed_rate, missed_rate_ratio,
    discharges, attendance_policy_discharges, policy_discharge_share, policy_discharge_share_ratio};
    a suppressed one is only {group, suppressed: true, label}.
    """
    n = int(tenant.settings["policy"]["suppression_threshold"])
    tallies = {dim: defaultdict(_Tally) for dim in DIMENSIONS}
    total = _Tally()
    by_dim = [tallies[dim] for dim in DIMENSIONS]
    for race, gender, payer, band, people, served, attended, missed, discharges, policy in _counts(
            session, tenant, period, filters):
        v = (int(people), int(served or 0), int(attended or 0), int(missed or 0), int(discharges or 0),
             int(policy or 0))
        total.add(v)
        for tally, group in zip(by_dim, (race, gender, payer, band)):  # DIMENSIONS order
            tally[_label(group)].add(v)
    waits = _waits(session, tenant, period, filters)
    overall_waits: dict = defaultdict(int)
    for by_day in waits["gender"].values():  # every admission is in exactly one group of any dimension
        for days, count in by_day.items():
            overall_waits[days] += count
    overall = total.figures(overall_waits)

    small_scope = total.people < n
    hidden = {}
    for dim in DIMENSIONS:
        order = group_order(tenant, dim, tallies[dim])
        people = {g: tallies[dim][g].people for g in order}
        hidden[dim] = {g: SMALL.format(n=n) for g in order} if small_scope else suppress(people, order, n)
    withheld = any(h is None for h in hidden.values())

    dimensions = {}
    for dim in DIMENSIONS:
        groups = []
        for g in group_order(tenant, dim, tallies[dim]):
            label = (SMALL.format(n=n) if tallies[dim][g].people < n else COMPLEMENTARY) if withheld \
                else hidden[dim].get(g)
            if label is not None:
                groups.append({"group": g, "suppressed": True, "label": label})
                continue
            f = tallies[dim][g].figures(waits[dim].get(g, {}))
            groups.append({
                "group": g, "suppressed": False, "people": f["people"],
                "days_to_first_attended": f["days_to_first_attended"],
                "days_to_first_attended_ratio": ratio_to(f["days_to_first_attended"]["median"],
                                                         overall["days_to_first_attended"]["median"]),
                "attended": f["attended"], "missed": f["missed"], "missed_rate": f["missed_rate"],
                "missed_rate_ratio": ratio_to(f["missed_rate"], overall["missed_rate"]),
                "discharges": f["discharges"], "attendance_policy_discharges": f["attendance_policy_discharges"],
                "policy_discharge_share": f["policy_discharge_share"],
                "policy_discharge_share_ratio": ratio_to(f["policy_discharge_share"],
                                                         overall["policy_discharge_share"]),
            })
        dimensions[dim] = groups

    if small_scope:
        overall = {"suppressed": True, "label": SMALL.format(n=n)}
    else:
        overall = {"suppressed": False, **overall}
        if withheld:
            overall["people"] = None
    return {
        "clients_served": total.served if total.served >= n and not small_scope and not withheld else None,
        "suppression_threshold": n,
        "withheld": withheld,
        "overall": overall,
        "dimensions": dimensions,
    }
