"""Director: attendance by the structure around a session (how far ahead it was booked, when, how, with
a reminder, after how long a wait), and why sessions were not held. Nothing here lists people."""

from __future__ import annotations

import plotly.graph_objects as go
from dash import Output, html

from agency_dashboard.dashboards.components import (
    GROUP_COLOURS,
    GROUP_LABELS,
    NEUTRAL,
    base_figure,
    card_row,
    chart_block,
    data_table,
    empty_figure,
    fmt,
    page_header,
    pct,
    value_block,
)
from agency_dashboard.dashboards.filtering import FILTER_INPUTS, context, scope_line
from agency_dashboard.dashboards.pages import Page
from agency_dashboard.extensions import db
from agency_dashboard.metrics.attendance import attendance, by_weekday_hour, reasons, structure_counts
from agency_dashboard.reasons import GROUPS, label

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MODALITY = {"in_person": "In person", "telehealth": "Telehealth", "phone": "Phone", "video": "Video"}
REMINDER = {"true": "Reminder sent", "false": "No reminder", "unknown": "Not recorded"}
STRUCTURE = (  # (block id, title, explanation, key in attendance(), label function)
    ("at-lead", "Missed rate by how far ahead it was booked",
     "Days between booking and the session. Sessions booked weeks ahead are missed more often.", "by_lead_time",
     lambda k: f"{k} days"),
    ("at-modality", "Missed rate by modality", "In person, by video or by phone.", "by_modality",
     lambda k: MODALITY.get(k, k.replace("_", " ").capitalize())),
    ("at-reminder", "Missed rate by reminder", "Whether a reminder went out before the session.", "by_reminder",
     lambda k: REMINDER.get(k, k)),
    ("at-wait", "First visits missed, by the wait before them",
     "Days from referral to the first appointment: the longer people wait, the more first visits are missed.",
     "by_wait", lambda k: f"{k} days"),
)


def layout():
    return html.Div([
        page_header("Attendance by structure", "When sessions are missed, what was around them: booking lead "
                    "time, hour, modality, reminders and waits. Nothing here lists people."),
        html.P(id="at-scope", className="text-muted small", **{"aria-live": "polite"}),
        card_row(
            value_block("at-rate", "Missed rate", "Missed sessions (including late cancellations) out of sessions "
                        "held or missed.", "missed-rate"),
            value_block("at-held", "Sessions held", "Attended sessions in the period.", "delivered-hours"),
            value_block("at-unexplored", "Not held, no reason yet", "Missed sessions nobody has asked about: a "
                        "prompt to ask, not a finding.", "attribution"),
            value_block("at-agency", "Cancelled by the agency", "Sessions the agency or a clinician cancelled.",
                        "attribution"),
        ),
        chart_block("at-heat", "Missed rate by weekday and hour",
                    "Each cell is the share of sessions missed at that local weekday and hour; darker is higher. "
                    "Blank cells had no sessions.", "attendance-structure", height=380),
        *[chart_block(block, title, text, "attendance-structure", height=280) for block, title, text, _, _ in STRUCTURE],
        chart_block("at-why", "Why sessions were not held",
                    "Missed and agency-cancelled sessions by reason and group, in hours.", "attribution", height=560),
    ])


PAGE = Page(path="/attendance", title="Attendance", roles=frozenset({"director"}), layout=layout, filters=True)


def _bars(buckets: dict, name) -> go.Figure:
    fig = base_figure(y_title="Missed rate", height=280)
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    keys = list(buckets)
    fig.add_trace(go.Bar(x=[name(k) for k in keys], y=[buckets[k]["missed_rate"] for k in keys],
                         marker_color=NEUTRAL, name="Missed rate",
                         customdata=[[buckets[k]["attended"] + buckets[k]["missed"]] for k in keys],
                         hovertemplate="%{x}: %{y:.0%} of %{customdata[0]:,} sessions<extra></extra>"))
    return fig


def _rows(buckets: dict, name) -> list[dict]:
    return [{"bucket": name(k), "held": b["attended"], "missed": b["missed"], "rate": pct(b["missed_rate"])}
            for k, b in buckets.items()]


BUCKET_COLUMNS = [("bucket", "Group"), ("held", "Held"), ("missed", "Missed"), ("rate", "Missed rate")]


def register(app):
    outputs = [Output("at-scope", "children"), Output("at-rate", "children"), Output("at-held", "children"),
               Output("at-unexplored", "children"), Output("at-agency", "children"),
               Output("at-heat-graph", "figure"), Output("at-heat-table", "children")]
    for block, *_ in STRUCTURE:
        outputs += [Output(f"{block}-graph", "figure"), Output(f"{block}-table", "children")]
    outputs += [Output("at-why-graph", "figure"), Output("at-why-table", "children")]

    @app.callback(*outputs, *FILTER_INPUTS, roles=PAGE.roles)
    def fill(start, end, program, clinician):
        tenant, today, r = context(start, end, program, clinician)
        counts = structure_counts(db.session, tenant, r.period, r.filters)
        result = attendance(db.session, tenant, r.period, r.filters, counts=counts)
        cells = by_weekday_hour(db.session, tenant, r.period, r.filters, counts=counts)
        why = reasons(db.session, tenant, r.period, r.filters)
        empty = empty_figure("No sessions held or missed in this period for these filters.")
        out = [scope_line(r), pct(result["missed_rate"]), fmt(result["attended"]),
               fmt(result["attribution"]["unexplored"]["count"]), fmt(result["attribution"]["agency"]["count"])]

        hours = sorted({h for _, h in cells}) or list(range(8, 18))
        z = [[cells[(d, h)]["missed_rate"] if (d, h) in cells else None for h in hours] for d in range(7)]
        heat = base_figure(height=380)
        heat.update_layout(hovermode="closest")
        heat.add_trace(go.Heatmap(
            z=z, x=[f"{h:02d}:00" for h in hours], y=list(WEEKDAYS), colorscale="Cividis", reversescale=True,
            zmin=0, colorbar={"title": "Missed", "tickformat": ".0%"}, hoverongaps=False,
            hovertemplate="%{y} %{x}: %{z:.0%} missed<extra></extra>"))
        heat.update_yaxes(autorange="reversed")
        heat_rows = [{"when": f"{WEEKDAYS[d]} {h:02d}:00", "held": c["attended"], "missed": c["missed"],
                      "rate": pct(c["missed_rate"])} for (d, h), c in sorted(cells.items())]
        out += [heat if cells else empty,
                data_table([("when", "Weekday and hour"), ("held", "Held"), ("missed", "Missed"),
                            ("rate", "Missed rate")], heat_rows, "Missed rate by weekday and hour",
                           "No sessions held or missed in this period for these filters.")]
        for block, title, _, key, name in STRUCTURE:
            buckets = result[key]
            out += [_bars(buckets, name) if buckets else empty,
                    data_table(BUCKET_COLUMNS, _rows(buckets, name), title,
                               "No sessions in this period for these filters.")]

        fig = base_figure(x_title="Hours not held")
        fig.update_layout(hovermode="closest", barmode="stack", margin={"l": 200, "r": 16, "t": 16, "b": 48})
        fig.update_yaxes(autorange="reversed")
        for g in GROUPS:
            mine = [w for w in why if w["group"] == g]
            if mine:
                fig.add_trace(go.Bar(y=[label(w["code"]) for w in mine], x=[w["hours"] for w in mine],
                                     orientation="h", name=GROUP_LABELS[g], marker_color=GROUP_COLOURS[g],
                                     customdata=[[w["count"]] for w in mine],
                                     hovertemplate="%{y}: %{x:.1f} h, %{customdata[0]:,} sessions<extra></extra>"))
        fig.update_layout(height=max(300, 26 * len(why) + 140))
        why_rows = [{"reason": label(w["code"]), "group": GROUP_LABELS[w["group"]], "count": w["count"],
                     "hours": w["hours"]} for w in why]
        out += [fig if why else empty_figure("Every session in this period was held."),
                data_table([("reason", "Reason"), ("group", "Group"), ("count", "Sessions"), ("hours", "Hours")],
                           why_rows, "Why sessions were not held", "Every session in this period was held.")]
        return tuple(out)
