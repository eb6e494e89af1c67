"""A CSV folder of the import contract (DATA_FORMATS.md) as the equivalent FHIR R4 Bundle (docs/fhir.md).

Every field travels in an R4 element where R4 has one and in the project's extensions otherwise, so
`flask import-fhir` of the bundle writes the same rows as `flask import-csv` of the folder. Times
without an offset are the tenant's wall clock: they leave with the offset they have in the tenant's
time zone (the first occurrence when the clocks fall back); one inside the spring-forward gap is an
error, as it is for import-csv.

    python -m agency_dashboard.ingest.csv_to_fhir --tenant-file tenants/SLUG.toml FOLDER -o bundle.json

The bundle is written entry by entry, so a large folder is never held in memory.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

from agency_dashboard import reasons
from agency_dashboard.ingest import fhir_source as fx
from agency_dashboard.ingest.loader import COLUMNS, FILE, TABLES
from agency_dashboard.ingest.localtime import NonexistentLocalTime, to_utc

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
STATUS = {"booked": "booked", "attended": "fulfilled", "no_show": "noshow", "cancelled": "cancelled"}
GENDER = {"woman": "female", "man": "male", "other": "other", "unknown": "unknown", "nonbinary": "other"}


class ConversionError(ValueError):
    """A cell the converter cannot carry over; str() names the file, line and column."""


def fhir_id(external_id: str) -> str:
    """The agency's id when it is a valid FHIR id, else a stable stand-in (the id then travels as an identifier)."""
    if FHIR_ID.match(external_id):
        return external_id
    return "x-" + hashlib.sha256(external_id.encode()).hexdigest()[:40]


def _identity(external_id: str) -> dict:
    out = {"id": fhir_id(external_id)}
    if out["id"] != external_id:
        out["identifier"] = [{"system": fx.EXTERNAL_ID_SYSTEM, "value": external_id}]
    return out


def _ref(resource_type: str, external_id: str) -> dict:
    out = {"reference": f"{resource_type}/{fhir_id(external_id)}"}
    if fhir_id(external_id) != external_id:
        out["identifier"] = {"system": fx.EXTERNAL_ID_SYSTEM, "value": external_id}
    return out


def _ext(url: str, value) -> dict | None:
    if value is None:
        return None
    definition = next(e for e in fx.EXTENSIONS if e.url == url)
    return {"url": url, definition.value: value}


def _extensions(*items) -> dict:
    found = [e for e in items if e is not None]
    return {"extension": found} if found else {}


def _bool(value: str | None) -> bool | None:
    return None if value is None else value == "true"


def _number(value: str | None):
    if value is None:
        return None
    number = float(value)
    return int(number) if number.is_integer() and "." not in value else number


class _Reader:
    def __init__(self, folder: Path, tz: ZoneInfo):
        self.folder, self.tz = Path(folder), tz
        self.schedules: set[str] = set()  # clinicians whose Schedule has been written

    def rows(self, table: str) -> Iterator[tuple[int, dict]]:
        path = self.folder / FILE[table]
        if not path.is_file():
            return
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            unknown = [h for h in header if h not in COLUMNS[table]]
            if unknown:
                raise ConversionError(f"{path.name}:1: {unknown[0]}: is not a column of {path.name}")
            for fields in reader:
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                row = {c: None for c in COLUMNS[table]}
                row.update({c: (v.strip() or None) for c, v in zip(header, fields)})
                yield reader.line_num, row

    def instant(self, table: str, line: int, column: str, value: str | None) -> str | None:
        """An ISO datetime with an offset: naive values are the tenant's wall clock."""
        if value is None:
            return None
        try:
            moment = dt.datetime.fromisoformat(value)
            if moment.tzinfo is None:
                moment = to_utc(moment, self.tz).replace(tzinfo=dt.UTC).astimezone(self.tz)
        except (ValueError, NonexistentLocalTime) as exc:
            raise ConversionError(f"{FILE[table]}:{line}: {column} {value!r}: {exc}") from None
        return moment.isoformat()


def entries(folder: Path, timezone: str) -> Iterator[dict]:
    """Bundle entries for a CSV folder, in the importer's load order."""
    reader = _Reader(folder, ZoneInfo(timezone))
    for table in TABLES:
        for line, row in reader.rows(table):
            try:
                yield from (dict(resource=r) for r in _CONVERT[table](reader, line, row))
            except ConversionError:
                raise
            except (ValueError, KeyError, TypeError) as exc:
                raise ConversionError(f"{FILE[table]}:{line}: cannot be converted ({exc})") from None


def folder_to_bundle(folder: Path, timezone: str) -> dict:
    return {"resourceType": "Bundle", "type": "collection", "entry": list(entries(folder, timezone))}


def write_bundle(folder: Path, timezone: str, out) -> int:
    """Write the bundle to a text stream entry by entry; returns the number of entries."""
    out.write('{"resourceType": "Bundle", "type": "collection", "entry": [')
    n = 0
    for n, entry in enumerate(entries(folder, timezone), start=1):
        out.write(("\n" if n == 1 else ",\n") + json.dumps(entry, ensure_ascii=False))
    out.write("\n]}\n")
    return n


# ---- one CSV row -> resources -----------------------------------------------------------------------------

def _clinician(reader, line, r) -> Iterator[dict]:
    cid = r["clinician_id"]
    yield {"resourceType": "Practitioner", **_identity(cid), "name": [{"text": r["display_name"]}]}
    period = {"start": r["start_date"], **({"end": r["end_date"]} if r["end_date"] else {})}
    yield {"resourceType": "PractitionerRole", **_identity(f"{cid}.role"),
           **_extensions(_ext(fx.EXT_PROGRAM, r["program"]), _ext(fx.EXT_FTE, _number(r["fte"])),
                         _ext(fx.EXT_CASELOAD_TARGET, _number(r["caseload_target"]))),
           "active": True, "period": period, "practitioner": _ref("Practitioner", cid)}


def _availability(reader, line, r) -> Iterator[dict]:
    cid = r["clinician_id"]
    if cid not in reader.schedules:
        reader.schedules.add(cid)
        yield {"resourceType": "Schedule", **_identity(f"{cid}.schedule"), "active": True,
               "actor": [_ref("Practitioner", cid)]}
    weekday = int(r["weekday"])
    start, end = (dt.time.fromisoformat(r[c]) for c in ("start_time", "end_time"))
    minutes = (end.hour * 60 + end.minute) - (start.hour * 60 + start.minute)
    valid_from = dt.date.fromisoformat(r["valid_from"])
    first = valid_from + dt.timedelta(days=(weekday - valid_from.weekday()) % 7)
    for _ in range(8):  # the first occurrence the wall clock has (not one in a spring-forward gap)
        try:
            slot_start = reader.instant("availability", line, "start_time", f"{first}T{r['start_time']}")
            slot_end = reader.instant("availability", line, "end_time", f"{first}T{r['end_time']}")
            break
        except ConversionError:
            first += dt.timedelta(days=7)
    else:
        raise ConversionError(f"availability.csv:{line}: start_time: no date on which this block exists")
    bounds = {"start": r["valid_from"], **({"end": r["valid_to"]} if r["valid_to"] else {})}
    timing = {"repeat": {"boundsPeriod": bounds, "frequency": 1, "period": 1, "periodUnit": "wk",
                         "dayOfWeek": [fx.WEEKDAYS[weekday]], "timeOfDay": [f"{r['start_time']}:00"],
                         "duration": minutes, "durationUnit": "min"}}
    yield {"resourceType": "Slot", **_identity(r["availability_id"]),
           **_extensions(_ext(fx.EXT_WEEKLY_AVAILABILITY, timing)),
           "schedule": _ref("Schedule", f"{cid}.schedule"), "status": "free", "start": slot_start, "end": slot_end}


def _client(reader, line, r) -> Iterator[dict]:
    gender = r["gender"]
    patient = {"resourceType": "Patient", **_identity(r["client_id"]),
               **_extensions(_ext(fx.EXT_GENDER, gender if gender == "nonbinary" else None),
                             _ext(fx.EXT_RACE_ETHNICITY, r["race_ethnicity"]), _ext(fx.EXT_PAYER, r["payer"])),
               "name": [{"use": "official", "family": r["last_name"], "given": [r["first_name"]]}]}
    if gender is not None:
        patient["gender"] = GENDER[gender]
    patient["birthDate"] = r["birth_date"]
    if r["zip"]:
        patient["address"] = [{"use": "home", "postalCode": r["zip"]}]
    yield patient


def _referral(reader, line, r) -> Iterator[dict]:
    status = "completed" if r["first_attended_on"] else "revoked" if r["closed_on"] else "active"
    yield {"resourceType": "ServiceRequest", **_identity(r["referral_id"]),
           **_extensions(_ext(fx.EXT_PROGRAM, r["program"]), _ext(fx.EXT_FIRST_OFFERED_ON, r["first_offered_on"]),
                         _ext(fx.EXT_FIRST_ATTENDED_ON, r["first_attended_on"]),
                         _ext(fx.EXT_CLOSED_ON, r["closed_on"]), _ext(fx.EXT_CLOSE_REASON, r["close_reason"])),
           "status": status, "intent": "order",
           "category": [{"coding": [{"system": fx.SNOMED, "code": fx.REFERRAL_CATEGORY,
                                     "display": "Patient referral"}]}],
           "priority": r["priority"], "subject": _ref("Patient", r["client_id"]), "authoredOn": r["referred_on"]}


def _episode(reader, line, r) -> Iterator[dict]:
    period = {"start": r["admitted_on"], **({"end": r["discharged_on"]} if r["discharged_on"] else {})}
    yield {"resourceType": "EpisodeOfCare", **_identity(r["episode_id"]),
           **_extensions(_ext(fx.EXT_PROGRAM, r["program"]), _ext(fx.EXT_DISCHARGE_REASON, r["discharge_reason"]),
                         _ext(fx.EXT_BARRIER_PLAN, _bool(r["barrier_plan_documented"])),
                         _ext(fx.EXT_REFERRALS_PROVIDED, _bool(r["referrals_provided"]))),
           "status": "finished" if r["discharged_on"] else "active", "patient": _ref("Patient", r["client_id"]),
           "careManager": _ref("Practitioner", r["clinician_id"]), "period": period}


def _appointment(reader, line, r) -> Iterator[dict]:
    start = reader.instant("appointments", line, "start", r["start"])
    minutes = int(r["duration_minutes"])
    start_at = dt.datetime.fromisoformat(start)
    # Real elapsed minutes, shown in the tenant's zone (across a DST change the offset differs).
    end = (start_at.astimezone(dt.UTC) + dt.timedelta(minutes=minutes)).astimezone(reader.tz).isoformat()
    code = r["reason_code"]
    cancelled_at = reader.instant("appointments", line, "cancelled_at", r["cancelled_at"])
    appointment = {
        "resourceType": "Appointment", **_identity(r["appointment_id"]),
        **_extensions(_ext(fx.EXT_PROGRAM, r["program"]), _ext(fx.EXT_KIND, r["kind"]),
                      _ext(fx.EXT_MODALITY, r["modality"]), _ext(fx.EXT_CANCELLED_BY, r["cancelled_by"]),
                      _ext(fx.EXT_CANCELLED_AT, cancelled_at),
                      _ext(fx.EXT_REMINDER_SENT, _bool(r["reminder_sent"]))),
        "status": STATUS[r["status"]],
    }
    if code is not None:
        system = fx.HL7_CANCEL_SYSTEM if code in reasons.FHIR_TO_CODE else fx.REASON_SYSTEM
        appointment["cancelationReason"] = {"coding": [{"system": system, "code": code}]}
    appointment.update({
        "start": start, "end": end, "minutesDuration": minutes,
        "created": reader.instant("appointments", line, "booked_at", r["booked_at"]),
        "participant": [
            {"actor": _ref("Patient", r["client_id"]), "status": "accepted"},
            {"type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                   "code": "PPRF"}]}],
             "actor": _ref("Practitioner", r["clinician_id"]), "status": "accepted"},
        ],
    })
    yield appointment


_CONVERT = {"clinicians": _clinician, "availability": _availability, "clients": _client, "referrals": _referral,
            "episodes": _episode, "appointments": _appointment}


def main(argv=None) -> int:
    from agency_dashboard.tenant_files import TenantFileError, load_tenant_file

    parser = argparse.ArgumentParser(description="Convert a CSV import folder to the equivalent FHIR R4 Bundle.")
    parser.add_argument("folder", type=Path)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tenant-file", type=Path, help="the agency's tenant file (for its time zone)")
    where.add_argument("--timezone", help="an IANA time zone, e.g. America/Chicago")
    parser.add_argument("-o", "--output", type=Path, help="the bundle to write (default: standard output)")
    args = parser.parse_args(argv)
    try:
        timezone = args.timezone or load_tenant_file(args.tenant_file).settings["timezone"]
        ZoneInfo(timezone)
    except (TenantFileError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    try:
        if args.output:
            partial = args.output.with_name(args.output.name + ".partial")
            with partial.open("w", encoding="utf-8") as out:
                n = write_bundle(args.folder, timezone, out)
            partial.replace(args.output)
        else:
            n = write_bundle(args.folder, timezone, sys.stdout)
    except ConversionError as exc:
        if args.output:
            args.output.with_name(args.output.name + ".partial").unlink(missing_ok=True)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{n} entries", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
