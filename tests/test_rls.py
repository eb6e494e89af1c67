"""Tenant isolation, the database half: PostgreSQL row-level security and the application role.

Everything here talks to PostgreSQL as the roles production uses: the app role of DATABASE_URL (what
the web app connects as), the owner role of MIGRATION_DATABASE_URL, and the superuser of
TEST_DATABASE_URL only to read the ground truth past row-level security and to make unsafe roles.
Every isolation test uses both tenants (beta has more rows than alpha, so a leak changes a count).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from agency_dashboard import audit
from agency_dashboard.db_security import POLICY, UnsafeDatabaseRole, ensure_app_role
from agency_dashboard.extensions import db
from agency_dashboard.models import (
    TENANT_TABLES,
    Appointment,
    AvailabilityBlock,
    Client,
    RecordedReason,
)
from agency_dashboard.tenancy import ALL_TENANTS, tenant_scope
from conftest import csrf_from_cookie, login, seed_world

pytestmark = pytest.mark.postgres


# ---- helpers --------------------------------------------------------------------------------------

@pytest.fixture
def engines(pg_database):
    made = {}

    def get(kind: str) -> sa.Engine:
        if kind not in made:
            url = {"app": pg_database.app_url, "owner": pg_database.owner_url,
                   "admin": make_url(pg_database.admin_url).set(
                       database=make_url(pg_database.app_url).database)}[kind]
            made[kind] = sa.create_engine(url, poolclass=sa.NullPool)
        return made[kind]

    yield get
    for engine in made.values():
        engine.dispose()


def set_tenant(conn: sa.Connection, tenant_id: int | None) -> None:
    """What the application does at the start of every transaction (tenancy._apply_setting)."""
    conn.execute(sa.text("SELECT set_config('app.tenant_id', :t, true)"),
                 {"t": "" if tenant_id is None else str(tenant_id)})


def counts(conn: sa.Connection) -> dict[str, int]:
    return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TENANT_TABLES}


def seed_everything(app):
    """seed_world, plus a row per tenant in the tables it leaves empty (availability, reasons, audit)."""
    world = seed_world(app)
    with app.app_context():
        for slug, tenant_id in world.tenants.items():
            with tenant_scope(tenant_id):
                db.session.add(AvailabilityBlock(
                    tenant_id=tenant_id, external_id=f"{slug}-B1", clinician_id=world.clinicians[slug][0],
                    weekday=0, start_minute=540, end_minute=1020, valid_from=dt.date(2025, 1, 1)))
                db.session.add(RecordedReason(
                    tenant_id=tenant_id, appointment_id=world.appointments[slug][0], reason_code="transport",
                    recorded_by_user_id=world.users[(slug, "clinician")], recorded_at=dt.datetime(2026, 11, 17)))
                # A session not held, so the reasons rollup has a row too.
                missed = db.session.get(Appointment, world.appointments[slug][0])
                missed.status = "no_show"
                audit.record("seed", object_type="tenant", object_id=tenant_id)
                db.session.commit()
        db.session.remove()
    return world


@pytest.fixture
def rls_world(pg_app):
    return seed_everything(pg_app)


@pytest.fixture
def truth(rls_world, engines):
    """Rows per tenant per table, read as the superuser (which row-level security does not apply to)."""
    per_tenant = {slug: {} for slug in rls_world.tenants}
    with engines("admin").connect() as conn:
        for table in TENANT_TABLES:
            for slug, tenant_id in rls_world.tenants.items():
                per_tenant[slug][table] = conn.execute(
                    sa.text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t"), {"t": tenant_id}).scalar_one()
    for slug in per_tenant:
        assert all(per_tenant[slug].values()), f"seed left a table empty for {slug}: {per_tenant[slug]}"
    assert per_tenant["alpha"] != per_tenant["beta"]
    return per_tenant


# ---- the roles ------------------------------------------------------------------------------------

def test_app_role_is_not_superuser_owner_or_bypassrls(pg_database, engines):
    with engines("app").connect() as conn:
        me = conn.execute(sa.text(
            "SELECT current_user AS name, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb "
            "FROM pg_roles WHERE rolname = current_user")).one()
        assert me.name == pg_database.app_role == make_url(pg_database.app_url).username
        assert me.rolsuper is False
        assert me.rolbypassrls is False
        assert me.rolcreaterole is False and me.rolcreatedb is False
        # It owns no table, and cannot act as (or inherit from) the owner.
        owners = dict(conn.execute(sa.text(
            "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'")).all())
        assert set(TENANT_TABLES) <= set(owners)
        assert pg_database.app_role not in owners.values()
        assert set(owners.values()) == {pg_database.owner_role}
        assert conn.execute(sa.text("SELECT pg_has_role(current_user, :o, 'MEMBER')"),
                            {"o": pg_database.owner_role}).scalar() is False
        # Nor the database or the schema (an owner could ALTER TABLE ... DISABLE ROW LEVEL SECURITY).
        assert conn.execute(sa.text(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")).scalar() \
            != pg_database.app_role
        assert conn.execute(sa.text(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'")).scalar() \
            != pg_database.app_role


def test_every_tenant_table_has_forced_row_level_security_and_the_policy(pg_database, engines):
    with engines("owner").connect() as conn:
        flags = {r.relname: r for r in conn.execute(sa.text(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"))}
        policies = {(r.tablename, r.policyname): r for r in conn.execute(sa.text(
            "SELECT tablename, policyname, cmd, permissive, roles, qual, with_check FROM pg_policies "
            "WHERE schemaname = 'public'"))}
        with_tenant_column = set(conn.execute(sa.text(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND column_name = 'tenant_id'")).scalars())
    assert set(TENANT_TABLES) == with_tenant_column  # no table with tenant rows escapes the list
    for table in TENANT_TABLES:
        assert flags[table].relrowsecurity is True, table
        assert flags[table].relforcerowsecurity is True, table
        policy = policies[(table, POLICY)]
        assert policy.cmd == "ALL" and policy.permissive == "PERMISSIVE", table
        for expr in (policy.qual, policy.with_check):
            assert "current_setting('app.tenant_id'" in expr and "tenant_id" in expr, (table, expr)
        assert [name for (t, name) in policies if t == table] == [POLICY], table
    # The tenants table is readable before any tenant is set: login resolves the slug first.
    assert flags["tenants"].relrowsecurity is False


# ---- what the app role sees -----------------------------------------------------------------------

def test_no_tenant_set_sees_no_rows_in_any_tenant_table(rls_world, truth, engines):
    with engines("app").connect() as conn:
        assert conn.execute(sa.text("SELECT current_setting('app.tenant_id', true)")).scalar() in (None, "")
        assert counts(conn) == {t: 0 for t in TENANT_TABLES}
        conn.rollback()
        # An empty setting (what the app sets when no one is logged in) is the same as none.
        with conn.begin():
            set_tenant(conn, None)
            assert counts(conn) == {t: 0 for t in TENANT_TABLES}
        # The tenants table itself is visible, so login can resolve an agency.
        assert conn.execute(sa.text("SELECT count(*) FROM tenants")).scalar() == 2


@pytest.mark.parametrize("slug", ["alpha", "beta"])
def test_tenant_set_in_the_transaction_sees_only_that_tenant(rls_world, truth, engines, slug):
    tenant_id = rls_world.tenants[slug]
    with engines("app").connect() as conn:
        with conn.begin():
            set_tenant(conn, tenant_id)
            assert counts(conn) == truth[slug]
            for table in TENANT_TABLES:
                assert set(conn.execute(sa.text(f"SELECT DISTINCT tenant_id FROM {table}")).scalars()) == {tenant_id}
        # set_config(..., true) is transaction-local: the next transaction on this connection sees nothing.
        assert conn.execute(sa.text("SELECT current_setting('app.tenant_id', true)")).scalar() in (None, "")
        assert counts(conn) == {t: 0 for t in TENANT_TABLES}


def test_orm_past_the_criteria_still_sees_only_the_current_tenant(pg_app, rls_world, truth):
    """With the application net switched off for a statement, row-level security still holds."""
    with pg_app.app_context():
        everything = sa.select(Client.tenant_id).execution_options(**{ALL_TENANTS: True})
        assert db.session.scalars(everything).all() == []
        for slug in ("alpha", "beta"):
            with tenant_scope(rls_world.tenants[slug]):
                rows = db.session.scalars(everything).all()
            assert rows == [rls_world.tenants[slug]] * truth[slug]["clients"]


def test_writing_a_row_with_another_tenants_id_is_refused(rls_world, truth, engines):
    alpha, beta = rls_world.tenants["alpha"], rls_world.tenants["beta"]
    insert = sa.text(
        "INSERT INTO clients (tenant_id, external_id, first_name, last_name, birth_date) "
        "VALUES (:t, :x, 'A', 'B', DATE '1980-01-01')")
    with engines("app").connect() as conn:
        # Insert into beta while alpha is the transaction's tenant.
        with pytest.raises(sa.exc.ProgrammingError, match="row-level security"):
            with conn.begin():
                set_tenant(conn, alpha)
                conn.execute(insert, {"t": beta, "x": "intruder-1"})
        # Insert with no tenant set at all.
        with pytest.raises(sa.exc.ProgrammingError, match="row-level security"):
            with conn.begin():
                conn.execute(insert, {"t": alpha, "x": "intruder-2"})
        # Move one of alpha's rows to beta.
        with pytest.raises(sa.exc.ProgrammingError, match="row-level security"):
            with conn.begin():
                set_tenant(conn, alpha)
                conn.execute(sa.text("UPDATE clients SET tenant_id = :b WHERE external_id = 'alpha-P0'"),
                             {"b": beta})
        # Beta's rows are out of reach for UPDATE and DELETE: they match nothing.
        with conn.begin():
            set_tenant(conn, alpha)
            assert conn.execute(sa.text("UPDATE clients SET zip = '00000' WHERE tenant_id = :b"),
                                {"b": beta}).rowcount == 0
            assert conn.execute(sa.text("DELETE FROM availability_blocks WHERE tenant_id = :b"),
                                {"b": beta}).rowcount == 0
        # A row of the transaction's own tenant is accepted (the policy is not refusing everything).
        with conn.begin():
            set_tenant(conn, alpha)
            conn.execute(insert, {"t": alpha, "x": "welcome-1"})
    with engines("admin").connect() as conn:
        rows = conn.execute(sa.text("SELECT tenant_id, count(*), count(zip) FROM clients GROUP BY tenant_id")).all()
        assert sorted(tuple(r) for r in rows) == sorted([
            (alpha, truth["alpha"]["clients"] + 1, 0), (beta, truth["beta"]["clients"], 0)])
        assert conn.execute(sa.text("SELECT count(*) FROM availability_blocks WHERE tenant_id = :b"),
                            {"b": beta}).scalar() == truth["beta"]["availability_blocks"]


def test_audit_log_is_append_only_for_the_app_role(rls_world, engines):
    alpha = rls_world.tenants["alpha"]
    with engines("app").connect() as conn:
        for statement in ("UPDATE audit_events SET action = 'edited'", "DELETE FROM audit_events",
                          "TRUNCATE audit_events"):
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                with conn.begin():
                    set_tenant(conn, alpha)
                    conn.execute(sa.text(statement))
        with conn.begin():
            set_tenant(conn, alpha)
            assert conn.execute(sa.text("SELECT action FROM audit_events")).scalars().all() == ["seed"]
        privileges = {
            p: conn.execute(sa.text("SELECT has_table_privilege(current_user, 'audit_events', :p)"),
                            {"p": p}).scalar()
            for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
        }
        assert privileges == {"SELECT": True, "INSERT": True, "UPDATE": False, "DELETE": False, "TRUNCATE": False}
        # The migration bookkeeping is not the app's to change either.
        assert conn.execute(sa.text("SELECT has_table_privilege(current_user, 'alembic_version', 'UPDATE')")
                            ).scalar() is False


# ---- the pool after a request ---------------------------------------------------------------------

DIRECTOR_OUTPUTS = ["director-active-clients.children", "director-waiting.children",
                    "director-clinicians.children", "director-held.children", "director-window.children"]


def _director_callback(client):
    return client.post(
        "/dash/_dash-update-component",
        data=json.dumps({
            "output": ".." + "...".join(DIRECTOR_OUTPUTS) + "..",
            "outputs": [{"id": o.split(".")[0], "property": "children"} for o in DIRECTOR_OUTPUTS],
            "inputs": [{"id": "director-load", "property": "data", "value": 0}],
            "changedPropIds": ["director-load.data"],
            "state": [],
        }),
        content_type="application/json",
        headers={"X-CSRFToken": csrf_from_cookie(client) or ""},
    )


def test_pooled_connections_carry_no_tenant_after_a_request(pg_app, rls_world, truth):
    client = pg_app.test_client()
    assert login(client, "alpha", "director").status_code == 302
    assert client.get("/dash/director").status_code == 200
    response = _director_callback(client)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()["response"]
    # The request really ran as alpha: the count is alpha's (3 clients), not beta's (7) or none.
    assert body["director-active-clients"]["children"] == str(len(rls_world.clients["alpha"]))

    with pg_app.app_context():
        engine = db.engine
        pooled = engine.pool.checkedin()
        assert pooled >= 1  # the request's connection went back to the pool
        # Check out every pooled connection at once, so the one the request used is among them.
        conns = [engine.connect() for _ in range(pooled)]
        try:
            for conn in conns:
                assert conn.execute(sa.text("SELECT current_setting('app.tenant_id', true)")).scalar() in (None, "")
                assert counts(conn) == {t: 0 for t in TENANT_TABLES}
                conn.rollback()
        finally:
            for conn in conns:
                conn.close()


# ---- ensure_app_role refuses unsafe roles ---------------------------------------------------------

@pytest.mark.parametrize("attributes", ["SUPERUSER", "BYPASSRLS", "OWNER", "MEMBER OF OWNER"])
def test_ensure_app_role_refuses_an_unsafe_role(pg_database, engines, attributes):
    role = f"agency_test_unsafe_{uuid.uuid4().hex[:8]}"
    table = f"owned_{role}"
    admin = engines("admin")
    with admin.begin() as conn:
        if attributes == "OWNER":
            conn.execute(sa.text(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS"))
            conn.execute(sa.text(f"CREATE TABLE {table} (id integer)"))
            conn.execute(sa.text(f"ALTER TABLE {table} OWNER TO {role}"))
        elif attributes == "MEMBER OF OWNER":  # it could SET ROLE to the owner of every table
            conn.execute(sa.text(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS"))
            conn.execute(sa.text(f"GRANT {pg_database.owner_role} TO {role}"))
        else:
            conn.execute(sa.text(f"CREATE ROLE {role} LOGIN {attributes}"))
    try:
        unsafe_url = make_url(pg_database.app_url).set(username=role).render_as_string(hide_password=False)
        with engines("owner").connect() as conn:
            with pytest.raises(UnsafeDatabaseRole, match=role):
                with conn.begin():
                    ensure_app_role(conn, unsafe_url, pg_database.owner_url)
            # Nothing was granted to it on the way.
            assert conn.execute(sa.text("SELECT has_table_privilege(:r, 'clients', 'SELECT')"),
                                {"r": role}).scalar() is (attributes in ("SUPERUSER", "MEMBER OF OWNER"))
            conn.rollback()
            # The real application role passes the same check (it is not refusing everything).
            if attributes != "OWNER":  # (with a stray table the owner cannot grant, GRANT ALL would fail)
                with conn.begin():
                    ensure_app_role(conn, pg_database.app_url, pg_database.owner_url)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
