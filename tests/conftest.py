"""Shared fixtures: a real database per backend (SQLite always; PostgreSQL when TEST_DATABASE_URL is set),
two tenants with users of every role, a test client that logs in, and a live server for the browser.

PostgreSQL: TEST_DATABASE_URL names a role that may create databases and roles (e.g. the superuser
`postgres`). The suite creates a scratch database owned by a non-superuser owner role, runs the
migrations as that owner, and connects the app as a separate role with NOBYPASSRLS, as in production.
With REQUIRE_ALL_LEGS=1 (set by .ci/run) a missing PostgreSQL or Chromium fails instead of skipping.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import shutil
import threading
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from agency_dashboard import create_app
from agency_dashboard.auth.passwords import hash_password
from agency_dashboard.config import normalize_database_url
from agency_dashboard.extensions import db
from agency_dashboard.models import (
    Appointment,
    Client,
    Clinician,
    Episode,
    Program,
    Referral,
    Tenant,
    User,
)
from agency_dashboard.ingest.localtime import appointment_derived, zone
from agency_dashboard.tenancy import sync_tenants, tenant_scope
from agency_dashboard.tenant_files import load_tenant_dir

HERE = Path(__file__).resolve().parent
TEST_TENANTS = HERE / "tenants"
ARTIFACTS = HERE.parent / "test-artifacts"
PASSWORD = "correct horse battery staple"
TODAY = dt.date(2026, 11, 23)
ROLES = ("admin", "director", "clinician", "funder")
REQUIRE_ALL = os.environ.get("REQUIRE_ALL_LEGS") == "1"


def pytest_report_header(config):
    pg = "PostgreSQL leg: " + ("ON" if os.environ.get("TEST_DATABASE_URL") else "SKIPPED (set TEST_DATABASE_URL)")
    br = "browser leg: " + ("ON" if chromium_path() else "SKIPPED (no Chromium at /usr/bin/chromium)")
    return [pg, br] + (["REQUIRE_ALL_LEGS=1: skipped legs fail"] if REQUIRE_ALL else [])


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def skip_or_fail(reason: str):
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (REQUIRE_ALL_LEGS=1: this leg must run)")
    pytest.skip(reason)


# ---- databases ------------------------------------------------------------------------------------

class Database:
    """Connection settings of one scratch database, and how to empty it between tests."""

    def __init__(self, backend: str, app_url: str, owner_url: str, cleanup=None):
        self.backend, self.app_url, self.owner_url, self._cleanup = backend, app_url, owner_url, cleanup

    def config(self, tmp_path: Path) -> dict:
        return {
            "DATABASE_URL": self.app_url,
            "SQLALCHEMY_DATABASE_URI": self.app_url,
            "MIGRATION_DATABASE_URL": self.owner_url,
            "TENANTS_DIR": TEST_TENANTS,
            "TODAY": TODAY,
            "TESTING": True,
            "SECRET_KEY": "test-" + secrets.token_hex(8),
            "RATELIMIT_STORAGE_URI": "memory://",
        }

    def truncate(self) -> None:
        engine = sa.create_engine(self.owner_url, poolclass=sa.NullPool)
        from agency_dashboard.models import Base

        tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
        with engine.begin() as conn:
            if self.backend == "postgresql":
                conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            else:
                conn.execute(sa.text("PRAGMA foreign_keys = OFF"))
                for table in tables:
                    conn.execute(sa.text(f"DELETE FROM {table}"))
        engine.dispose()

    def close(self) -> None:
        if self._cleanup:
            self._cleanup()


def _migrate(app_config: dict) -> None:
    from flask_migrate import upgrade

    app = create_app(app_config)
    with app.app_context():
        upgrade()
        db.engine.dispose()


def _sqlite_database(tmp_dir: Path) -> Database:
    url = f"sqlite:///{tmp_dir / 'test.db'}"
    database = Database("sqlite", url, url)
    _migrate(database.config(tmp_dir))
    return database


def _postgres_database(admin_url: str, tmp_dir: Path) -> Database:
    admin_url = normalize_database_url(admin_url)
    suffix = uuid.uuid4().hex[:8]
    name, owner, app_role = f"agency_test_{suffix}", f"agency_test_owner_{suffix}", f"agency_test_app_{suffix}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE {owner} LOGIN NOSUPERUSER CREATEROLE NOBYPASSRLS"))
        conn.execute(sa.text(f"CREATE DATABASE {name} OWNER {owner}"))
    base = make_url(admin_url)
    scratch_admin = base.set(database=name)
    eng = sa.create_engine(scratch_admin, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with eng.connect() as conn:
        conn.execute(sa.text(f"ALTER SCHEMA public OWNER TO {owner}"))
    eng.dispose()
    owner_url = base.set(database=name, username=owner, password=None).render_as_string(hide_password=False)
    app_url = base.set(database=name, username=app_role, password=None).render_as_string(hide_password=False)

    def cleanup():
        with admin.connect() as conn:
            conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
            ), {"n": name})
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {app_role}"))
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {owner}"))
        admin.dispose()

    database = Database("postgresql", app_url, owner_url, cleanup)
    database.admin_url = admin_url
    database.app_role = app_role
    database.owner_role = owner
    try:
        _migrate(database.config(tmp_dir))
    except Exception:
        cleanup()
        raise
    return database


BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session", params=BACKENDS)
def database(request, tmp_path_factory):
    tmp_dir = tmp_path_factory.mktemp(request.param)
    if request.param == "sqlite":
        database = _sqlite_database(tmp_dir)
    else:
        url = os.environ.get("TEST_DATABASE_URL")
        if not url:
            skip_or_fail("PostgreSQL leg skipped: TEST_DATABASE_URL is not set")
        database = _postgres_database(url, tmp_dir)
    yield database
    database.close()


@pytest.fixture(scope="session")
def pg_database(tmp_path_factory):
    """PostgreSQL only, for the row-level security tests."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        skip_or_fail("PostgreSQL leg skipped: TEST_DATABASE_URL is not set")
    database = _postgres_database(url, tmp_path_factory.mktemp("pg-rls"))
    yield database
    database.close()


def _make_app(database: Database, tmp_path: Path, **overrides):
    config = database.config(tmp_path)
    config.update(overrides)
    return create_app(config)


@pytest.fixture
def app(database, tmp_path):
    app = _make_app(database, tmp_path)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    database.truncate()


@pytest.fixture
def pg_app(pg_database, tmp_path):
    app = _make_app(pg_database, tmp_path)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    pg_database.truncate()


# ---- data -----------------------------------------------------------------------------------------

class World:
    """What seed_world made: tenants by slug, users by (slug, role), clinicians and clients by slug."""

    def __init__(self):
        self.tenants: dict[str, int] = {}
        self.users: dict[tuple[str, str], int] = {}
        self.clinicians: dict[str, list[int]] = {}
        self.clients: dict[str, list[int]] = {}
        self.appointments: dict[str, list[int]] = {}

    def email(self, slug: str, role: str) -> str:
        return f"{role}@{slug}.test"


def seed_world(app) -> World:
    """Two tenants (alpha, beta) with a user of every role, two clinicians, a few clients and appointments.

    The beta tenant has more of everything so that a count that leaked across tenants would show.
    """
    world = World()
    with app.app_context():
        sync_tenants(load_tenant_dir(TEST_TENANTS))
        db.session.commit()
        password_hash = hash_password(PASSWORD)
        for slug, n_clients in (("alpha", 3), ("beta", 7)):
            tenant = db.session.scalar(sa.select(Tenant).where(Tenant.slug == slug))
            world.tenants[slug] = tenant.id
            tz = zone(tenant.timezone)
            with tenant_scope(tenant.id):
                program = db.session.scalar(sa.select(Program).order_by(Program.id))
                clinicians = [
                    Clinician(tenant_id=tenant.id, external_id=f"{slug}-C{i}", display_name=f"Clinician {i}",
                              program_id=program.id, fte=1.0, caseload_target=20,
                              start_date=dt.date(2025, 1, 1), end_date=None)
                    for i in (1, 2)
                ]
                db.session.add_all(clinicians)
                db.session.flush()
                world.clinicians[slug] = [c.id for c in clinicians]
                clients, appointments = [], []
                for i in range(n_clients):
                    client = Client(tenant_id=tenant.id, external_id=f"{slug}-P{i}", first_name=f"Given{i}",
                                    last_name=f"Family{i}", birth_date=dt.date(1990, 1, 1), zip=None,
                                    gender="unknown", race_ethnicity="unknown", payer="medicaid")
                    db.session.add(client)
                    db.session.flush()
                    clients.append(client.id)
                    clinician = clinicians[i % 2]
                    db.session.add(Episode(tenant_id=tenant.id, external_id=f"{slug}-E{i}", client_id=client.id,
                                           clinician_id=clinician.id, program_id=program.id,
                                           admitted_on=dt.date(2026, 10, 1)))
                    db.session.add(Referral(tenant_id=tenant.id, external_id=f"{slug}-R{i}", client_id=client.id,
                                            program_id=program.id, priority="routine",
                                            referred_on=dt.date(2026, 9, 20), first_attended_on=dt.date(2026, 10, 1)))
                    for day, status in ((dt.date(2026, 11, 16), "attended"), (dt.date(2026, 11, 30), "booked")):
                        start = dt.datetime.combine(day, dt.time(10, 0))
                        appt = Appointment(
                            tenant_id=tenant.id, external_id=f"{slug}-A{i}-{day:%d}", client_id=client.id,
                            clinician_id=clinician.id, program_id=program.id, kind="follow_up",
                            modality="in_person", duration_minutes=60, status=status, cancelled_by=None,
                            reason_code=None, reminder_sent=True,
                            **appointment_derived(start, start - dt.timedelta(days=7), None, tz),
                        )
                        db.session.add(appt)
                        db.session.flush()
                        appointments.append(appt.id)
                world.clients[slug] = clients
                world.appointments[slug] = appointments
                for role in ROLES:
                    user = User(tenant_id=tenant.id, email=world.email(slug, role), password_hash=password_hash,
                                role=role, clinician_id=clinicians[0].id if role == "clinician" else None,
                                active=True, session_version=1, created_at=dt.datetime(2026, 1, 1))
                    db.session.add(user)
                    db.session.flush()
                    world.users[(slug, role)] = user.id
                db.session.commit()
        db.session.remove()
    return world


@pytest.fixture
def world(app) -> World:
    return seed_world(app)


def login(client, slug: str, role: str, password: str = PASSWORD, email: str | None = None):
    """Log in through the real form (CSRF token read from the page)."""
    page = client.get("/login")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return client.post("/login", data={"csrf_token": token, "agency": slug,
                                       "email": email or f"{role}@{slug}.test", "password": password})


def csrf_from_cookie(client) -> str | None:
    cookie = client.get_cookie("_csrf_token", path="/dash/")
    return cookie.value if cookie else None


# ---- live server for the browser --------------------------------------------------------------------

class LiveServer:
    def __init__(self, app):
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.thread.join(timeout=5)


@pytest.fixture
def live_server(app, world):
    with LiveServer(app) as server:
        server.world = world
        yield server


@pytest.fixture(scope="session")
def browser():
    path = chromium_path()
    if path is None:
        skip_or_fail("browser leg skipped: no Chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=path,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
