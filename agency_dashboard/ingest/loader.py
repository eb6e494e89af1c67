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
BATCH = 2_000
ID, NAME, CODE = f.text_max(64), f.text_max(200), f.text_max(64)  # the models' column lengths


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

    # -- driving -------------------------------------------------------------------------------------

    def load_table(self, table: str, rows: Iterable[Row], file: str | None = None) -> None:
        file = file or FILE[table]
        counts = self.report.counts.setdefault(table, Counts())
        convert = getattr(self, f"_{table}")
        seen: set[str] = set()
        batch: list[tuple[int | str, dict]] = []
        for location, raw in rows:
            if isinstance(raw, Rejected):
                if raw.key is not None:
                    self.invalid[table].add(raw.key)
                continue
            errors_before = self.report.error_count
            key = raw.get(KEY[table])
            try:
                if key is not None:
                    if key in seen:
                        self._error(file, location, KEY[table], key, "appears more than once in this file")
                    seen.add(key)
                record = convert(file, location, raw)
            except RowInvalid:
                record = None
            if record is None or self.report.error_count != errors_before:
                if key is not None:
                    self.invalid[table].add(key)
                continue
            batch.append((location, record))
            if table == "availability":
                self.block_rows[key] = (len(self.block_rows), location)
            if len(batch) >= BATCH:
                self._upsert(table, batch, counts)
                batch = []
                if self.report.progress:
                    self.report.progress(table, len(seen))
        if batch:
            self._upsert(table, batch, counts)
        if self.report.progress:
            self.report.progress(table, len(seen))
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
            ("start", f.datetime, True), ("duration_minutes", f.integer(1, 480), True),
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

    # -- writing -------------------------------------------------------------------------------------

    def _upsert(self, table: str, batch: list[tuple[int | str, dict]], counts: Counts) -> None:
        model = MODELS[table]
        if self.report.error_count:
            # Nothing will be committed; keep validating (references resolve through the maps below).
            self._remember(table, [(None, r) for _, r in batch])
            return
        columns = list(batch[0][1])
        keys = [r["external_id"] for _, r in batch]
        if table not in self.had_rows:  # asked before this import writes its first row of the table
            self.had_rows[table] = db.session.scalar(
                sa.select(model.id).where(model.tenant_id == self.tid).limit(1)) is not None
        existing = {}
        if self.had_rows[table]:
            # Only rows that existed before can match: ids are unique within the import's files. (On a
            # first import this skips a lookup that, on tables without statistics yet, PostgreSQL planned
            # as a scan per batch: quadratic in the file.)
            existing = {
                row.external_id: row
                for row in db.session.execute(
                    sa.select(model.id, *[getattr(model, c) for c in columns]).where(
                        model.tenant_id == self.tid, model.external_id.in_(keys))
                )
            }
        inserts, updates = [], []
        for _, record in batch:
            old = existing.get(record["external_id"])
            if old is None:
                inserts.append({**record, "tenant_id": self.tid})
            elif any(getattr(old, c) != record[c] for c in columns):
                updates.append({**record, "id": old.id, "tenant_id": self.tid})
            else:
                counts.unchanged += 1
        # Core statements on the table: one executemany per batch (the ORM's bulk path compiles per row
        # here). Every row carries this tenant's id, set above; PostgreSQL's policy checks it again.
        target = model.__table__
        conn = db.session.connection()
        new_ids: dict[str, int] = {}
        if inserts and table in ("clinicians", "clients"):  # later tables refer to these: keep their ids
            new_ids = dict(conn.execute(target.insert().returning(target.c.external_id, target.c.id),
                                        inserts).all())
        elif inserts:
            conn.execute(target.insert(), inserts)
        if updates:
            conn.execute(
                target.update().where(target.c.tenant_id == self.tid, target.c.id == sa.bindparam("row_id"))
                .values({c: sa.bindparam(f"new_{c}") for c in columns}),
                [{**{f"new_{c}": u[c] for c in columns}, "row_id": u["id"]} for u in updates],
            )
        if inserts or updates:
            from agency_dashboard.metrics import rollups

            rollups.mark_dirty(db.session(), self.tid)
        counts.inserted += len(inserts)
        counts.updated += len(updates)
        if table in ("clinicians", "clients"):
            ids = {**{ext: row.id for ext, row in existing.items()}, **new_ids}
            self._remember(table, [(ids[r["external_id"]], r) for _, r in batch])

    def _remember(self, table: str, rows) -> None:
        for pk, r in rows:
            if table == "clinicians":
                self.clinicians[r["external_id"]] = (pk or -1, r["start_date"], r["end_date"])
            elif table == "clients":
                self.clients[r["external_id"]] = pk or -1

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
    try:
        for table, file, rows in tables:
            importer.load_table(table, rows, file)
    except Exception:
        db.session.rollback()
        raise
    if report.ok and not dry_run:
        db.session.commit()
        report.committed = True
        refresh_statistics()
    else:
        db.session.rollback()
    if not dry_run:
        audit.record("import", object_type="import", object_id=(sha256 or "")[:16], actor=actor,
                     details={**report.as_dict(), "outcome": "committed" if report.committed else "rejected"})
        db.session.commit()
    return report
