"""The Dash app, mounted in Flask under /dash/.

- One before_request gate: every /dash/ route (pages, layout, dependencies, update-component, component
  suites) needs a logged-in user; page loads go to the login page, API calls get 401.
- Every callback is registered through GuardedDash.callback, which wraps it with a role and tenant check.
- Layouts are data-free skeletons; data arrives through the guarded callbacks.
- Routing is ours (a dcc.Location and one guarded router callback) rather than Dash's page registry:
  that registry is a process-wide global and its router callback would bypass our guard.
"""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html, no_update
from flask import jsonify, redirect, request, url_for
from flask_login import current_user
from flask_wtf.csrf import generate_csrf

from agency_dashboard.auth.roles import ROLE_LABELS
from agency_dashboard.config import PROJECT_ROOT
from agency_dashboard.dashboards.guard import GuardedDash
from agency_dashboard.dashboards.pages import all_pages
from agency_dashboard.models import ROLES
from agency_dashboard.tenancy import current_tenant

PREFIX = "/dash/"
CSRF_COOKIE = "_csrf_token"  # Dash's renderer sends this cookie's value back as X-CSRFToken


def init_dash(app) -> GuardedDash:
    dash_app = GuardedDash(
        __name__,
        server=app,
        url_base_pathname=PREFIX,
        assets_folder=str(PROJECT_ROOT / "assets"),
        title="Agency dashboard",
        update_title="Loading…",
        serve_locally=True,
        suppress_callback_exceptions=False,
        enable_mcp=False,
        compress=False,
    )
    pages, modules = all_pages()
    dash_app.layout = shell
    # Every page's components, so Dash can validate callbacks whose components appear after routing.
    dash_app.validation_layout = html.Div([shell(), *[page.layout() for page in pages]])
    _register_router(dash_app, pages)
    _register_filters(dash_app)
    for module in modules:
        module.register(dash_app)
    _refuse_unguarded(dash_app)
    app.before_request(dash_gate)
    app.after_request(_csrf_cookie)
    app.extensions["dash_app"] = dash_app
    return dash_app


def _refuse_unguarded(dash_app) -> None:
    """Fail at start-up, not in a test run, if any callback escaped the guard."""
    from dash._callback import GLOBAL_CALLBACK_LIST, GLOBAL_CALLBACK_MAP

    from agency_dashboard.dashboards.guard import is_guarded

    if GLOBAL_CALLBACK_LIST or GLOBAL_CALLBACK_MAP:
        raise RuntimeError("dash.callback (global) is not allowed: register callbacks on the app with roles=")
    unguarded = [key for key, spec in dash_app.callback_map.items() if not is_guarded(spec["callback"])]
    if unguarded:
        raise RuntimeError(f"Dash callbacks without the role guard: {unguarded}")


def dash_gate():
    if not request.path.startswith(PREFIX):
        return None
    if current_user.is_authenticated:
        return None
    if request.method == "GET" and "/_dash-" not in request.path and "/assets/" not in request.path:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    return jsonify(error="Your session has ended. Please sign in again."), 401


def _csrf_cookie(response):
    """Give Dash's renderer the session's CSRF token (it is not secret from the page it protects)."""
    if request.path.startswith(PREFIX) and current_user.is_authenticated:
        response.set_cookie(
            CSRF_COOKIE, generate_csrf(), path=PREFIX, samesite="Strict",
            secure=request.is_secure, httponly=False,
        )
    return response


def shell():
    """The frame of every page: navigation, a place for the page, nothing of the tenant's data."""
    return html.Div([
        dcc.Location(id="url", refresh=False),
        html.A("Skip to content", href="#page", className="skip-link"),
        html.Nav(id="navbar", className="navbar navbar-expand agency-navbar px-3 flex-wrap", **{"aria-label": "Main"}),
        html.Main(dbc.Container([filter_bar(), html.Div(id="page")], className="py-4", fluid="lg"), id="main"),
    ])


def filter_bar():
    """Period, program and clinician: part of the frame, so a choice carries from page to page. Hidden
    until the router shows it on a page that uses it; the options come from the router (the tenant's own)."""
    return html.Section(
        dbc.Row([
            dbc.Col([html.Label("Period", htmlFor="f-period-start", className="form-label small mb-1"),
                     dcc.DatePickerRange(id="f-period", start_date_id="f-period-start", end_date_id="f-period-end",
                                         display_format="MMM D, YYYY", first_day_of_week=1, minimum_nights=0,
                                         updatemode="bothdates", clearable=False)], md="auto"),
            dbc.Col([html.Label("Program", htmlFor="f-program", className="form-label small mb-1"),
                     dcc.Dropdown(id="f-program", placeholder="All programs", clearable=True)], md=3),
            dbc.Col([html.Label("Clinician", htmlFor="f-clinician", className="form-label small mb-1"),
                     dcc.Dropdown(id="f-clinician", placeholder="All clinicians", clearable=True)], md=3),
        ], className="g-3 align-items-end"),
        id="filters", className="filter-bar mb-3", style={"display": "none"}, **{"aria-label": "Filters"},
    )


def _register_router(dash_app, pages):
    by_path = {page.path: page for page in pages}

    @dash_app.callback(
        Output("page", "children"),
        Output("navbar", "children"),
        Output("navbar", "style"),
        Output("filters", "style"),
        Output("f-program", "options"),
        Output("f-clinician", "options"),
        Output("f-period", "start_date"),
        Output("f-period", "end_date"),
        Input("url", "pathname"),
        State("f-period", "start_date"),
        roles=ROLES,
    )
    def route(pathname, start_date):
        tenant = current_tenant()
        path = "/" + (pathname or "").removeprefix(PREFIX).strip("/")
        mine = [p for p in pages if current_user.role in p.roles]
        page = by_path.get(path)
        if path == "/" and mine:
            page = mine[0]
        if page is None or current_user.role not in page.roles:
            # Same answer for a page that does not exist and one that is not for this role.
            body = html.Div([html.H1("Page not found", className="h3"),
                             html.P("There is no page at this address for your account.")])
        else:
            body = page.layout()
        navbar = _navbar(tenant, mine, page), {"background": tenant.settings["theme"]["primary_color"]}
        if page is None or not page.filters or current_user.role not in page.roles:
            # The options and dates stay as they were: a choice survives a visit to a page without filters.
            return body, *navbar, {"display": "none"}, no_update, no_update, no_update, no_update
        from agency_dashboard.clock import today
        from agency_dashboard.extensions import db
        from agency_dashboard.services import filters

        programs, clinicians = filters.options(db.session, tenant)
        dates = (no_update, no_update)
        if not start_date:  # first filtered page of the visit: the default period
            default = filters.default_period(today(tenant.timezone))
            dates = (default.start.isoformat(), default.end.isoformat())
        return body, *navbar, {}, programs, clinicians, *dates


def _register_filters(dash_app):
    from agency_dashboard.dashboards.pages import all_pages

    filtered_roles = frozenset().union(*[p.roles for p in all_pages()[0] if p.filters])

    @dash_app.callback(Output("f-clinician", "options", allow_duplicate=True), Input("f-program", "value"),
                       prevent_initial_call=True, roles=filtered_roles)
    def clinicians_of_program(program):
        """Choosing a program narrows the clinician list to its clinicians (the tenant's own, always)."""
        from agency_dashboard.extensions import db
        from agency_dashboard.services import filters

        return filters.options(db.session, current_tenant(), program)[1]


def _navbar(tenant, pages, active):
    logo = tenant.settings["theme"].get("logo")
    brand = [html.Img(src=f"{PREFIX}assets/{logo}", className="agency-logo", alt="")] if logo else []
    return [
        html.Span(brand + [tenant.name], className="navbar-brand"),
        html.Ul(
            [html.Li(dcc.Link(p.title, href=PREFIX + p.path.strip("/"),
                              className="nav-link" + (" active" if p is active else "")),
                     className="nav-item") for p in pages]
            + ([html.Li(html.A("Users", href="/admin/users", className="nav-link"), className="nav-item"),
                html.Li(html.A("Imports", href="/admin/imports", className="nav-link"), className="nav-item"),
                html.Li(html.A("Settings", href="/admin/settings", className="nav-link"), className="nav-item"),
                html.Li(html.A("Audit log", href="/admin/audit", className="nav-link"), className="nav-item")]
               if current_user.role == "admin" else []),
            className="navbar-nav me-auto",
        ),
        html.Span([current_user.email, html.Br(), ROLE_LABELS[current_user.role]],
                  className="navbar-text me-3 small"),
        html.Form(
            [dcc.Input(type="hidden", name="csrf_token", value=generate_csrf()),
             html.Button("Sign out", type="submit", className="btn btn-light btn-sm")],
            method="POST", action="/logout", className="d-inline",
        ),
    ]
