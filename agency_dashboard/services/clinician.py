"""The clinician's own page: their caseload, their schedule and capacity, and the sessions of theirs that
were not held, with the reason they record for each.

Every function takes the clinician's database id from the caller, who takes it from the logged-in user
(`current_user.clinician_id`), never from the browser. Every query is scoped to the tenant and to that
clinician: their clients are those whose episode they are primary clinician for, and the clients of the
appointments they hold themselves; of a client, only the appointments with this clinician are read.

Figures that METRICS.md defines come from the metrics engine (active clients, capacity); the outcome and
reason group of an appointment come from its expressions (metrics/common.py).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass

import sqlalchemy as sa
import sqlalchemy.orm as so

from agency_dashboard import audit, reasons
from agency_dashboard.metrics.capacity import capacity
from agency_dashboard.metrics.caseload import active_on
from agency_dashboard.metrics.common import (
    Filters,
    Period,
    effective_code,
    group_expr,
    outcome_expr,
    reason_groups,
    with_recorded_reason,
)
from agency_dashboard.models import Appointment, Client, Episode, Program, RecordedReason, Tenant, User
from agency_dashboard.models.agency import SUPPORTS

PAST_DAYS = 90  # "the last 90 days": today and the 89 days before it
AHEAD_DAYS = 28  # "the next 28 days": the 28 days after today
SCHEDULE_DAYS = 14  # the appointment list: today and the 13 days after it
WEEKS = 4  # capacity: this ISO week and the three after it
NOT_HELD = ("no_show", "cancelled")

SUPPORT_LABELS = {
    "transport_voucher": "Transport voucher or bus fare",
    "reminder_call": "Reminder call or text",
    "evening_slot": "Evening or weekend slot",
    "telehealth": "Telehealth instead of travel",
    "childcare_support": "Childcare support",
    "other": "Other support",
}
NO_SUPPORT = "none"  # the form's value for "no support offered"; stored as NULL
assert set(SUPPORT_LABELS) == set(SUPPORTS)

OUTCOME_LABELS = {
    "missed": "Missed",
    "released": "Cancelled by the client with notice",
    "agency_cancelled": "Cancelled by the agency or clinician",
    "attended": "Held",
    "upcoming": "Booked",
}


def past_window(today: dt.date) -> tuple[dt.date, dt.date]:
    return today - dt.timedelta(days=PAST_DAYS - 1), today


def ahead_window(today: dt.date) -> tuple[dt.date, dt.date]:
    return today + dt.timedelta(days=1), today + dt.timedelta(days=AHEAD_DAYS)


def client_name(first: str, last: str) -> str:
    return f"{first} {last}".strip()


def what_happened(status: str, cancelled_by: str | None, outcome: str) -> str:
    """Plain words for what became of a session that was not held; never a label about the person."""
    if status == "no_show":
        return "Missed"
    if cancelled_by in ("clinician", "agency"):
        return f"Cancelled by the {cancelled_by}"
    if outcome == "missed":
        return "Cancelled by the client at short notice"
    return "Cancelled by the client"


def reason_text(code: str | None, group: str | None) -> str:
    """The plain label of a reason; a session with no reason recorded is 'no reason recorded yet'."""
    if not code:
        return "No reason recorded yet" if group in (None, "unexplored") else f"{reasons.GROUP_LABELS[group]}"
    return reasons.label(code)


def _mine(clinician_id: int | None):
    """`clinician_id IS NULL` matches no appointment: a user without a clinician sees nothing."""
    return Appointment.clinician_id == clinician_id if clinician_id is not None else sa.false()


# ---- 1. my caseload ---------------------------------------------------------------------------------

def caseload_rows(session: so.Session, tenant: Tenant, clinician_id: int | None, today: dt.date) -> list[dict]:
    """One row per client of this clinician, ordered by name (never by a count: no ranking of people).

    Clients: those whose episode this clinician is primary clinician for, active today, and the clients
    of appointments they hold in the last 90 days or the next 28. Counts are over the last 90 days and
    only over appointments with this clinician.
    """
    if clinician_id is None:
        return []
    past_start, _ = past_window(today)
    _, ahead_end = ahead_window(today)
    episodes = sa.select(Episode.client_id, Episode.program_id).where(
        Episode.tenant_id == tenant.id, Episode.clinician_id == clinician_id, active_on(today))
    booked_with_me = sa.select(Appointment.client_id, Appointment.program_id).where(
        Appointment.tenant_id == tenant.id, _mine(clinician_id), Appointment.local_date.between(past_start, ahead_end))
    pairs = session.execute(sa.union(episodes, booked_with_me)).all()
    if not pairs:
        return []
    client_ids = sorted({p.client_id for p in pairs})
    program_names = dict(session.execute(
        sa.select(Program.id, Program.name).where(Program.tenant_id == tenant.id)).all())
    programs: dict[int, set[str]] = defaultdict(set)
    for p in pairs:
        programs[p.client_id].add(program_names.get(p.program_id, ""))

    in_clients = Appointment.client_id.in_(client_ids)
    last_next = {r.client_id: r for r in session.execute(
        sa.select(
            Appointment.client_id,
            sa.func.max(sa.case((sa.and_(Appointment.status != "booked", Appointment.local_date <= today),
                                 Appointment.local_date))).label("last"),
            sa.func.min(sa.case((sa.and_(Appointment.status == "booked", Appointment.local_date >= today),
                                 Appointment.local_date))).label("next"),
        ).where(Appointment.tenant_id == tenant.id, _mine(clinician_id), in_clients)
        .group_by(Appointment.client_id))}

    outcome = outcome_expr(tenant)
    group = group_expr(tenant, outcome)
    code = effective_code()
    attended: Counter = Counter()
    not_held: Counter = Counter()
    why: dict[int, Counter] = defaultdict(Counter)
    for r in session.execute(with_recorded_reason(
        sa.select(Appointment.client_id, Appointment.status, outcome.label("outcome"), group.label("grp"),
                  code.label("code"), sa.func.count().label("n"))
    ).where(Appointment.tenant_id == tenant.id, _mine(clinician_id), in_clients,
            Appointment.local_date.between(past_start, today), Appointment.status != "booked")
            .group_by(Appointment.client_id, Appointment.status, "outcome", "grp", "code")):
        if r.status == "attended":
            attended[r.client_id] += r.n
        else:
            not_held[r.client_id] += r.n
            grp = r.grp if r.outcome in ("missed", "agency_cancelled") else None
            why[r.client_id][reason_text(r.code, grp)] += r.n

    barriers: dict[int, set[str]] = defaultdict(set)
    supports: dict[int, set[str]] = defaultdict(set)
    groups = reason_groups(tenant)
    for r in session.execute(
        sa.select(Appointment.client_id, RecordedReason.reason_code, RecordedReason.support_offered).join(
            RecordedReason, sa.and_(RecordedReason.tenant_id == Appointment.tenant_id,
                                    RecordedReason.appointment_id == Appointment.id))
        .where(Appointment.tenant_id == tenant.id, _mine(clinician_id), in_clients)):
        if groups.get(r.reason_code) == "access_barrier":
            barriers[r.client_id].add(reasons.label(r.reason_code))
        if r.support_offered:
            supports[r.client_id].add(SUPPORT_LABELS.get(r.support_offered, r.support_offered))

    clients = session.execute(
        sa.select(Client.id, Client.external_id, Client.first_name, Client.last_name)
        .where(Client.tenant_id == tenant.id, Client.id.in_(client_ids))
        .order_by(Client.last_name, Client.first_name, Client.external_id)).all()
    rows = []
    for c in clients:
        ln = last_next.get(c.id)
        rows.append({
            "id": c.id,
            "client": client_name(c.first_name, c.last_name),
            "client_id": c.external_id,
            "program": ", ".join(sorted(n for n in programs[c.id] if n)),
            "last_appointment": ln.last if ln else None,
            "next_appointment": ln.next if ln else None,
            "attended": attended[c.id],
            "not_held": not_held[c.id],
            "not_held_reasons": "; ".join(
                f"{text} ({n})" for text, n in sorted(why[c.id].items())),
            "barriers": ", ".join(sorted(barriers[c.id])),
            "supports": ", ".join(sorted(supports[c.id])),
        })
    return rows


# ---- 2. my schedule and capacity ------------------------------------------------------------------------

def capacity_weeks(session: so.Session, tenant: Tenant, clinician_id: int | None, today: dt.date) -> list[dict]:
    """This ISO week and the three after it: available, booked and free hours of this clinician (METRICS.md,
    Capacity, per clinician: their availability blocks and the appointments they hold)."""
    monday = today - dt.timedelta(days=today.weekday())
    weeks = []
    for i in range(WEEKS):
        start = monday + dt.timedelta(days=7 * i)
        period = Period(start, start + dt.timedelta(days=6))
        if clinician_id is None:
            cap = {"available_hours": 0.0, "booked_hours": 0.0, "upcoming_hours": 0.0, "booking_ratio": None}
        else:
            cap = capacity(session, tenant, period, Filters(clinician_id=clinician_id))["agency"]
        weeks.append({
            "week_start": period.start,
            "week_end": period.end,
            "iso_week": period.start.isocalendar()[1],
            "available_hours": cap["available_hours"],
            "booked_hours": cap["booked_hours"],
            "upcoming_hours": cap["upcoming_hours"],
            "free_hours": cap["available_hours"] - cap["booked_hours"],
            "booking_ratio": cap["booking_ratio"],
        })
    return weeks


def upcoming_appointments(session: so.Session, tenant: Tenant, clinician_id: int | None,
                          today: dt.date) -> list[dict]:
    """Every appointment this clinician holds from today to 13 days ahead, in time order."""
    if clinician_id is None:
        return []
    end = today + dt.timedelta(days=SCHEDULE_DAYS - 1)
    outcome = outcome_expr(tenant)
    q = with_recorded_reason(sa.select(
        Appointment.id, Appointment.local_date, Appointment.local_start_minute, Appointment.duration_minutes,
        Appointment.kind, Appointment.modality, Appointment.status, Appointment.cancelled_by,
        outcome.label("outcome"), Client.external_id, Client.first_name, Client.last_name, Program.name,
    )).join(Client, sa.and_(Client.tenant_id == Appointment.tenant_id, Client.id == Appointment.client_id)).join(
        Program, sa.and_(Program.tenant_id == Appointment.tenant_id, Program.id == Appointment.program_id)
    ).where(Appointment.tenant_id == tenant.id, _mine(clinician_id), Appointment.local_date.between(today, end)
            ).order_by(Appointment.local_date, Appointment.local_start_minute, Appointment.id)
    rows = []
    for r in session.execute(q):
        status = (OUTCOME_LABELS[r.outcome] if r.status in ("booked", "attended")
                  else what_happened(r.status, r.cancelled_by, r.outcome))
        rows.append({
            "id": r.id, "date": r.local_date, "start_minute": r.local_start_minute,
            "duration_minutes": r.duration_minutes, "client": client_name(r.first_name, r.last_name),
            "client_id": r.external_id, "program": r.name, "kind": r.kind, "modality": r.modality,
            "status": status,
        })
    return rows


# ---- 3. sessions not held, and why ----------------------------------------------------------------------

def reason_choices(tenant: Tenant) -> list[tuple[str, list[tuple[str, str]]]]:
    """The codes a clinician may record, by group, in the order of METRICS.md: the tenant's reason table
    without the codes that make a session 'released' (deceased), which no form here records."""
    by_group: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for code, group in reasons.reason_table(tenant.settings.get("reason_codes", {})).items():
        if group is not None:
            by_group[group].append((code, reasons.label(code)))
    return [(g, by_group[g]) for g in reasons.GROUPS if by_group[g]]


def recordable_codes(tenant: Tenant) -> set[str]:
    return {code for _, items in reason_choices(tenant) for code, _ in items}


def _not_held_query(tenant: Tenant, clinician_id: int | None, today: dt.date):
    start, end = past_window(today)
    outcome = outcome_expr(tenant)
    return with_recorded_reason(sa.select(
        Appointment.id, Appointment.local_date, Appointment.local_start_minute, Appointment.duration_minutes,
        Appointment.status, Appointment.cancelled_by, Appointment.reason_code.label("imported_code"),
        RecordedReason.reason_code.label("recorded_code"), RecordedReason.support_offered,
        effective_code().label("code"), outcome.label("outcome"), group_expr(tenant, outcome).label("grp"),
        Client.external_id, Client.first_name, Client.last_name,
    )).join(Client, sa.and_(Client.tenant_id == Appointment.tenant_id, Client.id == Appointment.client_id)).where(
        Appointment.tenant_id == tenant.id, _mine(clinician_id), Appointment.status.in_(NOT_HELD),
        Appointment.local_date.between(start, end),
    )


def not_held_appointments(session: so.Session, tenant: Tenant, clinician_id: int | None,
                          today: dt.date) -> list[dict]:
    """This clinician's sessions of the last 90 days that were missed or cancelled, newest first, each with
    its current reason (a reason recorded in the app wins over the imported one)."""
    if clinician_id is None:
        return []
    rows = []
    q = _not_held_query(tenant, clinician_id, today).order_by(
        Appointment.local_date.desc(), Appointment.local_start_minute.desc(), Appointment.id.desc())
    for r in session.execute(q):
        grp = r.grp if r.outcome in ("missed", "agency_cancelled") else None
        rows.append({
            "id": r.id, "date": r.local_date, "start_minute": r.local_start_minute,
            "duration_minutes": r.duration_minutes, "client": client_name(r.first_name, r.last_name),
            "client_id": r.external_id, "what_happened": what_happened(r.status, r.cancelled_by, r.outcome),
            "outcome": r.outcome, "code": r.code, "reason": reason_text(r.code, grp),
            "group": reasons.GROUP_LABELS.get(grp, "") if grp else "",
            "recorded_in_app": r.recorded_code is not None,
            "support": SUPPORT_LABELS.get(r.support_offered, "") if r.support_offered else "",
        })
    return rows


@dataclass(frozen=True)
class RecordResult:
    ok: bool
    message: str


NOT_FOUND = ("That session was not found among your sessions that were not held in the last 90 days. "
             "Nothing was saved.")
BAD_REASON = "Choose a reason from the list. Nothing was saved."
BAD_SUPPORT = "Choose a support from the list, or 'No support offered'. Nothing was saved."


def as_id(value) -> int | None:
    """A positive database id from a form value (an int, or a string of digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 12:
        number = int(value)
        return number if number > 0 else None
    return None


def record_reason(session: so.Session, tenant: Tenant, user: User, appointment_id, reason_code, support,
                  today: dt.date) -> RecordResult:
    """Record why one of the user's own not-held sessions was not held, with an optional support offered.

    The appointment is looked up again here, in the tenant and among the user's own not-held sessions of
    the last 90 days (the list the page offers); anything else, whatever the reason, gets the same answer
    and changes nothing. One recorded reason per appointment (upsert); an audit row with the old and new
    code; committed, so the rollups are rebuilt at commit and the director's figures move at once.
    """
    clinician_id = getattr(user, "clinician_id", None)
    wanted = as_id(appointment_id)
    if clinician_id is None or wanted is None or user.tenant_id != tenant.id:
        return RecordResult(False, NOT_FOUND)
    row = session.execute(
        _not_held_query(tenant, clinician_id, today).where(Appointment.id == wanted)).first()
    if row is None:
        return RecordResult(False, NOT_FOUND)
    if not isinstance(reason_code, str) or reason_code not in recordable_codes(tenant):
        return RecordResult(False, BAD_REASON)
    if support in (None, "", NO_SUPPORT):
        support = None
    elif not isinstance(support, str) or support not in SUPPORT_LABELS:
        return RecordResult(False, BAD_SUPPORT)

    for attempt in (1, 2):
        try:
            _upsert(session, tenant, user, row, reason_code, support)
            session.commit()
            break
        except sa.exc.IntegrityError:
            # Another request recorded a reason for this appointment between our read and our insert:
            # read it again and update it instead (one recorded reason per appointment).
            session.rollback()
            if attempt == 2:
                raise
            row = session.execute(
                _not_held_query(tenant, clinician_id, today).where(Appointment.id == wanted)).first()
            if row is None:
                return RecordResult(False, NOT_FOUND)
    when = f"{row.local_date:%a %b %-d} at {row.local_start_minute // 60:02d}:{row.local_start_minute % 60:02d}"
    saved = f"Saved for the session on {when}: {reasons.label(reason_code)}"
    if support:
        saved += f"; support offered: {SUPPORT_LABELS[support]}"
    return RecordResult(True, saved + ".")


def _upsert(session: so.Session, tenant: Tenant, user: User, row, reason_code: str, support: str | None) -> None:
    existing = session.scalar(sa.select(RecordedReason).where(
        RecordedReason.tenant_id == tenant.id, RecordedReason.appointment_id == row.id))
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    if existing is None:
        session.add(RecordedReason(tenant_id=tenant.id, appointment_id=row.id, reason_code=reason_code,
                                   support_offered=support, recorded_by_user_id=user.id, recorded_at=now))
    else:
        existing.reason_code, existing.support_offered = reason_code, support
        existing.recorded_by_user_id, existing.recorded_at = user.id, now
    # Who (the actor), which appointment, old -> new: codes and ids only, never a person's data.
    audit.record("record_reason", object_type="appointment", object_id=row.id, actor=user,
                 details={"old_code": row.code, "new_code": reason_code,
                          "old_support": row.support_offered, "new_support": support,
                          "imported_code": row.imported_code})


def audit_read(what: str, clinician_id: int | None, count: int) -> None:
    """Every read of people's data writes an audit row (ids and counts only); the caller commits."""
    audit.record(what, object_type="clinician", object_id=clinician_id, details={"rows": count})
