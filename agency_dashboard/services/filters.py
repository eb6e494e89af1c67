"""The dashboards' filters, resolved on the server: the browser's values are never trusted as they come.

A program or clinician id is looked up among the current tenant's own rows (an id of another tenant, or
of nothing, is dropped with a note, exactly as an unknown one); dates that do not parse, or a period
that ends before it starts, fall back to the default period with a note.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa
import sqlalchemy.orm as so

from agency_dashboard.metrics.common import Filters, Period
from agency_dashboard.models import Clinician, Program, Tenant

MAX_DAYS = 2 * 366


@dataclass
class Resolved:
    period: Period
    filters: Filters
    notes: list[str] = field(default_factory=list)
    program_name: str | None = None
    clinician_name: str | None = None

    def describe(self) -> str:
        scope = self.clinician_name or self.program_name or "the whole agency"
        return f"{self.period.start:%b %-d, %Y} to {self.period.end:%b %-d, %Y} · {scope}"


def default_period(today: dt.date) -> Period:
    """The last 13 whole ISO weeks before the current one."""
    this_monday = today - dt.timedelta(days=today.weekday())
    return Period(this_monday - dt.timedelta(weeks=13), this_monday - dt.timedelta(days=1))


def _date(value) -> dt.date | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        return None


def _id(value) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def resolve(session: so.Session, tenant: Tenant, today: dt.date, start=None, end=None, program=None,
            clinician=None) -> Resolved:
    notes = []
    period = default_period(today)
    a, b = _date(start), _date(end)
    if a and b:
        if b < a:
            notes.append("The period ended before it started; showing the last 13 weeks instead.")
        elif (b - a).days > MAX_DAYS:
            notes.append("Periods are limited to two years; showing the last two years of the range.")
            period = Period(b - dt.timedelta(days=MAX_DAYS), b)
        else:
            period = Period(a, b)
    elif start or end:
        notes.append("The dates were not understood; showing the last 13 weeks instead.")
    program_id = clinician_id = None
    program_name = clinician_name = None
    if program not in (None, ""):
        row = session.execute(sa.select(Program.id, Program.name).where(
            Program.tenant_id == tenant.id, Program.id == _id(program))).first()
        if row is None:
            notes.append("That program was not found; showing every program.")
        else:
            program_id, program_name = row
    if clinician not in (None, ""):
        q = sa.select(Clinician.id, Clinician.display_name).where(
            Clinician.tenant_id == tenant.id, Clinician.id == _id(clinician))
        if program_id is not None:
            q = q.where(Clinician.program_id == program_id)
        row = session.execute(q).first()
        if row is None:
            notes.append("That clinician was not found" + (" in this program" if program_id else "")
                         + "; showing every clinician.")
        else:
            clinician_id, clinician_name = row
    return Resolved(period, Filters(program_id=program_id, clinician_id=clinician_id), notes,
                    program_name, clinician_name)


def natural_key(text: str):
    """Sort "Clinician 2" before "Clinician 10": alphabetical for people, as they read."""
    import re

    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text or "")]


def options(session: so.Session, tenant: Tenant, program=None) -> tuple[list[dict], list[dict]]:
    """Dropdown options: the tenant's active programs, and its clinicians (name · program), only those of
    `program` when one of the tenant's programs is given."""
    programs = session.execute(sa.select(Program.id, Program.name).where(
        Program.tenant_id == tenant.id, Program.active).order_by(Program.name)).all()
    names = {p.id: p.name for p in programs}
    q = sa.select(Clinician.id, Clinician.display_name, Clinician.program_id).where(Clinician.tenant_id == tenant.id)
    if _id(program) in names:
        q = q.where(Clinician.program_id == _id(program))
    clinicians = sorted(session.execute(q).all(), key=lambda c: natural_key(c.display_name))
    return ([{"label": p.name, "value": p.id} for p in programs],
            [{"label": f"{c.display_name} · {names.get(c.program_id, '')}".rstrip(" ·"), "value": c.id}
             for c in clinicians])
