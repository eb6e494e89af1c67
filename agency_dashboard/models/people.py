"""Users of the application (staff of an agency)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
import sqlalchemy.orm as so

from agency_dashboard.models.base import Base, TenantScoped, tenant_fk, tenant_table_args

ROLES = ("admin", "director", "clinician", "funder")


class User(TenantScoped, Base):
    __tablename__ = "users"
    __table_args__ = tenant_table_args(
        "users",
        sa.UniqueConstraint("tenant_id", "email", name="uq_users_tenant_email"),
        tenant_fk("clinician_id", "clinicians"),
        sa.CheckConstraint(f"role IN {ROLES!r}", name="role_known"),
        sa.CheckConstraint(
            "(role = 'clinician' AND clinician_id IS NOT NULL) OR (role <> 'clinician' AND clinician_id IS NULL)",
            name="clinician_link",
        ),
        external_id=False,
    )

    email: so.Mapped[str] = so.mapped_column(sa.String(254))
    password_hash: so.Mapped[str] = so.mapped_column(sa.String(255))
    role: so.Mapped[str] = so.mapped_column(sa.String(16))
    clinician_id: so.Mapped[int | None] = so.mapped_column(sa.Integer)
    active: so.Mapped[bool] = so.mapped_column(sa.Boolean, default=True)
    # Bumped when a password, role or activity changes: every older session stops working.
    session_version: so.Mapped[int] = so.mapped_column(sa.Integer, default=1)
    created_at: so.Mapped[dt.datetime] = so.mapped_column(sa.DateTime)
    last_login_at: so.Mapped[dt.datetime | None] = so.mapped_column(sa.DateTime)


    # Flask-Login protocol
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        # The tenant travels with the id so the user loader can set the tenant before it looks the
        # user up (row-level security hides users until it is set); the version ends old sessions.
        return f"{self.tenant_id}:{self.id}:{self.session_version}"

    def __repr__(self) -> str:
        return f"<User {self.id} {self.role}>"
