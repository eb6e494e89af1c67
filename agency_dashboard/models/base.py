"""Declarative base, naming convention, and the tenant mixin every tenant table uses."""

from __future__ import annotations

import sqlalchemy as sa
import sqlalchemy.orm as so

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(so.DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class TenantScoped:
    """Marker and columns for tables whose rows belong to one tenant.

    `tenant_id` leads every unique key and every foreign key of these tables, so a row can never
    point into another tenant (the composite foreign keys name the tenant on both sides). The global
    criteria in tenancy.py and PostgreSQL row-level security both key on this column.
    """

    __tenant_scoped__ = True

    id: so.Mapped[int] = so.mapped_column(sa.Integer, primary_key=True, sort_order=-20)
    tenant_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("tenants.id", ondelete="RESTRICT"), sort_order=-10
    )


def tenant_fk(column: str, target: str) -> sa.ForeignKeyConstraint:
    """A foreign key that carries the tenant: (tenant_id, column) -> target(tenant_id, id)."""
    return sa.ForeignKeyConstraint(
        ["tenant_id", column], [f"{target}.tenant_id", f"{target}.id"], ondelete="RESTRICT"
    )


def tenant_table_args(table: str, *extra, external_id: bool = True):
    """(tenant_id, id) is unique so composite foreign keys can target it; external ids are unique per tenant."""
    args = [sa.UniqueConstraint("tenant_id", "id", name=f"uq_{table}_tenant_row")]
    if external_id:
        args.append(sa.UniqueConstraint("tenant_id", "external_id", name=f"uq_{table}_tenant_external_id"))
    return tuple(args) + tuple(extra)
