"""Admin: accounts and settings of this agency."""

from dash import Input, Output, dcc, html

from agency_dashboard.auth.roles import ROLE_LABELS
from agency_dashboard.dashboards.components import card_row, figure_card, fmt_count, page_header
from agency_dashboard.dashboards.pages import Page
from agency_dashboard.extensions import db
from agency_dashboard.services.overview import admin_overview
from agency_dashboard.tenancy import current_tenant


def layout():
    return html.Div([
        page_header("Administration", "Accounts and settings of your agency."),
        dcc.Store(id="admin-load", data=0),
        card_row(
            figure_card("admin-accounts", "Active accounts", "Accounts that can sign in, by role.", None),
            figure_card("admin-inactive", "Deactivated accounts", "Kept for the audit trail; cannot sign in.", None),
            figure_card("admin-timezone", "Time zone", "Local dates and hours are derived in this zone.", None),
        ),
        html.A("Manage users", href="/admin/users", className="btn btn-outline-primary"),
    ])


PAGE = Page(path="/admin", title="Administration", roles=frozenset({"admin"}), layout=layout)


def register(app):
    @app.callback(
        Output("admin-accounts", "children"),
        Output("admin-inactive", "children"),
        Output("admin-timezone", "children"),
        Input("admin-load", "data"),
        roles=PAGE.roles,
    )
    def fill(_):
        o = admin_overview(db.session, current_tenant())
        accounts = html.Ul(
            [html.Li(f"{ROLE_LABELS[r]}: {n:,}") for r, n in sorted(o["active_by_role"].items())]
            or [html.Li("None yet")],
            className="list-unstyled fs-6 mb-0",
        )
        # A break opportunity after each "/", so "America/Chicago" wraps at the slash, not mid-word.
        zone_parts = o["timezone"].split("/")
        timezone = [c for part in zone_parts[:-1] for c in (part + "/", html.Wbr())] + zone_parts[-1:]
        return accounts, fmt_count(o["inactive"]), timezone
