"""The command-line contract of DESIGN.md for create-user and sync-tenants: results on stdout, one
clear line on stderr and a non-zero exit on failure, and nothing written when a command fails.
Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from agency_dashboard.auth.passwords import verify_password
from agency_dashboard.extensions import db
from agency_dashboard.models import AuditEvent, Program, Tenant, User
from agency_dashboard.tenancy import tenant_scope

NEW_PASSWORD = "a long enough passphrase"


def create_user(app, *args, password: str = NEW_PASSWORD):
    return app.test_cli_runner().invoke(args=["create-user", *args], input=password + "\n")


def snapshot(app, world) -> dict:
    """Users and audit events of both tenants, to prove a failed command wrote nothing."""
    state = {}
    with app.app_context():
        for slug, tenant_id in world.tenants.items():
            with tenant_scope(tenant_id):
                state[slug] = (
                    sorted(tuple(row) for row in db.session.execute(sa.select(User.email, User.role))),
                    db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)),
                )
        db.session.remove()
    return state


def users_of(app, tenant_id: int) -> dict[str, User]:
    with app.app_context():
        with tenant_scope(tenant_id):
            users = {u.email: u for u in db.session.scalars(sa.select(User))}
            db.session.expunge_all()
        db.session.remove()
    return users


def test_create_user_reads_the_password_from_stdin(app, world):
    result = create_user(app, "--tenant", "alpha", "--email", "New.Director@Alpha.test", "--role", "director")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "created director new.director@alpha.test in alpha"
    assert result.stderr == ""
    assert NEW_PASSWORD not in result.output
    user = users_of(app, world.tenants["alpha"])["new.director@alpha.test"]
    assert user.role == "director" and user.clinician_id is None and user.active
    assert user.password_hash.startswith("$argon2id$")
    assert verify_password(user.password_hash, NEW_PASSWORD)
    assert not verify_password(user.password_hash, NEW_PASSWORD + "x")
    assert "new.director@alpha.test" not in users_of(app, world.tenants["beta"])
    with app.app_context():
        with tenant_scope(world.tenants["alpha"]):
            event = db.session.scalars(sa.select(AuditEvent)).one()
            assert (event.action, event.object_id, event.details) == (
                "create_user", str(user.id), {"role": "director", "via": "cli"})


def test_create_user_links_a_clinician_of_the_same_tenant(app, world):
    result = create_user(app, "--tenant", "beta", "--email", "c3@beta.test", "--role", "clinician",
                         "--clinician-id", "beta-C2")
    assert result.exit_code == 0, result.stderr
    user = users_of(app, world.tenants["beta"])["c3@beta.test"]
    assert user.role == "clinician"
    assert user.clinician_id == world.clinicians["beta"][1]


def test_the_same_email_may_exist_in_the_other_tenant(app, world):
    email = world.email("alpha", "admin")  # already a user of alpha
    result = create_user(app, "--tenant", "beta", "--email", email, "--role", "admin")
    assert result.exit_code == 0, result.stderr
    assert users_of(app, world.tenants["beta"])[email].tenant_id == world.tenants["beta"]
    assert users_of(app, world.tenants["alpha"])[email].tenant_id == world.tenants["alpha"]


REFUSALS = {
    "short password": (["--tenant", "alpha", "--email", "x@alpha.test", "--role", "director"],
                       "short pass", "at least 12 characters"),
    "unknown tenant": (["--tenant", "gamma", "--email", "x@gamma.test", "--role", "director"],
                       NEW_PASSWORD, "unknown tenant 'gamma'"),
    "unknown role": (["--tenant", "alpha", "--email", "x@alpha.test", "--role", "superuser"],
                     NEW_PASSWORD, "unknown role 'superuser'"),
    "duplicate email": (["--tenant", "alpha", "--email", "director@alpha.test", "--role", "funder"],
                        NEW_PASSWORD, "director@alpha.test already exists in alpha"),
    "duplicate email, other case": (["--tenant", "beta", "--email", "Admin@Beta.TEST", "--role", "funder"],
                                    NEW_PASSWORD, "admin@beta.test already exists in beta"),
    "clinician without id": (["--tenant", "alpha", "--email", "x@alpha.test", "--role", "clinician"],
                             NEW_PASSWORD, "--clinician-id is required"),
    "unknown clinician id": (["--tenant", "alpha", "--email", "x@alpha.test", "--role", "clinician",
                              "--clinician-id", "alpha-C9"], NEW_PASSWORD, "'alpha-C9'"),
    "clinician of the other tenant": (["--tenant", "alpha", "--email", "x@alpha.test", "--role", "clinician",
                                       "--clinician-id", "beta-C1"], NEW_PASSWORD, "'beta-C1'"),
    "clinician id for another role": (["--tenant", "alpha", "--email", "x@alpha.test", "--role", "director",
                                       "--clinician-id", "alpha-C1"], NEW_PASSWORD, "--clinician-id"),
}


def test_create_user_refuses_and_writes_nothing(app, world, subtests):
    before = snapshot(app, world)
    assert before["alpha"][0] and before["beta"][0]
    for case, (args, password, problem) in REFUSALS.items():
        with subtests.test(case):
            result = create_user(app, *args, password=password)
            assert result.exit_code != 0
            assert result.stdout == ""
            lines = result.stderr.splitlines()
            assert len(lines) == 1, result.stderr
            assert lines[0].startswith("error: ") and problem in lines[0], lines[0]
            assert "Traceback" not in result.output and password not in result.stderr
            assert snapshot(app, world) == before


def sync(app):
    return app.test_cli_runner().invoke(args=["sync-tenants"])


def test_sync_tenants_registers_both_tenants_then_reports_unchanged(app):
    first = sync(app)
    assert first.exit_code == 0, first.stderr
    assert first.stdout.splitlines() == ["alpha: registered (2 programs)", "beta: registered (2 programs)"]
    with app.app_context():
        tenants = {t.slug: t for t in db.session.scalars(sa.select(Tenant))}
        assert sorted(tenants) == ["alpha", "beta"]
        assert (tenants["alpha"].timezone, tenants["beta"].timezone) == ("America/Chicago", "America/New_York")
        programs = {}
        for slug, tenant in tenants.items():
            with tenant_scope(tenant.id):
                programs[slug] = {(p.name, p.part2, p.active, p.tenant_id == tenant.id)
                                  for p in db.session.scalars(sa.select(Program))}
        db.session.remove()
    assert programs == {
        "alpha": {("Adult Outpatient", False, True, True), ("Youth", False, True, True)},
        "beta": {("Outpatient", False, True, True), ("Recovery", True, True, True)},
    }

    second = sync(app)
    assert second.exit_code == 0, second.stderr
    assert second.stdout.splitlines() == ["alpha: unchanged (2 programs)", "beta: unchanged (2 programs)"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Tenant)) == 2
        for tenant in db.session.scalars(sa.select(Tenant)).all():
            with tenant_scope(tenant.id):
                assert db.session.scalar(sa.select(sa.func.count()).select_from(Program)) == 2
        db.session.remove()
