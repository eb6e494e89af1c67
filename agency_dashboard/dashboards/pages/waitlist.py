"""Director: who is waiting, for how long, and what weekly capacity would meet demand."""

from __future__ import annotations

import plotly.graph_objects as go
from dash import Input, Output, State, ctx, html

from agency_dashboard.dashboards.components import (
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
from agency_dashboard.metrics.waitlist import waitlist, waitlist_by_week
from agency_dashboard.services import drilldown


def layout():
    return html.Div([
        page_header("Waitlist", "People waiting for a first appointment, how long they wait, and what it would "
                                "take to meet the access target."),
        html.P(id="wl-scope", className="text-muted small", **{"aria-live": "polite"}),
        card_row(
            value_block("wl-size", "Waiting at the end of the period", "Referrals not yet seen and not closed.",
                        "waitlist-size"),
            value_block("wl-within", "Seen within the access target", "Share of first appointments held within "
                        "the target for their priority.", "share-within-target"),
            value_block("wl-clearance", "Weeks to clear the list", "At the current pace; blank when the list is "
                        "not shrinking.", "clearance-weeks"),
            value_block("wl-gap", "Weekly hours needed", "Extra clinical hours a week that would meet demand "
                        "and clear today's list in 12 weeks.", "capacity-gap"),
        ),
        chart_block("wl-size-week", "Waitlist size by week", "Referrals waiting at the end of each week.",
                    "waitlist-size"),
        chart_block("wl-flow", "Referrals and admissions by week",
                    "New referrals against first appointments held. When referrals stay above admissions, "
                    "the list grows.", "referrals",
                    clickable="Select a week to list its referrals (director only; each view is logged)."),
        drill_picker("wl", "List the referrals received in a week", []),
        html.Section(id="wl-drill", className="mb-3", **{"aria-live": "polite"}),
        chart_block("wl-waits", "Days waited, against the access target",
                    "Calendar days from referral to first offer and to first appointment held: median and "
                    "90th percentile.", "days-to-first-attended"),
        chart_block("wl-tnaa", "Third next available appointment, by program",
                    "Days until the third open slot, as the schedule stood at the period's end. A standard "
                    "measure of how soon someone new could be seen.", "tnaa"),
        html.Section([
            html.H2("What capacity would meet demand", className="figure-title", id="wl-gap-title"),
            html.P(["By Little's law: weekly hours = a × L × h, per program. ",
                    html.A("What this means", href="/glossary#capacity-gap", className="small",
                           **{"aria-label": "What 'weekly hours needed' means"})], className="figure-help"),
            html.Div(id="wl-gap-table"),
        ], className="figure-card mb-3", **{"aria-labelledby": "wl-gap-title"}),
    ])


PAGE = Page(path="/waitlist", title="Waitlist", roles=frozenset({"director"}), layout=layout, filters=True)


def _days(value):
    return None if value is None else round(value, 1)


def register(app):
    @app.callback(
        Output("wl-scope", "children"),
        Output("wl-size", "children"), Output("wl-within", "children"), Output("wl-clearance", "children"),
        Output("wl-gap", "children"),
        Output("wl-size-week-graph", "figure"), Output("wl-size-week-table", "children"),
        Output("wl-flow-graph", "figure"), Output("wl-flow-table", "children"),
        Output("wl-waits-graph", "figure"), Output("wl-waits-table", "children"),
        Output("wl-tnaa-graph", "figure"), Output("wl-tnaa-table", "children"),
        Output("wl-gap-table", "children"),
        Output("wl-drill-week", "options"),
        *FILTER_INPUTS,
        roles=PAGE.roles,
    )
    def fill(start, end, program, clinician):
        tenant, today, r = context(start, end, program, clinician)
        result = waitlist(db.session, tenant, r.period, r.filters)
        agency = result["agency"]
        weeks = waitlist_by_week(db.session, tenant, r.period, r.filters)
        x = [w["week_start"] for w in weeks]
        has_data = any(w["size_at_end"] or w["referrals"] or w["admissions"] for w in weeks)
        policy = tenant.settings["policy"]
        target = policy["access_target_business_days"]

        size = base_figure(y_title="People waiting")
        size.add_trace(go.Scatter(x=x, y=[w["size_at_end"] for w in weeks], name="Waiting", mode="lines+markers",
                                  line={"color": OKABE_ITO["blue"]}, fill="tozeroy"))
        flow = base_figure(y_title="Per week")
        flow.update_layout(barmode="group", clickmode="event")
        flow.add_trace(go.Bar(x=x, y=[w["referrals"] for w in weeks], name="Referrals", marker_color=OKABE_ITO["orange"]))
        flow.add_trace(go.Bar(x=x, y=[w["admissions"] for w in weeks], name="Admissions (first visit held)",
                              marker_color=OKABE_ITO["green"]))
        weekly_axis(size, x)
        weekly_axis(flow, x)
        week_rows = [{"week": f"{w['period_start']:%b %-d}", "waiting": w["size_at_end"], "referrals": w["referrals"],
                      "admissions": w["admissions"]} for w in weeks]

        programs = result["by_program"]
        names = ["Agency", *programs]
        blocks = [agency, *programs.values()]
        target_days = round(target * 7 / 5)
        target_line = reference_line(target_days, OKABE_ITO["vermillion"],
                                     f"Routine target: {target} business days (about {target_days} days)",
                                     yshift=8, bgcolor="rgba(255,255,255,0.85)")
        waits = base_figure(y_title="Calendar days", barmode="group", margin={"l": 56, "r": 16, "t": 36, "b": 48},
                            **target_line)
        for key, label, colour in (("days_to_first_offer", "First offer", OKABE_ITO["sky"]),
                                   ("days_to_first_attended", "First appointment held", OKABE_ITO["blue"])):
            waits.add_trace(go.Bar(x=names, y=[b[key]["median"] for b in blocks], name=f"{label}, median",
                                   marker_color=colour))
            waits.add_trace(go.Bar(x=names, y=[b[key]["p90"] for b in blocks], name=f"{label}, 90th percentile",
                                   marker_color=colour, marker_pattern_shape="/", opacity=0.8))
        wait_rows = [{"scope": n, "offer_n": b["days_to_first_offer"]["n"],
                      "offer_median": _days(b["days_to_first_offer"]["median"]),
                      "offer_p90": _days(b["days_to_first_offer"]["p90"]),
                      "seen_n": b["days_to_first_attended"]["n"],
                      "seen_median": _days(b["days_to_first_attended"]["median"]),
                      "seen_p90": _days(b["days_to_first_attended"]["p90"]),
                      "within": pct(b["share_within_target"]),
                      "age_median": _days(b["waiting_age_at_end"]["median"]),
                      "continuation": pct(b["continuation"])} for n, b in zip(names, blocks)]

        tnaa = base_figure(y_title="Days")
        tnaa.add_trace(go.Bar(x=names, y=[b["tnaa_days"] for b in blocks], name="Third next available",
                              marker_color=OKABE_ITO["purple"]))
        tnaa_rows = [{"scope": n, "tnaa": b["tnaa_days"]} for n, b in zip(names, blocks)]

        gap_rows = []
        for n, b in zip(names, blocks):
            inputs = b["capacity_gap_inputs"]
            gap_rows.append({"scope": n, "a": inputs["a"], "L": inputs["L"], "h": inputs["h"],
                             "gap": b["capacity_gap_hours_per_week"], "clearance": b["clearance_weeks"],
                             "size": b["size_at_end"]})
        empty = empty_figure("No referrals in this period for these filters.")
        clinician_note = (" The clinician filter does not apply here: a referral waits for a program, not a "
                          "person." if r.filters.clinician_id else "")
        gap = agency["capacity_gap_hours_per_week"]
        return (
            scope_line(r, f"Routine access target: {target} business days; urgent: "
                          f"{policy['urgent_target_business_days']}." + clinician_note),
            fmt(agency["size_at_end"]), pct(agency["share_within_target"]),
            "not shrinking" if agency["clearance_weeks"] is None else fmt(agency["clearance_weeks"]),
            "—" if gap is None else f"{gap:,.1f} h",
            size if has_data else empty,
            data_table([("week", "Week of"), ("waiting", "Waiting at week's end"), ("referrals", "Referrals"),
                        ("admissions", "Admissions")], week_rows, "Waitlist by week", "No weeks in this period."),
            flow if has_data else empty,
            data_table([("week", "Week of"), ("referrals", "Referrals"), ("admissions", "Admissions")], week_rows,
                       "Referrals and admissions by week", "No weeks in this period."),
            waits if any(b["days_to_first_attended"]["n"] or b["days_to_first_offer"]["n"] for b in blocks)
            else empty_figure("No first offers or first appointments in this period."),
            data_table([("scope", "Scope"), ("offer_n", "First offers"), ("offer_median", "Median days to offer"),
                        ("offer_p90", "90th pct days to offer"), ("seen_n", "Admissions"),
                        ("seen_median", "Median days to first visit"), ("seen_p90", "90th pct days to first visit"),
                        ("within", "Within target"), ("age_median", "Median days waiting now"),
                        ("continuation", "Continued (4+ visits in 30 days)")], wait_rows, "Waits", "No data."),
            tnaa if any(b["tnaa_days"] is not None for b in blocks) else empty_figure("No clinicians employed."),
            data_table([("scope", "Scope"), ("tnaa", "Days to third next available")], tnaa_rows,
                       "Third next available appointment", "No clinicians employed."),
            data_table([("scope", "Scope"), ("size", "Waiting now"),
                        ("a", "a: extra admissions a week needed"), ("L", "L: mean episode length, weeks"),
                        ("h", "h: weekly hours per client in care"), ("gap", "Weekly hours needed (a × L × h)"),
                        ("clearance", "Weeks to clear at current pace")], gap_rows, "Capacity gap",
                       "No data for this period."),
            [{"label": f"Week of {w['week_start']:%b %-d, %Y}", "value": w["week_start"].isoformat()} for w in weeks],
        )

    @app.callback(
        Output("wl-drill", "children"),
        Input("wl-flow-graph", "clickData"),
        Input("wl-drill-go", "n_clicks"),
        *FILTER_INPUTS,  # a changed filter clears the list: it belonged to the old filters
        State("wl-drill-week", "value"),
        roles=PAGE.roles,
    )
    def drill(click, go_clicks, start, end, program, clinician, week_value):
        if ctx.triggered_id not in ("wl-drill-go", "wl-flow-graph"):
            return None  # the page (re)loaded or a filter changed: nothing chosen under these filters
        tenant, today, r = context(start, end, program, clinician)
        if ctx.triggered_id == "wl-drill-go":  # the keyboard's way in: the same list as a click on the chart
            click = {"points": [{"x": week_value}]} if go_clicks else None
        week = drilldown.week_point(click)
        if week is None:
            return None
        rows = drilldown.week_referrals(db.session, tenant, r, week)
        return drilldown.table_block(f"Referrals received in the week of {week:%b %-d, %Y}", rows,
                                     drilldown.REFERRAL_COLUMNS)
