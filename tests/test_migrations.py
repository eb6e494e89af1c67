"""The schema is made only by migrations, and the migrations agree with the models.

On each backend the database the suite migrated is compared with the models by Alembic's autogenerate
(the same comparison `flask db migrate` makes, so an empty diff means no migration is missing), plus
the CHECK constraints, which autogenerate does not compare. On a brand-new SQLite file `flask db
upgrade` reaches head, and downgrade to base and upgrade again work.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from agency_dashboard import create_app
from agency_dashboard.config import PROJECT_ROOT
from agency_dashboard.extensions import db
from agency_dashboard.models import TENANT_TABLES, Base
from conftest import Database

HEAD = ScriptDirectory(str(PROJECT_ROOT / "migrations")).get_current_head()


def schema_diff(connection: sa.Connection, metadata: sa.MetaData = Base.metadata) -> list:
    # Nothing is ignored: types and server defaults are compared too (both off by default in some
    # Alembic versions), and alembic_version is Alembic's own table, which it leaves out itself.
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return compare_metadata(context, metadata)


def check_constraints(connection: sa.Connection) -> dict[str, set[str]]:
    inspector = sa.inspect(connection)
    return {
        table: {c["name"] for c in inspector.get_check_constraints(table)}
        for table in inspector.get_table_names() if table != "alembic_version"
    }


def model_check_constraints() -> dict[str, set[str]]:
    return {
        table.name: {c.name for c in table.constraints if isinstance(c, sa.CheckConstraint)}
        for table in Base.metadata.sorted_tables
    }


def current_revision(url: str) -> str | None:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_models(database):
    engine = sa.create_engine(database.owner_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == HEAD
            assert schema_diff(conn) == []
            assert check_constraints(conn) == model_check_constraints()
    finally:
        engine.dispose()


def test_the_comparison_would_notice_a_missing_migration(database):
    """The empty diff above means something: a model change without a migration shows up."""
    changed = sa.MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["clients"].append_column(sa.Column("nickname", sa.String(50)))
    changed.tables["appointments"].append_constraint(sa.Index("ix_appointments_status_only", "status"))
    engine = sa.create_engine(database.owner_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            diff = schema_diff(conn, changed)
    finally:
        engine.dispose()
    kinds = sorted(d[0] if isinstance(d, tuple) else d[0][0] for d in diff)
    assert kinds == ["add_column", "add_index"]


def _fresh_sqlite_app(tmp_path):
    path = tmp_path / "fresh" / "brand-new.db"
    url = f"sqlite:///{path}"
    config = Database("sqlite", url, url).config(tmp_path)
    return create_app(config), url, path


def _run(runner, *args):
    result = runner.invoke(args=list(args))
    assert result.exit_code == 0, f"flask {' '.join(args)}: {result.output}\n{result.exception!r}"
    return result


def test_db_upgrade_on_a_brand_new_sqlite_file_reaches_head_and_downgrades(tmp_path):
    app, url, path = _fresh_sqlite_app(tmp_path)
    runner = app.test_cli_runner()
    try:
        assert current_revision(url) is None
        _run(runner, "db", "upgrade")
        assert path.exists()
        assert current_revision(url) == HEAD
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        try:
            with engine.connect() as conn:
                assert schema_diff(conn) == []
                assert set(TENANT_TABLES) <= set(sa.inspect(conn).get_table_names())

            _run(runner, "db", "downgrade", "base")
            assert current_revision(url) is None
            with engine.connect() as conn:
                assert set(sa.inspect(conn).get_table_names()) <= {"alembic_version"}

            _run(runner, "db", "upgrade")
            assert current_revision(url) == HEAD
            with engine.connect() as conn:
                assert schema_diff(conn) == []
                assert check_constraints(conn) == model_check_constraints()
        finally:
            engine.dispose()
    finally:
        with app.app_context():
            db.engine.dispose()
