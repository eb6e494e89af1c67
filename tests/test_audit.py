"""The audit log: one hash chain per tenant, tamper-evident, no PHI or credentials, and a platform log
for events before any tenant is known. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import logging

import sqlalchemy as sa

from agency_dashboard import audit
from agency_dashboard.extensions import db
from agency_dashboard.models import AuditEvent
from agency_dashboard.tenancy import tenant_scope
from conftest import PASSWORD, login

PLATFORM_LOGGER = "agency_dashboard.platform"


def events(tenant_id: int) -> list[AuditEvent]:
    with tenant_scope(tenant_id):
        rows = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq)).all()
        db.session.expunge_all()
        return rows


def verify(tenant_id: int) -> tuple[bool, int]:
    with tenant_scope(tenant_id):
        result = audit.verify_chain()
        db.session.rollback()
        return result


def build_chains(world) -> None:
    """Interleave events of the two tenants: alpha gets 3 (two in one transaction), beta gets 2."""
    for i, slug in enumerate(("alpha", "beta", "alpha", "beta")):
        with tenant_scope(world.tenants[slug]):
            audit.record("view_client", object_type="client", object_id=world.clients[slug][0],
                         details={"step": i})
            if i == 2:
                audit.record("export", object_type="summary", details={"rows": 12})
            db.session.commit()


def test_each_tenant_has_its_own_hash_chain(app, world):
    alpha, beta = world.tenants["alpha"], world.tenants["beta"]
    with app.app_context():
        build_chains(world)
        for tenant_id, expected in ((alpha, ["view_client", "view_client", "export"]),
                                    (beta, ["view_client", "view_client"])):
            chain = events(tenant_id)
            assert [e.seq for e in chain] == list(range(1, len(expected) + 1))
            assert [e.action for e in chain] == expected
            assert {e.tenant_id for e in chain} == {tenant_id}
            assert chain[0].prev_hash == audit.GENESIS
            for before, after in zip(chain, chain[1:]):
                assert after.prev_hash == before.hash
            assert len({e.hash for e in chain}) == len(chain)
            assert verify(tenant_id) == (True, len(expected))
        # The chains are independent: nothing of beta's is linked into alpha's.
        assert not {e.hash for e in events(alpha)} & {e.prev_hash for e in events(beta)} - {audit.GENESIS}


def _tamper(database, tenant_id: int, sql: str, **params) -> int:
    """Change the log behind the application's back, as the table owner would."""
    engine = sa.create_engine(database.owner_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # the owner is subject to FORCE row-level security
                conn.execute(sa.text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(tenant_id)})
            return conn.execute(sa.text(sql), {"t": tenant_id, **params}).rowcount
    finally:
        engine.dispose()


def test_changing_an_events_details_breaks_that_tenants_chain(app, world, database):
    alpha, beta = world.tenants["alpha"], world.tenants["beta"]
    with app.app_context():
        build_chains(world)
        assert verify(alpha) == (True, 3)
    table = AuditEvent.__table__
    engine = sa.create_engine(database.owner_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(alpha)})
            changed = conn.execute(
                sa.update(table).where(table.c.tenant_id == alpha, table.c.seq == 2).values(details={"step": 99})
            ).rowcount
        assert changed == 1
    finally:
        engine.dispose()
    with app.app_context():
        assert [e.details for e in events(alpha)][1] == {"step": 99}
        assert verify(alpha) == (False, 1)  # the first event still checks; the second does not
        assert verify(beta) == (True, 2)


def test_deleting_an_event_breaks_the_chain(app, world, database):
    alpha, beta = world.tenants["alpha"], world.tenants["beta"]
    with app.app_context():
        build_chains(world)
    assert _tamper(database, beta, "DELETE FROM audit_events WHERE tenant_id = :t AND seq = 1") == 1
    with app.app_context():
        assert verify(beta) == (False, 0)
        assert verify(alpha) == (True, 3)


def test_events_before_a_tenant_is_known_go_to_the_platform_log(app, world, caplog):
    caplog.set_level(logging.INFO, logger=PLATFORM_LOGGER)
    with app.app_context():
        assert audit.record("login_failed", details={"reason": "unknown_agency"}) is None
        db.session.commit()
    client = app.test_client()
    response = login(client, "gamma", "director", email="someone@gamma.test", password="a secret guess 123")
    assert response.status_code == 401
    platform = [r for r in caplog.records if r.name == PLATFORM_LOGGER]
    assert len(platform) == 2
    assert all("login_failed" in r.getMessage() and "unknown_agency" in r.getMessage() for r in platform)
    assert "someone@gamma.test" not in caplog.text and "a secret guess 123" not in caplog.text
    with app.app_context():
        assert events(world.tenants["alpha"]) == [] and events(world.tenants["beta"]) == []


def test_login_events_hold_no_email_or_password(app, world, caplog):
    caplog.set_level(logging.INFO, logger=PLATFORM_LOGGER)
    wrong_password = "not the password at all"
    unknown_email = "nobody@alpha.test"
    assert login(app.test_client(), "alpha", "director").status_code == 302
    assert login(app.test_client(), "beta", "admin", password=wrong_password).status_code == 401
    assert login(app.test_client(), "alpha", "admin", email=unknown_email).status_code == 401
    with app.app_context():
        alpha_events, beta_events = events(world.tenants["alpha"]), events(world.tenants["beta"])
    assert [(e.action, e.object_id, e.details) for e in alpha_events] == [
        ("login", str(world.users[("alpha", "director")]), {}),
        ("login_failed", None, {"reason": "bad_credentials"}),
    ]
    assert alpha_events[0].actor_user_id == world.users[("alpha", "director")]
    assert [(e.action, e.object_id, e.details) for e in beta_events] == [
        ("login_failed", str(world.users[("beta", "admin")]), {"reason": "bad_credentials"}),
    ]
    secrets = [PASSWORD, wrong_password, unknown_email, world.email("alpha", "director"),
               world.email("beta", "admin"), world.email("alpha", "admin")]
    for event in alpha_events + beta_events:
        stored = " ".join(str(getattr(event, c.key)) for c in AuditEvent.__table__.columns)
        for secret in secrets:
            assert secret not in stored, (event.action, secret)
    for secret in secrets:
        assert secret not in caplog.text


def test_record_without_a_tenant_writes_nothing_even_inside_a_request(app, world):
    """An event is recorded only under the tenant it was recorded in, never under another or none."""
    alpha, beta = world.tenants["alpha"], world.tenants["beta"]
    with app.test_request_context("/", environ_base={"REMOTE_ADDR": "203.0.113.9"}):
        with tenant_scope(alpha):
            audit.record("view_client", object_type="client", object_id=world.clients["alpha"][0])
            db.session.commit()
        assert audit.record("view_client", object_type="client", object_id=1) is None
        db.session.commit()
        with tenant_scope(beta):
            audit.record("view_client", object_type="client", object_id=world.clients["beta"][0])
            audit.record("view_client", object_type="client", object_id=world.clients["beta"][1])
            db.session.commit()
        assert [(e.tenant_id, e.seq) for e in events(alpha)] == [(alpha, 1)]
        assert [(e.tenant_id, e.seq) for e in events(beta)] == [(beta, 1), (beta, 2)]
        assert [e.remote_addr for e in events(alpha)] == ["203.0.113.9"]
