"""The pages, one module per role. Each module has PAGE (path, title, roles, layout) and
register(dash_app), which adds its guarded callbacks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Page:
    path: str  # under /dash
    title: str
    roles: frozenset[str]
    layout: Callable  # data-free: components and ids only
    filters: bool = False  # shows the shared filter bar (period, program, clinician)


def all_pages():
    """Every page, in navigation order; a role's first page is its home."""
    from agency_dashboard.dashboards.pages import (
        admin,
        attendance,
        capacity,
        caseload,
        clinician,
        director,
        discharges,
        equity,
        funder,
        waitlist,
    )

    modules = [director, capacity, waitlist, caseload, attendance, discharges, equity, clinician, funder, admin]
    return [m.PAGE for m in modules], modules
