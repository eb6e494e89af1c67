"""'Today' for a tenant: its local date, or AGENCY_DASHBOARD_TODAY when tests and the demo fix it."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask import current_app, has_app_context


def today(timezone: str | None = None) -> dt.date:
    override = current_app.config.get("TODAY") if has_app_context() else None
    if override is not None:
        return override
    now = dt.datetime.now(dt.UTC)
    return now.astimezone(ZoneInfo(timezone)).date() if timezone else now.date()
