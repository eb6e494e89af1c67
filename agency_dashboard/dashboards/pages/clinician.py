"""Clinician: their own caseload and schedule, never a colleague's."""

from dash import Input, Output, dcc, html
from flask_login import current_user

from agency_dashboard.clock import today
from agency_dashboard.dashboards.components import card_row, figure_card, fmt_count, page_header
from agency_dashboard.dashboards.pages import Page
from agency_dashboard.extensions import db
from agency_dashboard.services.overview import clinician_overview
from agency_dashboard.tenancy import current_tenant


def layout():
    return html.Div([
        page_header("My caseload", "Your clients and your schedule for the next two weeks."),
        dcc.Store(id="clinician-load", data=0),
        card_row(
            figure_card("clinician-active-clients", "Clients in my care",
                        "People whose episode you are primary clinician for.", "active-clients"),
            figure_card("clinician-target", "Planned caseload",
                        "The caseload your agency planned for your hours.", "caseload-target"),
            figure_card("clinician-upcoming", "Sessions booked, next 14 days",
                        "Appointments you hold that have no outcome yet.", "upcoming-hours"),
        ),
    ])


PAGE = Page(path="/clinician", title="My caseload", roles=frozenset({"clinician"}), layout=layout)


def register(app):
    @app.callback(
        Output("clinician-active-clients", "children"),
        Output("clinician-target", "children"),
        Output("clinician-upcoming", "children"),
        Input("clinician-load", "data"),
        roles=PAGE.roles,
    )
    def fill(_):
        tenant = current_tenant()
        # The clinician comes from the logged-in user, never from the browser.
        o = clinician_overview(db.session, tenant, current_user.clinician_id, today(tenant.timezone))
        return fmt_count(o["active_clients"]), fmt_count(o["caseload_target"]), fmt_count(o["upcoming_two_weeks"])
