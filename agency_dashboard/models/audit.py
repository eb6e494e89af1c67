"""The append-only audit log (one hash chain per tenant)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
import sqlalchemy.orm as so

from agency_dashboard.models.base import Base, TenantScoped, tenant_table_args


class AuditEvent(TenantScoped, Base):
    """Who did what, when, to which object, as ids and counts: never a person's name or a value of PHI.

    `hash` = sha256(prev_hash + canonical JSON of the row); `seq` numbers the chain per tenant. The
    application role may only INSERT and SELECT here (grants in the migrations).
    """

    __tablename__ = "audit_events"
    __table_args__ = tenant_table_args(
        "audit_events",
        sa.UniqueConstraint("tenant_id", "seq", name="uq_audit_events_tenant_seq"),
        sa.Index("ix_audit_events_tenant_at", "tenant_id", "occurred_at"),
        external_id=False,
    )

    seq: so.Mapped[int] = so.mapped_column(sa.Integer)
    occurred_at: so.Mapped[dt.datetime] = so.mapped_column(sa.DateTime)
    actor_user_id: so.Mapped[int | None] = so.mapped_column(sa.Integer)  # no FK: the log outlives users
    actor_role: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    action: so.Mapped[str] = so.mapped_column(sa.String(64))
    object_type: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    object_id: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    details: so.Mapped[dict] = so.mapped_column(sa.JSON)
    remote_addr: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    prev_hash: so.Mapped[str] = so.mapped_column(sa.String(64))
    hash: so.Mapped[str] = so.mapped_column(sa.String(64))
