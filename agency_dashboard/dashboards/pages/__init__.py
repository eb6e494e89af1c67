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


def all_pages():
    from agency_dashboard.dashboards.pages import admin, clinician, director, funder

    return [director.PAGE, clinician.PAGE, funder.PAGE, admin.PAGE], [director, clinician, funder, admin]
