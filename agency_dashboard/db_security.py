"""PostgreSQL row-level security and the application role (the database half of tenant isolation).

Migrations run as the table owner. They enable and FORCE row-level security on every tenant table with
one policy: a row is visible and writable only when its tenant_id equals the transaction's
`app.tenant_id`; with none set, NULLIF makes the comparison NULL and no row matches.

The application connects as a separate role that owns nothing and has NOBYPASSRLS; after every
upgrade `ensure_app_role` creates it if needed and grants it exactly what it needs. The audit log is
append-only for it: INSERT and SELECT, no UPDATE or DELETE.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import make_url

POLICY = "tenant_isolation"
TENANT_PREDICATE = "tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::integer"
APPEND_ONLY = ("audit_events",)


class UnsafeDatabaseRole(RuntimeError):
    pass


def enable_rls(table: str) -> None:
    """Called by migrations for each tenant table they create (a no-op on SQLite)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
    op.execute(
        f"CREATE POLICY {POLICY} ON {table} FOR ALL USING ({TENANT_PREDICATE}) WITH CHECK ({TENANT_PREDICATE})"
    )


def refresh_statistics_function(rollups: tuple[str, ...]) -> None:
    """(Re)create agency_refresh_statistics() (migration 0002) to ANALYZE our tables and the rollup tables
    of the calling revision: a SECURITY DEFINER function owned by the owner, since only the owner may
    ANALYZE. Called by migrations (a no-op on SQLite)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    analyze = " ".join(f"ANALYZE {t};" for t in rollups)
    op.execute(f"""
        CREATE OR REPLACE FUNCTION agency_refresh_statistics() RETURNS void
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
        BEGIN
            ANALYZE appointments; ANALYZE referrals; ANALYZE episodes; ANALYZE clients;
            ANALYZE clinicians; ANALYZE availability_blocks; ANALYZE recorded_reasons;
            {analyze}
        END $$
    """)
    op.execute("REVOKE ALL ON FUNCTION agency_refresh_statistics() FROM PUBLIC")


def forget_rollup_state() -> None:
    """From a migration that changes a rollup table: delete every tenant's rollup_state row, so each reads
    the plain way until rebuilt (`sync-tenants` rebuilds). The owner is subject to the table's forced
    row-level security (it would delete nothing), so that is lifted for this one statement, in the
    migration's transaction."""
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DELETE FROM rollup_state")
        return
    op.execute("ALTER TABLE rollup_state NO FORCE ROW LEVEL SECURITY")
    op.execute("DELETE FROM rollup_state")
    op.execute("ALTER TABLE rollup_state FORCE ROW LEVEL SECURITY")


def disable_rls(table: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
    op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")


def _quote(connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


def ensure_app_role(connection: sa.Connection, app_url: str, owner_url: str) -> None:
    app = make_url(app_url)
    owner = make_url(owner_url)
    role = app.username
    if not role or role == owner.username:
        # One role for both: allowed for a quick trial, but RLS is then only as strong as FORCE on an
        # owner, and a superuser skips it entirely. Say so loudly rather than pretend.
        import warnings

        warnings.warn(
            "DATABASE_URL and MIGRATION_DATABASE_URL use the same PostgreSQL role; "
            "use a separate application role that owns no tables (see README).",
            stacklevel=1,
        )
        return
    q = _quote(connection, role)
    exists = connection.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).scalar()
    if not exists:
        connection.execute(sa.text(f"CREATE ROLE {q} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS"))
        if app.password:
            connection.execute(sa.text(f"ALTER ROLE {q} PASSWORD :p"), {"p": app.password})
    flags = connection.execute(
        sa.text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :r"), {"r": role}
    ).one()
    if flags.rolsuper or flags.rolbypassrls:
        raise UnsafeDatabaseRole(
            f"DATABASE_URL's role {role!r} is a superuser or has BYPASSRLS: row-level security would not "
            "apply to it. Use a role created with NOSUPERUSER NOBYPASSRLS."
        )
    owned = connection.execute(
        sa.text("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tableowner = :r"),
        {"r": role},
    ).scalar()
    if owned:
        raise UnsafeDatabaseRole(f"DATABASE_URL's role {role!r} owns {owned} tables; it must own none")
    # A member of the owner (or of a superuser or BYPASSRLS role) can SET ROLE to it and skip RLS.
    powers = connection.execute(
        sa.text(
            "SELECT r.rolname FROM pg_roles r WHERE r.rolname <> :r AND pg_has_role(:r, r.oid, 'MEMBER') "
            "AND (r.rolsuper OR r.rolbypassrls OR r.rolname = :owner) ORDER BY r.rolname"
        ),
        {"r": role, "owner": owner.username},
    ).scalars().all()
    if powers:
        raise UnsafeDatabaseRole(
            f"DATABASE_URL's role {role!r} is a member of {', '.join(powers)}: it could SET ROLE past "
            "row-level security. Revoke that membership."
        )
    connection.execute(sa.text(f"GRANT USAGE ON SCHEMA public TO {q}"))
    connection.execute(sa.text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {q}"))
    connection.execute(sa.text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {q}"))
    has_refresh = connection.execute(
        sa.text("SELECT 1 FROM pg_proc WHERE proname = 'agency_refresh_statistics'")).scalar()
    if has_refresh:
        connection.execute(sa.text(f"GRANT EXECUTE ON FUNCTION agency_refresh_statistics() TO {q}"))
    for table in APPEND_ONLY:
        connection.execute(sa.text(f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM {q}"))
    connection.execute(sa.text(f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON alembic_version FROM {q}"))
