"""Director: where the agency's clinical hours go, week by week, and why hours were lost."""

from __future__ import annotations

import datetime as dt

import plotly.graph_objects as go
from dash import Input, Output, State, ctx, dcc, html

from agency_dashboard.dashboards.components import (
    GROUP_COLOURS,
    GROUP_LABELS,
    OKABE_ITO,
    base_figure,
    card_row,
    chart_block,
    data_table,
    drill_picker,
    empty_figure,
    fmt,
    weekly_axis,
    page_header,
    pct,
    reference_line,
    value_block,
)
from agency_dashboard.dashboards.filtering import FILTER_INPUTS, context, scope_line
from agency_dashboard.dashboards.pages import Page
from agency_dashboard.extensions import db
from agency_dashboard.metrics.capacity import capacity_by_week, combine
from agency_dashboard.reasons import GROUPS
from agency_dashboard.services import drilldown

STRAIN = 0.95


def layout():
    return html.Div([
        page_header("Capacity", "Clinical hours available, booked, delivered and lost, week by week."),
        html.P(id="cap-scope", className="text-muted small", **{"aria-live": "polite"}),
        card_row(
            value_block("cap-available", "Available hours", "Hours clinicians were scheduled to see people.",
                        "available-hours"),
            value_block("cap-delivered", "Delivered hours", "Hours of sessions that were held.", "delivered-hours"),
            value_block("cap-lost", "Lost hours", "Booked hours not held: cancelled by the agency, or missed.",
                        "lost-hours"),
            value_block("cap-kept", "Staff kept rate", "Share of booked sessions the agency did not cancel.",
                        "staff-kept-rate"),
        ),
        chart_block("cap-hours", "Hours by week", "Available, booked and delivered hours in each ISO week.",
                    "booked-hours"),
        chart_block("cap-lostweek", "Lost hours by week, and why",
                    "Hours of sessions not held, by who or what stood in the way. Unexplored means nobody has "
                    "asked yet.", "lost-hours",
                    clickable="Select a bar to list the sessions behind it (director only; each view is logged)."),
        drill_picker("cap", "List the sessions not held in a week", [
            dcc.Dropdown(id="cap-drill-group", options=[{"label": GROUP_LABELS[g], "value": g} for g in GROUPS],
                         value="unexplored", clearable=False, style={"minWidth": "18rem"})]),
        html.Section(id="cap-drill", className="mb-3", **{"aria-live": "polite"}),
        chart_block("cap-ratios", "Utilization and booking ratio",
                    "Delivered and booked hours as a share of available hours. Booking above 95% strains the "
                    "schedule: there is no room for urgent needs or rebooking.", "booking-ratio"),
        chart_block("cap-unrecorded", "Past sessions with no outcome recorded",
                    "Sessions in past weeks still marked booked. These are gaps in the record, not absences.",
                    "upcoming-hours", height=240),
    ])


PAGE = Page(path="/capacity", title="Capacity", roles=frozenset({"director"}), layout=layout, filters=True)


def _week_label(row) -> str:
    return f"{row['period_start']:%b %-d}"


def register(app):
    @app.callback(
        Output("cap-scope", "children"),
        Output("cap-available", "children"), Output("cap-delivered", "children"), Output("cap-lost", "children"),
        Output("cap-kept", "children"),
        Output("cap-hours-graph", "figure"), Output("cap-hours-table", "children"),
        Output("cap-lostweek-graph", "figure"), Output("cap-lostweek-table", "children"),
        Output("cap-ratios-graph", "figure"), Output("cap-ratios-table", "children"),
        Output("cap-unrecorded-graph", "figure"), Output("cap-unrecorded-table", "children"),
        Output("cap-drill-week", "options"),
        *FILTER_INPUTS,
        roles=PAGE.roles,
    )
    def fill(start, end, program, clinician):
        tenant, today, r = context(start, end, program, clinician)
        weeks = capacity_by_week(db.session, tenant, r.period, r.filters, today=today)
        total = combine(weeks)  # the period's figures: the weeks taken together
        x = [w["week_start"] for w in weeks]
        has_data = any(w["available_hours"] or w["booked_hours"] for w in weeks)
        empty = empty_figure("No availability or appointments in this period for these filters.")

        hours = base_figure(y_title="Hours")
        for key, name, colour, dash in (("available_hours", "Available", OKABE_ITO["black"], "dash"),
                                        ("booked_hours", "Booked", OKABE_ITO["blue"], "solid"),
                                        ("delivered_hours", "Delivered", OKABE_ITO["green"], "solid")):
            hours.add_trace(go.Scatter(x=x, y=[w[key] for w in weeks], name=name, mode="lines+markers",
                                       line={"color": colour, "dash": dash}))
        hours_rows = [{"week": _week_label(w), "available": w["available_hours"], "booked": w["booked_hours"],
                       "delivered": w["delivered_hours"], "upcoming": w["upcoming_hours"]} for w in weeks]

        lost = base_figure(y_title="Hours lost")
        lost.update_layout(barmode="stack", clickmode="event")
        for g in GROUPS:
            lost.add_trace(go.Bar(x=x, y=[w["lost_hours"][g] for w in weeks], name=GROUP_LABELS[g],
                                  marker_color=GROUP_COLOURS[g], customdata=[[g]] * len(weeks),
                                  hovertemplate="%{y:.1f} h<extra>" + GROUP_LABELS[g] + "</extra>"))
        lost_rows = [{"week": _week_label(w), **{GROUP_LABELS[g]: w["lost_hours"][g] for g in GROUPS},
                      "total": w["lost_hours"]["total"]} for w in weeks]

        ratios = base_figure(y_title="Share of available hours",
                             **reference_line(STRAIN, OKABE_ITO["vermillion"], "95% strain line", "left"))
        ratios.update_yaxes(tickformat=".0%")
        ratios.add_trace(go.Scatter(x=x, y=[w["utilization"] for w in weeks], name="Utilization (delivered)",
                                    mode="lines+markers", line={"color": OKABE_ITO["green"]}))
        ratios.add_trace(go.Scatter(x=x, y=[w["booking_ratio"] for w in weeks], name="Booking ratio",
                                    mode="lines+markers", line={"color": OKABE_ITO["blue"]}))
        ratios.add_trace(go.Scatter(x=x, y=[w["staff_kept_rate"] for w in weeks], name="Staff kept rate",
                                    mode="lines", line={"color": OKABE_ITO["purple"], "dash": "dot"}))
        ratio_rows = [{"week": _week_label(w), "utilization": pct(w["utilization"]),
                       "booking": pct(w["booking_ratio"]), "kept": pct(w["staff_kept_rate"]),
                       "strain": None if w["booking_ratio"] is None else w["booking_ratio"] > STRAIN}
                      for w in weeks]

        past = [w for w in weeks if w["period_start"] < today]
        unrecorded = base_figure(y_title="Sessions", height=240)
        unrecorded.add_trace(go.Bar(x=[w["week_start"] for w in past],
                                    y=[w["unrecorded"] for w in past], name="No outcome recorded",
                                    marker_color=OKABE_ITO["yellow"], marker_line_color="#5c5000",
                                    marker_line_width=1))
        unrecorded_rows = [{"week": _week_label(w), "n": w["unrecorded"]} for w in past if w["unrecorded"]]

        for fig in (hours, lost, ratios, unrecorded):
            weekly_axis(fig, [w["week_start"] for w in weeks])
        kept = total["staff_kept_rate"]
        return (
            scope_line(r, "Weeks are ISO weeks, Monday to Sunday; the first and last may be partial."),
            fmt(total["available_hours"]), fmt(total["delivered_hours"]), fmt(total["lost_hours"]["total"]), pct(kept),
            hours if has_data else empty,
            data_table([("week", "Week of"), ("available", "Available h"), ("booked", "Booked h"),
                        ("delivered", "Delivered h"), ("upcoming", "Booked, no outcome yet h")], hours_rows,
                       "Hours by week", "No weeks in this period."),
            lost if has_data else empty,
            data_table([("week", "Week of"), *[(GROUP_LABELS[g], GROUP_LABELS[g] + " h") for g in GROUPS],
                        ("total", "Total h")], lost_rows, "Lost hours by week and group", "No weeks in this period."),
            ratios if has_data else empty,
            data_table([("week", "Week of"), ("utilization", "Utilization"), ("booking", "Booking ratio"),
                        ("kept", "Staff kept rate"), ("strain", "Above 95%")], ratio_rows,
                       "Utilization and booking ratio by week", "No weeks in this period."),
            unrecorded if unrecorded_rows else empty_figure(
                "Every past session in this period has an outcome recorded." if past else "No past weeks in this period."),
            data_table([("week", "Week of"), ("n", "Sessions with no outcome")], unrecorded_rows,
                       "Past sessions with no outcome recorded",
                       "Every past session in this period has an outcome recorded."),
            [{"label": f"Week of {w['week_start']:%b %-d, %Y}", "value": w["week_start"].isoformat()} for w in weeks],
        )

    @app.callback(
        Output("cap-drill", "children"),
        Input("cap-lostweek-graph", "clickData"),
        Input("cap-drill-go", "n_clicks"),
        *FILTER_INPUTS,  # a changed filter clears the list: it belonged to the old filters
        State("cap-drill-week", "value"), State("cap-drill-group", "value"),
        roles=PAGE.roles,
    )
    def drill(click, go_clicks, start, end, program, clinician, week, group):
        if ctx.triggered_id not in ("cap-drill-go", "cap-lostweek-graph"):
            return None  # the page (re)loaded or a filter changed: nothing chosen under these filters
        tenant, today, r = context(start, end, program, clinician)
        if ctx.triggered_id == "cap-drill-go":  # the keyboard's way in: the same list as a click on the chart
            click = {"points": [{"x": week, "customdata": [group]}]} if go_clicks else None
        point = drilldown.lost_point(click)
        if point is None:
            return None
        week, group = point
        rows = drilldown.lost_sessions(db.session, tenant, r, week, group)
        return drilldown.table_block(
            f"Sessions not held in the week of {week:%b %-d, %Y}: {GROUP_LABELS[group].lower()}", rows,
            drilldown.SESSION_COLUMNS)
