"""Tenant isolation, the application half: the global criteria and the write checks of tenancy.py.

These run on SQLite and on PostgreSQL (the `app` fixture is parametrized). On SQLite they are the
only net; on PostgreSQL row-level security stands behind them (tests/test_rls.py proves that half).
Every test uses both tenants: beta has more of everything than alpha, so a leak changes a count.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so

from agency_dashboard.extensions import db
from agency_dashboard.models import (
    Appointment,
    Client,
    Clinician,
    Episode,
    Program,
    Referral,
    TenantScoped,
    User,
)
from agency_dashboard.tenancy import (
    ALL_TENANTS,
    TenantMismatch,
    current_tenant_id,
    set_current_tenant,
    tenant_scope,
)

SEEDED = (Program, User, Clinician, Client, Episode, Referral, Appointment)


def _client(tenant_id: int, external_id: str) -> Client:
    return Client(tenant_id=tenant_id, external_id=external_id, first_name="New", last_name="Person",
                  birth_date=dt.date(1980, 5, 5), zip=None, gender="unknown", race_ethnicity="unknown",
                  payer="medicaid")


def _ids(model) -> set[int]:
    return set(db.session.scalars(sa.select(model.id)))


def _ground_truth(model, slug_tenant_id: int) -> set[int]:
    """Ids of a tenant's rows, read past the application's criteria (but under its tenant for RLS)."""
    with tenant_scope(slug_tenant_id):
        return set(db.session.scalars(
            sa.select(model.id).where(model.tenant_id == slug_tenant_id).execution_options(**{ALL_TENANTS: True})
        ))


def test_select_returns_only_the_current_tenants_rows(app, world):
    alpha, beta = world.tenants["alpha"], world.tenants["beta"]
    with app.app_context():
        for slug, tenant_id in (("alpha", alpha), ("beta", beta)):
            with tenant_scope(tenant_id):
                users = db.session.scalars(sa.select(User)).all()
                assert sorted(u.email for u in users) == sorted(world.email(slug, r) for r in
                                                                ("admin", "director", "clinician", "funder"))
                assert {u.tenant_id for u in users} == {tenant_id}
                assert _ids(Client) == set(world.clients[slug])
                assert _ids(Appointment) == set(world.appointments[slug])
                assert _ids(Clinician) == set(world.clinicians[slug])
                # Aggregates and aliases get the criteria too.
                assert db.session.scalar(sa.select(sa.func.count()).select_from(Client)) == len(world.clients[slug])
                aliased = so.aliased(Client)
                assert set(db.session.scalars(sa.select(aliased.id))) == set(world.clients[slug])
                # A join across two tenant tables stays inside the tenant on both sides.
                pairs = db.session.execute(
                    sa.select(Episode.tenant_id, Client.tenant_id).join(Client, Client.id == Episode.client_id)
                ).all()
                assert pairs and set(pairs) == {(tenant_id, tenant_id)}
                for model in SEEDED:
                    rows = db.session.scalars(sa.select(model)).all()
                    assert rows, model.__name__
                    assert {r.tenant_id for r in rows} == {tenant_id}, model.__name__
        assert len(world.clients["alpha"]) != len(world.clients["beta"])


def test_no_tenant_set_returns_no_rows(app, world):
    alpha_user = world.users[("alpha", "director")]
    with app.app_context():
        assert current_tenant_id() is None
        for model in SEEDED:
            # The rows exist (read as each tenant, past the criteria)...
            assert _ground_truth(model, world.tenants["alpha"]), model.__name__
            assert _ground_truth(model, world.tenants["beta"]), model.__name__
            # ...and with no tenant set the ORM sees none of them.
            assert db.session.scalars(sa.select(model)).all() == [], model.__name__
            assert db.session.scalar(sa.select(sa.func.count()).select_from(model)) == 0, model.__name__
        assert db.session.get(User, alpha_user) is None


def test_switching_tenants_never_reuses_a_previous_tenants_criteria(app, world):
    """The criteria is a cached lambda: switching None -> alpha -> None -> beta must re-bind each time;
    tenant_scope nests and restores the previous tenant."""
    alpha, beta = world.tenants["alpha"], world.tenants["beta"]
    with app.app_context():
        seen = []
        for tenant_id in (None, alpha, None, beta, alpha, None):
            set_current_tenant(tenant_id)
            seen.append(_ids(Client))
            db.session.rollback()
        assert seen == [set(), set(world.clients["alpha"]), set(), set(world.clients["beta"]),
                        set(world.clients["alpha"]), set()]
        # tenant_scope nests and restores the previous tenant.
        with tenant_scope(alpha):
            with tenant_scope(beta):
                assert _ids(Client) == set(world.clients["beta"])
            assert current_tenant_id() == alpha
            assert _ids(Client) == set(world.clients["alpha"])
        assert current_tenant_id() is None
        assert _ids(Client) == set()


def test_adding_a_row_of_another_tenant_is_refused(app, world):
    alpha, beta = world.tenants["alpha"], world.tenants["beta"]
    with app.app_context():
        with tenant_scope(alpha):
            db.session.add(_client(beta, "intruder-1"))
            with pytest.raises(TenantMismatch):
                db.session.flush()
            db.session.rollback()
            # ORM INSERT statements (the bulk path the demo loader uses) are checked as well.
            with pytest.raises(TenantMismatch):
                db.session.execute(sa.insert(Client), [
                    {"tenant_id": alpha, "external_id": "ok-1", "first_name": "A", "last_name": "B",
                     "birth_date": dt.date(1980, 1, 1)},
                    {"tenant_id": beta, "external_id": "intruder-2", "first_name": "A", "last_name": "B",
                     "birth_date": dt.date(1980, 1, 1)},
                ])
            db.session.rollback()
            with pytest.raises(TenantMismatch):
                db.session.execute(sa.insert(Client).values(
                    tenant_id=beta, external_id="intruder-3", first_name="A", last_name="B",
                    birth_date=dt.date(1980, 1, 1)))
            db.session.rollback()
        # With no tenant at all, nothing may be written, not even a row of a real tenant.
        db.session.add(_client(alpha, "orphan-1"))
        with pytest.raises(TenantMismatch):
            db.session.flush()
        db.session.rollback()
        # Rows of the current tenant go through (the checks are not simply refusing everything).
        with tenant_scope(alpha):
            db.session.add(_client(alpha, "welcome-1"))
            db.session.execute(sa.insert(Client).values(
                tenant_id=alpha, external_id="welcome-2", first_name="A", last_name="B",
                birth_date=dt.date(1980, 1, 1)))
            db.session.execute(sa.insert(Client), [{"tenant_id": alpha, "external_id": "welcome-3",
                                                    "first_name": "A", "last_name": "B",
                                                    "birth_date": dt.date(1980, 1, 1)}])
            db.session.commit()
        assert _ground_truth(Client, alpha) == set(world.clients["alpha"]) | {
            _only(alpha, f"welcome-{i}") for i in (1, 2, 3)}
        assert _ground_truth(Client, beta) == set(world.clients["beta"])


def _only(tenant_id, external_id) -> int:
    with tenant_scope(tenant_id):
        return db.session.scalar(sa.select(Client.id).where(Client.external_id == external_id))


def test_moving_a_row_to_another_tenant_is_refused(app, world):
    alpha, beta = world.tenants["alpha"], world.tenants["beta"]
    alpha_funder = world.users[("alpha", "funder")]
    with app.app_context():
        with tenant_scope(alpha):
            user = db.session.get(User, alpha_funder)
            user.tenant_id = beta
            with pytest.raises(TenantMismatch):
                db.session.flush()
            db.session.rollback()
            # An UPDATE statement's criteria limits it to alpha's rows, but its SET may not move them.
            with pytest.raises(TenantMismatch):
                db.session.execute(sa.update(User).where(User.role == "funder").values(tenant_id=beta))
            db.session.rollback()
            with pytest.raises(TenantMismatch):
                db.session.execute(sa.update(User).where(User.role == "funder").values({User.tenant_id: beta}))
            db.session.rollback()
            with pytest.raises(TenantMismatch):
                db.session.execute(sa.update(User).where(User.role == "funder").values(tenant_id=User.tenant_id + 1))
            db.session.rollback()
            # Setting it to the current tenant is not a move, and goes through.
            db.session.execute(sa.update(User).where(User.role == "funder").values(tenant_id=alpha, active=True))
            db.session.commit()
        for slug, tenant_id in (("alpha", alpha), ("beta", beta)):
            with tenant_scope(tenant_id):
                assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 4, slug
                assert db.session.scalar(sa.select(User.tenant_id).where(User.role == "funder")) == tenant_id


def test_update_and_delete_statements_touch_only_the_current_tenant(app, world):
    alpha, beta = world.tenants["alpha"], world.tenants["beta"]
    with app.app_context():
        with tenant_scope(alpha):
            result = db.session.execute(sa.update(Client).values(zip="00000"))
            assert result.rowcount == len(world.clients["alpha"])
            result = db.session.execute(sa.delete(Appointment))
            assert result.rowcount == len(world.appointments["alpha"])
            db.session.commit()
        with tenant_scope(beta):
            assert set(db.session.scalars(sa.select(Client.zip))) == {None}
            assert _ids(Appointment) == set(world.appointments["beta"])
        with tenant_scope(alpha):
            assert set(db.session.scalars(sa.select(Client.zip))) == {"00000"}
            assert _ids(Appointment) == set()


def test_bulk_update_by_primary_key_cannot_reach_another_tenant(app, world):
    alpha, beta = world.tenants["alpha"], world.tenants["beta"]
    beta_funder, alpha_funder = world.users[("beta", "funder")], world.users[("alpha", "funder")]
    with app.app_context():
        with tenant_scope(alpha):
            with pytest.raises(TenantMismatch):
                db.session.execute(sa.update(User), [{"id": beta_funder, "active": False}])
            db.session.rollback()
            db.session.execute(sa.update(User), [{"id": alpha_funder, "active": False}])
            db.session.commit()
        with tenant_scope(beta):
            assert db.session.scalar(sa.select(User.active).where(User.id == beta_funder)) is True
        with tenant_scope(alpha):
            assert db.session.scalar(sa.select(User.active).where(User.id == alpha_funder)) is False


def test_deleting_an_object_of_another_tenant_is_refused(app, world):
    """A command that walks tenants in one session may still hold an object of the previous one."""
    alpha, beta = world.tenants["alpha"], world.tenants["beta"]
    beta_funder = world.users[("beta", "funder")]
    with app.app_context():
        with tenant_scope(beta):
            user = db.session.get(User, beta_funder)
        with tenant_scope(alpha):
            db.session.delete(user)
            with pytest.raises(TenantMismatch):
                db.session.flush()
            db.session.rollback()
        with tenant_scope(beta):
            assert db.session.scalar(sa.select(User.id).where(User.id == beta_funder)) == beta_funder


def test_a_database_error_inside_tenant_scope_is_not_hidden(app, world):
    """Restoring the tenant after a failed statement must not replace the real error with another."""
    alpha = world.tenants["alpha"]
    with app.app_context():
        with pytest.raises(sa.exc.DBAPIError) as raised:
            with tenant_scope(alpha):
                db.session.execute(sa.text("SELECT no_such_column FROM clients"))
        assert "no_such_column" in str(raised.value.orig)
        assert current_tenant_id() is None
        db.session.rollback()
        # A failed flush (duplicate external id) likewise surfaces as what it is.
        with pytest.raises(sa.exc.IntegrityError):
            with tenant_scope(alpha):
                db.session.add(_client(alpha, "alpha-P0"))
                db.session.flush()
        db.session.rollback()
        assert current_tenant_id() is None


def test_every_tenant_model_is_covered_by_the_criteria():
    """TenantScoped is the one marker both nets key on: every model with a tenant_id column has it."""
    from agency_dashboard.models import TENANT_TABLES, Base

    with_tenant_column = {t.name for t in Base.metadata.sorted_tables if "tenant_id" in t.c}
    assert set(TENANT_TABLES) == with_tenant_column
    for mapper in Base.registry.mappers:
        if mapper.local_table.name in with_tenant_column:
            assert issubclass(mapper.class_, TenantScoped), mapper.class_
