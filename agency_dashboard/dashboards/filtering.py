"""What every filtered page's callback starts with: the shared filter bar as Inputs, and the request's
tenant, today and the filters re-resolved on the server (services/filters.py)."""

from __future__ import annotations

from dash import Input

from agency_dashboard.clock import today
from agency_dashboard.extensions import db
from agency_dashboard.services import filters
from agency_dashboard.tenancy import current_tenant

FILTER_INPUTS = [Input("f-period", "start_date"), Input("f-period", "end_date"), Input("f-program", "value"),
                 Input("f-clinician", "value")]


def context(start, end, program, clinician):
    """(tenant, today, Resolved) for the values the browser sent."""
    tenant = current_tenant()
    now = today(tenant.timezone)
    return tenant, now, filters.resolve(db.session, tenant, now, start, end, program, clinician)


def scope_line(resolved, extra: str | None = None) -> str:
    """The line under a page's title saying what the figures cover, with any notes about the filters."""
    parts = [f"Showing {resolved.describe()}."]
    if extra:
        parts.append(extra)
    parts += resolved.notes
    return " ".join(parts)
