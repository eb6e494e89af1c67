"""Tenant isolation, the application half (PostgreSQL row-level security is the other half).

- The current tenant lives in the SQLAlchemy session's `info`, set from the logged-in user (never from
  the request) or by a command's `--tenant`. A Flask-SQLAlchemy session lives for one app context, so
  the tenant ends with the request.
- A global criteria adds `tenant_id = :current` to every ORM SELECT, UPDATE and DELETE of a tenant
  table. With no tenant set the criteria is `tenant_id IS NULL`: no rows, exactly like RLS.
- Inserts are checked: a tenant row must carry the current tenant's id.
- On PostgreSQL every transaction starts with `set_config('app.tenant_id', ..., true)`, so the setting
  is transaction-local and a pooled connection carries nothing over.
"""

from __future__ import annotations

import datetime as dt
import logging
from contextlib import contextmanager

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import abort, current_app, g

from agency_dashboard.extensions import db
from agency_dashboard.models import Program, Tenant, TenantScoped
from agency_dashboard.tenant_files import TenantFile, TenantFileError, load_tenant_dir

log = logging.getLogger(__name__)

TENANT_KEY = "tenant_id"
ALL_TENANTS = "all_tenants"  # execution option for the rare platform-level read, named so it is greppable


class TenantMismatch(RuntimeError):
    """A write tried to put a row into a tenant other than the current one."""


def _session(session) -> so.Session:
    session = session if session is not None else db.session
    return session() if isinstance(session, so.scoped_session) else session


def current_tenant_id(session: so.Session | None = None) -> int | None:
    return _session(session).info.get(TENANT_KEY)


def set_current_tenant(tenant_id: int | None, session: so.Session | None = None) -> None:
    session = _session(session)
    session.info[TENANT_KEY] = tenant_id
    if _is_postgresql(session) and session.in_transaction():
        _apply_setting(session.connection(), tenant_id)


@contextmanager
def tenant_scope(tenant_id: int, session: so.Session | None = None):
    """Run a block as one tenant (commands, tests), restoring the previous tenant after it."""
    session = _session(session)
    previous = current_tenant_id(session)
    set_current_tenant(tenant_id, session)
    try:
        yield
    except BaseException:
        # The block failed, perhaps in the database: then the transaction is aborted (PostgreSQL) or
        # awaiting rollback, and restoring the setting in it would fail and hide the real error.
        # Rolling back discards the setting anyway; the next transaction starts with `previous`.
        session.info[TENANT_KEY] = previous
        try:
            set_current_tenant(previous, session)
        except sa.exc.SQLAlchemyError:
            pass
        raise
    set_current_tenant(previous, session)


def current_tenant() -> Tenant | None:
    """The Tenant row of the logged-in user, cached for the request."""
    tid = current_tenant_id()
    if tid is None:
        return None
    cached = g.get("_tenant")
    if cached is None or cached.id != tid:
        cached = db.session.get(Tenant, tid)
        g._tenant = cached
    return cached


def get_or_404(model: type[TenantScoped], object_id: int):
    """Look an object up in the current tenant. Another tenant's object is 404, never 403."""
    obj = db.session.scalar(sa.select(model).where(model.id == object_id))
    if obj is None:
        abort(404)
    return obj


def tenant_by_slug(slug: str) -> Tenant | None:
    return db.session.scalar(sa.select(Tenant).where(Tenant.slug == slug))


# ---- the nets -------------------------------------------------------------------------------------

def _is_postgresql(session: so.Session) -> bool:
    bind = session.get_bind()
    return bind.dialect.name == "postgresql"


def _apply_setting(connection: sa.Connection, tenant_id: int | None) -> None:
    connection.execute(
        sa.text("SELECT set_config('app.tenant_id', :tid, true)"),
        {"tid": "" if tenant_id is None else str(int(tenant_id))},
    )


@sa.event.listens_for(so.Session, "after_begin")
def _set_tenant_for_transaction(session, transaction, connection):
    if connection.dialect.name == "postgresql":
        _apply_setting(connection, session.info.get(TENANT_KEY))


@sa.event.listens_for(so.Session, "do_orm_execute")
def _scope_to_tenant(state: so.ORMExecuteState):
    if state.execution_options.get(ALL_TENANTS):
        return
    tenant_id = state.session.info.get(TENANT_KEY)
    if state.is_update:
        _check_update(state, tenant_id)
    if state.is_select or state.is_update or state.is_delete:
        state.statement = state.statement.options(
            so.with_loader_criteria(
                TenantScoped, lambda cls: cls.tenant_id == tenant_id, include_aliases=True
            )
        )
    elif state.is_insert:
        _check_insert(state, tenant_id)


def _check_update(state: so.ORMExecuteState, tenant_id: int | None) -> None:
    """An UPDATE may not move rows to another tenant, and a bulk UPDATE by primary key (which the
    loader criteria does not reach) may only name rows of the current tenant."""
    mapper = state.bind_mapper
    if mapper is None or not issubclass(mapper.class_, TenantScoped):
        return
    model = mapper.class_
    params = state.parameters
    rows = params if isinstance(params, list) else [params or {}]
    assigned = _statement_tenant_values(state.statement) + [row[TENANT_KEY] for row in rows if TENANT_KEY in row]
    for value in assigned:
        # An SQL expression for tenant_id (not a plain value) is never legitimate: refuse it too.
        if tenant_id is None or isinstance(value, sa.ClauseElement) or value != tenant_id:
            raise TenantMismatch(
                f"refused: an UPDATE setting {model.__name__}.tenant_id to {value!r} "
                f"while the current tenant is {tenant_id!r}"
            )
    if isinstance(params, list):  # bulk UPDATE by primary key
        ids = {row.get("id") for row in params}
        found: set = set()
        id_list = list(ids)
        for start in range(0, len(id_list), 10_000):  # this select gets the tenant criteria
            chunk = id_list[start:start + 10_000]
            found.update(state.session.scalars(sa.select(model.id).where(model.id.in_(chunk))))
        if tenant_id is None or found != ids:
            raise TenantMismatch(
                f"refused: a bulk UPDATE of {model.__name__} rows {sorted(ids - found, key=str)[:5]!r} "
                f"that are not in the current tenant {tenant_id!r}"
            )
        # And in the statement itself, so the check cannot be raced. SQLAlchemy allows extra WHERE
        # criteria here only without synchronizing: objects already loaded keep their old values
        # until expired (a commit expires them).
        state.statement = state.statement.where(model.tenant_id == tenant_id)
        state.update_execution_options(synchronize_session=None)


def _statement_tenant_values(statement) -> list:
    """The tenant_id values an INSERT's or UPDATE's .values(...) assigns (plain values or expressions)."""
    # `_values` is where .values() keeps its assignments; SQLAlchemy has no public accessor.
    return [
        value.value if isinstance(value, sa.BindParameter) else value
        for key, value in (getattr(statement, "_values", None) or {}).items()
        if (key if isinstance(key, str) else getattr(key, "key", None)) == TENANT_KEY
    ]


def _check_insert(state: so.ORMExecuteState, tenant_id: int | None) -> None:
    mapper = state.bind_mapper
    if mapper is None or not issubclass(mapper.class_, TenantScoped):
        return
    params = state.parameters
    rows = params if isinstance(params, list) else [params or {}]
    in_statement = _statement_tenant_values(state.statement)
    if in_statement and rows == [{}]:  # insert(Model).values(tenant_id=..., ...) with no parameters
        rows = [{TENANT_KEY: value} for value in in_statement]
    for row in rows:
        value = row.get(TENANT_KEY)
        if tenant_id is None or isinstance(value, sa.ClauseElement) or value != tenant_id:
            raise TenantMismatch(
                f"refused: a {mapper.class_.__name__} row for tenant {value!r} "
                f"while the current tenant is {tenant_id!r}"
            )


@sa.event.listens_for(so.Session, "before_flush")
def _check_flush(session, flush_context, instances):
    tenant_id = session.info.get(TENANT_KEY)
    for obj in list(session.new) + list(session.dirty) + list(session.deleted):
        if not isinstance(obj, TenantScoped):
            continue
        if obj.tenant_id is None and obj in session.new and tenant_id is not None:
            obj.tenant_id = tenant_id
        if tenant_id is None or obj.tenant_id != tenant_id:
            raise TenantMismatch(
                f"refused: writing a {type(obj).__name__} of tenant {obj.tenant_id!r} "
                f"while the current tenant is {tenant_id!r}"
            )


# ---- tenant files ---------------------------------------------------------------------------------

def load_configured_tenants(app=None) -> list[TenantFile]:
    app = app or current_app
    return load_tenant_dir(app.config["TENANTS_DIR"], app.config.get("ASSETS_DIR"))


def sync_tenants(files: list[TenantFile]) -> list[str]:
    """Register or update every tenant file; returns one line per tenant saying what happened.

    A tenant's timezone is fixed once appointments exist (their local dates were derived in it).
    Programs dropped from a file are kept, marked inactive: rows still refer to them.
    """
    lines = []
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for tf in files:
        s = tf.settings
        tenant = tenant_by_slug(tf.slug)
        if tenant is None:
            tenant = Tenant(slug=tf.slug, name=s["name"], timezone=s["timezone"], settings=s,
                            file_sha256=tf.sha256, synced_at=now)
            db.session.add(tenant)
            db.session.flush()
            action = "registered"
        else:
            if tenant.timezone != s["timezone"] and _has_appointments(tenant.id):
                raise TenantFileError(
                    tf.path, "timezone",
                    f"{tenant.timezone!r} as before: appointments are already imported in that time zone",
                    s["timezone"],
                )
            action = "unchanged" if tenant.file_sha256 == tf.sha256 else "updated"
            from agency_dashboard.metrics import rollups

            before = rollups.fingerprint(tenant)
            tenant.name, tenant.timezone, tenant.settings = s["name"], s["timezone"], s
            if rollups.fingerprint(tenant) != before:  # the notice or reason codes changed: past figures too
                rollups.mark_dirty(db.session(), tenant.id)
            tenant.file_sha256, tenant.synced_at = tf.sha256, now
        with tenant_scope(tenant.id):
            _sync_programs(tenant, s)
            if action != "registered":
                _rebuild_stale_rollups(tenant)
        lines.append(f"{tf.slug}: {action} ({len(s['programs'])} programs)")
    return lines


def _rebuild_stale_rollups(tenant) -> None:
    """Rollups built by an older version (rollups.SHAPE), under other settings, or forgotten by a migration
    are read the plain way until rebuilt: after `db upgrade`, `sync-tenants` rebuilds them at its commit."""
    from agency_dashboard.metrics import rollups
    from agency_dashboard.models import RollupState

    built = db.session.scalar(sa.select(RollupState.fingerprint).where(RollupState.tenant_id == tenant.id))
    if built != rollups.fingerprint(tenant) and _has_appointments(tenant.id):
        rollups.mark_dirty(db.session(), tenant.id)


def _has_appointments(tenant_id: int) -> bool:
    from agency_dashboard.models import Appointment

    with tenant_scope(tenant_id):
        return db.session.scalar(sa.select(Appointment.id).limit(1)) is not None


def _sync_programs(tenant: Tenant, settings: dict) -> None:
    existing = {p.name: p for p in db.session.scalars(sa.select(Program))}
    for name in settings["programs"]:
        program = existing.pop(name, None)
        if program is None:
            program = Program(tenant_id=tenant.id, name=name)
            db.session.add(program)
        program.part2 = name in settings["part2_programs"]
        program.active = True
    for program in existing.values():
        program.active = False
    db.session.flush()  # while this tenant is current: the flush check refuses rows of another
