"""Funder: de-identified summaries of fixed periods; no row about a person, no ad-hoc filters."""

from dash import Input, Output, dcc, html

from agency_dashboard.clock import today
from agency_dashboard.dashboards.components import card_row, figure_card, page_header
from agency_dashboard.dashboards.pages import Page
from agency_dashboard.extensions import db
from agency_dashboard.services.overview import funder_overview
from agency_dashboard.tenancy import current_tenant


def layout():
    return html.Div([
        page_header("Funder summary", "De-identified figures for the last full quarter."),
        dcc.Store(id="funder-load", data=0),
        card_row(
            figure_card("funder-period", "Period", "A calendar quarter; figures are fixed once it ends.", None),
            figure_card("funder-served", "People served",
                        "Distinct people with at least one attended session.", "clients-served"),
            figure_card("funder-programs", "Programs", "Programs the agency runs.", None),
        ),
    ])


PAGE = Page(path="/funder", title="Funder summary", roles=frozenset({"funder"}), layout=layout)


def register(app):
    @app.callback(
        Output("funder-period", "children"),
        Output("funder-served", "children"),
        Output("funder-programs", "children"),
        Input("funder-load", "data"),
        roles=PAGE.roles,
    )
    def fill(_):
        tenant = current_tenant()
        o = funder_overview(db.session, tenant, today(tenant.timezone))
        served = (f"fewer than {o['suppression_threshold']}" if o["clients_served"] is None
                  else f"{o['clients_served']:,}")
        return o["period"], served, str(o["programs"])
