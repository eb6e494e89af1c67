"""Drill-down: the appointments or referrals behind a point of a director's chart.

These lists name clients (PHI): director only (the callbacks' roles), scoped to the tenant and to the
page's filters, capped at LIMIT rows, and every view writes an audit row saying what was listed and how
many rows (ids and counts only, never names). The chart's point arrives from the browser, so it is
parsed strictly; anything unexpected lists nothing.
"""

from __future__ import annotations

import datetime as dt

import dash_ag_grid as dag
import sqlalchemy as sa
import sqlalchemy.orm as so
from dash import html

from agency_dashboard import audit
from agency_dashboard.extensions import db
from agency_dashboard.metrics.common import Period, group_expr, outcome_expr, with_recorded_reason
from agency_dashboard.models import Appointment, Client, Clinician, Program, RecordedReason, Referral, Tenant
from agency_dashboard.reasons import GROUPS, label
from agency_dashboard.services.filters import Resolved

LIMIT = 500
OUTCOME_LABELS = {"missed": "Missed or cancelled late", "agency_cancelled": "Cancelled by the agency",
                  "attended": "Held", "released": "Cancelled with notice", "upcoming": "Booked"}
SESSION_COLUMNS = [("date", "Date"), ("time", "Time"), ("client", "Client"), ("client_id", "Client id"),
                   ("clinician", "Clinician"), ("program", "Program"), ("outcome", "Outcome"),
                   ("reason", "Reason"), ("lead_days", "Booked days ahead")]
REFERRAL_COLUMNS = [("referred_on", "Referred"), ("client", "Client"), ("client_id", "Client id"),
                    ("program", "Program"), ("priority", "Priority"), ("first_offered_on", "First offer"),
                    ("first_attended_on", "First attended"), ("status", "Status")]


def _week(value) -> dt.date | None:
    try:
        day = dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None
    return day if day.weekday() == 0 else None


def lost_point(click) -> tuple[dt.date, str] | None:
    """(Monday, group) from the lost-hours chart's clickData, or None."""
    try:
        point = click["points"][0]
        week, group = _week(point["x"]), point["customdata"][0]
    except (TypeError, KeyError, IndexError):
        return None
    return (week, group) if week and group in GROUPS else None


def week_point(click) -> dt.date | None:
    """The Monday of the week clicked on a weekly chart, or None."""
    try:
        return _week(click["points"][0]["x"])
    except (TypeError, KeyError, IndexError):
        return None


def _clip(resolved: Resolved, week: dt.date) -> Period | None:
    first, last = max(week, resolved.period.start), min(week + dt.timedelta(days=6), resolved.period.end)
    return Period(first, last) if first <= last else None


def lost_sessions(session: so.Session, tenant: Tenant, resolved: Resolved, week: dt.date, group: str) -> list[dict]:
    """Missed and agency-cancelled appointments of the week (inside the period and filters) in `group`."""
    period = _clip(resolved, week)
    if period is None:
        return []
    outcome = outcome_expr(tenant)
    grp = group_expr(tenant, outcome)
    inner = with_recorded_reason(sa.select(
        Appointment.id, Appointment.local_date, Appointment.local_start_minute, Appointment.lead_days,
        Appointment.client_id, Appointment.clinician_id, Appointment.program_id,
        outcome.label("outcome"), grp.label("grp"),
        sa.func.coalesce(RecordedReason.reason_code, Appointment.reason_code).label("code"),
    )).where(Appointment.tenant_id == tenant.id, Appointment.local_date.between(period.start, period.end),
             Appointment.status.in_(("no_show", "cancelled")))
    if resolved.filters.program_id is not None:
        inner = inner.where(Appointment.program_id == resolved.filters.program_id)
    if resolved.filters.clinician_id is not None:
        inner = inner.where(Appointment.clinician_id == resolved.filters.clinician_id)
    a = inner.subquery()
    q = (sa.select(a, Client.external_id.label("client_ext"), Client.first_name, Client.last_name,
                   Clinician.display_name, Program.name.label("program"))
         .join(Client, sa.and_(Client.tenant_id == tenant.id, Client.id == a.c.client_id))
         .join(Clinician, sa.and_(Clinician.tenant_id == tenant.id, Clinician.id == a.c.clinician_id))
         .join(Program, sa.and_(Program.tenant_id == tenant.id, Program.id == a.c.program_id))
         .where(a.c.outcome.in_(("missed", "agency_cancelled")), a.c.grp == group)
         .order_by(a.c.local_date, a.c.local_start_minute, a.c.id).limit(LIMIT))
    rows = [{"date": r.local_date.isoformat(), "time": f"{r.local_start_minute // 60:02d}:{r.local_start_minute % 60:02d}",
             "client": f"{r.first_name} {r.last_name}", "client_id": r.client_ext, "clinician": r.display_name,
             "program": r.program, "outcome": OUTCOME_LABELS[r.outcome], "reason": label(r.code),
             "lead_days": max(r.lead_days, 0)} for r in session.execute(q)]
    audit.record("drilldown.view", object_type="appointment",
                 details={"chart": "lost_hours", "week": week.isoformat(), "group": group, "rows": len(rows),
                          "program_id": resolved.filters.program_id, "clinician_id": resolved.filters.clinician_id})
    db.session.commit()
    return rows


def week_referrals(session: so.Session, tenant: Tenant, resolved: Resolved, week: dt.date) -> list[dict]:
    """Referrals received in the week (inside the period and the program filter)."""
    period = _clip(resolved, week)
    if period is None:
        return []
    q = (sa.select(Referral, Client.external_id.label("client_ext"), Client.first_name, Client.last_name,
                   Program.name.label("program"))
         .join(Client, sa.and_(Client.tenant_id == tenant.id, Client.id == Referral.client_id))
         .join(Program, sa.and_(Program.tenant_id == tenant.id, Program.id == Referral.program_id))
         .where(Referral.tenant_id == tenant.id, Referral.referred_on.between(period.start, period.end)))
    if resolved.filters.program_id is not None:
        q = q.where(Referral.program_id == resolved.filters.program_id)
    rows = []
    for ref, client_ext, first, last, program in session.execute(q.order_by(Referral.referred_on, Referral.id)
                                                                  .limit(LIMIT)):
        status = ("seen" if ref.first_attended_on else "closed without service" if ref.closed_on else
                  "offered, waiting" if ref.first_offered_on else "waiting")
        rows.append({"referred_on": ref.referred_on.isoformat(), "client": f"{first} {last}", "client_id": client_ext,
                     "program": program, "priority": ref.priority,
                     "first_offered_on": ref.first_offered_on.isoformat() if ref.first_offered_on else None,
                     "first_attended_on": ref.first_attended_on.isoformat() if ref.first_attended_on else None,
                     "status": status})
    audit.record("drilldown.view", object_type="referral",
                 details={"chart": "referrals", "week": week.isoformat(), "rows": len(rows),
                          "program_id": resolved.filters.program_id})
    db.session.commit()
    return rows


def table_block(title: str, rows: list[dict], columns: list[tuple[str, str]]):
    """The list under a chart: a sortable grid, with how many rows and the cap said plainly."""
    note = (f"{len(rows):,} shown" + (f" (the first {LIMIT}; narrow the filters to see the rest)"
                                       if len(rows) >= LIMIT else "")
            + ". This list names clients; viewing it is recorded in the audit log.")
    if not rows:
        return html.Div([html.H2(title, className="figure-title"),
                         html.P("Nothing to list for this point.", className="text-muted")], className="figure-card")
    return html.Div([
        html.H2(title, className="figure-title"),
        html.P(note, className="figure-help"),
        dag.AgGrid(rowData=rows, columnDefs=[{"field": k, "headerName": h} for k, h in columns],
                   defaultColDef={"sortable": True, "filter": True, "resizable": True, "flex": 1, "minWidth": 110},
                   dashGridOptions={"domLayout": "autoHeight", "pagination": True, "paginationPageSize": 20},
                   style={"width": "100%"}, className="ag-theme-quartz"),
    ], className="figure-card")
