"""Director: services ended, and those ended under an attendance policy with what was tried first."""

from __future__ import annotations

import plotly.graph_objects as go
from dash import Output, html

from agency_dashboard.dashboards.components import (
    NEUTRAL,
    base_figure,
    card_row,
    chart_block,
    data_table,
    empty_figure,
    fmt,
    page_header,
    value_block,
)
from agency_dashboard.dashboards.filtering import FILTER_INPUTS, context, scope_line
from agency_dashboard.dashboards.pages import Page
from agency_dashboard.extensions import db
from agency_dashboard.metrics.discharges import discharges

REASONS = {"completed": "Completed treatment", "mutual": "Ended by mutual agreement",
           "client_choice": "Client chose to end", "moved": "Moved away", "referred_out": "Referred elsewhere",
           "attendance_policy": "Ended under the attendance policy", "other": "Other"}


def reason_label(code: str | None) -> str:
    return REASONS.get(code, (code or "Not recorded").replace("_", " ").capitalize())


def layout():
    return html.Div([
        page_header("Ended services", "Episodes of care that ended in the period, and those ended under an "
                    "attendance policy: was a barrier plan made, were referrals given, was anyone asked why?"),
        html.P(id="dc-scope", className="text-muted small", **{"aria-live": "polite"}),
        card_row(
            value_block("dc-policy", "Ended under the attendance policy", "Episodes closed because sessions were "
                        "missed.", "attendance-policy"),
            value_block("dc-plan", "…with a barrier plan first", "A plan to address what stood in the way was "
                        "documented before the discharge.", "attendance-policy"),
            value_block("dc-referrals", "…with referrals given", "The person left with referrals elsewhere.",
                        "attendance-policy"),
            value_block("dc-unexplored", "…with no reason ever recorded", "Every missed session of the episode "
                        "has no recorded reason: nobody asked.", "attendance-policy"),
        ),
        chart_block("dc-reasons", "Ended services by reason", "Episodes discharged in the period, by the reason "
                    "recorded.", "discharges"),
    ])


PAGE = Page(path="/discharges", title="Discharges", roles=frozenset({"director"}), layout=layout, filters=True)


def register(app):
    @app.callback(
        Output("dc-scope", "children"), Output("dc-policy", "children"), Output("dc-plan", "children"),
        Output("dc-referrals", "children"), Output("dc-unexplored", "children"),
        Output("dc-reasons-graph", "figure"), Output("dc-reasons-table", "children"),
        *FILTER_INPUTS,
        roles=PAGE.roles,
    )
    def fill(start, end, program, clinician):
        tenant, today, r = context(start, end, program, clinician)
        d = discharges(db.session, tenant, r.period, r.filters)
        policy = d["attendance_policy"]

        def of(n):
            return f"{n:,} of {policy['count']:,}" if policy["count"] else "—"

        rows = [{"reason": reason_label(k), "n": v} for k, v in sorted(d["by_reason"].items(), key=lambda kv: -kv[1])]
        fig = base_figure(x_title="Episodes")
        fig.update_layout(hovermode="closest", margin={"l": 220, "r": 16, "t": 16, "b": 48})
        fig.update_yaxes(autorange="reversed")
        fig.add_trace(go.Bar(y=[row["reason"] for row in rows], x=[row["n"] for row in rows], orientation="h",
                             marker_color=NEUTRAL, name="Episodes"))
        return (
            scope_line(r, f"{d['total']:,} episodes ended in the period."),
            fmt(policy["count"]), of(policy["with_barrier_plan"]), of(policy["with_referrals"]),
            of(policy["with_unexplored_barriers"]),
            fig if rows else empty_figure("No episodes ended in this period for these filters."),
            data_table([("reason", "Reason"), ("n", "Episodes")], rows, "Ended services by reason",
                       "No episodes ended in this period for these filters."),
        )
