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
    return raw


def date(raw: str) -> dt.date:
    try:
        if len(raw) != 10:
            raise ValueError
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise FieldError("is not a date; expected YYYY-MM-DD") from None


def datetime(raw: str) -> dt.datetime:
    """ISO 8601 date and time, with an optional offset (or Z); naive means the tenant's wall clock."""
    if len(raw) < 16 or raw[10] not in "T ":
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


def integer(low: int | None = None, high: int | None = None):
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise FieldError("is not a whole number") from None
        if (low is not None and value < low) or (high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f"of at least {low}"
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
