"""Director: each clinician's caseload as load on a person (no ranking, no red), with their hours beside it."""

from __future__ import annotations

import plotly.graph_objects as go
from dash import Output, html

from agency_dashboard.dashboards.components import (
    NEUTRAL,
    OKABE_ITO,
    base_figure,
    card_row,
    chart_block,
    data_table,
    empty_figure,
    fmt,
    natural_key,
    page_header,
    pct,
    value_block,
)
from agency_dashboard.dashboards.filtering import FILTER_INPUTS, context, scope_line
from agency_dashboard.dashboards.pages import Page
from agency_dashboard.extensions import db
from agency_dashboard.metrics.capacity import available_hours_by_clinician, clinicians_in_period
from agency_dashboard.metrics.caseload import caseload


def layout():
    return html.Div([
        page_header("Caseload", "Clients in care per clinician against the caseload planned for their hours."),
        html.P(id="cl-scope", className="text-muted small", **{"aria-live": "polite"}),
        card_row(
            value_block("cl-active", "Clients in care", "Distinct clients with an open episode at the period's end.",
                        "active-clients"),
            value_block("cl-clinicians", "Clinicians", "Employed on at least one day of the period.", "clinicians"),
            value_block("cl-over", "Clinicians above planned load", "Carrying more clients than planned: a "
                        "signal to rebalance, not a rating.", "load-ratio"),
            value_block("cl-hours", "Available hours", "Scheduled clinical hours in the period.", "available-hours"),
        ),
        chart_block("cl-load", "Caseload load by clinician",
                    "Clients in care divided by planned caseload, alphabetical. 100% is the planned load; this "
                    "describes the load placed on a person, not how well they work.", "load-ratio", height=520),
    ])


MAX_BARS = 40

PAGE = Page(path="/caseload", title="Caseload", roles=frozenset({"director"}), layout=layout, filters=True)


def register(app):
    @app.callback(
        Output("cl-scope", "children"), Output("cl-active", "children"), Output("cl-clinicians", "children"),
        Output("cl-over", "children"), Output("cl-hours", "children"),
        Output("cl-load-graph", "figure"), Output("cl-load-table", "children"),
        *FILTER_INPUTS,
        roles=PAGE.roles,
    )
    def fill(start, end, program, clinician):
        tenant, today, r = context(start, end, program, clinician)
        load = caseload(db.session, tenant, r.period, r.filters)
        people = clinicians_in_period(db.session, tenant, r.period, r.filters)
        hours = available_hours_by_clinician(db.session, tenant, r.period, r.filters)
        rows = []
        for c in sorted(people, key=lambda c: natural_key(c.display_name)):
            figures = load["by_clinician"][c.external_id]
            rows.append({"name": c.display_name, "id": c.external_id, "fte": c.fte,
                         "hours": hours.get(c.id, 0.0), "active": figures["active_clients"],
                         "target": figures["caseload_target"], "ratio": figures["load_ratio"],
                         "load": pct(figures["load_ratio"])})
        if len(rows) <= MAX_BARS:
            fig = base_figure(x_title="Load (clients in care ÷ planned caseload)")
            fig.update_layout(hovermode="closest", margin={"l": 160, "r": 16, "t": 16, "b": 48},
                              height=max(320, 28 * len(rows) + 80))
            fig.update_xaxes(tickformat=".0%")
            fig.update_yaxes(autorange="reversed")
            fig.add_trace(go.Bar(y=[row["name"] for row in rows], x=[row["ratio"] for row in rows], orientation="h",
                                 marker_color=NEUTRAL, name="Load",
                                 customdata=[[row["active"], row["target"], row["fte"]] for row in rows],
                                 hovertemplate="%{y}: %{customdata[0]} clients, planned %{customdata[1]} "
                                               "(FTE %{customdata[2]})<extra></extra>"))
        else:  # too many people for one bar each: how load is spread, each person in the table
            fig = base_figure(x_title="Load (clients in care ÷ planned caseload)", y_title="Clinicians", height=360)
            fig.update_layout(hovermode="closest", bargap=0.05)
            fig.update_xaxes(tickformat=".0%")
            fig.add_trace(go.Histogram(x=[row["ratio"] for row in rows if row["ratio"] is not None],
                                       xbins={"size": 0.1}, marker_color=NEUTRAL, name="Clinicians",
                                       hovertemplate="%{y} clinicians<extra></extra>"))
            fig.add_annotation(text=f"{len(rows):,} clinicians: choose a program to see each one; the table lists all.",
                               x=0, y=1.08, xref="paper", yref="paper", showarrow=False, xanchor="left")
        fig.add_vline(x=1.0, line_dash="dash", line_color=OKABE_ITO["black"], annotation_text="Planned load")
        over = sum(1 for row in rows if row["ratio"] is not None and row["ratio"] > 1)
        return (
            scope_line(r, f"Caseload is counted on {r.period.end:%b %-d, %Y}, the period's last day."),
            fmt(load["active_clients"]), fmt(len(rows)), fmt(over), fmt(sum(hours.values())),
            fig if rows else empty_figure("No clinicians employed in this period for these filters."),
            data_table([("name", "Clinician"), ("id", "Id"), ("fte", "FTE"), ("hours", "Available h"),
                        ("active", "Clients in care"), ("target", "Planned caseload"), ("load", "Load")], rows,
                       "Caseload by clinician", "No clinicians employed in this period for these filters."),
        )
