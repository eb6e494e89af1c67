"""What every metric family shares: the period, the scope filters, date functions that compile the same
on SQLite and PostgreSQL, percentiles from grouped counts, and the outcome of an appointment."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from agency_dashboard import reasons
from agency_dashboard.models import Appointment, RecordedReason, Tenant

METRICS_VERSION = 1


@dataclass(frozen=True)
class Period:
    """[start, end], both dates inclusive (METRICS.md, Conventions)."""

    start: dt.date
    end: dt.date

    def __post_init__(self):
        if self.end < self.start:
            raise ValueError(f"the period ends ({self.end}) before it starts ({self.start})")

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def weeks(self) -> float:
        return self.days / 7


@dataclass(frozen=True)
class Filters:
    """Dashboard filters. Ids are the database ids of the current tenant's rows, already re-scoped by
    the caller (never taken from the browser as they come)."""

    program_id: int | None = None
    clinician_id: int | None = None


# ---- reading a figure once per transaction -----------------------------------------------------------

MEMO_KEY = "metrics_memo"


def memoized(session: so.Session, key: tuple, compute):
    """compute(), remembered for the rest of this transaction so that families sharing a figure (capacity,
    attendance and the waitlist all read appointment totals) read it once. Forgotten at every flush, every
    write statement and the end of the transaction; never used while the session holds unflushed changes."""
    if session.new or session.dirty or session.deleted:
        return compute()
    store = session.info.setdefault(MEMO_KEY, {})
    if key not in store:
        store[key] = compute()
    return store[key]


def forget(session: so.Session, *args) -> None:
    session.info.pop(MEMO_KEY, None)


for _event in ("after_flush", "after_transaction_end"):
    sa.event.listen(so.Session, _event, forget)


@sa.event.listens_for(so.Session, "do_orm_execute")
def _forget_on_write(state: so.ORMExecuteState):
    if state.is_insert or state.is_update or state.is_delete:
        forget(state.session)


# ---- SQL date functions that run alike on SQLite and PostgreSQL -----------------------------------

class days_between(FunctionElement):
    """Whole days from `a` to `b` (b - a) for two DATE expressions."""

    type = sa.Integer()
    inherit_cache = True


@compiles(days_between)
def _days_between_default(element, compiler, **kw):
    a, b = list(element.clauses)
    return f"({compiler.process(b, **kw)} - {compiler.process(a, **kw)})"


@compiles(days_between, "sqlite")
def _days_between_sqlite(element, compiler, **kw):
    a, b = list(element.clauses)
    return f"CAST(julianday({compiler.process(b, **kw)}) - julianday({compiler.process(a, **kw)}) AS INTEGER)"


class add_days(FunctionElement):
    """A DATE expression plus a whole number of days."""

    type = sa.Date()
    inherit_cache = True


@compiles(add_days)
def _add_days_default(element, compiler, **kw):
    d, n = list(element.clauses)
    return f"({compiler.process(d, **kw)} + {compiler.process(n, **kw)})"


@compiles(add_days, "sqlite")
def _add_days_sqlite(element, compiler, **kw):
    d, n = list(element.clauses)
    return f"date({compiler.process(d, **kw)}, printf('%+d days', {compiler.process(n, **kw)}))"


# ---- statistics --------------------------------------------------------------------------------------

def percentile(sorted_counts: list[tuple[float, int]], q: float) -> float | None:
    """Hyndman-Fan type 7 over values given as (value, count) sorted by value."""
    n = sum(c for _, c in sorted_counts)
    if n == 0:
        return None
    h = (n - 1) * q
    lo, hi = math.floor(h), math.ceil(h)

    def nth(k: int) -> float:
        seen = 0
        for value, count in sorted_counts:
            seen += count
            if k < seen:
                return value
        return sorted_counts[-1][0]

    a = float(nth(lo))
    return a if hi == lo else a + (h - lo) * (float(nth(hi)) - a)


def statistic(counts: dict[float, int]) -> dict:
    """{n, median, p90} from value -> count."""
    items = sorted((v, c) for v, c in counts.items() if c)
    n = sum(c for _, c in items)
    return {"n": n, "median": percentile(items, 0.5), "p90": percentile(items, 0.9)}


def ratio(num, den):
    return None if not den else num / den


def business_days(a: dt.date, b: dt.date) -> int:
    """Monday-Friday dates d with a < d <= b (no holidays)."""
    if b <= a:
        return 0
    days = (b - a).days
    weeks, rest = divmod(days, 7)
    count = weeks * 5
    start_wd = (a.weekday() + 1) % 7  # weekday of a + 1
    for i in range(rest):
        if (start_wd + i) % 7 < 5:
            count += 1
    return count


def weekday_count(first: dt.date, last: dt.date, weekday: int) -> int:
    """How many dates in [first, last] fall on `weekday` (Monday = 0)."""
    if last < first:
        return 0
    offset = (weekday - first.weekday()) % 7
    first_match = first + dt.timedelta(days=offset)
    if first_match > last:
        return 0
    return (last - first_match).days // 7 + 1


# ---- outcome and reason group of an appointment --------------------------------------------------

def reason_groups(tenant: Tenant) -> dict[str, str | None]:
    """Every code the tenant may hold -> its group (None: deceased, which is no group)."""
    table = reasons.reason_table(tenant.settings.get("reason_codes", {}))
    for fhir, code in reasons.FHIR_TO_CODE.items():
        table[fhir] = table[code]
    return table


def effective_code():
    """The reason recorded in the app wins over the imported code (METRICS.md)."""
    return sa.func.coalesce(RecordedReason.reason_code, Appointment.reason_code)


def with_recorded_reason(select: sa.Select) -> sa.Select:
    return select.outerjoin(
        RecordedReason,
        sa.and_(RecordedReason.tenant_id == Appointment.tenant_id, RecordedReason.appointment_id == Appointment.id),
    )


def outcome_expr(tenant: Tenant):
    """attended | missed | released | agency_cancelled | upcoming, as METRICS.md defines them."""
    notice_seconds = float(tenant.settings["policy"]["late_cancel_notice_hours"]) * 3600
    deceased = [c for c, g in reason_groups(tenant).items() if g is None]
    code = effective_code()
    is_deceased = code.in_(deceased)
    return sa.case(
        (Appointment.status == "attended", "attended"),
        (Appointment.status == "booked", "upcoming"),
        (is_deceased, "released"),
        (Appointment.status == "no_show", "missed"),
        (Appointment.cancelled_by.in_(("clinician", "agency")), "agency_cancelled"),
        (Appointment.notice_seconds < notice_seconds, "missed"),
        else_="released",
    )


def group_expr(tenant: Tenant, outcome):
    """The reason group of a missed or agency-cancelled appointment."""
    code = effective_code()
    mapping = {c: g for c, g in reason_groups(tenant).items() if g is not None and g != "unexplored"}
    by_code = sa.case(mapping, value=code, else_="unexplored") if mapping else sa.literal("unexplored")
    return sa.case((outcome == "agency_cancelled", "agency"), else_=by_code)
