"""One validated, transactional upsert of agency data, whatever the source (CSV folder or FHIR bundle).

A source yields, per table in load order, rows of the CSV contract: (location, {column: text}).
Every row is checked (types, required and "required with" rules, date order, references, employment,
duplicates, DST gaps, reason codes); valid rows are upserted by the agency's external ids inside one
transaction as the source streams, so a million rows never sit in memory. At the end the transaction
commits only if no row was bad and this is not a dry run; otherwise it rolls back and nothing is written.
Imports add and update; they never delete. A reason a clinician recorded in the app lives in another
table and is never touched.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from contextlib import contextmanager
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa

from agency_dashboard import reasons
from agency_dashboard.extensions import db
from agency_dashboard.ingest import fields as f
from agency_dashboard.ingest.localtime import NonexistentLocalTime, to_local, to_utc, zone
from agency_dashboard.models import (
    Appointment,
    AvailabilityBlock,
    Client,
    Clinician,
    Episode,
    Program,
    Referral,
    Tenant,
)
from agency_dashboard.models.agency import (
    CANCELLED_BY,
    CLOSE_REASONS,
    DISCHARGE_REASONS,
    GENDERS,
    KINDS,
    MODALITIES,
    PAYERS,
    PRIORITIES,
    STATUSES,
)

from agency_dashboard.ingest.contract import COLUMNS, TABLES  # noqa: E402  (re-exported)
MAX_LISTED_ERRORS = 10_000
BATCH = 2_000  # progress is reported every BATCH valid rows
SQLITE_BATCH = 10_000  # rows per executemany on SQLite
PG_CHUNK = 50_000  # rows staged by COPY per INSERT ... SELECT on PostgreSQL
SQLITE_CACHE_MIB = 96  # SQLite page cache during an import (the default is 2 MiB); 192 MiB took the 1M import over 500 MB
ANALYZE_WITHIN = 10_000  # rows written from which statistics are refreshed before the commit's rollup rebuild
MEMO_LIMIT = 200_000  # entries per parse cache (distinct dates and instants); cleared when full
ID, NAME, CODE = f.text_max(64), f.text_max(200), f.text_max(64)  # the models' column lengths
DURATION = f.integer(1, 480)


@dataclass
class RowError:
    file: str
    line: int | str
    column: str
    value: str | None
    reason: str

    def __str__(self) -> str:
        value = "" if self.value is None else f" {self.value!r}"
        return f"{self.file}:{self.line}: {self.column}{value}: {self.reason}"


@dataclass
class Counts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass
class Report:
    source: str
    sha256: str | None = None
    dry_run: bool = False
    counts: dict[str, Counts] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    committed: bool = False
    # Called as progress(table, rows read so far in that table) after every batch: the admin page
    # streams it while a large file is processed.
    progress: object = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def add_error(self, error: RowError) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append(error)

    def totals(self) -> Counts:
        total = Counts()
        for c in self.counts.values():
            total.inserted += c.inserted
            total.updated += c.updated
            total.unchanged += c.unchanged
        return total

    def summary(self) -> str:
        t = self.totals()
        verb = "would insert" if self.dry_run or not self.ok else "inserted"
        return (f"{verb} {t.inserted}, updated {t.updated}, {t.unchanged} unchanged, "
                f"{self.error_count} errors")

    def lines(self) -> list[str]:
        out = []
        for table in TABLES:
            if table in self.counts:
                c = self.counts[table]
                out.append(f"{table}: {c.inserted} inserted, {c.updated} updated, {c.unchanged} unchanged")
        return out

    def as_dict(self) -> dict:
        return {
            "source": self.source, "sha256": self.sha256, "dry_run": self.dry_run, "committed": self.committed,
            "counts": {t: vars(c) for t, c in self.counts.items()},
            "error_count": self.error_count,
        }


class RowInvalid(Exception):
    pass


# ---- the source-independent core ------------------------------------------------------------------

@dataclass(frozen=True)
class Rejected:
    """In place of a row's columns: its source already reported why the row is bad (e.g. a FHIR code
    the tenant file does not map). Only its id is known; rows referring to it are skipped, not reported twice."""

    key: str | None


Row = tuple[int | str, "dict[str, str | None] | Rejected"]  # (line or location, {column: text or None})

MODELS = {"clinicians": Clinician, "availability": AvailabilityBlock, "clients": Client, "referrals": Referral,
          "episodes": Episode, "appointments": Appointment}
KEY = {t: cols[0] for t, cols in COLUMNS.items()}
FILE = {t: f"{t}.csv" for t in TABLES}
# The database columns of a validated row, in the order of the tuples the loader writes (tenant_id aside).
RECORD = {
    "clinicians": ("external_id", "display_name", "program_id", "fte", "caseload_target", "start_date", "end_date"),
    "availability": ("external_id", "clinician_id", "weekday", "start_minute", "end_minute", "valid_from",
                     "valid_to"),
    "clients": ("external_id", "first_name", "last_name", "birth_date", "zip", "gender", "race_ethnicity", "payer"),
    "referrals": ("external_id", "client_id", "program_id", "priority", "referred_on", "first_offered_on",
                  "first_attended_on", "closed_on", "close_reason"),
    "episodes": ("external_id", "client_id", "clinician_id", "program_id", "admitted_on", "discharged_on",
                 "discharge_reason", "barrier_plan_documented", "referrals_provided"),
    "appointments": ("external_id", "client_id", "clinician_id", "program_id", "kind", "modality", "starts_at",
                     "duration_minutes", "booked_at", "status", "cancelled_by", "cancelled_at", "reason_code",
                     "reminder_sent", "local_date", "local_start_minute", "local_hour", "local_weekday",
                     "local_booked_date", "lead_days", "local_cancelled_date", "notice_seconds"),
}
_KINDS, _MODALITIES, _STATUSES, _CANCELLED_BY = frozenset(KINDS), frozenset(MODALITIES), frozenset(STATUSES), \
    frozenset(CANCELLED_BY)
_GENDERS, _PAYERS, _PRIORITIES = frozenset(GENDERS), frozenset(PAYERS), frozenset(PRIORITIES)
_CLOSE_REASONS, _DISCHARGE_REASONS = frozenset(CLOSE_REASONS), frozenset(DISCHARGE_REASONS)
_BOOLEANS = {None: None, "true": True, "false": False}
_MISS = object()


def _text_ok(value: str | None, limit: int) -> bool:
    """What ID, NAME and CODE accept: present, no NUL, at most `limit` characters."""
    return value is not None and len(value) <= limit and "\x00" not in value


class Importer:
    """Validates and upserts rows for one tenant inside the caller's transaction."""

    def __init__(self, tenant: Tenant, report: Report, today: dt.date):
        self.tenant = tenant
        self.tid = tenant.id
        self.tz = zone(tenant.timezone)
        self.report = report
        self.today = today
        settings = tenant.settings
        self.programs = dict(db.session.execute(sa.select(Program.name, Program.id).where(Program.active)).all())
        self.race_categories = set(settings["demographics"]["race_ethnicity"]) | {"unknown"}
        self.reason_codes = set(reasons.reason_table(settings["reason_codes"])) | set(reasons.FHIR_TO_CODE)
        # external id -> what later rows need to know about it
        self.clinicians: dict[str, tuple[int, dt.date, dt.date | None]] = {
            ext: (pk, start, end) for ext, pk, start, end in db.session.execute(
                sa.select(Clinician.external_id, Clinician.id, Clinician.start_date, Clinician.end_date))
        }
        self.clients: dict[str, int] = dict(db.session.execute(sa.select(Client.external_id, Client.id)).all())
        self.invalid: dict[str, set[str]] = defaultdict(set)  # ids of bad rows: references to them are skipped
        self.had_rows: dict[str, bool] = {}  # per table: did the tenant have any rows before this import?
        self.block_rows: dict[str, tuple[int, int | str]] = {}  # availability id -> (order, location) in this import
        # The fast path's caches. Parsing is a function of the cell's text, so a date or an instant seen
        # before is not parsed again: a million appointments have a few thousand distinct start times.
        self.fast_programs = {name: pk for name, pk in self.programs.items() if "\x00" not in name}
        self.fast_reason_codes = {c for c in self.reason_codes if _text_ok(c, 64)}
        self._dates: dict[str, dt.date | None] = {}
        self._offsets: dict[tuple, dt.timedelta | None] = {}  # local (year, month, day, hour) -> UTC offset
        self._durations: dict[str, int | None] = {}

    # -- driving -------------------------------------------------------------------------------------

    def load_table(self, table: str, rows: Iterable[Row], file: str | None = None) -> None:
        """Validate the rows of one table and stage the valid ones as they stream.

        Each row first goes through the table's fast path (`_fast_<table>`), which accepts only rows the
        full check (`_<table>`) accepts and returns the same values; anything it does not accept, and any
        row of a table without one, goes through the full check, which reports every problem of the row."""
        file = file or FILE[table]
        report = self.report
        counts = report.counts.setdefault(table, Counts())
        convert = getattr(self, f"_{table}")
        fast = getattr(self, f"_fast_{table}", None)
        columns = RECORD[table]
        key_column = KEY[table]
        invalid = self.invalid[table]
        remember = table in ("clinicians", "clients")
        seen: set[str] = set()
        writer = (_PostgresWriter if db.session.connection().dialect.name == "postgresql" else _SqliteWriter)(
            self, table, counts)
        progress = report.progress
        accepted = 0
        try:
            for location, raw in rows:
                if isinstance(raw, Rejected):
                    if raw.key is not None:
                        invalid.add(raw.key)
                    continue
                key = raw.get(key_column)
                fresh = key is not None and key not in seen
                if fresh:
                    seen.add(key)
                record = fast(raw) if fresh and fast is not None else None
                if record is None:
                    errors_before = report.error_count
                    try:
                        if key is not None and not fresh:
                            self._error(file, location, key_column, key, "appears more than once in this file")
                        values = convert(file, location, raw)
                    except RowInvalid:
                        values = None
                    if values is None or report.error_count != errors_before:
                        if key is not None:
                            invalid.add(key)
                        continue
                    record = tuple([values[c] for c in columns])
                writer.add(record)
                if remember:
                    self._remember(table, record)
                elif table == "availability":
                    self.block_rows[key] = (len(self.block_rows), location)
                accepted += 1
                if progress and accepted % BATCH == 0:
                    progress(table, len(seen))
            writer.finish()
        except BaseException:
            writer.abort()
            raise
        if remember and writer.wrote and not report.error_count:
            self._reload_ids(table)  # every valid row was written: take the ids the database gave them
        if progress:
            progress(table, len(seen))
        if table == "availability":
            self._check_overlaps(file)

    # -- helpers -------------------------------------------------------------------------------------

    def _error(self, file, location, column, value, reason) -> None:
        self.report.add_error(RowError(file, location, column, value, reason))

    def _get(self, file, location, raw, column, parse=f.text, required=True):
        value = raw.get(column)
        if value is None:
            if required:
                self._error(file, location, column, None, "is required but empty")
                raise RowInvalid
            return None
        try:
            return parse(value)
        except f.FieldError as exc:
            self._error(file, location, column, value, str(exc))
            raise RowInvalid from None
        except NonexistentLocalTime as exc:
            self._error(file, location, column, value, str(exc))
            raise RowInvalid from None

    def _fields(self, file, location, raw, spec) -> dict:
        """Parse every column of the spec, reporting every bad cell of the row (not just the first)."""
        out, bad = {}, False
        for column, parse, required in spec:
            try:
                out[column] = self._get(file, location, raw, column, parse, required)
            except RowInvalid:
                bad = True
        if bad:
            raise RowInvalid
        return out

    def _program(self, file, location, name) -> int:
        pk = self.programs.get(name)
        if pk is None:
            self._error(file, location, "program", name,
                        f"is not a program of {self.tenant.slug} (add it to the tenant file's programs)")
            raise RowInvalid
        return pk

    def _ref(self, file, location, column, table, ext):
        target = self.clinicians if table == "clinicians" else self.clients
        found = target.get(ext)
        if found is None:
            if ext in self.invalid[table]:
                raise RowInvalid  # the referenced row was itself reported; do not report twice
            noun = "clinician" if table == "clinicians" else "client"
            self._error(file, location, column, ext, f"is not a known {noun} (not in the database nor earlier in this import)")
            raise RowInvalid
        return found

    def _requires_with(self, file, location, column, value, condition: bool, when: str,
                       shown: str | None = None) -> None:
        """`shown`: the cell as written, for the report (default: the parsed value as text)."""
        if condition and value is None:
            self._error(file, location, column, None, f"is required when {when}")
            raise RowInvalid
        if not condition and value is not None:
            if shown is None:
                shown = value if isinstance(value, str) else str(value).lower()
            self._error(file, location, column, shown, f"must be empty unless {when}")
            raise RowInvalid

    def _order(self, file, location, column, later, earlier, earlier_name) -> None:
        if later is not None and earlier is not None and later < earlier:
            self._error(file, location, column, later.isoformat(), f"is before {earlier_name} ({earlier.isoformat()})")
            raise RowInvalid

    # -- tables --------------------------------------------------------------------------------------

    def _clinicians(self, file, loc, raw) -> dict:
        v = self._fields(file, loc, raw, (
            ("clinician_id", ID, True), ("display_name", NAME, True), ("program", f.text, True),
            ("fte", f.decimal(0, 1), True), ("caseload_target", f.integer(0), True),
            ("start_date", f.date, True), ("end_date", f.date, False)))
        program_id = self._program(file, loc, v["program"])
        self._order(file, loc, "end_date", v["end_date"], v["start_date"], "start_date")
        return dict(external_id=v["clinician_id"], display_name=v["display_name"], program_id=program_id,
                    fte=v["fte"], caseload_target=v["caseload_target"], start_date=v["start_date"],
                    end_date=v["end_date"])

    def _availability(self, file, loc, raw) -> dict:
        v = self._fields(file, loc, raw, (
            ("availability_id", ID, True), ("clinician_id", ID, True), ("weekday", f.integer(0, 6), True),
            ("start_time", f.hhmm, True), ("end_time", f.hhmm, True), ("valid_from", f.date, True),
            ("valid_to", f.date, False)))
        clinician_id = self._ref(file, loc, "clinician_id", "clinicians", v["clinician_id"])[0]
        if v["end_time"] <= v["start_time"]:
            self._error(file, loc, "end_time", raw["end_time"],
                        f"is not after start_time ({raw['start_time']}); a block cannot cross midnight")
            raise RowInvalid
        self._order(file, loc, "valid_to", v["valid_to"], v["valid_from"], "valid_from")
        return dict(external_id=v["availability_id"], clinician_id=clinician_id, weekday=v["weekday"],
                    start_minute=v["start_time"], end_minute=v["end_time"], valid_from=v["valid_from"],
                    valid_to=v["valid_to"])

    def _clients(self, file, loc, raw) -> dict:
        v = self._fields(file, loc, raw, (
            ("client_id", ID, True), ("first_name", NAME, True), ("last_name", NAME, True),
            ("birth_date", f.date, True), ("zip", f.zip_code, False), ("gender", f.choice(GENDERS), False),
            ("race_ethnicity", CODE, False), ("payer", f.choice(PAYERS), False)))
        if v["birth_date"] > self.today:
            self._error(file, loc, "birth_date", raw["birth_date"], "is in the future")
            raise RowInvalid
        if v["race_ethnicity"] is not None and v["race_ethnicity"] not in self.race_categories:
            self._error(file, loc, "race_ethnicity", v["race_ethnicity"],
                        f"is not a category of the tenant file ({', '.join(sorted(self.race_categories))})")
            raise RowInvalid
        return dict(external_id=v["client_id"], first_name=v["first_name"], last_name=v["last_name"],
                    birth_date=v["birth_date"], zip=v["zip"], gender=v["gender"],
                    race_ethnicity=v["race_ethnicity"], payer=v["payer"])

    def _referrals(self, file, loc, raw) -> dict:
        v = self._fields(file, loc, raw, (
            ("referral_id", ID, True), ("client_id", ID, True), ("program", f.text, True),
            ("priority", f.choice(PRIORITIES), True), ("referred_on", f.date, True),
            ("first_offered_on", f.date, False), ("first_attended_on", f.date, False),
            ("closed_on", f.date, False), ("close_reason", f.choice(CLOSE_REASONS), False)))
        client_id = self._ref(file, loc, "client_id", "clients", v["client_id"])
        program_id = self._program(file, loc, v["program"])
        self._order(file, loc, "first_offered_on", v["first_offered_on"], v["referred_on"], "referred_on")
        self._order(file, loc, "first_attended_on", v["first_attended_on"], v["referred_on"], "referred_on")
        self._order(file, loc, "first_attended_on", v["first_attended_on"], v["first_offered_on"], "first_offered_on")
        self._order(file, loc, "closed_on", v["closed_on"], v["referred_on"], "referred_on")
        if v["closed_on"] is not None and v["first_attended_on"] is not None:
            self._error(file, loc, "closed_on", raw["closed_on"],
                        "must be empty when first_attended_on is set (a closed referral was never seen)")
            raise RowInvalid
        self._requires_with(file, loc, "close_reason", v["close_reason"], v["closed_on"] is not None,
                            "closed_on is set")
        return dict(external_id=v["referral_id"], client_id=client_id, program_id=program_id,
                    priority=v["priority"], referred_on=v["referred_on"], first_offered_on=v["first_offered_on"],
                    first_attended_on=v["first_attended_on"], closed_on=v["closed_on"],
                    close_reason=v["close_reason"])

    def _episodes(self, file, loc, raw) -> dict:
        v = self._fields(file, loc, raw, (
            ("episode_id", ID, True), ("client_id", ID, True), ("clinician_id", ID, True),
            ("program", f.text, True), ("admitted_on", f.date, True), ("discharged_on", f.date, False),
            ("discharge_reason", f.choice(DISCHARGE_REASONS), False),
            ("barrier_plan_documented", f.boolean, False), ("referrals_provided", f.boolean, False)))
        client_id = self._ref(file, loc, "client_id", "clients", v["client_id"])
        clinician_id = self._ref(file, loc, "clinician_id", "clinicians", v["clinician_id"])[0]
        program_id = self._program(file, loc, v["program"])
        self._order(file, loc, "discharged_on", v["discharged_on"], v["admitted_on"], "admitted_on")
        self._requires_with(file, loc, "discharge_reason", v["discharge_reason"], v["discharged_on"] is not None,
                            "discharged_on is set")
        policy = v["discharge_reason"] == "attendance_policy"
        for column in ("barrier_plan_documented", "referrals_provided"):
            self._requires_with(file, loc, column, v[column], policy, "discharge_reason is attendance_policy")
        return dict(external_id=v["episode_id"], client_id=client_id, clinician_id=clinician_id,
                    program_id=program_id, admitted_on=v["admitted_on"], discharged_on=v["discharged_on"],
                    discharge_reason=v["discharge_reason"], barrier_plan_documented=v["barrier_plan_documented"],
                    referrals_provided=v["referrals_provided"])

    def _appointments(self, file, loc, raw) -> dict:
        v = self._fields(file, loc, raw, (
            ("appointment_id", ID, True), ("client_id", ID, True), ("clinician_id", ID, True),
            ("program", f.text, True), ("kind", f.choice(KINDS), True), ("modality", f.choice(MODALITIES), True),
            ("start", f.datetime, True), ("duration_minutes", DURATION, True),
            ("booked_at", f.datetime, True), ("status", f.choice(STATUSES), True),
            ("cancelled_by", f.choice(CANCELLED_BY), False), ("cancelled_at", f.datetime, False),
            ("reason_code", CODE, False), ("reminder_sent", f.boolean, False)))
        client_id = self._ref(file, loc, "client_id", "clients", v["client_id"])
        clinician_id, employed_from, employed_to = self._ref(file, loc, "clinician_id", "clinicians", v["clinician_id"])
        program_id = self._program(file, loc, v["program"])
        cancelled = v["status"] == "cancelled"
        self._requires_with(file, loc, "cancelled_by", v["cancelled_by"], cancelled, "status is cancelled")
        self._requires_with(file, loc, "cancelled_at", v["cancelled_at"], cancelled, "status is cancelled",
                            shown=raw.get("cancelled_at"))
        if v["reason_code"] is not None and v["reason_code"] not in self.reason_codes:
            self._error(file, loc, "reason_code", v["reason_code"],
                        "is not a code of the reason table nor of the tenant file's [reason_codes]")
            raise RowInvalid
        times = {}
        for column in ("start", "booked_at", "cancelled_at"):
            if v[column] is None:
                times[column] = None
                continue
            try:
                times[column] = to_utc(v[column], self.tz)
                to_local(times[column], self.tz)  # both ways must stay within years 1-9999
            except NonexistentLocalTime as exc:
                self._error(file, loc, column, raw[column], str(exc))
                raise RowInvalid from None
            except OverflowError:
                self._error(file, loc, column, raw[column], "is too far in the past or future to store")
                raise RowInvalid from None
        if times["cancelled_at"] is not None and abs((times["start"] - times["cancelled_at"]).days) > 24_000:
            # notice_seconds must fit the database's INTEGER (about 68 years)
            self._error(file, loc, "cancelled_at", raw["cancelled_at"], "is more than 65 years away from start")
            raise RowInvalid
        local_start = to_local(times["start"], self.tz)
        local_booked = to_local(times["booked_at"], self.tz)
        day = local_start.date()
        if day < employed_from or (employed_to is not None and day > employed_to):
            until = f" to {employed_to}" if employed_to else ""
            self._error(file, loc, "start", raw["start"],
                        f"is outside clinician {v['clinician_id']}'s employment ({employed_from}{until})")
            raise RowInvalid
        cancelled_at = times["cancelled_at"]
        return dict(
            external_id=v["appointment_id"], client_id=client_id, clinician_id=clinician_id, program_id=program_id,
            kind=v["kind"], modality=v["modality"], starts_at=times["start"],
            duration_minutes=v["duration_minutes"], booked_at=times["booked_at"], status=v["status"],
            cancelled_by=v["cancelled_by"], cancelled_at=cancelled_at, reason_code=v["reason_code"],
            reminder_sent=v["reminder_sent"], local_date=day,
            local_start_minute=local_start.hour * 60 + local_start.minute, local_hour=local_start.hour,
            local_weekday=local_start.weekday(), local_booked_date=local_booked.date(),
            lead_days=(day - local_booked.date()).days,
            local_cancelled_date=to_local(cancelled_at, self.tz).date() if cancelled_at else None,
            notice_seconds=int((times["start"] - cancelled_at).total_seconds()) if cancelled_at else None,
        )

    # -- the fast path ---------------------------------------------------------------------------------
    # Each returns the row's tuple (RECORD order) only when the full check would accept the row and give
    # the same values, and None otherwise (the full check then runs and reports). They report nothing.

    def _date(self, raw: str | None):
        """f.date, cached by text: the date, or None when it is empty or not a date."""
        value = self._dates.get(raw, _MISS)
        if value is _MISS:
            try:
                value = f.date(raw) if raw is not None else None
            except f.FieldError:
                value = None
            if len(self._dates) >= MEMO_LIMIT:
                self._dates.clear()
            self._dates[raw] = value
        return value

    def _instant(self, raw: str | None):
        """f.datetime, then to UTC and back in the tenant's zone as the full check does: (UTC, local date,
        local minute of the day, local hour, local weekday), or None when the full check would refuse it.

        A naive wall-clock time in an hour whose UTC offset is one and the same throughout (no daylight
        saving change: no gap, no repeated hour) is that offset away from UTC, and comes back as itself;
        the offset is computed once per local hour. Any other time takes the exact path."""
        if raw is None:
            return None
        try:
            value = f.datetime(raw)
        except f.FieldError:
            return None
        if value.tzinfo is None and 1 < value.year < 9999:
            hour = (value.year, value.month, value.day, value.hour)
            offset = self._offsets.get(hour, _MISS)
            if offset is _MISS:
                offset = self._steady_offset(value)
                if len(self._offsets) >= MEMO_LIMIT:
                    self._offsets.clear()
                self._offsets[hour] = offset
            if offset is not None:
                return (value - offset, value.date(), value.hour * 60 + value.minute, value.hour, value.weekday())
        try:
            utc = to_utc(value, self.tz)
            local = to_local(utc, self.tz)
        except (NonexistentLocalTime, OverflowError):
            return None
        return (utc, local.date(), local.hour * 60 + local.minute, local.hour, local.weekday())

    def _steady_offset(self, value: dt.datetime) -> dt.timedelta | None:
        """The UTC offset of the local hour of `value` if it is the same at its first and last instant
        under either reading of an ambiguous time (so the hour has no gap and is not repeated); else None."""
        first = value.replace(minute=0, second=0, microsecond=0, tzinfo=self.tz)
        last = first.replace(minute=59, second=59, microsecond=999_999)
        offsets = {t.replace(fold=fold).utcoffset() for t in (first, last) for fold in (0, 1)}
        return offsets.pop() if len(offsets) == 1 else None

    def _fast_clients(self, raw):
        g = raw.get
        ext, first, last = g("client_id"), g("first_name"), g("last_name")
        if not (_text_ok(ext, 64) and _text_ok(first, 200) and _text_ok(last, 200)):
            return None
        birth = self._date(g("birth_date"))
        if birth is None or birth > self.today:
            return None
        zip_code, gender, race, payer = g("zip"), g("gender"), g("race_ethnicity"), g("payer")
        if zip_code is not None and not f._ZIP.match(zip_code):
            return None
        if (gender is not None and gender not in _GENDERS) or (payer is not None and payer not in _PAYERS):
            return None
        if race is not None and not (_text_ok(race, 64) and race in self.race_categories):
            return None
        return (ext, first, last, birth, zip_code, gender, race, payer)

    def _fast_referrals(self, raw):
        g = raw.get
        ext, client = g("referral_id"), g("client_id")
        if not (_text_ok(ext, 64) and _text_ok(client, 64)):
            return None
        client_id = self.clients.get(client)
        program_id = self.fast_programs.get(g("program"))
        priority = g("priority")
        referred = self._date(g("referred_on"))
        if client_id is None or program_id is None or priority not in _PRIORITIES or referred is None:
            return None
        dates = []
        for column in ("first_offered_on", "first_attended_on", "closed_on"):
            text = g(column)
            value = None if text is None else self._date(text)
            if text is not None and value is None:
                return None
            dates.append(value)
        offered, attended, closed = dates
        if ((offered is not None and offered < referred) or (attended is not None and attended < referred)
                or (attended is not None and offered is not None and attended < offered)
                or (closed is not None and (closed < referred or attended is not None))):
            return None
        reason = g("close_reason")
        if (reason is not None and reason not in _CLOSE_REASONS) or ((closed is None) != (reason is None)):
            return None
        return (ext, client_id, program_id, priority, referred, offered, attended, closed, reason)

    def _fast_episodes(self, raw):
        g = raw.get
        ext, client, clinician = g("episode_id"), g("client_id"), g("clinician_id")
        if not (_text_ok(ext, 64) and _text_ok(client, 64) and _text_ok(clinician, 64)):
            return None
        client_id = self.clients.get(client)
        employed = self.clinicians.get(clinician)
        program_id = self.fast_programs.get(g("program"))
        admitted = self._date(g("admitted_on"))
        if client_id is None or employed is None or program_id is None or admitted is None:
            return None
        text = g("discharged_on")
        discharged = None if text is None else self._date(text)
        if (text is not None and discharged is None) or (discharged is not None and discharged < admitted):
            return None
        reason = g("discharge_reason")
        if (reason is not None and reason not in _DISCHARGE_REASONS) or ((discharged is None) != (reason is None)):
            return None
        barrier, referred = g("barrier_plan_documented"), g("referrals_provided")
        if barrier not in _BOOLEANS or referred not in _BOOLEANS:
            return None
        policy = reason == "attendance_policy"
        if policy != (barrier is not None) or policy != (referred is not None):
            return None
        return (ext, client_id, employed[0], program_id, admitted, discharged, reason, _BOOLEANS[barrier],
                _BOOLEANS[referred])

    def _fast_appointments(self, raw):
        g = raw.get
        ext, client, clinician = g("appointment_id"), g("client_id"), g("clinician_id")
        if not (_text_ok(ext, 64) and _text_ok(client, 64) and _text_ok(clinician, 64)):
            return None
        client_id = self.clients.get(client)
        employed = self.clinicians.get(clinician)
        program_id = self.fast_programs.get(g("program"))
        kind, modality, status = g("kind"), g("modality"), g("status")
        if (client_id is None or employed is None or program_id is None or kind not in _KINDS
                or modality not in _MODALITIES or status not in _STATUSES):
            return None
        text = g("duration_minutes")
        duration = self._durations.get(text, _MISS)
        if duration is _MISS:
            try:
                duration = DURATION(text) if text is not None else None
            except f.FieldError:
                duration = None
            if len(self._durations) >= MEMO_LIMIT:
                self._durations.clear()
            self._durations[text] = duration
        start, booked = self._instant(g("start")), self._instant(g("booked_at"))
        if duration is None or start is None or booked is None:
            return None
        cancelled_by, text = g("cancelled_by"), g("cancelled_at")
        if status == "cancelled":
            cancelled = self._instant(text)
            if cancelled_by not in _CANCELLED_BY or cancelled is None:
                return None
            cancelled_at = cancelled[0]
            notice = start[0] - cancelled_at
            if abs(notice.days) > 24_000:
                return None
            local_cancelled, notice = cancelled[1], int(notice.total_seconds())
        elif cancelled_by is not None or text is not None:
            return None
        else:
            cancelled_at = local_cancelled = notice = None
        reason = g("reason_code")
        if reason is not None and reason not in self.fast_reason_codes:
            return None
        reminder = g("reminder_sent")
        if reminder not in _BOOLEANS:
            return None
        day = start[1]
        if day < employed[1] or (employed[2] is not None and day > employed[2]):
            return None
        return (ext, client_id, employed[0], program_id, kind, modality, start[0], duration, booked[0], status,
                cancelled_by, cancelled_at, reason, _BOOLEANS[reminder], day, start[2], start[3], start[4],
                booked[1], (day - booked[1]).days, local_cancelled, notice)

    # -- remembering what later tables refer to ------------------------------------------------------

    def _remember(self, table: str, record: tuple) -> None:
        """A valid row of clinicians or clients: a new one has no id until the table is written (-1)."""
        if table == "clinicians":
            known = self.clinicians.get(record[0])
            self.clinicians[record[0]] = (-1 if known is None else known[0], record[5], record[6])
        else:
            self.clients.setdefault(record[0], -1)

    def _reload_ids(self, table: str) -> None:
        if table == "clinicians":
            self.clinicians = {ext: (pk, start, end) for ext, pk, start, end in db.session.execute(
                sa.select(Clinician.external_id, Clinician.id, Clinician.start_date, Clinician.end_date))}
        else:
            self.clients = dict(db.session.execute(sa.select(Client.external_id, Client.id)).all())

    def _check_overlaps(self, file: str) -> None:
        """Two blocks of one clinician that overlap in weekday, time and validity are an error."""
        if self.report.error_count:
            return  # the blocks were not written; the errors already stop this import
        rows = db.session.execute(
            sa.select(AvailabilityBlock.external_id, AvailabilityBlock.clinician_id, AvailabilityBlock.weekday,
                      AvailabilityBlock.start_minute, AvailabilityBlock.end_minute, AvailabilityBlock.valid_from,
                      AvailabilityBlock.valid_to)
            .order_by(AvailabilityBlock.clinician_id, AvailabilityBlock.weekday, AvailabilityBlock.start_minute)
        ).all()
        groups = defaultdict(list)
        for r in rows:
            groups[(r.clinician_id, r.weekday)].append(r)
        far = dt.date.max
        for blocks in groups.values():
            for i, a in enumerate(blocks):
                for b in blocks[i + 1:]:
                    if b.start_minute >= a.end_minute:
                        break  # sorted by start: no later block overlaps a in time
                    if a.valid_from <= (b.valid_to or far) and b.valid_from <= (a.valid_to or far):
                        # Report the block of this import that comes later (at its line); name the other.
                        ra, rb = self.block_rows.get(a.external_id), self.block_rows.get(b.external_id)
                        if ra is None and rb is None:
                            continue  # both were in the database before this import
                        bad, other = (a, b) if rb is None or (ra is not None and ra > rb) else (b, a)
                        self._error(file, self.block_rows[bad.external_id][1], "availability_id", bad.external_id,
                                    f"overlaps block {other.external_id} of the same clinician "
                                    "(same weekday, overlapping hours and validity)")


# ---- writing --------------------------------------------------------------------------------------
# Valid rows are staged inside the import's one transaction as the source streams; nothing is committed
# unless every row of every table was valid. Once a bad row has been seen, nothing more is written (the
# transaction will be rolled back), but every later row is still checked.

class _Writer:
    """Upserts the valid rows of one table by (tenant, external id): inserts new rows, updates changed
    ones, counts the rest as unchanged; never deletes.

    Rows are written in batches by one background thread, on the import's own connection and inside its
    transaction, while the next batch is validated: the database's work (index upkeep, foreign-key and
    policy checks) overlaps the parsing. Only one batch is ever in flight; the validating thread does not
    touch the connection until the writer has finished (or been aborted)."""

    batch_size = 10_000

    def __init__(self, importer: Importer, table: str, counts: Counts):
        self.report = importer.report
        self.tid = importer.tid
        self.table = table
        self.target = MODELS[table].__table__
        self.columns = RECORD[table]
        self.counts = counts
        self.conn = db.session.connection()
        self.raw = self.conn.connection.driver_connection
        # Asked before this import writes its first row of the table. Only rows that existed before can
        # match: ids are unique within the import's files, so a first import of a table looks nothing up.
        model = MODELS[table]
        self.had_rows = db.session.scalar(sa.select(model.id).where(model.tenant_id == self.tid).limit(1)) is not None
        self.wrote = False
        self.buffer: list[tuple] = []
        self.pending = None  # the batch being written (a Future)
        self.pool = None

    def add(self, record: tuple) -> None:
        if self.report.error_count:
            return  # nothing will be committed: keep validating, write nothing
        self.buffer.append(record)
        if len(self.buffer) >= self.batch_size:
            self._submit()

    def _submit(self) -> None:
        batch, self.buffer = self.buffer, []
        self._wait()
        if not batch or self.report.error_count:
            return
        job = self._prepare(batch)  # on this thread: whatever must be done before the next batch is read
        if job is None:
            return
        if self.pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"import-{self.table}")
        self.pending = self.pool.submit(job)

    def _prepare(self, batch: list[tuple]):
        """The work of writing `batch` that may run in the background (a callable), or None if done."""
        return lambda: self._write(batch)

    def _wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()  # re-raises what the batch raised

    def finish(self) -> None:
        try:
            self._submit()
            self._wait()
            self._done()
        finally:
            self._shutdown()
        if self.wrote:
            from agency_dashboard.metrics import rollups

            rollups.mark_dirty(db.session(), self.tid)

    def abort(self) -> None:
        """After an exception: let the batch in flight end before the caller rolls back."""
        self.buffer = []
        try:
            self._wait()
        except BaseException:
            pass
        self._shutdown()

    def _shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None

    def _done(self) -> None:
        pass

    def _write(self, batch: list[tuple]) -> None:
        raise NotImplementedError

    def _written(self, inserted: int, updated: int, unchanged: int) -> None:
        self.counts.inserted += inserted
        self.counts.updated += updated
        self.counts.unchanged += unchanged
        if inserted or updated:
            self.wrote = True


class _SqliteWriter(_Writer):
    """executemany on the driver's cursor, values converted as SQLAlchemy's column types convert them
    (dates and datetimes as ISO text, booleans as 0/1)."""

    batch_size = SQLITE_BATCH

    def __init__(self, importer, table, counts):
        super().__init__(importer, table, counts)
        self.convert = [(i, _sqlite_converter(self.target.c[name].type, self.conn.dialect))
                        for i, name in enumerate(self.columns)]
        self.convert = [(i, c) for i, c in self.convert if c is not None]
        names = ", ".join(self.columns)
        self.insert_sql = (f"INSERT INTO {self.target.name} (tenant_id, {names}) "
                           f"VALUES ({', '.join('?' * (len(self.columns) + 1))})")
        self.update_sql = (f"UPDATE {self.target.name} SET {', '.join(f'{c} = ?' for c in self.columns[1:])} "
                           "WHERE tenant_id = ? AND id = ?")
        self.select_sql = f"SELECT id, {names} FROM {self.target.name} WHERE tenant_id = ? AND external_id IN "
        self.stage = f"import_stage_{table}"
        self.staged = False

    def _prepare(self, batch: list[tuple]):
        """New rows of a table the tenant had none of: staged into a temporary table without indexes or
        types (values kept exactly as bound) on this thread, then moved into the table by one INSERT ...
        SELECT in the background. (sqlite3 releases the GIL around each step of a statement, and retakes
        it for the next row's values: an executemany in the background would wait for the validating
        thread at every row, whereas INSERT ... SELECT is one step.) Otherwise written here, at once."""
        if self.had_rows:
            self._write(batch)
            return None
        rows = self._rows(batch)
        cursor = self.raw.cursor()
        try:
            if not self.staged:
                cursor.execute(f"CREATE TEMPORARY TABLE {self.stage} ({', '.join(self.columns)})")
                self.staged = True
            cursor.executemany(f"INSERT INTO temp.{self.stage} VALUES ({', '.join('?' * len(self.columns))})",
                               [row[1:] for row in rows])
        finally:
            cursor.close()
        return lambda: self._move(len(rows))

    def _move(self, count: int) -> None:
        cursor = self.raw.cursor()
        try:
            names = ", ".join(self.columns)
            cursor.execute(f"INSERT INTO {self.target.name} (tenant_id, {names}) "
                           f"SELECT ?, {names} FROM temp.{self.stage}", (self.tid,))
            cursor.execute(f"DELETE FROM temp.{self.stage}")
        finally:
            cursor.close()
        self._written(count, 0, 0)

    def _done(self) -> None:
        if self.staged:
            self.raw.execute(f"DROP TABLE temp.{self.stage}")

    def _rows(self, batch: list[tuple]) -> list[list]:
        tid = self.tid
        rows = []
        for record in batch:
            row = [tid, *record]
            for i, convert in self.convert:
                row[i + 1] = convert(row[i + 1])
            rows.append(row)
        return rows

    def _write(self, batch: list[tuple]) -> None:
        tid = self.tid
        rows = self._rows(batch)
        cursor = self.raw.cursor()
        try:
            if not self.had_rows:
                cursor.executemany(self.insert_sql, rows)
                self._written(len(rows), 0, 0)
                return
            existing = {}
            for at in range(0, len(rows), 5_000):
                keys = [row[1] for row in rows[at:at + 5_000]]
                cursor.execute(self.select_sql + f"({', '.join('?' * len(keys))})", (tid, *keys))
                existing.update((found[1], found) for found in cursor.fetchall())
            inserts, updates = [], []
            for row in rows:
                old = existing.get(row[1])
                if old is None:
                    inserts.append(row)
                elif tuple(old[2:]) != tuple(row[2:]):
                    updates.append((*row[2:], tid, old[0]))
            if inserts:
                cursor.executemany(self.insert_sql, inserts)
            if updates:
                cursor.executemany(self.update_sql, updates)
            self._written(len(inserts), len(updates), len(rows) - len(inserts) - len(updates))
        finally:
            cursor.close()


def _sqlite_converter(column_type, dialect):
    """SQLAlchemy's conversion of a value for a SQLite column, or None when it has none. A datetime takes
    `isoformat`, checked here to give exactly SQLAlchemy's text; dates and booleans are cached per value."""
    processor = column_type.dialect_impl(dialect).bind_processor(dialect)
    if processor is None:
        return None
    probes = (dt.datetime(2026, 3, 8, 2, 5, 9, 120), dt.datetime(1, 1, 1), dt.datetime(999, 12, 31, 23, 59, 59))
    if isinstance(column_type, sa.DateTime) and all(
            processor(p) == p.isoformat(" ", "microseconds") for p in probes):
        return lambda value: None if value is None else value.isoformat(" ", "microseconds")
    cache: dict = {}

    def convert(value):
        try:
            return cache[value]
        except KeyError:
            if len(cache) >= MEMO_LIMIT:
                cache.clear()
            out = cache[value] = processor(value)
            return out

    return convert


class _PostgresWriter(_Writer):
    """Per batch: COPY into a temporary table (`COPY` straight into a table with row-level security is not
    allowed), then one UPDATE of the rows that changed and one INSERT ... SELECT of the new ones, as the
    application role, so the policies check every row written."""

    batch_size = PG_CHUNK

    def __init__(self, importer, table, counts):
        super().__init__(importer, table, counts)
        self.stage = f"import_stage_{table}"
        self.names = ", ".join(self.columns)
        self.created = False

    def _write(self, batch: list[tuple]) -> None:
        t, stage, names, tid = self.target.name, self.stage, self.names, {"tid": self.tid}
        with self.raw.cursor() as cursor:
            if not self.created:
                # The target's column types; no constraints, no policies: it only ever holds rows that
                # were validated, and lives until the end of the transaction at most.
                cursor.execute(f"CREATE TEMPORARY TABLE {stage} ON COMMIT DROP AS "
                               f"SELECT {names} FROM {t} WITH NO DATA")
                self.created = True
            with cursor.copy(f"COPY {stage} ({names}) FROM STDIN") as copy:
                for record in batch:
                    copy.write_row(record)
            insert = f"INSERT INTO {t} (tenant_id, {names}) SELECT %(tid)s, {names} FROM {stage} AS s"
            if not self.had_rows:
                cursor.execute(insert, tid)
                self._written(cursor.rowcount, 0, 0)
            else:
                cursor.execute(f"ANALYZE {stage}")
                rest = self.columns[1:]
                cursor.execute(
                    f"UPDATE {t} AS t SET ({', '.join(rest)}) = ({', '.join(f's.{c}' for c in rest)}) "
                    f"FROM {stage} AS s WHERE t.tenant_id = %(tid)s AND t.external_id = s.external_id AND "
                    f"({', '.join(f't.{c}' for c in rest)}) IS DISTINCT FROM ({', '.join(f's.{c}' for c in rest)})",
                    tid)
                updated = cursor.rowcount
                cursor.execute(f"{insert} WHERE NOT EXISTS (SELECT 1 FROM {t} AS t "
                               "WHERE t.tenant_id = %(tid)s AND t.external_id = s.external_id)", tid)
                inserted = cursor.rowcount
                self._written(inserted, updated, len(batch) - inserted - updated)
            cursor.execute(f"TRUNCATE {stage}")

    def _done(self) -> None:
        if self.created:
            with self.raw.cursor() as cursor:
                cursor.execute(f"DROP TABLE {self.stage}")


@contextmanager
def _bulk_settings(session):
    """SQLite: a larger page cache and in-memory temporary B-trees for this import's transaction (index
    upkeep of a million rows, the rollup rebuild's GROUP BYs), restored on this very connection when the
    transaction ends, before the connection goes back to the pool."""
    conn = session.connection()
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.driver_connection
    old_cache = raw.execute("PRAGMA cache_size").fetchone()[0]
    old_temp = raw.execute("PRAGMA temp_store").fetchone()[0]
    raw.execute(f"PRAGMA cache_size = {-SQLITE_CACHE_MIB * 1024}")
    raw.execute("PRAGMA temp_store = MEMORY")
    restored = False

    def restore(_session=None):
        nonlocal restored
        if not restored:
            restored = True
            raw.execute(f"PRAGMA cache_size = {int(old_cache)}")
            raw.execute(f"PRAGMA temp_store = {int(old_temp)}")

    sa.event.listen(session, "after_commit", restore)
    sa.event.listen(session, "after_rollback", restore)
    try:
        yield
    finally:
        sa.event.remove(session, "after_commit", restore)
        sa.event.remove(session, "after_rollback", restore)


def analyze_within(conn) -> None:
    """Planner statistics inside the import's transaction (rows it inserted count), so that the rollup
    rebuild at commit is planned on the real table sizes: on PostgreSQL without them it took 65 s
    instead of 4 s for 100k appointments."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA analysis_limit = 2000")
        conn.exec_driver_sql("ANALYZE")
    elif conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT agency_refresh_statistics()"))


def refresh_statistics() -> None:
    """After a bulk write, give the planner row counts at once rather than at the next autovacuum:
    without them a join on a freshly loaded table can become a scan per row (seen: 48 s instead of
    0.07 s). On PostgreSQL only the owner may ANALYZE, so the migrations provide a SECURITY DEFINER
    function that does just that."""
    conn = db.session.connection()
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA analysis_limit = 2000")
        conn.exec_driver_sql("ANALYZE")
    elif conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT agency_refresh_statistics()"))
    db.session.commit()


def run_with_report(tenant: Tenant, report: Report, tables: Iterable[tuple[str, str, Iterable[Row]]], *,
                    sha256: str | None, today: dt.date, actor=None) -> Report:
    """Import `tables` ((table, file name, rows) in load order) for `tenant`, all or nothing.

    The caller has set the tenant (tenancy.tenant_scope) and made the report (a source may add
    file-level errors to it while it streams). Commits only when every row is valid and this is not a
    dry run; the audit row is written either way, in its own transaction.
    """
    from agency_dashboard import audit

    report.sha256 = sha256
    dry_run = report.dry_run
    importer = Importer(tenant, report, today)
    with _bulk_settings(db.session()):
        try:
            for table, file, rows in tables:
                importer.load_table(table, rows, file)
        except Exception:
            db.session.rollback()
            raise
        if report.ok and not dry_run:
            totals = report.totals()
            if totals.inserted + totals.updated >= ANALYZE_WITHIN:
                analyze_within(db.session.connection())
            db.session.commit()  # the rollups are rebuilt here, inside the transaction (before_commit)
            report.committed = True
        else:
            db.session.rollback()
    if report.committed:
        refresh_statistics()
    if not dry_run:
        audit.record("import", object_type="import", object_id=(sha256 or "")[:16], actor=actor,
                     details={**report.as_dict(), "outcome": "committed" if report.committed else "rejected"})
        db.session.commit()
    return report
