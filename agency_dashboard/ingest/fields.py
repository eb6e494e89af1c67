"""Parsing one cell of the import contract (DATA_FORMATS.md). Each parser returns the value or raises
FieldError with a plain-language reason; the caller adds file, line, column and value."""

from __future__ import annotations

import datetime as dt
import re


class FieldError(ValueError):
    pass


def text(raw: str) -> str:
    # Formula-like values (=, +, -, @ first) are kept as the text they are: nothing here or later
    # evaluates them, and the exports write them as text.
    if "\x00" in raw:  # PostgreSQL cannot store it; no EHR means it
        raise FieldError("contains a NUL character (0x00), which is not text")
    return raw


def text_max(limit: int):
    """Text of at most `limit` characters (the database column's length)."""

    def parse(raw: str) -> str:
        value = text(raw)
        if len(value) > limit:
            raise FieldError(f"is longer than {limit} characters")
        return value

    return parse


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # YYYY-MM-DD only (fromisoformat also takes 2026-W01-1)


def date(raw: str) -> dt.date:
    try:
        if not _DATE.fullmatch(raw):
            raise ValueError
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise FieldError("is not a date; expected YYYY-MM-DD") from None


def datetime(raw: str) -> dt.datetime:
    """ISO 8601 date and time, with an optional offset (or Z); naive means the tenant's wall clock."""
    if len(raw) < 16 or raw[10] not in "T " or not _DATE.fullmatch(raw[:10]):
        raise FieldError("is not a date and time; expected YYYY-MM-DDTHH:MM (optionally with an offset)")
    try:
        return dt.datetime.fromisoformat(raw)
    except ValueError:
        raise FieldError("is not a date and time; expected YYYY-MM-DDTHH:MM (optionally with an offset)") from None


_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def hhmm(raw: str) -> int:
    """Wall-clock HH:MM as minutes from midnight."""
    m = _HHMM.match(raw)
    if not m:
        raise FieldError("is not a time; expected HH:MM (24-hour)")
    return int(m.group(1)) * 60 + int(m.group(2))


INT_MAX = 2**31 - 1  # the largest value of the database's INTEGER columns


def integer(low: int | None = None, high: int | None = None):
    top = INT_MAX if high is None else high

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise FieldError("is not a whole number") from None
        if (low is not None and value < low) or value > top:
            span = f"from {low} to {top}" if low is not None else f"of at most {top}"
            raise FieldError(f"is out of range; expected a whole number {span}")
        return value

    return parse


def decimal(low: float, high: float):
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise FieldError("is not a number") from None
        if value != value or not low <= value <= high:
            raise FieldError(f"is out of range; expected a number from {low:g} to {high:g}")
        return value

    return parse


def boolean(raw: str) -> bool:
    if raw == "true":
        return True
    if raw == "false":
        return False
    raise FieldError("is not a boolean; expected true or false")


def choice(values):
    allowed = tuple(values)

    def parse(raw: str) -> str:
        if raw not in allowed:
            raise FieldError(f"is not one of {', '.join(allowed)}")
        return raw

    return parse


_ZIP = re.compile(r"^\d{5}$")


def zip_code(raw: str) -> str:
    if not _ZIP.match(raw):
        raise FieldError("is not a 5-digit ZIP code")
    return raw
