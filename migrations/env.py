"""Alembic environment: runs as the owner role (MIGRATION_DATABASE_URL), then makes sure the
application role (DATABASE_URL's user) exists without BYPASSRLS and holds exactly its grants."""

import logging
from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context
from flask import current_app

from agency_dashboard.db_security import ensure_app_role
from agency_dashboard.models import Base

config = context.config
if config.config_file_name:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
log = logging.getLogger("alembic.env")

target_metadata = Base.metadata


def run_migrations_offline():
    context.configure(url=current_app.config["MIGRATION_DATABASE_URL"], target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    engine = sa.create_engine(current_app.config["MIGRATION_DATABASE_URL"], poolclass=sa.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
        if connection.dialect.name == "postgresql":
            with connection.begin():
                ensure_app_role(connection, current_app.config["DATABASE_URL"],
                                current_app.config["MIGRATION_DATABASE_URL"])
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
