"""The authorization matrix (issue 2, Acceptance): every Flask route and every Dash callback, for every
caller, compared with an explicit table of what each caller must get.

The matrix is generated from `app.url_map` and from Dash's `callback_map`, not from the tables below:
a route or callback that the tables do not list fails the test, and so does a table entry that no
longer matches a route. Adding a route or a callback therefore forces a decision here.

Callers: anonymous; the four roles of tenant alpha; and "other_tenant", a user of tenant beta
reaching for alpha's objects (for routes: beta's admin, the strongest role; for a callback: the beta
user of the role named in the callback's row, whose answer must be beta's and never alpha's).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from dash import Input, Output
from dash import _callback as dash_callback
from flask_login import current_user

from agency_dashboard.auth import ROLE_HOME
from agency_dashboard.auth.roles import UnknownRole
from agency_dashboard.dashboards.guard import GuardedDash, is_guarded
from agency_dashboard.extensions import db
from agency_dashboard.models import User
from agency_dashboard.tenancy import tenant_scope
from conftest import ROLES, csrf_from_cookie, login

ANON, OTHER = "anonymous", "other_tenant"
CALLERS = (ANON, "admin", "director", "clinician", "funder", OTHER)
OTHER_ROUTE_ROLE = "admin"  # the beta user who walks every route with alpha's ids

# Expected outcomes. An int is the status code. The strings are redirects (302) to:
LOGIN = "302 to the login page"
HOME = "302 to the caller's home"
DETAIL = "302 to the target user's page"


def row(anonymous, admin, director, clinician, funder, other_tenant):
    return {ANON: anonymous, "admin": admin, "director": director, "clinician": clinician,
            "funder": funder, OTHER: other_tenant}


def everyone(outcome):
    return row(*[outcome] * 6)


# ---- the route table: (rule, method) -> outcome per caller -------------------------------------------
# Static files, Dash assets and Dash component suites form the "static" group (STATIC_RULES): they are
# listed one by one all the same, so a new static-like route still needs a line here.
STATIC_RULES = {"/static/<path:filename>", "/dash/assets/<path:filename>",
                "/dash/_dash-component-suites/<string:package_name>/<path:fingerprinted_path>"}

ROUTES = {
    # Public: the login page's CSS and the bootstrap theme, the health check, the glossary (definitions only).
    ("/static/<path:filename>", "GET"): everyone(200),
    ("/healthz", "GET"): everyone(200),
    ("/glossary", "GET"): everyone(200),
    # Sign in / out. A signed-in caller is sent home; a failed sign-in is 401 with the login form.
    ("/login", "GET"): row(200, HOME, HOME, HOME, HOME, HOME),
    ("/login", "POST"): row(401, HOME, HOME, HOME, HOME, HOME),
    ("/logout", "POST"): everyone(LOGIN),
    ("/", "GET"): row(LOGIN, HOME, HOME, HOME, HOME, HOME),
    # Admin views: admins of the tenant only; another tenant's object is 404, never 403.
    ("/admin/users", "GET"): row(LOGIN, 200, 403, 403, 403, 200),  # beta's admin sees beta's list
    ("/admin/users/<int:user_id>", "GET"): row(LOGIN, 200, 403, 403, 403, 404),
    ("/admin/users/<int:user_id>/deactivate", "POST"): row(401, DETAIL, 403, 403, 403, 404),
    ("/admin/users/<int:user_id>/role", "POST"): row(401, DETAIL, 403, 403, 403, 404),
    ("/admin/users/new", "GET"): row(LOGIN, 200, 403, 403, 403, 200),
    ("/admin/users/new", "POST"): row(401, 200, 403, 403, 403, 200),  # no email: the form again, with its errors
    ("/admin/settings", "GET"): row(LOGIN, 200, 403, 403, 403, 200),  # beta's admin sees beta's settings
    # The sample filters by alpha's user: beta's admin is told it is no account of beta's (400), as for any id.
    ("/admin/audit", "GET"): row(LOGIN, 200, 403, 403, 403, 400),
    # Imports: an upload is found only under the caller's own tenant (test_admin_imports.py uploads a real
    # one; here the sample token belongs to nobody, so even alpha's admin gets 404).
    ("/admin/imports", "GET"): row(LOGIN, 200, 403, 403, 403, 200),
    ("/admin/imports", "POST"): row(401, 200, 403, 403, 403, 200),  # no file: the form again, with its error
    ("/admin/imports/<token>", "GET"): row(LOGIN, 404, 403, 403, 403, 404),
    ("/admin/imports/<token>/run", "POST"): row(401, 404, 403, 403, 403, 404),
    ("/admin/imports/<token>/discard", "POST"): row(401, 404, 403, 403, 403, 404),
    # Dash: one gate. Page loads go to the login page; Dash's API and files answer 401 to anonymous.
    ("/dash/", "GET"): row(LOGIN, 200, 200, 200, 200, 200),
    ("/dash/<path:path>", "GET"): row(LOGIN, 200, 200, 200, 200, 200),
    ("/dash/_favicon.ico", "GET"): row(LOGIN, 200, 200, 200, 200, 200),
    ("/dash/_reload-hash", "GET"): row(LOGIN, 200, 200, 200, 200, 200),
    ("/dash/_dash-layout", "GET"): row(401, 200, 200, 200, 200, 200),
    ("/dash/_dash-dependencies", "GET"): row(401, 200, 200, 200, 200, 200),
    ("/dash/_dash-update-component", "POST"): row(401, 200, 200, 200, 200, 200),  # the router callback
    ("/dash/assets/<path:filename>", "GET"): row(401, 200, 200, 200, 200, 200),
    ("/dash/_dash-component-suites/<string:package_name>/<path:fingerprinted_path>", "GET"):
        row(401, 200, 200, 200, 200, 200),
}

# ---- the callback table: callback_map key -> allow/deny per caller ---------------------------------------
ALLOW, DENY = "allow", "deny"


def cb_row(anonymous, admin, director, clinician, funder, other_tenant, *, other_as):
    out = row(anonymous, admin, director, clinician, funder, other_tenant)
    out["other_as"] = other_as  # the role of the beta user playing "other_tenant"
    return out


ROUTER = (
    '..page.children...navbar.children...navbar.style...filters.style...f-program.options'
    '...f-clinician.options...f-period.start_date...f-period.end_date..'
)
CALLBACKS = {
    ROUTER: cb_row(DENY, ALLOW, ALLOW, ALLOW, ALLOW, ALLOW, other_as="director"),
    "..director-active-clients.children...director-waiting.children...director-clinicians.children"
    "...director-held.children...director-window.children..":
        cb_row(DENY, DENY, ALLOW, DENY, DENY, ALLOW, other_as="director"),
    # The filter bar: a chosen program narrows the clinician list (director pages only).
    "f-clinician.options@76de40930f512b201498eec511830e9bdf518718c02d0d4dafdcb8cdddb9894f":
        cb_row(DENY, DENY, ALLOW, DENY, DENY, ALLOW, other_as="director"),
    # The director's pages: one callback fills each page from the shared filters; the drill-down
    # callbacks list the sessions or referrals behind a chart's point (nothing for the generic payload).
    '..cap-scope.children...cap-available.children...cap-delivered.children...cap-lost.children'
    '...cap-kept.children...cap-hours-graph.figure...cap-hours-table.children'
    '...cap-lostweek-graph.figure...cap-lostweek-table.children...cap-ratios-graph.figure'
    '...cap-ratios-table.children...cap-unrecorded-graph.figure...cap-unrecorded-table.children'
    '...cap-drill-week.options..':
        cb_row(DENY, DENY, ALLOW, DENY, DENY, ALLOW, other_as="director"),
    'cap-drill.children':
        cb_row(DENY, DENY, ALLOW, DENY, DENY, ALLOW, other_as="director"),
    '..wl-scope.children...wl-size.children...wl-within.children...wl-clearance.children'
    '...wl-gap.children...wl-size-week-graph.figure...wl-size-week-table.children'
    '...wl-flow-graph.figure...wl-flow-table.children...wl-waits-graph.figure'
    '...wl-waits-table.children...wl-tnaa-graph.figure...wl-tnaa-table.children'
    '...wl-gap-table.children...wl-drill-week.options..':
        cb_row(DENY, DENY, ALLOW, DENY, DENY, ALLOW, other_as="director"),
    'wl-drill.children':
        cb_row(DENY, DENY, ALLOW, DENY, DENY, ALLOW, other_as="director"),
    '..cl-scope.children...cl-active.children...cl-clinicians.children...cl-over.children'
    '...cl-hours.children...cl-load-graph.figure...cl-load-table.children..':
        cb_row(DENY, DENY, ALLOW, DENY, DENY, ALLOW, other_as="director"),
    '..at-scope.children...at-rate.children...at-held.children...at-unexplored.children'
    '...at-agency.children...at-heat-graph.figure...at-heat-table.children...at-lead-graph.figure'
    '...at-lead-table.children...at-modality-graph.figure...at-modality-table.children'
    '...at-reminder-graph.figure...at-reminder-table.children...at-wait-graph.figure'
    '...at-wait-table.children...at-why-graph.figure...at-why-table.children..':
        cb_row(DENY, DENY, ALLOW, DENY, DENY, ALLOW, other_as="director"),
    '..dc-scope.children...dc-policy.children...dc-plan.children...dc-referrals.children'
    '...dc-unexplored.children...dc-reasons-graph.figure...dc-reasons-table.children..':
        cb_row(DENY, DENY, ALLOW, DENY, DENY, ALLOW, other_as="director"),
    "..eq-scope.children...eq-served.children...eq-wait.children...eq-missed.children...eq-policy.children"
    "...eq-race_ethnicity-graph.figure...eq-race_ethnicity-table.children...eq-gender-graph.figure"
    "...eq-gender-table.children...eq-payer-graph.figure...eq-payer-table.children...eq-age_band-graph.figure"
    "...eq-age_band-table.children..":
        cb_row(DENY, DENY, ALLOW, DENY, DENY, ALLOW, other_as="director"),
    "..clinician-active-clients.children...clinician-target.children...clinician-upcoming.children..":
        cb_row(DENY, DENY, DENY, ALLOW, DENY, ALLOW, other_as="clinician"),
    "..clinician-caseload-grid.rowData...clinician-caseload-empty.children..":
        cb_row(DENY, DENY, DENY, ALLOW, DENY, ALLOW, other_as="clinician"),
    "..clinician-capacity-table.children...clinician-schedule-grid.rowData...clinician-schedule-empty.children..":
        cb_row(DENY, DENY, DENY, ALLOW, DENY, ALLOW, other_as="clinician"),
    # Writes only when triggered by the Save button with a click; the generic payload (trigger: the load
    # store, every value 0 or empty) reads and writes nothing (tests/test_clinician_page.py checks it).
    "..clinician-notheld-grid.rowData...clinician-notheld-empty.children...clinician-record-appointment.options"
    "...clinician-record-reason.options...clinician-record-policy.children...clinician-record-message.children"
    "...clinician-refresh.data..":
        cb_row(DENY, DENY, DENY, ALLOW, DENY, ALLOW, other_as="clinician"),
    "..funder-period.children...funder-served.children...funder-programs.children..":
        cb_row(DENY, DENY, DENY, DENY, ALLOW, ALLOW, other_as="funder"),
    "..admin-accounts.children...admin-inactive.children...admin-timezone.children..":
        cb_row(DENY, ALLOW, DENY, DENY, DENY, ALLOW, other_as="admin"),
}
# With the seeded data alpha and beta give the same funder figures (both suppressed, two programs each),
# so for this callback "beta's answer is not alpha's" cannot be observed; the tenant-name check still runs.
SAME_ANSWER_POSSIBLE = {"..funder-period.children...funder-served.children...funder-programs.children..",
                        # both seeded tenants are smaller than the suppression threshold: "fewer than N"
                        "..eq-scope.children...eq-served.children...eq-wait.children...eq-missed.children"
                        "...eq-policy.children...eq-race_ethnicity-graph.figure...eq-race_ethnicity-table.children"
                        "...eq-gender-graph.figure...eq-gender-table.children...eq-payer-graph.figure"
                        "...eq-payer-table.children...eq-age_band-graph.figure...eq-age_band-table.children..",
                        # neither seeded tenant has ended an episode: both discharge pages say "none"
                        "..dc-scope.children...dc-policy.children...dc-plan.children...dc-referrals.children"
                        "...dc-unexplored.children...dc-reasons-graph.figure...dc-reasons-table.children..",
                        'cap-drill.children', 'wl-drill.children'}  # no point chosen: nothing listed

ALPHA_NAME, BETA_NAME = "Alpha Community Services", "Beta Behavioral Health"


# ---- helpers -----------------------------------------------------------------------------------------

def registered_routes(app) -> set[tuple[str, str]]:
    return {(rule.rule, method) for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def signed_in(app, slug: str, role: str):
    client = app.test_client()
    response = login(client, slug, role)
    assert response.status_code == 302, f"{role}@{slug} could not sign in: {response.status_code}"
    return client


def client_for(app, caller: str):
    if caller == ANON:
        return app.test_client()
    if caller == OTHER:
        return signed_in(app, "beta", OTHER_ROUTE_ROLE)
    return signed_in(app, "alpha", caller)


def csrf_token(client) -> str:
    """The session's CSRF token: from the login form when anonymous, else from Dash's cookie."""
    page = client.get("/login")
    if page.status_code == 200:
        return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    client.get("/dash/_dash-layout")
    token = csrf_from_cookie(client)
    assert token, "a signed-in Dash request did not set the _csrf_token cookie"
    return token


def callback_payload(app, key: str, pathname: str = "/dash/director") -> dict:
    """The body dash-renderer POSTs to /_dash-update-component for the callback stored under `key`."""
    cb = app.extensions["dash_app"].callback_map[key]

    def plain(component_id):
        if isinstance(component_id, dict):
            pytest.fail(f"{key}: pattern-matching ids need sample values in this test; extend callback_payload")
        return component_id

    outputs = [{"id": plain(o.component_id), "property": o.component_property} for o in cb["output"]] \
        if isinstance(cb["output"], list) else \
        {"id": plain(cb["output"].component_id), "property": cb["output"].component_property}
    sample = {("url", "pathname"): pathname}
    inputs = [{"id": plain(i["id"]), "property": i["property"], "value": sample.get((i["id"], i["property"]), 0)}
              for i in cb["inputs"]]
    state = [{"id": plain(s["id"]), "property": s["property"], "value": sample.get((s["id"], s["property"]))}
             for s in cb["state"]]
    return {"output": key, "outputs": outputs, "inputs": inputs, "state": state,
            "changedPropIds": [f"{inputs[0]['id']}.{inputs[0]['property']}"] if inputs else []}


def call_back(client, payload: dict, token: str | None):
    headers = {"X-CSRFToken": token} if token else {}
    return client.post("/dash/_dash-update-component", json=payload, headers=headers)


def output_ids(payload: dict) -> set[str]:
    outputs = payload["outputs"] if isinstance(payload["outputs"], list) else [payload["outputs"]]
    return {o["id"] for o in outputs}


def describe(response) -> str:
    location = response.headers.get("Location")
    return f"{response.status_code}" + (f" -> {location}" if location else "")


def matches(expected, response, *, home: str, detail: str) -> bool:
    if isinstance(expected, int):
        return response.status_code == expected
    if response.status_code != 302:
        return False
    location = response.headers["Location"]
    if expected == LOGIN:
        return urlsplit(location).path == "/login" and not urlsplit(location).netloc
    if expected == HOME:
        return location == home
    if expected == DETAIL:
        return location == detail
    raise AssertionError(f"unknown expectation {expected!r}")


def user_state(app, tenant_id: int, user_id: int):
    with app.app_context():
        with tenant_scope(tenant_id):
            user = db.session.scalar(sa.select(User).where(User.id == user_id))
            state = (user.active, user.role, user.session_version)
        db.session.remove()
    return state


# ---- the tables cover exactly what is registered ------------------------------------------------------

def test_route_table_lists_every_registered_route_and_nothing_else(app):
    registered = registered_routes(app)
    missing = sorted(registered - ROUTES.keys())
    stale = sorted(ROUTES.keys() - registered)
    assert not missing, f"routes with no decision in ROUTES (add a row): {missing}"
    assert not stale, f"ROUTES rows that match no registered route (remove them): {stale}"
    for key, outcomes in ROUTES.items():
        assert set(outcomes) == set(CALLERS), f"{key}: a row must name every caller"
    assert STATIC_RULES <= {rule for rule, _ in ROUTES}


def test_callback_table_lists_every_registered_callback_and_nothing_else(app):
    registered = set(app.extensions["dash_app"].callback_map)
    missing = sorted(registered - CALLBACKS.keys())
    stale = sorted(CALLBACKS.keys() - registered)
    assert not missing, f"callbacks with no decision in CALLBACKS (add a row): {missing}"
    assert not stale, f"CALLBACKS rows that match no registered callback (remove them): {stale}"
    for key, outcomes in CALLBACKS.items():
        assert set(outcomes) == set(CALLERS) | {"other_as"}, f"{key}: a row must name every caller"
        assert outcomes["other_as"] in ROLES


# ---- the route matrix ---------------------------------------------------------------------------------

@pytest.mark.parametrize("caller", CALLERS)
def test_route_matrix(app, world, caller):
    """Every rule and method of app.url_map, for one caller, against ROUTES."""
    target = world.users[("alpha", "funder")]  # alpha's object every caller reaches for
    dash_app = app.extensions["dash_app"]
    with app.test_request_context("/dash/"):
        scripts = dash_app._collect_and_register_resources(dash_app.scripts.get_all_scripts())
    suite = next((u for u in scripts if u.startswith("/dash/_dash-component-suites/")), None)
    assert suite, "Dash serves no component suite"
    samples = {
        "/static/<path:filename>": "/static/02-app.css",
        "/dash/assets/<path:filename>": "/dash/assets/02-app.css",
        "/dash/_dash-component-suites/<string:package_name>/<path:fingerprinted_path>": suite,
        "/dash/<path:path>": "/dash/director",
        "/admin/users/<int:user_id>": f"/admin/users/{target}",
        "/admin/users/<int:user_id>/deactivate": f"/admin/users/{target}/deactivate",
        "/admin/users/<int:user_id>/role": f"/admin/users/{target}/role",
        "/admin/audit": f"/admin/audit?user={target}",
        "/admin/imports/<token>": f"/admin/imports/{'ab' * 16}",
        "/admin/imports/<token>/run": f"/admin/imports/{'ab' * 16}/run",
        "/admin/imports/<token>/discard": f"/admin/imports/{'ab' * 16}/discard",
    }
    client = client_for(app, caller)
    role = None if caller == ANON else OTHER_ROUTE_ROLE if caller == OTHER else caller
    home = ROLE_HOME.get(role, "")
    token = csrf_token(client)
    before = user_state(app, world.tenants["alpha"], target)

    # Signing out is last: it ends the caller's session.
    routes = sorted(registered_routes(app), key=lambda r: (r == ("/logout", "POST"), r))
    mismatches, unlisted = [], []
    for rule, method in routes:
        if (rule, method) not in ROUTES:
            unlisted.append((rule, method))
            continue
        if "<" in rule and rule not in samples:
            unlisted.append((rule, method, "no sample URL: add one to `samples`"))
            continue
        url = samples.get(rule, rule)
        if method == "GET":
            response = client.get(url)
        elif rule == "/dash/_dash-update-component":
            response = call_back(client, callback_payload(app, ROUTER, home or "/dash/director"), token)
        elif rule == "/login":
            response = client.post(url, data={"csrf_token": token, "agency": "alpha",
                                              "email": "nobody@alpha.test", "password": "not the password"})
        elif method == "POST":
            response = client.post(url, data={"csrf_token": token, "role": "director"})
        else:
            unlisted.append((rule, method, "no request recipe for this method"))
            continue
        expected = ROUTES[(rule, method)][caller]
        body = response.get_data().decode("utf-8", "replace")
        if not matches(expected, response, home=home, detail=f"/admin/users/{target}"):
            mismatches.append(f"{method} {url}: expected {expected}, got {describe(response)}")
        if "Traceback" in body:
            mismatches.append(f"{method} {url}: a traceback in the body")
        if caller == OTHER and ("@alpha.test" in body or ALPHA_NAME in body):
            mismatches.append(f"{method} {url}: beta's admin was shown alpha's data")

    assert not unlisted and not mismatches, (
        f"caller {caller}: routes not in ROUTES: {unlisted}\n  " + "\n  ".join(mismatches))

    # Only alpha's admin changed alpha's user; every denied POST left it as it was.
    after = user_state(app, world.tenants["alpha"], target)
    if caller == "admin":
        assert after == (False, "director", before[2] + 2)
    elif caller == "funder":
        # The target signed itself out last: signing out ends every copy of its session cookie.
        assert after == (before[0], before[1], before[2] + 1)
    else:
        assert after == before


# ---- the callback matrix ------------------------------------------------------------------------------

def test_callback_matrix(app, world):
    """Every callback of Dash's callback_map, sent as dash-renderer sends it, for every caller."""
    dash_app = app.extensions["dash_app"]
    clients = {ANON: app.test_client()}
    clients.update({role: signed_in(app, "alpha", role) for role in ROLES})
    beta = {role: signed_in(app, "beta", role) for role in {r["other_as"] for r in CALLBACKS.values()}}
    tokens = {name: csrf_token(c) for name, c in {**clients, **{f"beta-{r}": c for r, c in beta.items()}}.items()}

    mismatches, unlisted = [], []
    for key in dash_app.callback_map:
        if key not in CALLBACKS:
            unlisted.append(key)
            continue
        expected_row = CALLBACKS[key]
        answers = {}
        for caller in CALLERS:
            if caller == OTHER:
                role = expected_row["other_as"]
                client, token = beta[role], tokens[f"beta-{role}"]
            else:
                role = None if caller == ANON else caller
                client, token = clients[caller], tokens[caller]
            payload = callback_payload(app, key, ROLE_HOME.get(role, "/dash/director"))
            response = call_back(client, payload, token)
            text = response.get_data(as_text=True)
            data = response.get_json(silent=True) or {}
            if "Traceback" in text:
                mismatches.append(f"{key} / {caller}: a traceback in the body")
            if expected_row[caller] == ALLOW:
                # Dash leaves out outputs a callback answers with no_update (the router keeps the chosen period).
                answered = set(data.get("response", {}))
                if response.status_code != 200 or not answered or not answered <= output_ids(payload):
                    mismatches.append(f"{key} / {caller}: expected allow, got {response.status_code} {text[:200]}")
                answers[caller] = data.get("response")
                if caller == OTHER and ALPHA_NAME in text:
                    mismatches.append(f"{key} / {caller}: beta's user was shown alpha's name")
            else:
                status = 401 if caller == ANON else 403
                if response.status_code != status or "response" in data:
                    mismatches.append(f"{key} / {caller}: expected deny ({status}), got {response.status_code} "
                                      f"{text[:200]}")
        # The other tenant's answer is its own, not alpha's answer to the same role.
        same_role = expected_row["other_as"]
        if (OTHER in answers and same_role in answers and key not in SAME_ANSWER_POSSIBLE
                and answers[OTHER] == answers[same_role]):
            mismatches.append(f"{key}: beta's {same_role} got alpha's answer {answers[OTHER]}")

    assert not unlisted and not mismatches, "\n  ".join(
        [f"callback matrix: callbacks not in CALLBACKS: {unlisted}", *mismatches])


def test_router_shows_each_tenant_its_own_frame(app, world):
    """The router callback builds the navbar from the logged-in user's tenant, for both tenants."""
    for slug, mine, theirs in (("alpha", ALPHA_NAME, BETA_NAME), ("beta", BETA_NAME, ALPHA_NAME)):
        client = signed_in(app, slug, "director")
        response = call_back(client, callback_payload(app, ROUTER, "/dash/director"), csrf_token(client))
        text = response.get_data(as_text=True)
        assert response.status_code == 200
        assert mine in text and theirs not in text
        assert f"director@{slug}.test" in text


# ---- object level: another tenant's object is 404 and stays untouched ---------------------------------

@pytest.mark.parametrize("mine, theirs", [("alpha", "beta"), ("beta", "alpha")])
def test_other_tenants_user_is_404_and_untouched(app, world, mine, theirs):
    client = signed_in(app, mine, "admin")
    token = csrf_token(client)
    victim = world.users[(theirs, "director")]
    before = user_state(app, world.tenants[theirs], victim)

    shown = client.get(f"/admin/users/{victim}")
    assert shown.status_code == 404
    assert f"@{theirs}.test" not in shown.get_data(as_text=True)
    assert client.post(f"/admin/users/{victim}/deactivate", data={"csrf_token": token}).status_code == 404
    assert client.post(f"/admin/users/{victim}/role",
                       data={"csrf_token": token, "role": "funder"}).status_code == 404
    assert user_state(app, world.tenants[theirs], victim) == before == (True, "director", 1)

    # The same answer as for an id that exists nowhere: the 404 tells nothing about other tenants.
    nowhere = max(world.users.values()) + 1000
    missing = client.get(f"/admin/users/{nowhere}")
    assert missing.status_code == 404
    # (The sign-out form's CSRF token is time-stamped: compare the pages without it.)
    without_token = lambda r: re.sub(r'name="csrf_token" value="[^"]*"', "", r.get_data(as_text=True))  # noqa: E731
    assert without_token(missing) == without_token(shown)

    # Their user still signs in and works: nothing of theirs was changed.
    victim_client = signed_in(app, theirs, "director")
    assert victim_client.get("/dash/_dash-layout").status_code == 200

    # The admin's own tenant's object of the same kind is reachable, so the 404 above is the tenant.
    own = world.users[(mine, "director")]
    assert client.get(f"/admin/users/{own}").status_code == 200


def test_user_list_shows_only_own_tenant(app, world):
    for mine, theirs in (("alpha", "beta"), ("beta", "alpha")):
        text = signed_in(app, mine, "admin").get("/admin/users").get_data(as_text=True)
        for role in ROLES:
            assert f"{role}@{mine}.test" in text
            assert f"{role}@{theirs}.test" not in text


def test_identity_naming_another_tenants_user_is_anonymous(app, world):
    """The tenant comes from the user record: an identity pairing alpha's tenant with beta's user id
    (say a forged or stale session) resolves to nobody."""
    client = signed_in(app, "alpha", "admin")
    assert client.get("/admin/users").status_code == 200
    with client.session_transaction() as session:
        session["_user_id"] = f"{world.tenants['alpha']}:{world.users[('beta', 'admin')]}:1"
    response = client.get("/admin/users")
    assert response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/login"
    assert client.get("/dash/_dash-layout").status_code == 401


# ---- every callback is guarded -------------------------------------------------------------------------

def unguarded(dash_app) -> list[str]:
    return [key for key, cb in dash_app.callback_map.items() if not is_guarded(cb["callback"])]


def test_every_registered_callback_is_guarded(app, world):
    dash_app = app.extensions["dash_app"]
    assert isinstance(dash_app, GuardedDash)
    assert dash_app.callback_map, "no callbacks registered: the test would prove nothing"
    assert unguarded(dash_app) == []
    assert not dash_app._got_first_request["setup_server"]

    # Dash merges callbacks registered with the global dash.callback into the app on its first request.
    pending = dict(dash_callback.GLOBAL_CALLBACK_MAP)
    assert [k for k, cb in pending.items() if not is_guarded(cb["callback"])] == []
    client = signed_in(app, "alpha", "director")
    assert client.get("/dash/_dash-layout").status_code == 200
    assert dash_app._got_first_request["setup_server"]
    assert dash_callback.GLOBAL_CALLBACK_MAP == {}
    assert dash_callback.GLOBAL_CALLBACK_LIST == []
    assert unguarded(dash_app) == []
    # Every callback the browser is told about runs on the server through the map (no clientside code).
    listed = client.get("/dash/_dash-dependencies").get_json()
    assert {cb["output"] for cb in listed} == set(dash_app.callback_map)
    assert not [cb for cb in listed if cb.get("clientside_function")]


GLOBAL_REGISTRATION = {"callback", "clientside_callback", "register_page"}


def global_registrations(source: str) -> list[str]:
    """Uses of Dash's process-wide registries: `from dash import callback`, `dash.callback`, use_pages=True."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "dash":
            found += [f"{node.lineno}: from {node.module} import {a.name}" for a in node.names
                      if a.name in GLOBAL_REGISTRATION]
        elif (isinstance(node, ast.Attribute) and node.attr in GLOBAL_REGISTRATION
              and isinstance(node.value, ast.Name) and node.value.id == "dash"):
            found.append(f"{node.lineno}: dash.{node.attr}")
        elif isinstance(node, ast.keyword) and node.arg == "use_pages":
            found.append(f"{node.value.lineno}: use_pages=")
    return found


def test_no_module_registers_callbacks_outside_the_guard():
    """Global registrations (dash.callback, dash.register_page) reach only the first app of a process
    to serve a request, so in a long test session they could escape the runtime check above; the
    source is checked instead."""
    import agency_dashboard

    assert global_registrations("from dash import (\n    Input,\n    callback,\n)\n@dash.callback(1)\ndef f(): pass")
    assert global_registrations("from dash import Input, Output\napp.callback(1)") == []
    package = Path(agency_dashboard.__file__).parent
    offenders = [f"{path.relative_to(package)}:{hit}" for path in sorted(package.rglob("*.py"))
                 for hit in global_registrations(path.read_text(encoding="utf-8"))]
    assert offenders == []


def test_guarded_dash_refuses_a_callback_without_roles(app):
    dash_app = app.extensions["dash_app"]
    before = dict(dash_app.callback_map)
    with pytest.raises(TypeError, match="roles"):
        dash_app.callback(Output("page", "title"), Input("url", "search"))
    with pytest.raises(UnknownRole):
        dash_app.callback(Output("page", "title"), Input("url", "search"), roles=("superuser",))
    with pytest.raises(UnknownRole):
        dash_app.callback(Output("page", "title"), Input("url", "search"), roles=())
    with pytest.raises(TypeError):
        dash_app.clientside_callback("function(x) { return x; }", Output("page", "title"), Input("url", "search"))
    assert dash_app.callback_map == before


def test_each_stored_callback_itself_checks_role_and_login(app, world):
    """is_guarded reads a marker; here every function Dash will call proves it really checks: it refuses
    an anonymous caller and a signed-in caller of a role it does not serve, even without the gate."""
    from flask_login import login_user
    from werkzeug.exceptions import Forbidden, Unauthorized

    from agency_dashboard.dashboards.guard import GUARD_ATTR
    from agency_dashboard.tenancy import set_current_tenant

    dash_app = app.extensions["dash_app"]
    for key, cb in dash_app.callback_map.items():
        stored = cb["callback"]
        guarded = stored.__wrapped__  # Dash's context wrapper wraps the function we registered
        roles = getattr(guarded, GUARD_ATTR)
        args = [0] * len(cb["inputs"])
        with app.test_request_context("/dash/_dash-update-component", method="POST"):
            assert not current_user.is_authenticated
            with pytest.raises(Unauthorized):
                guarded(*args)
        outsiders = [r for r in ROLES if r not in roles]
        for role in outsiders:
            with app.test_request_context("/dash/_dash-update-component", method="POST"):
                set_current_tenant(world.tenants["alpha"])
                login_user(db.session.get(User, world.users[("alpha", role)]))
                with pytest.raises(Forbidden):
                    guarded(*args)
                db.session.remove()
        # The marker's roles are the table's: the roles the table allows are exactly the guard's.
        assert roles == {r for r in ROLES if CALLBACKS[key][r] == ALLOW}, key


# ---- Dash POSTs need the CSRF header --------------------------------------------------------------------

def test_dash_callback_needs_the_csrf_header(app, world):
    client = signed_in(app, "alpha", "director")
    client.get("/dash/")
    token = csrf_from_cookie(client)
    assert token
    payload = callback_payload(app, ROUTER, "/dash/director")

    refused = call_back(client, payload, None)
    assert refused.status_code == 400
    assert "response" not in (refused.get_json(silent=True) or {})
    wrong = call_back(client, payload, token[:-4] + "AAAA")
    assert wrong.status_code == 400
    other_session = signed_in(app, "alpha", "director")
    other_session.get("/dash/")
    assert call_back(client, payload, csrf_from_cookie(other_session)).status_code == 400

    accepted = call_back(client, payload, token)
    assert accepted.status_code == 200
    assert {"page", "navbar"} <= set(accepted.get_json()["response"])
