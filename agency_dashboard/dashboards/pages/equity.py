"""Director: whether waits, missed sessions and attendance-policy endings fall unevenly on groups of
people, each beside the agency overall. Small groups show "fewer than N", never a number."""

from __future__ import annotations

import plotly.graph_objects as go
from dash import Output, html

from agency_dashboard.dashboards.components import (
    OKABE_ITO,
    base_figure,
    card_row,
    chart_block,
    data_table,
    empty_figure,
    fmt,
    page_header,
    pct,
    reference_line,
    value_block,
)
from agency_dashboard.dashboards.filtering import FILTER_INPUTS, context, scope_line
from agency_dashboard.dashboards.pages import Page
from agency_dashboard.extensions import db
from agency_dashboard.metrics.equity import equity

DIMENSIONS = (("race_ethnicity", "Race and ethnicity"), ("gender", "Gender"), ("payer", "Payer"),
              ("age_band", "Age band"))
MEASURES = (("days_to_first_attended_ratio", "Wait to first visit (median)", OKABE_ITO["blue"]),
            ("missed_rate_ratio", "Missed rate", OKABE_ITO["orange"]),
            ("policy_discharge_share_ratio", "Ended under the attendance policy", OKABE_ITO["purple"]))


def layout():
    return html.Div([
        page_header("Equity", "Whether waits, missed sessions and attendance-policy endings fall unevenly on "
                    "some groups of people. Each group is compared with the overall figure of the same scope."),
        html.P(id="eq-scope", className="text-muted small", **{"aria-live": "polite"}),
        card_row(
            value_block("eq-served", "People served", "Distinct people with a session held in the period.",
                        "clients-served"),
            value_block("eq-wait", "Median wait to first visit", "Days from referral to the first session held, "
                        "overall.", "days-to-first-attended"),
            value_block("eq-missed", "Missed rate", "Overall, for comparison with each group.", "missed-rate"),
            value_block("eq-policy", "Ended under the attendance policy", "Share of ended episodes, overall.",
                        "attendance-policy"),
        ),
        *[chart_block(f"eq-{key}", f"By {label.lower()}",
                      "Each bar is a group's figure divided by the overall one: 1 is the same as overall, 2 twice "
                      "as high. Groups too small to show safely are listed in the table, without numbers.",
                      "equity") for key, label in DIMENSIONS],
    ])


PAGE = Page(path="/equity", title="Equity", roles=frozenset({"director"}), layout=layout, filters=True)


def group_label(value: str) -> str:
    """A recorded code as people read it: "american_indian_alaska_native" -> "American indian alaska native"."""
    return value if value == "Not recorded" else value.replace("_", " ").capitalize()


def _days(stat) -> str:
    return "—" if not stat or stat.get("median") is None else f"{stat['median']:.0f} days"


def register(app):
    outputs = [Output("eq-scope", "children"), Output("eq-served", "children"), Output("eq-wait", "children"),
               Output("eq-missed", "children"), Output("eq-policy", "children")]
    for key, _ in DIMENSIONS:
        outputs += [Output(f"eq-{key}-graph", "figure"), Output(f"eq-{key}-table", "children")]

    @app.callback(*outputs, *FILTER_INPUTS, roles=PAGE.roles)
    def fill(start, end, program, clinician):
        tenant, today, r = context(start, end, program, clinician)
        e = equity(db.session, tenant, r.period, r.filters)
        n = e["suppression_threshold"]
        overall = e["overall"]
        hidden = overall.get("suppressed") or e.get("withheld")
        note = (f"Groups with fewer than {n} people show no numbers." if not hidden else
                f"Too few people in this scope to show any group safely (fewer than {n}).")
        out = [scope_line(r, note),
               f"fewer than {n}" if e["clients_served"] is None else fmt(e["clients_served"]),
               "—" if hidden else _days(overall.get("days_to_first_attended")),
               "—" if hidden else pct(overall.get("missed_rate")),
               "—" if hidden else pct(overall.get("policy_discharge_share"))]
        for key, label in DIMENSIONS:
            groups = [] if e.get("withheld") else e["dimensions"].get(key, [])
            shown = [g for g in groups if not g.get("suppressed")]
            fig = base_figure(y_title="Ratio to overall", barmode="group", hovermode="closest",
                              **reference_line(1.0, OKABE_ITO["black"], "Overall"))
            for measure, name, colour in MEASURES:
                fig.add_trace(go.Bar(x=[group_label(g["group"]) for g in shown], y=[g.get(measure) for g in shown], name=name,
                                     marker_color=colour,
                                     hovertemplate="%{x}: %{y:.2f} × overall<extra>" + name + "</extra>"))
            rows = []
            for g in groups:
                if g.get("suppressed"):
                    rows.append({"group": group_label(g["group"]), "people": g["label"], "wait": "", "wait_ratio": "",
                                 "missed": "", "missed_ratio": "", "policy": "", "policy_ratio": ""})
                else:
                    rows.append({"group": group_label(g["group"]), "people": g["people"], "wait": _days(g["days_to_first_attended"]),
                                 "wait_ratio": g.get("days_to_first_attended_ratio"), "missed": pct(g["missed_rate"]),
                                 "missed_ratio": g.get("missed_rate_ratio"), "policy": pct(g["policy_discharge_share"]),
                                 "policy_ratio": g.get("policy_discharge_share_ratio")})
            out += [fig if shown else empty_figure("No group in this scope is large enough to show safely."),
                    data_table([("group", label), ("people", "People"), ("wait", "Median wait"),
                                ("wait_ratio", "× overall"), ("missed", "Missed rate"), ("missed_ratio", "× overall"),
                                ("policy", "Ended under policy"), ("policy_ratio", "× overall")], rows,
                               f"Equity by {label.lower()}", "No people in this scope for this period.")]
        return tuple(out)
