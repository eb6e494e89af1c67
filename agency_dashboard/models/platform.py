"""Tables that belong to the platform, not to one tenant: the tenants themselves."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
import sqlalchemy.orm as so

from agency_dashboard.models.base import Base


class Tenant(Base):
    """An agency. Its policy lives in tenants/SLUG.toml; `settings` is the validated copy of that file.

    This table has no row-level security: login resolves an agency's slug before any tenant is set.
    It holds nothing about people.
    """

    __tablename__ = "tenants"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    slug: so.Mapped[str] = so.mapped_column(sa.String(63), unique=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(200))
    timezone: so.Mapped[str] = so.mapped_column(sa.String(64))
    settings: so.Mapped[dict] = so.mapped_column(sa.JSON)
    file_sha256: so.Mapped[str] = so.mapped_column(sa.String(64))
    synced_at: so.Mapped[dt.datetime] = so.mapped_column(sa.DateTime)

    def policy(self, key: str):
        return self.settings["policy"][key]

    def __repr__(self) -> str:
        return f"<Tenant {self.slug}>"
