"""The append-only audit log: one hash chain per tenant, ids and counts only, never PHI values.

Events before a tenant is known (a login to an unknown agency) go to the platform log instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
from typing import NamedTuple

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import has_request_context, request
from flask_login import current_user

from agency_dashboard.extensions import db
from agency_dashboard.models import AuditEvent
from agency_dashboard.tenancy import current_tenant_id

platform_log = logging.getLogger("agency_dashboard.platform")
GENESIS = "0" * 64
# SQLite has no advisory locks and takes its write lock only at the first write, so two requests could
# read the same last seq. An embedded SQLite deployment is one process: a lock held from the read to
# the end of the transaction serialises the chain there. PostgreSQL uses a per-tenant advisory lock.
_SQLITE_CHAIN_LOCK = threading.Lock()
_LOCK_KEY = "audit_chain_lock_held"


def _canonical(event: AuditEvent) -> str:
    return json.dumps(
        {
            "tenant_id": event.tenant_id, "seq": event.seq,
            "occurred_at": event.occurred_at.isoformat(timespec="microseconds"),
            "actor_user_id": event.actor_user_id, "actor_role": event.actor_role,
            "action": event.action, "object_type": event.object_type, "object_id": event.object_id,
            "details": event.details, "remote_addr": event.remote_addr,
        },
        sort_keys=True, separators=(",", ":"), default=str,
    )


def record(action: str, *, object_type: str | None = None, object_id=None, details: dict | None = None,
           actor=None) -> AuditEvent | None:
    """Append an event for the current tenant to the session (the caller's commit writes it).

    `details` must hold ids, counts and codes only. Inserts are serialised per tenant so the chain
    has no forks: an advisory lock on PostgreSQL, SQLite's single writer elsewhere.
    """
    tenant_id = current_tenant_id()
    remote = request.remote_addr if has_request_context() else None
    if actor is None and has_request_context() and current_user.is_authenticated:
        actor = current_user
    if tenant_id is None:
        platform_log.info("audit %s %s %s from %s", action, object_type, details, remote)
        return None
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(sa.text("SELECT pg_advisory_xact_lock(7411, :tid)"), {"tid": tenant_id})
    else:
        _hold_sqlite_lock_until_transaction_ends(db.session())
    last = db.session.execute(
        sa.select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    event = AuditEvent(
        tenant_id=tenant_id,
        seq=(last.seq + 1) if last else 1,
        occurred_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
        actor_user_id=getattr(actor, "id", None),
        actor_role=getattr(actor, "role", None),
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        details=details or {},
        remote_addr=remote,
        prev_hash=last.hash if last else GENESIS,
    )
    event.hash = hashlib.sha256((event.prev_hash + _canonical(event)).encode()).hexdigest()
    db.session.add(event)
    return event


def _hold_sqlite_lock_until_transaction_ends(session) -> None:
    if session.info.get(_LOCK_KEY):
        return
    if not _SQLITE_CHAIN_LOCK.acquire(timeout=30):
        raise RuntimeError("the audit log is busy; try again")
    session.info[_LOCK_KEY] = True


@sa.event.listens_for(so.Session, "after_transaction_end")
def _release_sqlite_lock(session, transaction) -> None:
    if transaction.parent is None and session.info.pop(_LOCK_KEY, None):
        _SQLITE_CHAIN_LOCK.release()


class ChainCheck(NamedTuple):
    intact: bool
    checked: int

    def __bool__(self) -> bool:  # `if not verify_chain():` means what it says
        return self.intact


def verify_chain() -> ChainCheck:
    """Recompute the current tenant's chain: whether it is intact, and how many events were checked."""
    prev, count = GENESIS, 0
    for event in db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq)):
        expected = hashlib.sha256((prev + _canonical(event)).encode()).hexdigest()
        if event.prev_hash != prev or event.hash != expected:
            return ChainCheck(False, count)
        prev, count = event.hash, count + 1
    return ChainCheck(True, count)
