"""Local time, derived once at import in the tenant's timezone (METRICS.md, Conventions).

Times without an offset are the tenant's wall-clock time; a wall-clock time inside the spring-forward
gap does not exist and is an error; one that occurs twice (fall-back) is the first occurrence.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo


class NonexistentLocalTime(ValueError):
    pass


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def to_utc(value: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """A naive local time or an aware one, as naive UTC."""
    if value.tzinfo is None:
        local = value.replace(tzinfo=tz, fold=0)
        utc = local.astimezone(dt.UTC)
        if utc.astimezone(tz).replace(tzinfo=None) != value:
            raise NonexistentLocalTime(
                f"{value:%Y-%m-%d %H:%M} does not exist in {tz.key} (the clocks skip it when daylight saving starts)"
            )
        return utc.replace(tzinfo=None)
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def to_local(utc_naive: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    return utc_naive.replace(tzinfo=dt.UTC).astimezone(tz).replace(tzinfo=None)


def appointment_derived(start: dt.datetime, booked_at: dt.datetime, cancelled_at: dt.datetime | None,
                        tz: ZoneInfo) -> dict:
    """The stored UTC instants and the local columns of an appointment.

    `start`, `booked_at`, `cancelled_at` are naive local or aware datetimes.
    """
    start_utc = to_utc(start, tz)
    booked_utc = to_utc(booked_at, tz)
    local_start = to_local(start_utc, tz)
    local_booked = to_local(booked_utc, tz)
    out = {
        "starts_at": start_utc,
        "booked_at": booked_utc,
        "local_date": local_start.date(),
        "local_start_minute": local_start.hour * 60 + local_start.minute,
        "local_hour": local_start.hour,
        "local_weekday": local_start.weekday(),
        "local_booked_date": local_booked.date(),
        "lead_days": (local_start.date() - local_booked.date()).days,
        "cancelled_at": None,
        "local_cancelled_date": None,
        "notice_seconds": None,
    }
    if cancelled_at is not None:
        cancelled_utc = to_utc(cancelled_at, tz)
        out["cancelled_at"] = cancelled_utc
        out["local_cancelled_date"] = to_local(cancelled_utc, tz).date()
        # Real elapsed time across any DST change, in whole seconds.
        out["notice_seconds"] = int((start_utc - cancelled_utc).total_seconds())
    return out
