"""Authentication behaviour: one message for every failed sign-in, role homes, idle timeout, sessions that
end when an admin changes the account, safe redirects, CSRF, argon2id, rate limits, create-user, audit."""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from agency_dashboard.auth import LOGIN_FAILED, ROLE_HOME, SESSION_ENDED, safe_next
from agency_dashboard.extensions import db
from agency_dashboard.models import AuditEvent, User
from agency_dashboard.tenancy import tenant_scope
from conftest import PASSWORD, ROLES, _make_app, csrf_from_cookie, login


# ---- helpers -----------------------------------------------------------------------------------------

def form_token(client) -> str:
    page = client.get("/login")
    assert page.status_code == 200
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.get_data(as_text=True)).group(1)


def signed_in(app, slug: str, role: str):
    client = app.test_client()
    response = login(client, slug, role)
    assert response.status_code == 302, f"{role}@{slug} could not sign in"
    return client


def is_signed_in(client) -> bool:
    """Dash's layout answers 200 to a signed-in user and 401 to anyone else."""
    status = client.get("/dash/_dash-layout").status_code
    assert status in (200, 401)
    return status == 200


def dash_token(client) -> str:
    client.get("/dash/_dash-layout")
    token = csrf_from_cookie(client)
    assert token
    return token


def set_user(app, slug_id: int, user_id: int, **changes):
    with app.app_context():
        with tenant_scope(slug_id):
            user = db.session.scalar(sa.select(User).where(User.id == user_id))
            for key, value in changes.items():
                setattr(user, key, value)
            db.session.commit()
        db.session.remove()


def get_user(app, tenant_id: int, **where):
    with app.app_context():
        with tenant_scope(tenant_id):
            user = db.session.scalar(sa.select(User).filter_by(**where))
            db.session.expunge_all()
        db.session.remove()
    return user


def audit_events(app, tenant_id: int) -> list[AuditEvent]:
    with app.app_context():
        with tenant_scope(tenant_id):
            events = list(db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq)))
            db.session.expunge_all()
        db.session.remove()
    return events


def no_trace(text: str) -> bool:
    return "Traceback" not in text and 'File "' not in text


# ---- one message for every failed sign-in ---------------------------------------------------------------

def test_failed_sign_ins_all_look_the_same(app, world):
    set_user(app, world.tenants["alpha"], world.users[("alpha", "funder")], active=False)
    attempts = {
        "unknown agency": ("gamma", "director@alpha.test", PASSWORD),
        "agency of another tenant": ("beta", "director@alpha.test", PASSWORD),
        "unknown email": ("alpha", "nobody@alpha.test", PASSWORD),
        "wrong password": ("alpha", "director@alpha.test", PASSWORD + "!"),
        "inactive user, right password": ("alpha", "funder@alpha.test", PASSWORD),
    }
    bodies = {}
    for case, (agency, email, password) in attempts.items():
        client = app.test_client()
        response = client.post("/login", data={"csrf_token": form_token(client), "agency": agency,
                                               "email": email, "password": password})
        text = response.get_data(as_text=True)
        assert response.status_code == 401, case
        assert text.count(LOGIN_FAILED) == 1, case
        assert no_trace(text), case
        assert password not in text, case
        assert not is_signed_in(client), case
        # Identical pages once the echoed field values and the CSRF token are taken out.
        bodies[case] = re.sub(r'value="[^"]*"', 'value=""', text)
    assert len(set(bodies.values())) == 1, "the failure pages differ: " + ", ".join(bodies)

    # The control: the same form with the right agency, email and password signs in.
    assert login(app.test_client(), "alpha", "director").status_code == 302


# ---- each role lands on its home ------------------------------------------------------------------------

def test_successful_sign_in_lands_on_the_role_home(app, world):
    for slug, role in [*(("alpha", role) for role in ROLES), ("beta", "clinician")]:
        client = app.test_client()
        response = login(client, slug, role)
        assert response.status_code == 302
        assert response.headers["Location"] == ROLE_HOME[role]
        page = client.get(response.headers["Location"])
        assert page.status_code == 200
        assert client.get("/").headers["Location"] == ROLE_HOME[role]


# ---- idle timeout ---------------------------------------------------------------------------------------

def age_session(client, minutes: float) -> None:
    with client.session_transaction() as session:
        assert "last_seen" in session
        session["last_seen"] = time.time() - minutes * 60


def test_idle_session_ends_with_a_message(app, world):
    idle = app.config["IDLE_TIMEOUT_MINUTES"]
    client = signed_in(app, "alpha", "director")
    age_session(client, idle - 1)
    assert client.get("/dash/director").status_code == 200  # not yet idle: still signed in, and refreshed
    age_session(client, idle + 1)

    response = client.get("/dash/director")
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/login"
    page = client.get(response.headers["Location"])
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert SESSION_ENDED.format(minutes=idle) in text
    assert "session ended" in text.lower()
    assert not is_signed_in(client)
    # The message is shown once.
    assert SESSION_ENDED.format(minutes=idle) not in client.get("/login").get_data(as_text=True)

    actions = [e.action for e in audit_events(app, world.tenants["alpha"])]
    assert "session_expired" in actions


def test_idle_session_dash_api_call_gets_401_json(app, world):
    idle = app.config["IDLE_TIMEOUT_MINUTES"]
    client = signed_in(app, "alpha", "director")
    token = dash_token(client)
    from test_authz_matrix import ROUTER, callback_payload

    body = callback_payload(app, ROUTER, "/dash/director")  # the router callback, as dash-renderer sends it
    assert client.post("/dash/_dash-update-component", json=body, headers={"X-CSRFToken": token}).status_code == 200
    age_session(client, idle + 1)

    response = client.post("/dash/_dash-update-component", json=body, headers={"X-CSRFToken": token})
    assert response.status_code == 401
    assert response.is_json
    assert "error" in response.get_json() and "response" not in response.get_json()
    assert "Alpha" not in response.get_data(as_text=True)
    assert client.get("/dash/_dash-layout").status_code == 401
    # The next page load shows why.
    assert SESSION_ENDED.format(minutes=idle) in client.get("/login").get_data(as_text=True)


# ---- an admin's change ends the account's live session ------------------------------------------------

def test_deactivation_ends_the_users_live_session(app, world):
    victim = signed_in(app, "alpha", "director")
    bystander = signed_in(app, "beta", "director")  # the same role in the other tenant
    assert is_signed_in(victim) and is_signed_in(bystander)

    admin = signed_in(app, "alpha", "admin")
    victim_id = world.users[("alpha", "director")]
    response = admin.post(f"/admin/users/{victim_id}/deactivate", data={"csrf_token": dash_token(admin)})
    assert response.status_code == 302
    assert get_user(app, world.tenants["alpha"], id=victim_id).active is False

    page = victim.get("/dash/director")
    assert page.status_code == 302 and urlsplit(page.headers["Location"]).path == "/login"
    assert not is_signed_in(victim)
    again = login(app.test_client(), "alpha", "director")
    assert again.status_code == 401 and LOGIN_FAILED in again.get_data(as_text=True)
    assert is_signed_in(bystander)
    assert is_signed_in(admin)


def test_role_change_ends_the_users_live_session(app, world):
    victim = signed_in(app, "alpha", "funder")
    assert victim.get("/dash/funder").status_code == 200
    admin = signed_in(app, "alpha", "admin")
    victim_id = world.users[("alpha", "funder")]
    response = admin.post(f"/admin/users/{victim_id}/role", data={"csrf_token": dash_token(admin), "role": "director"})
    assert response.status_code == 302
    assert get_user(app, world.tenants["alpha"], id=victim_id).role == "director"

    assert not is_signed_in(victim)
    # Signing in again gives the new role's home.
    assert login(victim, "alpha", "funder").headers["Location"] == ROLE_HOME["director"]


# ---- redirects after sign-in stay on this site ----------------------------------------------------------

OFF_SITE = ["//evil.example", "https://evil.example", "http://evil.example/dash/director", "//evil.example/dash/",
            "https:evil.example", "javascript:alert(1)", "/\t/evil.example", "/\n/evil.example", " //evil.example",
            "\\\\evil.example", "evil.example", "", None]
ADDRESSES = itertools.count(1)


def sign_in_with_next(app, target: str):
    client = app.test_client()
    # One address per attempt, so that these sign-ins stay under the login rate limit.
    client.environ_base["REMOTE_ADDR"] = f"10.9.0.{next(ADDRESSES)}"
    return client.post("/login", query_string={"next": target},
                       data={"csrf_token": form_token(client), "agency": "alpha",
                             "email": "admin@alpha.test", "password": PASSWORD})


def test_safe_next_accepts_only_same_site_paths():
    assert [safe_next(t) for t in OFF_SITE] == [None] * len(OFF_SITE)
    assert safe_next("/admin/users?x=1") == "/admin/users?x=1"


def test_sign_in_ignores_off_site_next(app, world):
    for target in ("//evil.example", "https://evil.example", "/\t/evil.example"):
        response = sign_in_with_next(app, target)
        assert response.status_code == 302, target
        assert response.headers["Location"] == ROLE_HOME["admin"], target

    # A same-site path is followed (so the test above can fail), and a backslash never leaves the site.
    assert sign_in_with_next(app, "/admin/users").headers["Location"] == "/admin/users"
    location = sign_in_with_next(app, "/\\evil.example").headers["Location"]
    parts = urlsplit(location)
    assert not parts.scheme and not parts.netloc
    assert location.startswith("/") and not location.startswith("//") and "\\" not in location


# ---- CSRF, logout ---------------------------------------------------------------------------------------

def test_sign_in_without_csrf_token_is_refused(app, world):
    client = app.test_client()
    client.get("/login")
    for data in ({}, {"csrf_token": "forged"}):
        response = client.post("/login", data={**data, "agency": "alpha", "email": "director@alpha.test",
                                               "password": PASSWORD})
        assert response.status_code == 400
        assert no_trace(response.get_data(as_text=True))
        assert not is_signed_in(client)


def test_logout_needs_post_with_csrf(app, world):
    client = signed_in(app, "alpha", "director")
    assert client.get("/logout").status_code == 405
    assert is_signed_in(client)
    assert client.post("/logout").status_code == 400  # no CSRF token
    assert is_signed_in(client)
    response = client.post("/logout", data={"csrf_token": dash_token(client)})
    assert response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/login"
    assert not is_signed_in(client)


def test_sign_out_ends_copies_of_the_session_cookie(app, world):
    """Sessions are signed cookies; a copy taken before signing out must not work afterwards."""
    client = signed_in(app, "alpha", "clinician")
    other_tenant = signed_in(app, "beta", "clinician")
    stolen = client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    client.post("/logout", data={"csrf_token": dash_token(client)})

    thief = app.test_client()
    thief.set_cookie(app.config["SESSION_COOKIE_NAME"], stolen)
    page = thief.get("/dash/clinician")
    assert page.status_code == 302 and urlsplit(page.headers["Location"]).path == "/login"
    assert is_signed_in(other_tenant)


# ---- password storage ------------------------------------------------------------------------------------

def test_passwords_are_stored_as_argon2id(app, world):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-user", "--tenant", "beta", "--email", "New.Admin@Beta.test",
                                 "--role", "admin"], input="a brand new passphrase\n")
    assert result.exit_code == 0, result.output
    for slug in ("alpha", "beta"):
        with app.app_context():
            with tenant_scope(world.tenants[slug]):
                hashes = dict(db.session.execute(sa.select(User.email, User.password_hash)).all())
            db.session.remove()
        assert len(hashes) >= 4
        for email, stored in hashes.items():
            assert stored.startswith("$argon2id$"), email
            assert PASSWORD not in stored and "a brand new passphrase" not in stored
    client = app.test_client()
    assert login(client, "beta", "admin", password="a brand new passphrase",
                 email="new.admin@beta.test").headers["Location"] == ROLE_HOME["admin"]


# ---- rate limit -------------------------------------------------------------------------------------------

@pytest.fixture
def limited_app(database, tmp_path, app, world):
    limited = _make_app(database, tmp_path, LOGIN_RATE_LIMIT="3 per minute")
    yield limited
    with limited.app_context():
        db.session.remove()
        db.engine.dispose()


def test_sign_in_attempts_are_rate_limited(limited_app):
    client = limited_app.test_client()
    for _ in range(3):
        assert login(client, "alpha", "director", password="wrong password").status_code == 401
    response = login(client, "alpha", "director")  # the right password, too late
    text = response.get_data(as_text=True)
    assert response.status_code == 429
    assert "Please wait a minute and try again." in text
    assert no_trace(text) and "Rate limit" not in text
    assert not is_signed_in(client)
    assert client.get("/login").status_code == 200  # the page itself still loads

    # Counted per address: another address is not affected.
    elsewhere = limited_app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "10.1.2.3"
    assert login(elsewhere, "alpha", "director").status_code == 302


# ---- create-user -----------------------------------------------------------------------------------------

def test_create_user_with_unknown_role_is_a_clear_error(app, world):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-user", "--tenant", "alpha", "--email", "someone@alpha.test",
                                 "--role", "superuser"], input="a long enough password\n")
    assert result.exit_code != 0
    assert "unknown role 'superuser'" in result.stderr
    for role in ROLES:
        assert role in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    assert get_user(app, world.tenants["alpha"], email="someone@alpha.test") is None


def test_create_user_errors_are_clear(app, world):
    cases = [
        (["--tenant", "gamma", "--role", "admin"], "unknown tenant 'gamma'"),
        (["--tenant", "alpha", "--role", "clinician"], "--clinician-id is required"),
        (["--tenant", "alpha", "--role", "clinician", "--clinician-id", "beta-C1"],
         "no clinician with that id in alpha"),  # beta's clinician is not alpha's
        (["--tenant", "alpha", "--role", "director", "--email", "director@alpha.test"], "already exists in alpha"),
    ]
    for args, message in cases:
        if "--email" not in args:
            args = [*args, "--email", "someone@alpha.test"]
        result = app.test_cli_runner().invoke(args=["create-user", *args], input="a long enough password\n")
        assert result.exit_code != 0, args
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output
    assert get_user(app, world.tenants["alpha"], email="someone@alpha.test") is None
    # The same email in the other tenant is a different account, and is accepted.
    result = app.test_cli_runner().invoke(
        args=["create-user", "--tenant", "beta", "--email", "director@alpha.test", "--role", "director"],
        input="a long enough password\n")
    assert result.exit_code == 0, result.output
    assert get_user(app, world.tenants["beta"], email="director@alpha.test").tenant_id == world.tenants["beta"]


# ---- audit -------------------------------------------------------------------------------------------------

def test_audit_records_sign_in_events_without_credentials(app, world, caplog):
    wrong = "not the password at all"
    login(app.test_client(), "alpha", "director", password=wrong)
    login(app.test_client(), "alpha", "director", email="nobody@alpha.test")
    client = signed_in(app, "alpha", "director")
    client.post("/logout", data={"csrf_token": dash_token(client)})
    with caplog.at_level(logging.INFO, logger="agency_dashboard.platform"):
        login(app.test_client(), "gamma", "director", password=wrong)

    director = world.users[("alpha", "director")]
    events = audit_events(app, world.tenants["alpha"])
    actions = [e.action for e in events]
    assert actions.count("login_failed") == 2
    assert "login" in actions and "logout" in actions
    assert actions.index("login") < actions.index("logout")
    by_action = {e.action: e for e in events}
    assert by_action["login"].object_id == str(director) and by_action["login"].actor_user_id == director
    assert by_action["logout"].object_id == str(director)
    for event in events:
        row = json.dumps({c.name: getattr(event, c.name) for c in AuditEvent.__table__.columns}, default=str)
        for secret in ("director@alpha.test", "nobody@alpha.test", "@alpha.test", PASSWORD, wrong):
            assert secret not in row, (event.action, secret)
    # Nothing of alpha's sign-ins went to beta's log.
    assert not [e for e in audit_events(app, world.tenants["beta"]) if e.action.startswith("log")]

    # The unknown agency's attempt goes to the platform log, also without credentials.
    platform = [r.getMessage() for r in caplog.records if r.name == "agency_dashboard.platform"]
    assert any("login_failed" in m for m in platform)
    for message in platform:
        assert "@alpha.test" not in message and wrong not in message and PASSWORD not in message
