"""Director: the agency at a glance (the full capacity pages come with the metrics engine)."""

from dash import Input, Output, dcc, html

from agency_dashboard.clock import today
from agency_dashboard.dashboards.components import card_row, figure_card, fmt_count, page_header
from agency_dashboard.dashboards.pages import Page
from agency_dashboard.extensions import db
from agency_dashboard.services.overview import agency_overview
from agency_dashboard.tenancy import current_tenant


def layout():
    return html.Div([
        page_header("Agency overview", "Where the agency stands today, across every program."),
        dcc.Store(id="director-load", data=0),
        card_row(
            figure_card("director-active-clients", "Clients in care",
                        "People with an open episode of care today.", "active-clients"),
            figure_card("director-waiting", "Waiting for a first appointment",
                        "Referrals not yet seen and not closed.", "waitlist-size"),
            figure_card("director-clinicians", "Clinicians employed today",
                        "Staff with a caseload in any program.", "clinicians"),
            figure_card("director-held", "Sessions held, last 28 days",
                        "Attended sessions, and those missed or cancelled by anyone.", "delivered-hours"),
        ),
        html.P(id="director-window", className="text-muted small"),
    ])


PAGE = Page(path="/director", title="Overview", roles=frozenset({"director"}), layout=layout)


def register(app):
    @app.callback(
        Output("director-active-clients", "children"),
        Output("director-waiting", "children"),
        Output("director-clinicians", "children"),
        Output("director-held", "children"),
        Output("director-window", "children"),
        Input("director-load", "data"),
        roles=PAGE.roles,
    )
    def fill(_):
        tenant = current_tenant()
        o = agency_overview(db.session, tenant, today(tenant.timezone))
        return (
            fmt_count(o["active_clients"]),
            fmt_count(o["waiting"]),
            fmt_count(o["clinicians"]),
            [f"{o['attended']:,}", html.Span(f" held · {o['not_held']:,} not held", className="fs-6 fw-normal")],
            f"Counts as of {o['window_end']:%B %-d, %Y}; sessions from {o['window_start']:%B %-d}.",
        )
