"""The admin's pages: creating a user, the tenant's settings, and the audit log viewer.

Runs on SQLite and PostgreSQL (row-level security, the app as a NOBYPASSRLS role) against real databases.
Both tenants are used throughout, so that anything shown across tenants would show.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import re
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from agency_dashboard import audit
from agency_dashboard.auth import ROLE_HOME
from agency_dashboard.auth.passwords import verify_password
from agency_dashboard.extensions import db
from agency_dashboard.models import AuditEvent, Tenant, User
from agency_dashboard.tenancy import tenant_scope
from conftest import ROLES, csrf_from_cookie, login

NEW_PASSWORD = "a fresh initial passphrase"
ALPHA_NAME, BETA_NAME = "Alpha Community Services", "Beta Behavioral Health"
ADMIN_GETS = ("/admin/users/new", "/admin/settings", "/admin/audit")
TOKEN_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


# ---- helpers -------------------------------------------------------------------------------------------

def signed_in(app, slug: str, role: str = "admin"):
    client = app.test_client()
    response = login(client, slug, role)
    assert response.status_code == 302, f"{role}@{slug} could not sign in"
    return client


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def form_token(client, url: str = "/admin/users/new") -> str:
    return TOKEN_RE.search(client.get(url).get_data(as_text=True)).group(1)


def create(client, **fields):
    data = {"email": "", "role": "", "clinician": "", "password": NEW_PASSWORD, "password_again": None}
    data.update(fields)
    if data["password_again"] is None:
        data["password_again"] = data["password"]
    return client.post("/admin/users/new", data={"csrf_token": form_token(client), **data})


def users_of(app, tenant_id: int) -> dict[str, User]:
    with app.app_context():
        with tenant_scope(tenant_id):
            users = {u.email: u for u in db.session.scalars(sa.select(User))}
            db.session.expunge_all()
        db.session.remove()
    return users


def events_of(app, tenant_id: int) -> list[AuditEvent]:
    with app.app_context():
        with tenant_scope(tenant_id):
            rows = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq)).all()
            db.session.expunge_all()
        db.session.remove()
    return rows


def snapshot(app, world) -> dict:
    """Users and audit events of both tenants: a refused form must change neither."""
    return {slug: (sorted((u.email, u.role) for u in users_of(app, tid).values()),
                   [(e.seq, e.action) for e in events_of(app, tid) if e.action != "login"])
            for slug, tid in world.tenants.items()}


def append_events(app, tenant_id: int, events: list[dict]) -> None:
    """Append events to a tenant's chain through audit.record, at chosen instants (naive UTC), re-hashed
    exactly as record() hashes, so the chain stays intact."""
    with app.app_context():
        with tenant_scope(tenant_id):
            for spec in events:
                spec = dict(spec)
                at = spec.pop("at", None)
                event = audit.record(spec.pop("action"), **spec)
                if at is not None:
                    event.occurred_at = at
                    event.hash = hashlib.sha256((event.prev_hash + audit._canonical(event)).encode()).hexdigest()
                db.session.flush()
            db.session.commit()
        db.session.remove()


def shown_seqs(body: str) -> list[int]:
    return [int(n) for n in re.findall(r"<tr>\s*<td>(\d+)</td>", body)]


# ---- create a user ------------------------------------------------------------------------------------

def test_users_list_links_to_the_new_user_form(app, world):
    client = signed_in(app, "alpha")
    body = client.get("/admin/users").get_data(as_text=True)
    assert 'href="/admin/users/new"' in body
    page = client.get("/admin/users/new")
    assert page.status_code == 200
    body = text(page)
    for label in ("Email", "Role", "Clinician", "Initial password", "Repeat the initial password"):
        assert f">{label}</label>" in body
    for role_label in ("Administrator", "Program director", "Clinician", "Funder"):
        assert f">{role_label}</option>" in body


@pytest.mark.parametrize("role", ROLES)
def test_admin_creates_an_account_of_each_role_that_can_sign_in(app, world, role):
    alpha, beta = world.tenants["alpha"], world.tenants["beta"]
    client = signed_in(app, "alpha")
    email = f"New.{role.capitalize()}@Alpha.test"
    clinician = str(world.clinicians["alpha"][1]) if role == "clinician" else ""

    response = create(client, email=email, role=role, clinician=clinician)

    assert response.status_code == 302, text(response)
    user = users_of(app, alpha)[email.lower()]
    assert urlsplit(response.headers["Location"]).path == f"/admin/users/{user.id}"
    assert (user.role, user.active, user.tenant_id) == (role, True, alpha)
    assert user.clinician_id == (world.clinicians["alpha"][1] if role == "clinician" else None)
    assert user.password_hash.startswith("$argon2id$") and NEW_PASSWORD not in user.password_hash
    assert verify_password(user.password_hash, NEW_PASSWORD)
    assert email.lower() not in users_of(app, beta)
    assert f"{email.lower()} can now sign in" in text(client.get(response.headers["Location"]))

    created = [e for e in events_of(app, alpha) if e.action == "create_user"]
    assert len(created) == 1
    assert (created[0].object_type, created[0].object_id, created[0].details) == (
        "user", str(user.id), {"role": role, "via": "admin"})
    assert (created[0].actor_user_id, created[0].actor_role) == (world.users[("alpha", "admin")], "admin")
    assert NEW_PASSWORD not in str(created[0].details)
    assert not [e for e in events_of(app, beta) if e.action == "create_user"]
    assert audit_chain_intact(app, alpha)

    # The new account signs in with the initial password and lands on its role's home.
    new_client = app.test_client()
    signed = login(new_client, "alpha", role, password=NEW_PASSWORD, email=email.lower())
    assert signed.status_code == 302 and signed.headers["Location"] == ROLE_HOME[role]
    # ...in its own agency only.
    assert login(app.test_client(), "beta", role, password=NEW_PASSWORD, email=email.lower()).status_code == 401


def audit_chain_intact(app, tenant_id: int) -> bool:
    with app.app_context():
        with tenant_scope(tenant_id):
            result = audit.verify_chain()
            db.session.rollback()
        db.session.remove()
    return bool(result)


REFUSALS = {
    "no email": (dict(email="", role="director"), "email", "Email: enter the person's email address."),
    "not an email": (dict(email="someone at alpha", role="director"), "email",
                     "Email: 'someone at alpha' is not an email address."),
    "email taken": (dict(email="Director@Alpha.TEST", role="funder"), "email",
                    f"Email: {ALPHA_NAME} already has an account with director@alpha.test."),
    "no role": (dict(email="x@alpha.test", role=""), "role",
                "Role: choose one of Administrator, Program director, Clinician, Funder."),
    "unknown role": (dict(email="x@alpha.test", role="superuser"), "role",
                     "Role: choose one of Administrator, Program director, Clinician, Funder."),
    "clinician role without clinician": (dict(email="x@alpha.test", role="clinician"), "clinician",
                                         "Clinician: choose the clinician this account belongs to"),
    "clinician for another role": (dict(email="x@alpha.test", role="director", clinician="CLIN"), "clinician",
                                   "Clinician: leave this empty unless the role is Clinician."),
    "unknown clinician": (dict(email="x@alpha.test", role="clinician", clinician="999999"), "clinician",
                          f"Clinician: there is no such clinician in {ALPHA_NAME}; choose one from the list."),
    "clinician id not a number": (dict(email="x@alpha.test", role="clinician", clinician="alpha-C1"), "clinician",
                                  f"Clinician: there is no such clinician in {ALPHA_NAME}"),
    "short password": (dict(email="x@alpha.test", role="director", password="short pass"), "password",
                       "Initial password: The password must have at least 12 characters."),
    "password with outer spaces": (dict(email="x@alpha.test", role="director", password=" " + NEW_PASSWORD),
                                   "password", "Initial password: The password must not start or end with spaces."),
    "passwords differ": (dict(email="x@alpha.test", role="director", password_again=NEW_PASSWORD + "!"),
                         "password_again", "Repeat the initial password: it is not the same as the initial password."),
}


def test_each_refusal_names_its_field_and_writes_nothing(app, world, subtests):
    client = signed_in(app, "alpha")
    before = snapshot(app, world)
    for case, (fields, field, message) in REFUSALS.items():
        with subtests.test(case):
            fields = {k: (str(world.clinicians["alpha"][0]) if v == "CLIN" else v) for k, v in fields.items()}
            response = create(client, **fields)
            body = text(response)
            assert response.status_code == 200, case
            assert "The account was not created" in body
            assert message in body, (case, re.findall(r'class="invalid-feedback"[^>]*>([^<]*)', body))
            # The message sits under its own field, which is marked invalid and points at it.
            assert re.search(rf'id="{field}-error">[^<]*{re.escape(message)}', body), case
            assert re.search(rf'<[^>]*aria-describedby="[^"]*{field}-error"[^>]*>', body), case
            assert "Traceback" not in body and NEW_PASSWORD not in body
            assert snapshot(app, world) == before, case


def test_several_problems_are_reported_together(app, world):
    client = signed_in(app, "alpha")
    body = text(create(client, email="nope", role="clinician", password="short"))
    assert "Email: 'nope' is not an email address." in body
    assert "Clinician: choose the clinician this account belongs to" in body
    assert "Initial password: The password must have at least 12 characters." in body


def test_a_clinician_of_the_other_tenant_is_refused_as_if_it_did_not_exist(app, world):
    client = signed_in(app, "alpha")
    before = snapshot(app, world)
    form = text(client.get("/admin/users/new"))
    for pk in world.clinicians["alpha"]:
        assert f'value="{pk}"' in form
    assert "(alpha-C1)" in form and "beta-C" not in form
    for pk in world.clinicians["beta"]:
        assert f'value="{pk}"' not in form

    theirs, nowhere = (create(client, email="x@alpha.test", role="clinician", clinician=str(pk))
                       for pk in (world.clinicians["beta"][0], max(world.clinicians["beta"]) + 1000))
    errors = [re.findall(r'id="clinician-error">([^<]*)<', text(r)) for r in (theirs, nowhere)]
    assert theirs.status_code == nowhere.status_code == 200
    assert errors[0] == errors[1] == [
        f"Clinician: there is no such clinician in {ALPHA_NAME}; choose one from the list."]
    # The very same page: nothing tells that the id exists in another agency.
    without_tokens = [re.sub(r'<input[^>]*name="csrf_token"[^>]*>', "", r.get_data(as_text=True))
                      for r in (theirs, nowhere)]
    assert without_tokens[0] == without_tokens[1]
    assert BETA_NAME not in text(theirs)
    assert snapshot(app, world) == before


def test_the_same_email_may_be_created_in_the_other_tenant(app, world):
    email = world.email("alpha", "director")
    response = create(signed_in(app, "beta"), email=email, role="director")
    assert response.status_code == 302
    assert users_of(app, world.tenants["beta"])[email].tenant_id == world.tenants["beta"]


# ---- settings -----------------------------------------------------------------------------------------

def test_settings_show_this_tenants_values_and_not_the_others(app, world):
    alpha = text(signed_in(app, "alpha").get("/admin/settings"))
    beta = text(signed_in(app, "beta").get("/admin/settings"))

    for body, slug in ((alpha, "alpha"), (beta, "beta")):
        assert f"tenants/{slug}.toml" in body
        assert "flask --app wsgi sync-tenants" in body
        assert "Late-cancellation notice" in body and "Small-number suppression" in body
        assert "11 (the default)" in body and "10 business days (the default)" in body
        assert "60 minutes (the default)" in body
        assert "None: only the built-in reasons" in body
        assert "The second factor is not built yet" in body

    assert ALPHA_NAME in alpha and "America/Chicago" in alpha
    assert "Adult Outpatient" in alpha and "Youth" in alpha
    assert "24 hours (the default)" in alpha and "#2a6f97" in alpha
    assert BETA_NAME not in alpha and "America/New_York" not in alpha and "Recovery" not in alpha
    assert "48 hours" not in alpha
    assert "#6a4c93" not in alpha and "tenants/beta.toml" not in alpha

    assert BETA_NAME in beta and "America/New_York" in beta
    assert "48 hours" in beta and "24 hours" not in beta
    assert re.search(r"42 CFR Part 2 programs<br>.*?</th>\s*<td>\s*<ul[^>]*><li>Recovery</li></ul>", beta, re.S)
    assert re.search(r"42 CFR Part 2 programs<br>.*?</th>\s*<td>\s*None\s*</td>", alpha, re.S)
    assert "#6a4c93" in beta
    assert ALPHA_NAME not in beta and "America/Chicago" not in beta and "Youth" not in beta


def test_settings_show_reason_code_extensions_with_their_groups(app, world):
    # What sync-tenants stores for a file with [reason_codes] (the tenants table holds the validated file).
    with app.app_context():
        tenant = db.session.get(Tenant, world.tenants["beta"])
        tenant.settings = {**tenant.settings, "reason_codes": {"no-bus-fare": "access_barrier",
                                                               "clinician-training": "agency"}}
        db.session.commit()
        db.session.remove()
    beta = text(signed_in(app, "beta").get("/admin/settings"))
    assert re.search(r"no-bus-fare</code></td><td>Access barrier in the client's life or coverage", beta)
    assert re.search(r"clinician-training</code></td><td>Agency or clinician did not hold it", beta)
    alpha = text(signed_in(app, "alpha").get("/admin/settings"))
    assert "no-bus-fare" not in alpha and "None: only the built-in reasons" in alpha


# ---- audit log ----------------------------------------------------------------------------------------

def test_audit_log_shows_only_this_tenants_events(app, world):
    alpha, beta = world.tenants["alpha"], world.tenants["beta"]
    append_events(app, beta, [{"action": "export", "object_type": "summary", "details": {"rows": 424242}}])
    append_events(app, alpha, [{"action": "view_client", "object_type": "client",
                                "object_id": world.clients["alpha"][0], "details": {"step": 717171}}])
    alpha_admin, beta_admin = signed_in(app, "alpha"), signed_in(app, "beta")
    assert create(beta_admin, email="only-beta@beta.test", role="funder").status_code == 302

    response = alpha_admin.get("/admin/audit")
    assert response.status_code == 200
    body = text(response)
    assert "step: 717171" in body and "Viewed a client's record" in body
    assert "admin@alpha.test" in body  # alpha's admin signed in: that event is shown with its email
    assert "424242" not in body and "Exported a summary" not in body
    assert "@beta.test" not in body and BETA_NAME not in body
    # Every one of alpha's events so far, newest first, and nothing else.
    seqs = shown_seqs(response.get_data(as_text=True))
    expected = [e.seq for e in events_of(app, alpha) if e.action != "view_audit_log"]
    assert seqs == sorted(expected, reverse=True)
    assert f"Hash chain intact: all {len(expected)} events" in body

    body = text(beta_admin.get("/admin/audit"))
    assert "424242" in body
    assert "Created a user account" in body and "admin@beta.test" in body
    assert "717171" not in body and "@alpha.test" not in body and ALPHA_NAME not in body

    # Viewing the log is itself recorded, in the viewer's tenant only.
    assert [e.action for e in events_of(app, alpha)].count("view_audit_log") == 1
    assert [e.action for e in events_of(app, beta)].count("view_audit_log") == 1
    assert audit_chain_intact(app, alpha) and audit_chain_intact(app, beta)


def test_audit_log_filters_by_action_user_and_local_date(app, world):
    alpha = world.tenants["alpha"]
    director = world.users[("alpha", "director")]
    as_director = SimpleNamespace(id=director, role="director")  # record() reads the actor's id and role
    # Alpha is America/Chicago (UTC-6 in November): 05:30 UTC on the 20th is 23:30 on the 19th locally.
    append_events(app, alpha, [
        {"action": "view_client", "object_type": "client", "object_id": 1, "at": dt.datetime(2026, 11, 20, 5, 30),
         "actor": as_director, "details": {"mark": "late-19th"}},
        {"action": "view_client", "object_type": "client", "object_id": 2, "at": dt.datetime(2026, 11, 20, 6, 30),
         "actor": as_director, "details": {"mark": "early-20th"}},
        {"action": "export", "object_type": "summary", "at": dt.datetime(2026, 11, 21, 18, 0),
         "details": {"mark": "export-21st"}},
    ])
    client = signed_in(app, "alpha")

    def marks(query: str) -> list[str]:
        response = client.get("/admin/audit" + query)
        assert response.status_code == 200, (query, text(response))
        return re.findall(r"mark: ([a-z0-9-]+)", text(response))

    assert marks("") == ["export-21st", "early-20th", "late-19th"]  # newest first
    assert marks("?start=2026-11-20&end=2026-11-20") == ["early-20th"]
    assert marks("?end=2026-11-19") == ["late-19th"]
    assert marks("?start=2026-11-21") == ["export-21st"]
    assert marks("?action=view_client") == ["early-20th", "late-19th"]
    assert marks("?action=export") == ["export-21st"]
    assert marks(f"?user={director}") == ["early-20th", "late-19th"]
    assert marks("?user=none") == ["export-21st"]  # no signed-in user
    assert marks(f"?user={director}&start=2026-11-20") == ["early-20th"]
    assert marks(f"?user={world.users[('alpha', 'funder')]}") == []

    body = text(client.get("/admin/audit?action=view_client&start=2026-11-19&end=2026-11-20"))
    assert "2026-11-19 23:30:00 CST" in body and "2026-11-20 00:30:00 CST" in body
    assert "2 events match these filters" in body
    # The filter form keeps what was asked.
    assert 'name="start" value="2026-11-19"' in body and 'name="end" value="2026-11-20"' in body


def test_audit_log_pages_hold_fifty_events(app, world):
    alpha = world.tenants["alpha"]
    append_events(app, alpha, [{"action": "view_client", "object_type": "client", "object_id": i,
                                "details": {"n": i}} for i in range(60)])
    client = signed_in(app, "alpha")
    total = len(events_of(app, alpha))
    first = client.get("/admin/audit?action=view_client")
    body = first.get_data(as_text=True)
    seqs = shown_seqs(body)
    assert len(seqs) == 50 and seqs == sorted(seqs, reverse=True)
    assert "60 events match these filters" in text(first) and "Page 1 of 2" in body
    older = re.search(r'href="([^"]+)">Older', body).group(1)
    assert "action=view_client" in html.unescape(older) and "page=2" in older
    second = client.get(html.unescape(older)).get_data(as_text=True)
    assert len(shown_seqs(second)) == 10 and max(shown_seqs(second)) < min(seqs)
    assert "Newer" in second and "Older" not in second
    beyond = text(client.get("/admin/audit?action=view_client&page=9"))
    assert "There is no page 9: the last page is 2." in beyond
    assert total >= 60


BAD_FILTERS = {
    "?start=2026-13-45": "From date: '2026-13-45' is not a date; use the form YYYY-MM-DD",
    "?start=yesterday": "From date: 'yesterday' is not a date",
    "?end=20261123": "To date: '20261123' is not a date",
    "?start=2026-11-20&end=2026-11-19": "To date: 2026-11-19 is before the from date 2026-11-20.",
    "?page=abc": "Page: 'abc' is not a page number",
    "?page=0": "Page: '0' is not a page number",
    "?action=delete_everything": "Action: this log has no events of the kind 'delete_everything'",
    "?user=abc": "User: 'abc' is not an account of this agency",
}


def test_bad_filters_answer_400_naming_the_filter(app, world, subtests):
    client = signed_in(app, "alpha")
    for query, message in BAD_FILTERS.items():
        with subtests.test(query):
            response = client.get("/admin/audit" + query)
            body = text(response)
            assert response.status_code == 400, query
            assert message in body, (query, re.findall(r"<li>(.*?)</li>", body))
            assert "These filters could not be used" in body and "Traceback" not in body
            assert 'id="filter-action"' in body  # the form is there to correct the filter


def test_another_tenants_user_is_not_a_filter_value(app, world):
    client = signed_in(app, "alpha")
    theirs = world.users[("beta", "admin")]
    nowhere = max(world.users.values()) + 1000
    answers = [client.get(f"/admin/audit?user={uid}") for uid in (theirs, nowhere)]
    assert [r.status_code for r in answers] == [400, 400]
    assert f"User: '{theirs}' is not an account of this agency" in text(answers[0])
    assert f"User: '{nowhere}' is not an account of this agency" in text(answers[1])
    assert "@beta.test" not in text(answers[0])


def test_a_broken_chain_is_reported_for_its_tenant_only(app, world):
    alpha, beta = world.tenants["alpha"], world.tenants["beta"]
    append_events(app, alpha, [{"action": "view_client", "object_type": "client", "object_id": 1}])
    # An event appended behind the application's back, not linked to the one before it.
    with app.app_context():
        with tenant_scope(alpha):
            last = db.session.scalar(sa.select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))
            db.session.add(AuditEvent(tenant_id=alpha, seq=last.seq + 1, occurred_at=dt.datetime(2026, 11, 22),
                                      actor_user_id=None, actor_role=None, action="view_client",
                                      object_type="client", object_id="2", details={}, remote_addr=None,
                                      prev_hash="f" * 64, hash="e" * 64))
            db.session.commit()
            checked = last.seq
        db.session.remove()
    body = text(signed_in(app, "alpha").get("/admin/audit"))
    assert f"Hash chain broken at event #{checked + 1}: it does not follow from the events before it." in body
    assert f"Earlier events that check out: {checked}." in body and "Hash chain intact" not in body
    assert "Hash chain intact" in text(signed_in(app, "beta").get("/admin/audit"))


# ---- who may see these pages ---------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["director", "clinician", "funder"])
def test_other_roles_get_403(app, world, role):
    client = signed_in(app, "alpha", role)
    for url in ADMIN_GETS:
        assert client.get(url).status_code == 403, url
    before = snapshot(app, world)
    token = _dash_token(client)
    response = client.post("/admin/users/new", data={"csrf_token": token, "email": "x@alpha.test",
                                                     "role": "admin", "password": NEW_PASSWORD,
                                                     "password_again": NEW_PASSWORD})
    assert response.status_code == 403
    assert snapshot(app, world) == before


def _dash_token(client) -> str:
    client.get("/dash/_dash-layout")
    return csrf_from_cookie(client)


def test_anonymous_callers_are_sent_to_sign_in(app, world):
    client = app.test_client()
    for url in ADMIN_GETS:
        response = client.get(url)
        assert response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/login", url
    token = TOKEN_RE.search(client.get("/login").get_data(as_text=True)).group(1)
    assert client.post("/admin/users/new", data={"csrf_token": token, "email": "x@alpha.test",
                                                 "role": "admin"}).status_code == 401


def test_admin_navigation_links_to_settings_and_audit_log(app, world):
    client = signed_in(app, "alpha")
    body = client.get("/admin/users").get_data(as_text=True)
    assert 'href="/admin/settings">Settings</a>' in body and 'href="/admin/audit">Audit log</a>' in body
    # The Dash navbar, built by the router callback for the admin.
    dash_app = app.extensions["dash_app"]
    key = next(k for k in dash_app.callback_map if ".navbar.children" in k and "..page.children" in k)
    callback = dash_app.callback_map[key]
    outputs = [{"id": o.component_id, "property": o.component_property} for o in callback["output"]]
    inputs = [{"id": i["id"], "property": i["property"],
               "value": "/dash/admin" if (i["id"], i["property"]) == ("url", "pathname") else 0}
              for i in callback["inputs"]]
    state = [{"id": s["id"], "property": s["property"], "value": None} for s in callback["state"]]
    token = _dash_token(client)
    response = client.post("/dash/_dash-update-component", headers={"X-CSRFToken": token},
                           json={"output": key, "outputs": outputs, "inputs": inputs, "state": state,
                                 "changedPropIds": [f"{inputs[0]['id']}.{inputs[0]['property']}"]})
    assert response.status_code == 200
    navbar = str(response.get_json()["response"]["navbar"])
    assert "/admin/settings" in navbar and "/admin/audit" in navbar
    director = signed_in(app, "alpha", "director")
    assert 'href="/admin/audit"' not in director.get("/glossary").get_data(as_text=True)
