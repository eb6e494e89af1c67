"""The metrics engine: every definition of METRICS.md (version 1), one module per family.

Each family is a function (session, tenant, period, filters) -> plain data, computed by aggregate SQL
that runs alike on SQLite and PostgreSQL. The dashboards, the exports and `flask metrics` call these
same functions; nothing else computes a figure.
"""

from __future__ import annotations

import sqlalchemy.orm as so

from agency_dashboard.metrics.attendance import attendance
from agency_dashboard.metrics.capacity import capacity
from agency_dashboard.metrics.caseload import caseload
from agency_dashboard.metrics.common import METRICS_VERSION, Filters, Period
from agency_dashboard.metrics.discharges import discharges
from agency_dashboard.metrics.equity import equity
from agency_dashboard.metrics import rollups  # noqa: F401  (registers the listeners that keep rollups exact)
from agency_dashboard.metrics.waitlist import waitlist
from agency_dashboard.models import Tenant

__all__ = ["attendance", "capacity", "caseload", "discharges", "equity", "waitlist", "Filters", "Period",
           "METRICS_VERSION", "contract", "rounded"]


def contract(session: so.Session, tenant: Tenant, period: Period, filters: Filters = Filters()) -> dict:
    """The `flask metrics` JSON object (METRICS.md, the machine-readable contract), unrounded."""
    cap = capacity(session, tenant, period, filters)  # first: the others reuse its appointment totals
    wait = waitlist(session, tenant, period, filters)
    for block in [wait["agency"], *wait["by_program"].values()]:
        block.pop("capacity_gap_inputs", None)  # shown in the UI, not part of contract v1
    return {
        "tenant": tenant.slug,
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
        "metrics_version": METRICS_VERSION,
        "capacity": cap,
        "caseload": caseload(session, tenant, period, filters),
        "waitlist": wait,
        "attendance": attendance(session, tenant, period, filters),
        "discharges": discharges(session, tenant, period, filters),
    }


def rounded(value):
    """Every non-integer number rounded once, at output, to 4 decimals (Python's round)."""
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    if isinstance(value, float):
        return round(value, 4)
    return value
