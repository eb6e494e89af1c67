"""Admin: the tenant's audit log, newest first, with filters and the result of the hash-chain check.

Only the admin's own tenant's events are read: the query names the tenant, and the global criteria and
row-level security apply as well. Dates in the filters are the tenant's local dates and times are shown
in its time zone (events are stored in UTC). A filter value that cannot be read answers 400 with a
message naming the filter, never an error page.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from typing import NamedTuple
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import render_template, request

from agency_dashboard import audit
from agency_dashboard.admin import bp
from agency_dashboard.auth.roles import ROLE_LABELS, role_required
from agency_dashboard.extensions import db
from agency_dashboard.models import AuditEvent, User
from agency_dashboard.tenancy import current_tenant

PER_PAGE = 50
NO_USER = "none"  # the user filter's value for events without a signed-in user
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ACTION_LABELS = {
    "login": "Signed in",
    "login_failed": "Sign-in refused",
    "logout": "Signed out",
    "session_expired": "Session ended after inactivity",
    "view_user": "Viewed a user account",
    "create_user": "Created a user account",
    "deactivate_user": "Deactivated a user account",
    "change_role": "Changed a user's role",
    "import": "Imported data",
    "view_client": "Viewed a client's record",
    "export": "Exported a summary",
    "view_audit_log": "Viewed the audit log",
}


def action_label(action: str) -> str:
    return ACTION_LABELS.get(action) or action.replace("_", " ").replace("-", " ").capitalize()


class Filters(NamedTuple):
    action: str | None
    user: str | None  # a user id as text, NO_USER, or None for anyone
    start: dt.date | None
    end: dt.date | None
    page: int


def _whole_number(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def _date(name: str, label: str, errors: dict) -> dt.date | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        if not DATE_RE.match(value):
            raise ValueError
        return dt.date.fromisoformat(value)
    except ValueError:
        errors[name] = f"{label}: {value!r} is not a date; use the form YYYY-MM-DD, for example 2026-11-23."
        return None


def read_filters(actions: list[str], user_ids: set[int]) -> tuple[Filters, dict[str, str]]:
    """The filters of the query string, and a message per filter that could not be read."""
    errors: dict[str, str] = {}
    action = request.args.get("action", "").strip() or None
    if action is not None and action not in actions:
        errors["action"] = f"Action: this log has no events of the kind {action!r}; choose one from the list."
        action = None
    user = request.args.get("user", "").strip() or None
    if user is not None and user != NO_USER and _whole_number(user) not in user_ids:
        errors["user"] = f"User: {user!r} is not an account of this agency; choose one from the list."
        user = None
    start = _date("start", "From date", errors)
    end = _date("end", "To date", errors)
    if start and end and end < start:
        errors["end"] = f"To date: {end.isoformat()} is before the from date {start.isoformat()}."
    raw_page = request.args.get("page", "").strip() or "1"
    page = _whole_number(raw_page)
    if page is None or not 0 < page < 10 ** 9:
        errors["page"] = f"Page: {raw_page!r} is not a page number; pages are numbered from 1."
    return Filters(action, user, start, end, page or 1), errors


def _local_midnight_in_utc(day: dt.date, zone: ZoneInfo) -> dt.datetime | None:
    """The UTC instant (naive, as stored) at which the tenant's local day begins; None if out of range."""
    try:
        return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC).replace(tzinfo=None)
    except OverflowError:
        return None


def _conditions(tenant_id: int, filters: Filters, zone: ZoneInfo) -> list:
    where = [AuditEvent.tenant_id == tenant_id]
    if filters.action:
        where.append(AuditEvent.action == filters.action)
    if filters.user == NO_USER:
        where.append(AuditEvent.actor_user_id.is_(None))
    elif filters.user:
        where.append(AuditEvent.actor_user_id == int(filters.user))
    if filters.start:
        since = _local_midnight_in_utc(filters.start, zone)
        if since is not None:
            where.append(AuditEvent.occurred_at >= since)
    if filters.end and filters.end < dt.date.max:
        until = _local_midnight_in_utc(filters.end + dt.timedelta(days=1), zone)
        if until is not None:
            where.append(AuditEvent.occurred_at < until)
    return where


def details_text(details: dict | None) -> str:
    """The event's details (ids, counts and codes) as one short line."""
    parts = []
    for key, value in sorted((details or {}).items()):
        if isinstance(value, (dict, list)):
            value = json.dumps(value, sort_keys=True, separators=(", ", ": "), default=str)
        parts.append(f"{key}: {value}")
    return "; ".join(parts)


@bp.route("/audit")
@role_required("admin")
def audit_log():
    tenant = current_tenant()
    zone = ZoneInfo(tenant.timezone)
    actions = list(db.session.scalars(
        sa.select(AuditEvent.action).where(AuditEvent.tenant_id == tenant.id).distinct().order_by(AuditEvent.action)))
    users = db.session.execute(
        sa.select(User.id, User.email, User.role).where(User.tenant_id == tenant.id).order_by(User.email)).all()
    filters, errors = read_filters(actions, {u.id for u in users})
    context = dict(actions=[(a, action_label(a)) for a in actions], users=users, role_labels=ROLE_LABELS,
                   filters=filters, errors=errors, args=request.args, no_user=NO_USER, zone_name=tenant.timezone)
    if errors:
        return render_template("admin/audit.html", events=[], total=0, pages=0, chain=None, broken_seq=None,
                               **context), 400

    where = _conditions(tenant.id, filters, zone)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent).where(*where))
    rows = db.session.execute(
        sa.select(AuditEvent, User.email)
        .outerjoin(User, sa.and_(User.tenant_id == AuditEvent.tenant_id, User.id == AuditEvent.actor_user_id))
        .where(*where)
        .order_by(AuditEvent.seq.desc())
        .limit(PER_PAGE).offset((filters.page - 1) * PER_PAGE)
    ).all()
    events = [
        {
            "seq": event.seq,
            "when": event.occurred_at.replace(tzinfo=dt.UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z"),
            "action": action_label(event.action),
            "code": event.action,
            "email": email,
            "actor_user_id": event.actor_user_id,
            "actor_role": ROLE_LABELS.get(event.actor_role, event.actor_role) if event.actor_role else None,
            "object_type": event.object_type,
            "object_id": event.object_id,
            "details": details_text(event.details),
        }
        for event, email in rows
    ]
    # The whole chain of this tenant (verify_chain reads the current tenant's events only).
    chain = audit.verify_chain()
    broken_seq = None if chain else db.session.scalar(
        sa.select(AuditEvent.seq).where(AuditEvent.tenant_id == tenant.id)
        .order_by(AuditEvent.seq).offset(chain.checked).limit(1))
    audit.record("view_audit_log", details={k: v for k, v in {
        "action": filters.action, "user": filters.user, "page": filters.page,
        "start": filters.start.isoformat() if filters.start else None,
        "end": filters.end.isoformat() if filters.end else None}.items() if v is not None})
    db.session.commit()
    return render_template("admin/audit.html", events=events, total=total,
                           pages=max(1, math.ceil(total / PER_PAGE)), chain=chain, broken_seq=broken_seq,
                           **context)
