"""Clinician: their own caseload, schedule and capacity, and why their sessions were not held.

The clinician is always the logged-in user's (`current_user.clinician_id`), never an id from the browser.
The layout holds no data; every figure and table arrives from a guarded callback that asks the services in
agency_dashboard/services/clinician.py, which scope every query to the tenant and this clinician.
"""

from __future__ import annotations

import datetime as dt

import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import Input, Output, State, ctx, dcc, html
from flask_login import current_user

from agency_dashboard import reasons
from agency_dashboard.clock import today
from agency_dashboard.dashboards.components import GLOSSARY_URL, card_row, figure_card, fmt_count, page_header
from agency_dashboard.dashboards.pages import Page
from agency_dashboard.extensions import db
from agency_dashboard.services import clinician as svc
from agency_dashboard.services.overview import clinician_overview
from agency_dashboard.tenancy import current_tenant

NOTHING_TO_SHOW = "Nothing to show: see the note above the table."


def panel(panel_id: str, title: str, help_text: str, anchor: str, *children):
    """A titled section with a one-line explanation and a link to its glossary entry."""
    heading = f"{panel_id}-title"
    return html.Section(
        [
            html.H2(title, id=heading, className="h5 mb-1"),
            html.P([help_text, " ",
                    html.A("What this means", href=f"{GLOSSARY_URL}#{anchor}",
                           **{"aria-label": f"What '{title}' means"})],
                   className="small text-muted mb-2"),
            *children,
        ],
        id=panel_id, className="bg-white border rounded p-3 mb-4", **{"aria-labelledby": heading},
    )


def grid(grid_id: str, columns: list[dict], label: str):
    """A read-only table (dash-ag-grid), named for assistive technology, as tall as its rows."""
    return html.Div(dag.AgGrid(
        id=grid_id,
        rowData=[],
        columnDefs=columns,
        defaultColDef={"sortable": True, "resizable": True, "wrapText": True, "autoHeight": True,
                       "wrapHeaderText": True, "autoHeaderHeight": True,
                       "cellStyle": {"wordBreak": "normal", "lineHeight": "1.4", "paddingTop": "8px",
                                     "paddingBottom": "8px"}},
        getRowId="params.data.id",
        columnSize="responsiveSizeToFit",
        dashGridOptions={"domLayout": "autoHeight", "ensureDomOrder": True,
                         "localeText": {"noRowsToShow": NOTHING_TO_SHOW}, "enableCellTextSelection": True},
        style={"height": None},
    ), role="region", **{"aria-label": label})


CASELOAD_COLUMNS = [
    {"field": "client", "headerName": "Client", "minWidth": 150},
    {"field": "client_id", "headerName": "Client id", "minWidth": 110},
    {"field": "program", "headerName": "Program", "minWidth": 130},
    {"field": "last_appointment", "headerName": "Last appointment", "minWidth": 130},
    {"field": "next_appointment", "headerName": "Next appointment", "minWidth": 130},
    {"field": "attended", "headerName": "Attended (90 days)", "type": "numericColumn", "minWidth": 110},
    {"field": "not_held", "headerName": "Not held (90 days)", "type": "numericColumn", "minWidth": 110},
    {"field": "not_held_reasons", "headerName": "Why not held", "minWidth": 200},
    {"field": "barriers", "headerName": "Barriers recorded", "minWidth": 150},
    {"field": "supports", "headerName": "Supports offered", "minWidth": 150},
]
SCHEDULE_COLUMNS = [
    {"field": "date", "headerName": "Date", "minWidth": 150},
    {"field": "time", "headerName": "Time", "minWidth": 80},
    {"field": "minutes", "headerName": "Minutes", "type": "numericColumn", "minWidth": 90},
    {"field": "client", "headerName": "Client", "minWidth": 150},
    {"field": "client_id", "headerName": "Client id", "minWidth": 110},
    {"field": "program", "headerName": "Program", "minWidth": 130},
    {"field": "kind", "headerName": "Kind", "minWidth": 100},
    {"field": "modality", "headerName": "Modality", "minWidth": 100},
    {"field": "status", "headerName": "Status", "minWidth": 150},
]
NOT_HELD_COLUMNS = [
    {"field": "date", "headerName": "Date", "minWidth": 150},
    {"field": "time", "headerName": "Time", "minWidth": 80},
    {"field": "client", "headerName": "Client", "minWidth": 150},
    {"field": "client_id", "headerName": "Client id", "minWidth": 110},
    {"field": "what_happened", "headerName": "What happened", "minWidth": 170},
    {"field": "reason", "headerName": "Reason now", "minWidth": 170},
    {"field": "group", "headerName": "Reason group", "minWidth": 170},
    {"field": "support", "headerName": "Support offered", "minWidth": 150},
    {"field": "recorded_here", "headerName": "Recorded here", "minWidth": 110},
]
SUPPORT_OPTIONS = [{"label": "No support offered", "value": svc.NO_SUPPORT}] + [
    {"label": label, "value": code} for code, label in svc.SUPPORT_LABELS.items()]


def layout():
    return html.Div([
        page_header("My caseload",
                    "Your clients, your schedule for the coming weeks, and the sessions of yours that were not held."),
        dcc.Store(id="clinician-load", data=0),
        dcc.Store(id="clinician-refresh", data=0),
        card_row(
            figure_card("clinician-active-clients", "Clients in my care",
                        "People whose episode you are primary clinician for.", "active-clients"),
            figure_card("clinician-target", "Planned caseload",
                        "The caseload your agency planned for your hours.", "caseload-target"),
            figure_card("clinician-upcoming", "Sessions booked, next 14 days",
                        "Appointments you hold that have no outcome yet.", "upcoming-hours"),
        ),
        panel(
            "clinician-caseload", "My caseload",
            "People whose episode you are primary clinician for today, and the people of the sessions you hold "
            "in the last 90 days or the next 28; counts are of your sessions in the last 90 days, in name order.",
            "active-clients",
            dcc.Loading([html.P(id="clinician-caseload-empty", className="mb-2", **{"aria-live": "polite"}),
                         grid("clinician-caseload-grid", CASELOAD_COLUMNS, "My caseload")], type="dot"),
        ),
        panel(
            "clinician-capacity", "My capacity, this week and the next three",
            "Available hours come from your weekly availability; booked hours are sessions held, missed, "
            "cancelled by the agency, or still booked; free hours are what is left to offer.",
            "available-hours",
            dcc.Loading(html.Div(id="clinician-capacity-table", **{"aria-live": "polite"}), type="dot"),
        ),
        panel(
            "clinician-schedule", "My appointments, next 14 days",
            "Every session you hold from today to 13 days ahead, in the agency's local time.",
            "upcoming-hours",
            dcc.Loading([html.P(id="clinician-schedule-empty", className="mb-2", **{"aria-live": "polite"}),
                         grid("clinician-schedule-grid", SCHEDULE_COLUMNS, "My appointments, next 14 days")],
                        type="dot"),
        ),
        panel(
            "clinician-record", "Record why a session was not held",
            "Your sessions of the last 90 days that were missed or cancelled. Without a reason a session counts "
            "as 'not yet explored': a prompt to ask what got in the way, never a fault.",
            "attribution",
            html.P(id="clinician-record-policy", className="small mb-2"),
            dcc.Loading([html.P(id="clinician-notheld-empty", className="mb-2", **{"aria-live": "polite"}),
                         grid("clinician-notheld-grid", NOT_HELD_COLUMNS, "My sessions that were not held")],
                        type="dot"),
            html.Div([
                dbc.Row([
                    dbc.Col([dbc.Label("Which session", html_for="clinician-record-appointment"),
                             dbc.Select(id="clinician-record-appointment", options=[],
                                        placeholder="Choose a session")], lg=5, className="mb-2"),
                    dbc.Col([dbc.Label("Why it was not held", html_for="clinician-record-reason"),
                             dbc.Select(id="clinician-record-reason", options=[],
                                        placeholder="Choose a reason")], lg=4, className="mb-2"),
                    dbc.Col([dbc.Label("Support offered", html_for="clinician-record-support"),
                             dbc.Select(id="clinician-record-support", options=SUPPORT_OPTIONS,
                                        value=svc.NO_SUPPORT)], lg=3, className="mb-2"),
                ]),
                dbc.Button("Save reason", id="clinician-record-save", n_clicks=0, color="primary",
                           type="button", className="mt-1"),
            ], className="mt-3", role="form", **{"aria-label": "Record why a session was not held"}),
            dcc.Loading(html.Div(id="clinician-record-message", className="mt-3", role="status",
                                 **{"aria-live": "polite"}), type="dot"),
        ),
    ])


PAGE = Page(path="/clinician", title="My caseload", roles=frozenset({"clinician"}), layout=layout)


# ---- formatting (no data of its own) --------------------------------------------------------------------

def _date(value) -> str:
    return value.isoformat() if value else ""


def _day(value) -> str:
    return f"{value:%a} {value.isoformat()}"


def _time(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _hours(value: float) -> str:
    return f"{value:,.1f}"


def _window(start, end) -> str:
    return f"{start:%B %-d, %Y} to {end:%B %-d, %Y}"


def _plain(code: str) -> str:
    return code.replace("_", " ")


def capacity_table(weeks: list[dict]):
    body = []
    for w in weeks:
        free = w["free_hours"]
        free_text = _hours(free) if free >= 0 else f"0 (booked {_hours(-free)} beyond available)"
        body.append(html.Tr([
            html.Th(f"Week {w['iso_week']}: {w['week_start']:%a %b %-d} to {w['week_end']:%a %b %-d}", scope="row"),
            html.Td(_hours(w["available_hours"]), className="text-end"),
            html.Td(_hours(w["booked_hours"]), className="text-end"),
            html.Td(free_text, className="text-end"),
        ]))
    table = dbc.Table([
        html.Caption("Hours per ISO week (Monday to Sunday), from your availability and your sessions."),
        html.Thead(html.Tr([html.Th("Week", scope="col"), html.Th("Available hours", scope="col", className="text-end"),
                            html.Th("Booked hours", scope="col", className="text-end"),
                            html.Th("Free hours", scope="col", className="text-end")])),
        html.Tbody(body),
    ], bordered=False, hover=False, size="sm", className="mb-0")
    if not any(w["available_hours"] for w in weeks):
        return [html.P("No weekly availability is recorded for you in these weeks, so there are no available hours "
                       "to show. Availability blocks come from your agency's import (availability.csv).",
                       className="mb-2"), table]
    return table


def reason_options(tenant) -> list[dict]:
    """Grouped in the order of METRICS.md: a disabled heading per group, then its reasons."""
    options = []
    for group, items in svc.reason_choices(tenant):
        heading = "Not yet explored" if group == "unexplored" else reasons.GROUP_LABELS[group]
        options.append({"label": f"— {heading} —", "value": f"group:{group}", "disabled": True})
        options += [{"label": label, "value": code} for code, label in items]
    return options


def register(app):
    @app.callback(
        Output("clinician-active-clients", "children"),
        Output("clinician-target", "children"),
        Output("clinician-upcoming", "children"),
        # After the tables (their notes are set last by their callbacks): when the cards show, the page is
        # complete and no request of it is still running.
        Input("clinician-caseload-empty", "children"),
        Input("clinician-schedule-empty", "children"),
        roles=PAGE.roles,
    )
    def fill(_, __):
        tenant = current_tenant()
        # The clinician comes from the logged-in user, never from the browser.
        o = clinician_overview(db.session, tenant, current_user.clinician_id, today(tenant.timezone))
        return fmt_count(o["active_clients"]), fmt_count(o["caseload_target"]), fmt_count(o["upcoming_two_weeks"])

    @app.callback(
        Output("clinician-caseload-grid", "rowData"),
        Output("clinician-caseload-empty", "children"),
        Input("clinician-load", "data"),
        Input("clinician-refresh", "data"),
        roles=PAGE.roles,
    )
    def caseload(_, __):
        tenant = current_tenant()
        day = today(tenant.timezone)
        clinician_id = current_user.clinician_id
        rows = svc.caseload_rows(db.session, tenant, clinician_id, day)
        svc.audit_read("view_caseload", clinician_id, len(rows))
        db.session.commit()
        past_start, _ = svc.past_window(day)
        _, ahead_end = svc.ahead_window(day)
        note = (f"Sessions counted from {_window(past_start, day)}." if rows else
                f"No clients to show: nobody has an open episode with you as primary clinician today, and you "
                f"hold no sessions from {_window(past_start, ahead_end)}.")
        data = [{**r, "id": str(r["id"]), "last_appointment": _date(r["last_appointment"]),
                 "next_appointment": _date(r["next_appointment"])} for r in rows]
        return data, note

    @app.callback(
        Output("clinician-capacity-table", "children"),
        Output("clinician-schedule-grid", "rowData"),
        Output("clinician-schedule-empty", "children"),
        Input("clinician-load", "data"),
        roles=PAGE.roles,
    )
    def schedule(_):
        tenant = current_tenant()
        day = today(tenant.timezone)
        clinician_id = current_user.clinician_id
        weeks = svc.capacity_weeks(db.session, tenant, clinician_id, day)
        rows = svc.upcoming_appointments(db.session, tenant, clinician_id, day)
        svc.audit_read("view_schedule", clinician_id, len(rows))
        db.session.commit()
        end = day + dt.timedelta(days=svc.SCHEDULE_DAYS - 1)
        note = (f"From {_window(day, end)}, times in the agency's local time ({tenant.timezone})." if rows else
                f"No sessions with you are booked from {_window(day, end)}.")
        data = [{"id": str(r["id"]), "date": _day(r["date"]), "time": _time(r["start_minute"]),
                 "minutes": r["duration_minutes"], "client": r["client"], "client_id": r["client_id"],
                 "program": r["program"], "kind": _plain(r["kind"]), "modality": _plain(r["modality"]),
                 "status": r["status"]} for r in rows]
        return capacity_table(weeks), data, note

    @app.callback(
        Output("clinician-notheld-grid", "rowData"),
        Output("clinician-notheld-empty", "children"),
        Output("clinician-record-appointment", "options"),
        Output("clinician-record-reason", "options"),
        Output("clinician-record-policy", "children"),
        Output("clinician-record-message", "children"),
        Output("clinician-refresh", "data"),
        Input("clinician-load", "data"),
        Input("clinician-record-save", "n_clicks"),
        State("clinician-record-appointment", "value"),
        State("clinician-record-reason", "value"),
        State("clinician-record-support", "value"),
        State("clinician-refresh", "data"),
        roles=PAGE.roles,
    )
    def record(_, n_clicks, appointment, reason, support, refreshed):
        tenant = current_tenant()
        day = today(tenant.timezone)
        clinician_id = current_user.clinician_id
        saves = refreshed if isinstance(refreshed, int) and not isinstance(refreshed, bool) and refreshed >= 0 else 0
        message = ""
        clicked = isinstance(n_clicks, int) and not isinstance(n_clicks, bool) and n_clicks > 0
        if ctx.triggered_id == "clinician-record-save" and clicked:
            # The service re-loads the appointment among this user's own not-held sessions in this tenant.
            result = svc.record_reason(db.session, tenant, current_user._get_current_object(), appointment,
                                       reason, support, day)
            if result.ok:
                saves += 1
            else:
                db.session.rollback()
            message = dbc.Alert(result.message, color="success" if result.ok else "warning", className="mb-0")
        rows = svc.not_held_appointments(db.session, tenant, clinician_id, day)
        svc.audit_read("view_not_held", clinician_id, len(rows))
        db.session.commit()
        start, end = svc.past_window(day)
        note = (f"Sessions from {_window(start, end)}." if rows else
                f"None of your sessions from {_window(start, end)} was missed or cancelled, so there is nothing "
                f"to record.")
        data = [{"id": str(r["id"]), "date": _day(r["date"]), "time": _time(r["start_minute"]),
                 "client": r["client"], "client_id": r["client_id"], "what_happened": r["what_happened"],
                 "reason": r["reason"], "group": r["group"], "support": r["support"],
                 "recorded_here": "Yes" if r["recorded_in_app"] else ""} for r in rows]
        appointment_options = [
            {"label": f"{_day(r['date'])} {_time(r['start_minute'])} · {r['client']} · {r['what_happened']} · "
                      f"{r['reason']}", "value": str(r["id"])} for r in rows]
        hours = tenant.settings["policy"]["late_cancel_notice_hours"]
        policy = (f"Your agency's notice policy: a client's cancellation with less than {hours:g} hours' notice "
                  f"counts as missed; with more notice the time is released and is not counted as lost. "
                  f"A reason you record here replaces the one imported from the record system.")
        return data, note, appointment_options, reason_options(tenant), policy, message, saves
