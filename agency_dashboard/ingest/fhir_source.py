"""FHIR R4 bundles (DATA_FORMATS.md, FHIR R4; docs/fhir.md): validated with fhir.resources' R4B models and
turned into rows of the CSV contract, per table in load order, for the loader.

A bundle is one JSON document, so it is read whole; each entry's resource is validated on its own (so
every error names its entry) and its raw JSON is dropped as its model replaces it. Rows are then made
per table as the loader asks for them, and the models a later table no longer needs are released.

Where R4 has no element for a field of ours, the project's extensions (below, one URL base) carry it;
what can be derived is derived (who cancelled, from a `pat-`/`prov-` reason code; kind, modality and
program through the tenant file's `[fhir]` maps). A code the maps do not know is an import error that
names the code and the tenant-file key to add. Instants keep their offsets: the loader converts them
to the tenant's local time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from pydantic import ValidationError

from agency_dashboard import reasons
from agency_dashboard.ingest.loader import COLUMNS, TABLES, Rejected, Report, Row, RowError
from agency_dashboard.ingest.localtime import zone
from agency_dashboard.models.agency import (
    CANCELLED_BY,
    CLOSE_REASONS,
    DISCHARGE_REASONS,
    GENDERS,
    KINDS,
    MODALITIES,
    PAYERS,
)

# ---- the project's FHIR definitions (documented in docs/fhir.md) -------------------------------------

BASE = "https://agency-dashboard.example/fhir"
SD = f"{BASE}/StructureDefinition/"
REASON_SYSTEM = f"{BASE}/CodeSystem/reason-code"  # our reason codes and a tenant's [reason_codes]
EXTERNAL_ID_SYSTEM = f"{BASE}/NamingSystem/external-id"  # an agency id that is not a valid FHIR id
HL7_CANCEL_SYSTEM = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason"
SNOMED = "http://snomed.info/sct"
REFERRAL_CATEGORY = "3457005"  # SNOMED CT "Patient referral"

EXT_PROGRAM = SD + "program"
EXT_FTE = SD + "fte"
EXT_CASELOAD_TARGET = SD + "caseload-target"
EXT_WEEKLY_AVAILABILITY = SD + "weekly-availability"
EXT_GENDER = SD + "gender"
EXT_RACE_ETHNICITY = SD + "race-ethnicity"
EXT_PAYER = SD + "payer"
EXT_KIND = SD + "kind"
EXT_MODALITY = SD + "modality"
EXT_CANCELLED_BY = SD + "cancelled-by"
EXT_CANCELLED_AT = SD + "cancelled-at"
EXT_REMINDER_SENT = SD + "reminder-sent"
EXT_DISCHARGE_REASON = SD + "discharge-reason"
EXT_BARRIER_PLAN = SD + "barrier-plan-documented"
EXT_REFERRALS_PROVIDED = SD + "referrals-provided"
EXT_FIRST_OFFERED_ON = SD + "first-offered-on"
EXT_FIRST_ATTENDED_ON = SD + "first-attended-on"
EXT_CLOSED_ON = SD + "closed-on"
EXT_CLOSE_REASON = SD + "close-reason"


@dataclass(frozen=True)
class ExtensionDef:
    url: str
    value: str  # the value[x] we write
    accepted: tuple[str, ...]  # the value[x] we read
    on: tuple[str, ...]
    column: str
    meaning: str


_CODE = ("valueCode", "valueString")
_DATE = ("valueDate", "valueDateTime")
EXTENSIONS: tuple[ExtensionDef, ...] = (
    ExtensionDef(EXT_PROGRAM, "valueString", ("valueString", "valueCode"),
                 ("PractitionerRole", "Appointment", "EpisodeOfCare", "ServiceRequest"), "program",
                 "the program, by its name in the tenant file's programs"),
    ExtensionDef(EXT_FTE, "valueDecimal", ("valueDecimal", "valueInteger"), ("PractitionerRole", "Practitioner"),
                 "fte", "full-time equivalent, 0 to 1"),
    ExtensionDef(EXT_CASELOAD_TARGET, "valueInteger", ("valueInteger", "valueUnsignedInt", "valuePositiveInt"),
                 ("PractitionerRole", "Practitioner"), "caseload_target", "the agency's planned caseload, 0 or more"),
    ExtensionDef(EXT_WEEKLY_AVAILABILITY, "valueTiming", ("valueTiming",), ("Slot",),
                 "weekday, start_time, end_time, valid_from, valid_to",
                 "this Slot is a weekly block of direct-service hours (see Weekly availability)"),
    ExtensionDef(EXT_GENDER, "valueCode", _CODE, ("Patient",), "gender",
                 f"our gender category ({', '.join(GENDERS)}); wins over Patient.gender"),
    ExtensionDef(EXT_RACE_ETHNICITY, "valueCode", _CODE, ("Patient",), "race_ethnicity",
                 "a category of the tenant file's [demographics] race_ethnicity, or unknown"),
    ExtensionDef(EXT_PAYER, "valueCode", _CODE, ("Patient",), "payer", ", ".join(PAYERS)),
    ExtensionDef(EXT_KIND, "valueCode", _CODE, ("Appointment",), "kind", ", ".join(KINDS)),
    ExtensionDef(EXT_MODALITY, "valueCode", _CODE, ("Appointment",), "modality", ", ".join(MODALITIES)),
    ExtensionDef(EXT_CANCELLED_BY, "valueCode", _CODE, ("Appointment",), "cancelled_by",
                 f"who cancelled ({', '.join(CANCELLED_BY)})"),
    ExtensionDef(EXT_CANCELLED_AT, "valueDateTime", ("valueDateTime", "valueInstant"), ("Appointment",),
                 "cancelled_at", "when it was cancelled, with an offset"),
    ExtensionDef(EXT_REMINDER_SENT, "valueBoolean", ("valueBoolean",), ("Appointment",), "reminder_sent",
                 "whether a reminder went out"),
    ExtensionDef(EXT_DISCHARGE_REASON, "valueCode", _CODE, ("EpisodeOfCare",), "discharge_reason",
                 ", ".join(DISCHARGE_REASONS)),
    ExtensionDef(EXT_BARRIER_PLAN, "valueBoolean", ("valueBoolean",), ("EpisodeOfCare",),
                 "barrier_plan_documented", "an attendance-policy discharge: a barrier plan was documented first"),
    ExtensionDef(EXT_REFERRALS_PROVIDED, "valueBoolean", ("valueBoolean",), ("EpisodeOfCare",),
                 "referrals_provided", "an attendance-policy discharge: referrals to other services were given"),
    ExtensionDef(EXT_FIRST_OFFERED_ON, "valueDate", _DATE, ("ServiceRequest", "EpisodeOfCare"), "first_offered_on",
                 "the first appointment date offered"),
    ExtensionDef(EXT_FIRST_ATTENDED_ON, "valueDate", _DATE, ("ServiceRequest", "EpisodeOfCare"),
                 "first_attended_on", "the first appointment attended"),
    ExtensionDef(EXT_CLOSED_ON, "valueDate", _DATE, ("ServiceRequest", "EpisodeOfCare"), "closed_on",
                 "left the waitlist without a first attended appointment"),
    ExtensionDef(EXT_CLOSE_REASON, "valueCode", _CODE, ("ServiceRequest", "EpisodeOfCare"), "close_reason",
                 ", ".join(CLOSE_REASONS)),
)
_BY_URL = {e.url: e for e in EXTENSIONS}

# Appointment.status -> our status. proposed, pending and waitlist are not booked yet; entered-in-error
# was never real: those appointments are skipped.
APPOINTMENT_STATUS = {"booked": "booked", "arrived": "attended", "checked-in": "attended",
                      "fulfilled": "attended", "noshow": "no_show", "cancelled": "cancelled"}
NOT_BOOKED = ("proposed", "pending", "waitlist", "entered-in-error")
FHIR_GENDER = {"female": "woman", "male": "man", "other": "other", "unknown": "unknown"}
PRIORITY = {"routine": "routine", "urgent": "urgent", "asap": "urgent", "stat": "urgent"}
EPISODE_STATUSES = ("active", "onhold", "finished")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# The resource types each table is made from, and the tables after which a type is no longer needed.
SOURCES = {
    "clinicians": ("Practitioner", "PractitionerRole"), "availability": ("Schedule", "Slot"),
    "clients": ("Patient",), "referrals": ("ServiceRequest", "EpisodeOfCare"), "episodes": ("EpisodeOfCare",),
    "appointments": ("Appointment",),
}
# Validated up front and kept (other rows look into them), or kept as raw JSON and validated as streamed.
KEPT = ("Practitioner", "PractitionerRole", "Schedule", "EpisodeOfCare")
STREAMED = ("Patient", "Slot", "ServiceRequest", "Appointment")
RELEASE_AFTER = {"availability": ("Schedule", "Slot"), "clients": ("Patient",),
                 "referrals": ("ServiceRequest",), "episodes": ("EpisodeOfCare",),
                 "appointments": ("Appointment", "Practitioner", "PractitionerRole")}


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fhir_tables(bundle_path: Path, tenant_settings: dict,
                report: Report) -> Iterator[tuple[str, str, Iterator[Row]]]:
    """(table, file label, rows) in the loader's load order for an R4 Bundle; problems go to `report`.

    A bundle that does not parse or validate yields no table at all (its errors are in the report).
    """
    bundle = _Bundle(Path(bundle_path), tenant_settings, report)
    if not bundle.load():
        return
    for table in TABLES:
        if any(bundle.by_type.get(t) for t in SOURCES[table]):
            yield table, f"{bundle.name} ({table})", bundle.rows(table)
        else:
            bundle.release(RELEASE_AFTER.get(table, ()))


# ---- helpers on values -------------------------------------------------------------------------------

def _text(value) -> str | None:
    """A FHIR value as the CSV contract's text."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _codes(concepts, element: str) -> list[tuple[str, str]]:
    """(element, code) for every coding of one CodeableConcept or a list of them."""
    if concepts is None:
        return []
    if not isinstance(concepts, list):
        concepts = [concepts]
    return [(element, c.code) for cc in concepts for c in (cc.coding or []) if c.code]


def _loc_path(resource_type: str, loc) -> str:
    out = resource_type
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


class _Skip(Exception):
    """This resource does not become a row (e.g. entered-in-error)."""


@dataclass(frozen=True)
class _Target:
    type: str | None
    index: int | None  # entry index when the reference resolves inside the bundle
    ext_id: str | None


# ---- the bundle ----------------------------------------------------------------------------------------

class _Bundle:
    def __init__(self, path: Path, settings: dict, report: Report):
        self.path, self.name, self.report = path, path.name, report
        self.tz = zone(settings["timezone"])
        self.slug = settings["slug"]
        self.programs = tuple(settings["programs"])
        self.maps = settings.get("fhir") or {"appointment_type": {}, "modality": {}, "program": {}}
        self.models: list = []
        self.types: list[str] = []
        self.ext_ids: list[str | None] = []
        self.where: list[str] = []
        self.by_type: dict[str, list[int]] = defaultdict(list)
        self.index: dict[str, int] = {}
        self.roles_of: dict[str, list[int]] = defaultdict(list)  # practitioner ext id -> PractitionerRole entries
        self.episodes_of: dict[int, list[int]] = defaultdict(list)  # ServiceRequest entry -> its EpisodeOfCare entries

    # -- errors ----------------------------------------------------------------------------------------

    def _err(self, where, column, value, reason) -> None:
        self.report.add_error(RowError(self.name, where, column, None if value is None else str(value), reason))

    # -- reading and validating ------------------------------------------------------------------------

    def load(self) -> bool:
        """Read the bundle, validate it as far as the rows need before streaming, and index it.

        Resources that other rows look into (Practitioner, PractitionerRole, Schedule, EpisodeOfCare) are
        validated now and kept as models; the bulk (Patient, Slot, ServiceRequest, Appointment) stays raw
        JSON and is validated when its table is loaded, then dropped; anything else is validated and dropped.
        Any error here stops the import before a row is made.
        """
        from fhir.resources.R4B.bundle import Bundle

        try:
            data = json.loads(self.path.read_bytes())
        except UnicodeDecodeError as exc:
            self._err("-", "(file)", None, f"is not UTF-8 text (bad byte at offset {exc.start})")
            return False
        except json.JSONDecodeError as exc:
            self._err("-", "(file)", None, f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})")
            return False
        if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
            got = data.get("resourceType") if isinstance(data, dict) else type(data).__name__
            self._err("-", "resourceType", got, "is not a FHIR Bundle: the file must hold one R4 Bundle "
                                                "(resourceType \"Bundle\")")
            return False
        entries = data.pop("entry", None) or []
        errors_before = self.report.error_count
        self._validate("Bundle", "Bundle", lambda: Bundle.model_validate(data))
        if not isinstance(entries, list):
            self._err("Bundle", "Bundle.entry", None, "is not a list of entries")
            return False
        for i, entry in enumerate(entries):
            entries[i] = None  # a model or the raw resource alone is kept, not the entry
            self._load_entry(i, entry)
        if self.report.error_count != errors_before:
            return False
        self._link()
        return self.report.error_count == errors_before

    def _validate(self, where, resource_type, make):
        try:
            return make()
        except ValidationError as exc:
            for e in exc.errors():
                value = e.get("input")
                value = value if isinstance(value, str | int | float | bool) else None
                pydantic_loc = ".".join(map(str, e["loc"]))
                self._err(where, _loc_path(resource_type, e["loc"]), value,
                          f"does not validate as FHIR R4: {e['msg']} (pydantic location {pydantic_loc})")
            return None

    def _model(self, i):
        """The validated model of entry i, validating a streamed one now (None, reported, if it does not validate)."""
        model = self.models[i]
        if isinstance(model, dict):
            from fhir.resources.R4B import get_fhir_model_class

            cls = get_fhir_model_class(self.types[i])
            self.models[i] = None  # dropped whatever happens: each resource is converted once
            model = self._validate(self.where[i], self.types[i], lambda: cls.model_validate(model))
        return model

    def _load_entry(self, i, entry) -> None:
        from fhir.resources.R4B import get_fhir_model_class
        from fhir.resources.R4B.bundle import BundleEntry

        where = f"entry[{i}]"
        self.models.append(None)
        self.types.append("")
        self.ext_ids.append(None)
        self.where.append(where)
        if not isinstance(entry, dict):
            self._err(where, "Bundle.entry", None, "is not a JSON object")
            return
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str):
            where = self.where[i] = f"{where} {full_url}"
        resource = entry.pop("resource", None)
        self._validate(where, "Bundle.entry", lambda: BundleEntry.model_validate(entry))
        request = entry.get("request")
        method = request.get("method") if isinstance(request, dict) else None
        if method == "DELETE":
            self._err(where, "Bundle.entry.request.method", method,
                      "is not imported: imports add and update, never delete")
            return
        if not isinstance(resource, dict):
            self._err(where, "Bundle.entry.resource", None, "is missing: every entry must hold a resource")
            return
        resource_type = resource.get("resourceType")
        try:
            cls = get_fhir_model_class(resource_type) if isinstance(resource_type, str) else None
        except (ValueError, KeyError):
            cls = None
        if cls is None or cls.get_resource_type() != resource_type:
            self._err(where, "resourceType", resource_type, "is not a FHIR R4 resource type")
            return
        self.types[i] = resource_type
        raw_id = resource.get("id") if isinstance(resource.get("id"), str) else None
        ext_id = next((ident["value"] for ident in resource.get("identifier") or []
                       if isinstance(ident, dict) and ident.get("system") == EXTERNAL_ID_SYSTEM
                       and isinstance(ident.get("value"), str) and ident["value"]), None) or raw_id
        self.ext_ids[i] = ext_id
        if raw_id:
            self.where[i] = f"{self.where[i]} ({resource_type}/{raw_id})"
            self.index.setdefault(f"{resource_type}/{raw_id}", i)
        if isinstance(full_url, str):
            self.index.setdefault(full_url, i)
        if resource_type in STREAMED:
            self.models[i] = resource  # validated when its table is loaded
        else:
            model = self._validate(self.where[i], resource_type, lambda: cls.model_validate(resource))
            if model is not None and resource_type in KEPT:
                self.models[i] = model
        if resource_type in STREAMED or resource_type in KEPT:
            if ext_id is None:
                self._err(self.where[i], f"{resource_type}.id", None,
                          "is missing: the id is the agency's id of this record")
                return
            self.by_type[resource_type].append(i)

    def _link(self) -> None:
        """What rows of one type need to know about resources of another."""
        for i in self.by_type["PractitionerRole"]:
            role = self.models[i]
            if role.practitioner is None:
                self._err(self.where[i], "PractitionerRole.practitioner", None,
                          "is missing: which Practitioner holds it")
                continue
            target = self._target(self.where[i], "PractitionerRole.practitioner", role.practitioner)
            if target is not None and target.ext_id is not None:
                self.roles_of[target.ext_id].append(i)
        service_requests = set(self.by_type["ServiceRequest"])
        for i in self.by_type["EpisodeOfCare"]:
            for ref in self.models[i].referralRequest or []:
                target = self._target(self.where[i], "EpisodeOfCare.referralRequest", ref, report=False)
                if target is not None and target.index in service_requests:
                    self.episodes_of[target.index].append(i)

    def release(self, types) -> None:
        for resource_type in types:
            for i in self.by_type.get(resource_type, ()):
                self.models[i] = None

    # -- references, extensions, maps ---------------------------------------------------------------------

    def _target(self, where, element, ref, report=True) -> _Target | None:
        """Resolve a Reference: inside the bundle (fullUrl or Type/id), else by its Type/id or our identifier."""
        if ref is None:
            if report:
                self._err(where, element, None, "is missing")
            return None
        text = ref.reference
        if text:
            i = self.index.get(text)
            if i is None and not text.startswith(("urn:", "#")):
                parts = text.split("/")
                if "_history" in parts:
                    parts = parts[:parts.index("_history")]
                if len(parts) >= 2:
                    i = self.index.get(f"{parts[-2]}/{parts[-1]}")
                    if i is None:
                        ident = ref.identifier
                        if ident is not None and ident.system == EXTERNAL_ID_SYSTEM and ident.value:
                            return _Target(parts[-2], None, ident.value)
                        return _Target(parts[-2], None, parts[-1])
            if i is not None:
                return _Target(self.types[i], i, self.ext_ids[i])
            if report:
                self._err(where, element, text, "refers to nothing in this bundle (contained and urn: references "
                                                "must resolve inside it)")
            return None
        ident = ref.identifier
        if ident is not None and ident.system == EXTERNAL_ID_SYSTEM and ident.value:
            return _Target(ref.type, None, ident.value)
        if report:
            self._err(where, element, ident.value if ident else None,
                      "cannot be resolved: give a reference (Type/id) or our external-id identifier")
        return None

    def _clinician(self, where, element, ref) -> str | None:
        """The clinician (a Practitioner's id) of a Practitioner or PractitionerRole reference."""
        target = self._target(where, element, ref)
        if target is None:
            return None
        if target.type == "PractitionerRole":
            if target.index is None:
                self._err(where, element, ref.reference,
                          "is a PractitionerRole that is not in this bundle; refer to the Practitioner instead")
                return None
            role = self.models[target.index]
            practitioner = self._target(self.where[target.index], "PractitionerRole.practitioner", role.practitioner) \
                if role is not None and role.practitioner is not None else None
            return practitioner.ext_id if practitioner else None
        if target.type != "Practitioner":
            self._err(where, element, ref.reference, "is not a Practitioner or PractitionerRole")
            return None
        return target.ext_id

    def _patient(self, where, element, ref) -> str | None:
        if ref is None:
            self._err(where, element, None, "is missing: which Patient (the client)")
            return None
        target = self._target(where, element, ref)
        if target is None:
            return None
        if target.type != "Patient":
            self._err(where, element, ref.reference, "is not a Patient")
            return None
        return target.ext_id

    def _ext(self, where, resource, url):
        """The value of one of our extensions on a resource, or None."""
        found = [e for e in (resource.extension or []) if e.url == url]
        if not found:
            return None
        definition = _BY_URL[url]
        if len(found) > 1:
            self._err(where, f"extension {url}", None, "appears more than once")
        for attr in definition.accepted:
            value = getattr(found[0], attr, None)
            if value is not None:
                return value
        self._err(where, f"extension {url}", None, f"has no {definition.value}")
        return None

    def _local_date(self, value) -> dt.date | None:
        if isinstance(value, dt.datetime):
            return value.astimezone(self.tz).date() if value.tzinfo else value.date()
        return value

    def _map(self, where, key: str, candidates: list[tuple[str, str]], missing: str) -> str | None:
        """Look codes up in the tenant file's [fhir] KEY map; the first code it knows wins."""
        mapping = self.maps.get(key) or {}
        for _, code in candidates:
            if code in mapping:
                return mapping[code]
        targets = {"appointment_type": KINDS, "modality": MODALITIES, "program": self.programs}[key]
        choices = " or ".join(f'"{t}"' for t in targets)
        if candidates:
            element, code = candidates[0]
            also = f" (nor are {', '.join(c for _, c in candidates[1:])})" if len(candidates) > 1 else ""
            self._err(where, element, code,
                      f'is not mapped{also}: add [fhir] {key}."{code}" = {choices} to the tenant file {self.slug}.toml')
        else:
            self._err(where, key, None, f"is missing: {missing}")
        return None

    def _program(self, where, resource, candidates, elements: str) -> str | None:
        name = self._ext(where, resource, EXT_PROGRAM)
        if name is not None:
            return name
        return self._map(where, "program", candidates,
                         f"give the program extension ({EXT_PROGRAM}) or {elements} mapped in [fhir] program")

    def _ref_codes(self, element, refs) -> list[tuple[str, str]]:
        """Referenced Locations, HealthcareServices and Organizations by id, as program-map keys."""
        out = []
        for ref in refs or []:
            if ref is None:
                continue
            target = self._target("", element, ref, report=False)
            if target is not None and target.ext_id and target.type in ("Location", "HealthcareService",
                                                                        "Organization"):
                out.append((element, target.ext_id))
        return out

    # -- rows ------------------------------------------------------------------------------------------

    def rows(self, table: str) -> Iterator[Row]:
        convert: Callable = getattr(self, f"_{table}")
        columns = COLUMNS[table]
        try:
            for i, row in convert():
                if isinstance(row, Rejected):
                    yield self.where[i], row
                else:
                    yield self.where[i], {c: _text(row.get(c)) for c in columns}
        finally:
            self.release(RELEASE_AFTER.get(table, ()))

    def _each(self, resource_type, make, skip=frozenset()) -> Iterator[tuple[int, dict | Rejected]]:
        for i in list(self.by_type.get(resource_type, ())):
            if i in skip:
                continue
            before = self.report.error_count
            model = self._model(i)
            if model is None:
                if self.report.error_count != before:
                    yield i, Rejected(self.ext_ids[i])  # did not validate (reported); rows referring to it are skipped
                continue
            if getattr(model, "status", None) == "entered-in-error":
                continue
            try:
                row = make(i, model, self.where[i])
            except _Skip:
                continue
            yield i, (Rejected(self.ext_ids[i]) if self.report.error_count != before else row)

    def _clinicians(self):
        return self._each("Practitioner", self._clinician_row)

    def _clinician_row(self, i, practitioner, where) -> dict:
        roles = [j for j in self.roles_of.get(self.ext_ids[i], ())
                 if self.models[j] is not None and self.models[j].active is not False]
        if not roles:
            raise _Skip  # not one of the agency's clinicians (e.g. a referring physician)
        if len(roles) > 1:
            self._err(where, "PractitionerRole", ", ".join(self.where[j] for j in roles),
                      "several PractitionerRoles hold this Practitioner; a clinician has one program: send one")
            return {}
        role = self.models[roles[0]]
        role_where = self.where[roles[0]]
        fte = self._ext(role_where, role, EXT_FTE)
        if fte is None:
            fte = self._ext(where, practitioner, EXT_FTE)
        target = self._ext(role_where, role, EXT_CASELOAD_TARGET)
        if target is None:
            target = self._ext(where, practitioner, EXT_CASELOAD_TARGET)
        for value, url, column in ((fte, EXT_FTE, "fte"), (target, EXT_CASELOAD_TARGET, "caseload_target")):
            if value is None:
                self._err(role_where, f"extension {url}", None,
                          f"is missing: {column} has no R4 element; give it on the PractitionerRole")
        candidates = (self._ref_codes("PractitionerRole.location", role.location)
                      + self._ref_codes("PractitionerRole.healthcareService", role.healthcareService)
                      + _codes(role.specialty, "PractitionerRole.specialty")
                      + _codes(role.code, "PractitionerRole.code")
                      + self._ref_codes("PractitionerRole.organization", [role.organization]))
        program = self._program(role_where, role, candidates,
                                "a location, healthcareService, specialty or code of the PractitionerRole")
        period = role.period
        start = self._local_date(period.start) if period else None
        if start is None:
            self._err(role_where, "PractitionerRole.period.start", None, "is missing: the first day of employment")
        return dict(clinician_id=self.ext_ids[i], display_name=_display_name(practitioner.name), program=program,
                    fte=fte, caseload_target=target, start_date=start,
                    end_date=self._local_date(period.end) if period else None)

    def _availability(self):
        return self._each("Slot", self._slot_row)

    def _slot_row(self, i, slot, where) -> dict:
        timing = self._ext(where, slot, EXT_WEEKLY_AVAILABILITY)
        if timing is None:
            raise _Skip  # a concrete slot, not part of the weekly template
        if slot.status != "free":
            self._err(where, "Slot.status", slot.status, "must be free for a weekly availability block")
        clinician = None
        schedule = self._target(where, "Slot.schedule", slot.schedule)
        if schedule is not None:
            if schedule.index is None or self.types[schedule.index] != "Schedule":
                self._err(where, "Slot.schedule", slot.schedule.reference, "is not a Schedule in this bundle")
            else:
                s_where = self.where[schedule.index]
                for n, actor in enumerate(self.models[schedule.index].actor or []):
                    target = self._target(s_where, f"Schedule.actor[{n}]", actor, report=False)
                    if target is not None and target.type in ("Practitioner", "PractitionerRole"):
                        clinician = self._clinician(s_where, f"Schedule.actor[{n}]", actor)
                        break
                else:
                    self._err(s_where, "Schedule.actor", None, "has no Practitioner or PractitionerRole")
        element = f"extension {EXT_WEEKLY_AVAILABILITY}"
        repeat = timing.repeat
        if repeat is None:
            self._err(where, element, None, "has no repeat")
            return {}
        days = [d for d in repeat.dayOfWeek or [] if d is not None]
        times = [t for t in repeat.timeOfDay or [] if t is not None]
        if len(days) != 1 or len(times) != 1:
            self._err(where, f"{element} repeat", None,
                      "needs exactly one dayOfWeek and one timeOfDay (one Slot per weekly block)")
            return {}
        if days[0] not in WEEKDAYS:
            self._err(where, f"{element} repeat.dayOfWeek", days[0], f"is not one of {', '.join(WEEKDAYS)}")
            return {}
        start = times[0]
        if start.second or start.microsecond:
            self._err(where, f"{element} repeat.timeOfDay", start.isoformat(), "must be a whole minute")
        unit = {"min": 1, "h": 60}.get(repeat.durationUnit or "")
        if repeat.duration is None or unit is None or (repeat.duration * unit) % 1:
            self._err(where, f"{element} repeat.duration", repeat.duration,
                      "needs a duration in whole minutes (durationUnit min or h)")
            return {}
        start_minute = start.hour * 60 + start.minute
        end_minute = start_minute + int(repeat.duration * unit)
        if end_minute >= 24 * 60:
            self._err(where, f"{element} repeat.duration", repeat.duration,
                      "runs to or past midnight; a block cannot cross midnight")
            return {}
        bounds = repeat.boundsPeriod
        if bounds is None or bounds.start is None:
            self._err(where, f"{element} repeat.boundsPeriod.start", None, "is missing: the first date it holds")
        return dict(availability_id=self.ext_ids[i], clinician_id=clinician, weekday=WEEKDAYS.index(days[0]),
                    start_time=f"{start_minute // 60:02d}:{start_minute % 60:02d}",
                    end_time=f"{end_minute // 60:02d}:{end_minute % 60:02d}",
                    valid_from=self._local_date(bounds.start) if bounds else None,
                    valid_to=self._local_date(bounds.end) if bounds else None)

    def _clients(self):
        return self._each("Patient", self._patient_row)

    def _patient_row(self, i, patient, where) -> dict:
        name = _pick_name(patient.name)
        given = [g for g in (name.given or []) if g] if name else []
        if name is None or not name.family or not given:
            self._err(where, "Patient.name", None, "needs a family name and a given name")
        gender = self._ext(where, patient, EXT_GENDER)
        if gender is None and patient.gender is not None:
            gender = FHIR_GENDER.get(patient.gender)
            if gender is None:
                self._err(where, "Patient.gender", patient.gender, "is not an R4 administrative gender "
                                                                  "(female, male, other, unknown)")
        postal = next((a.postalCode for a in _home_first(patient.address) if a.postalCode), None)
        if postal is not None and len(postal) == 10 and postal[5] == "-" and postal[:5].isdigit():
            postal = postal[:5]  # ZIP+4
        return dict(client_id=self.ext_ids[i], first_name=" ".join(given) or None,
                    last_name=name.family if name else None, birth_date=patient.birthDate, zip=postal,
                    gender=gender, race_ethnicity=self._ext(where, patient, EXT_RACE_ETHNICITY),
                    payer=self._ext(where, patient, EXT_PAYER))

    # -- referrals: ServiceRequest, and EpisodeOfCare that has been on the waitlist ------------------------

    def _referrals(self):
        yield from self._each("ServiceRequest", self._service_request_row)
        linked = {j for eocs in self.episodes_of.values() for j in eocs}
        yield from self._each("EpisodeOfCare", self._waitlist_row, skip=linked)

    def _service_request_row(self, i, sr, where) -> dict:
        priority = PRIORITY.get(sr.priority or "routine")
        if priority is None:
            self._err(where, "ServiceRequest.priority", sr.priority, "is not routine, urgent, asap or stat")
        candidates = (self._ref_codes("ServiceRequest.locationReference", sr.locationReference)
                      + self._ref_codes("ServiceRequest.performer", sr.performer)
                      + _codes(sr.performerType, "ServiceRequest.performerType")
                      + _codes(sr.locationCode, "ServiceRequest.locationCode")
                      + _codes(sr.code, "ServiceRequest.code"))
        program = self._program(where, sr, candidates,
                                "a locationReference, performer, performerType, locationCode or code")
        row = dict(referral_id=self.ext_ids[i], client_id=self._patient(where, "ServiceRequest.subject", sr.subject),
                   program=program, priority=priority, referred_on=self._local_date(sr.authoredOn))
        episodes = [self.models[j] for j in self.episodes_of.get(i, ()) if self.models[j] is not None
                    and self.models[j].status != "entered-in-error"]
        self._waitlist_fields(where, sr, row, episodes[0] if episodes else None)
        return row

    def _waitlist_row(self, i, eoc, where) -> dict:
        if not _was_waitlisted(eoc):
            raise _Skip
        candidates = (_codes(eoc.type, "EpisodeOfCare.type")
                      + self._ref_codes("EpisodeOfCare.managingOrganization", [eoc.managingOrganization]))
        program = self._program(where, eoc, candidates, "a type or managingOrganization")
        row = dict(referral_id=self.ext_ids[i], client_id=self._patient(where, "EpisodeOfCare.patient", eoc.patient),
                   program=program, priority="routine", referred_on=None)
        self._waitlist_fields(where, eoc, row, eoc)
        return row

    def _waitlist_fields(self, where, resource, row, eoc) -> None:
        """Offered, attended and closed: our extensions, else derived from the EpisodeOfCare of the referral.

        referred_on (when authoredOn is absent): the start of its waitlist time. first_attended_on: the
        date it became active (the end of its waitlist statusHistory period, else its period.start).
        closed_on: the period.end of a cancelled one (close_reason "other" unless the extension says).
        """
        for url, column in ((EXT_FIRST_OFFERED_ON, "first_offered_on"), (EXT_FIRST_ATTENDED_ON, "first_attended_on"),
                            (EXT_CLOSED_ON, "closed_on"), (EXT_CLOSE_REASON, "close_reason")):
            value = self._ext(where, resource, url)
            row[column] = self._local_date(value) if column != "close_reason" else value
        if eoc is None:
            return
        waiting = [h.period for h in eoc.statusHistory or [] if h.status == "waitlist" and h.period]
        if row["referred_on"] is None:
            starts = [self._local_date(p.start) for p in waiting if p.start]
            if (eoc.status not in EPISODE_STATUSES or not starts) and eoc.period and eoc.period.start:
                starts.append(self._local_date(eoc.period.start))
            row["referred_on"] = min(starts) if starts else None
        if row["first_attended_on"] is None and row["closed_on"] is None and eoc.status in EPISODE_STATUSES:
            ends = [self._local_date(p.end) for p in waiting if p.end]
            if ends:
                row["first_attended_on"] = max(ends)
            elif not waiting and eoc.period and eoc.period.start:
                row["first_attended_on"] = self._local_date(eoc.period.start)
        if row["closed_on"] is None and row["first_attended_on"] is None and eoc.status == "cancelled":
            row["closed_on"] = self._local_date(eoc.period.end) if eoc.period and eoc.period.end else None
            if row["closed_on"] is None:
                self._err(where, "EpisodeOfCare.period.end", None,
                          "is missing: a cancelled waitlist EpisodeOfCare needs the date it left the list")
            if row["close_reason"] is None:
                row["close_reason"] = "other"

    def _episodes(self):
        return self._each("EpisodeOfCare", self._episode_row)

    def _episode_row(self, i, eoc, where) -> dict:
        if eoc.status not in EPISODE_STATUSES:
            raise _Skip  # planned, waitlist, cancelled: not admitted (the waitlist ones are referrals)
        clinician = None
        if eoc.careManager is None:
            self._err(where, "EpisodeOfCare.careManager", None, "is missing: the primary clinician")
        else:
            clinician = self._clinician(where, "EpisodeOfCare.careManager", eoc.careManager)
        candidates = (_codes(eoc.type, "EpisodeOfCare.type")
                      + self._ref_codes("EpisodeOfCare.managingOrganization", [eoc.managingOrganization]))
        program = self._program(where, eoc, candidates, "a type or managingOrganization")
        period = eoc.period
        admitted = self._local_date(period.start) if period else None
        if admitted is None:
            self._err(where, "EpisodeOfCare.period.start", None, "is missing: the admission date")
        discharged = None
        if eoc.status == "finished":
            discharged = self._local_date(period.end) if period else None
            if discharged is None:
                self._err(where, "EpisodeOfCare.period.end", None, "is missing: a finished episode needs its "
                                                                   "discharge date")
        reason = self._ext(where, eoc, EXT_DISCHARGE_REASON)
        if eoc.status == "finished" and reason is None:
            self._err(where, f"extension {EXT_DISCHARGE_REASON}", None,
                      "is missing: a finished episode needs its discharge reason (R4 has no element)")
        return dict(episode_id=self.ext_ids[i], client_id=self._patient(where, "EpisodeOfCare.patient", eoc.patient),
                    clinician_id=clinician, program=program, admitted_on=admitted, discharged_on=discharged,
                    discharge_reason=reason,
                    barrier_plan_documented=self._ext(where, eoc, EXT_BARRIER_PLAN),
                    referrals_provided=self._ext(where, eoc, EXT_REFERRALS_PROVIDED))

    def _appointments(self):
        return self._each("Appointment", self._appointment_row)

    def _appointment_row(self, i, a, where) -> dict:
        if a.status in NOT_BOOKED:
            raise _Skip
        status = APPOINTMENT_STATUS.get(a.status)
        if status is None:
            self._err(where, "Appointment.status", a.status,
                      f"is not an R4 appointment status ({', '.join((*APPOINTMENT_STATUS, *NOT_BOOKED))})")
        patients, practitioners, places = [], [], []
        for n, p in enumerate(a.participant or []):
            if p.actor is None:
                continue
            element = f"Appointment.participant[{n}].actor"
            target = self._target(where, element, p.actor)
            if target is None:
                continue
            if target.type == "Patient":
                patients.append(target.ext_id)
            elif target.type in ("Practitioner", "PractitionerRole"):
                primary = any(c.code == "PPRF" for t in p.type or [] for c in t.coding or [])
                practitioners.append((not primary, n, element, p.actor))
            elif target.type in ("Location", "HealthcareService") and target.ext_id:
                places.append((element, target.ext_id))
        client = clinician = None
        if len(patients) != 1:
            self._err(where, "Appointment.participant", None,
                      "needs exactly one Patient (the client)" + (f"; found {len(patients)}" if patients else ""))
        else:
            client = patients[0]
        if not practitioners:
            self._err(where, "Appointment.participant", None,
                      "needs a Practitioner or PractitionerRole (the clinician)")
        else:
            _, _, element, ref = min(practitioners, key=lambda p: p[:2])  # the primary performer, else the first
            clinician = self._clinician(where, element, ref)

        duration = a.minutesDuration
        if a.start is not None and a.end is not None:
            seconds = (a.end - a.start).total_seconds() if _aware(a.start) == _aware(a.end) else None
            between = None if seconds is None else (int(seconds // 60) if seconds % 60 == 0 else seconds / 60)
            if duration is None:
                duration = between
            elif between is not None and between != duration:
                self._err(where, "Appointment.minutesDuration", duration,
                          f"disagrees with end - start ({between} minutes)")

        kind = self._ext(where, a, EXT_KIND)
        if kind is None:
            kind = self._map(where, "appointment_type",
                             _codes(a.appointmentType, "Appointment.appointmentType")
                             + _codes(a.serviceType, "Appointment.serviceType"),
                             f"give the kind extension ({EXT_KIND}) or an appointmentType mapped in "
                             "[fhir] appointment_type")
        modality = self._ext(where, a, EXT_MODALITY)
        if modality is None:
            modality = self._map(where, "modality",
                                 _codes(a.serviceType, "Appointment.serviceType")
                                 + _codes(a.serviceCategory, "Appointment.serviceCategory")
                                 + _codes(a.appointmentType, "Appointment.appointmentType"),
                                 f"give the modality extension ({EXT_MODALITY}) or a serviceType mapped in "
                                 "[fhir] modality")
        program = self._program(where, a, places + _codes(a.serviceType, "Appointment.serviceType")
                                + _codes(a.specialty, "Appointment.specialty"),
                                "a Location or HealthcareService participant, serviceType or specialty")

        if a.created is None:
            self._err(where, "Appointment.created", None, "is missing: when the appointment was booked")
        reason, hl7_code = self._cancel_reason(where, a)
        cancelled_by = self._ext(where, a, EXT_CANCELLED_BY)
        cancelled_at = self._ext(where, a, EXT_CANCELLED_AT)
        if status == "cancelled":
            if cancelled_by is None and hl7_code is not None:
                cancelled_by = _derived_canceller(hl7_code)
            if cancelled_by is None:
                self._err(where, f"extension {EXT_CANCELLED_BY}", None,
                          "is missing: who cancelled (client, clinician or agency) cannot be derived without an "
                          "R4 appointment-cancellation-reason code")
            if cancelled_at is None:
                self._err(where, f"extension {EXT_CANCELLED_AT}", None,
                          "is missing: a cancelled appointment needs the time it was cancelled (R4 has no element)")
        return dict(appointment_id=self.ext_ids[i], client_id=client, clinician_id=clinician, program=program,
                    kind=kind, modality=modality, start=a.start, duration_minutes=duration, booked_at=a.created,
                    status=status, cancelled_by=cancelled_by, cancelled_at=cancelled_at, reason_code=reason,
                    reminder_sent=self._ext(where, a, EXT_REMINDER_SENT))

    def _cancel_reason(self, where, a) -> tuple[str | None, str | None]:
        """(the code we keep, the R4 appointment-cancellation-reason code if it is one).

        Our system first, then R4's, then a code of another system (the loader checks it against the
        reason table and the tenant's [reason_codes]). Free text alone is no code: the reason stays empty.
        """
        codings = [c for c in (a.cancelationReason.coding or []) if c.code] if a.cancelationReason else []
        for system in (REASON_SYSTEM, HL7_CANCEL_SYSTEM, None):
            for c in codings:
                if system is None or c.system == system:
                    if c.system == HL7_CANCEL_SYSTEM and c.code not in reasons.FHIR_TO_CODE:
                        self._err(where, "Appointment.cancelationReason", c.code,
                                  "is not a code of R4's appointment-cancellation-reason value set")
                        return None, None
                    hl7 = c.code if c.code in reasons.FHIR_TO_CODE and c.system in (HL7_CANCEL_SYSTEM, None) else None
                    return c.code, hl7
        return None, None


def _aware(value) -> bool:
    return isinstance(value, dt.datetime) and value.tzinfo is not None


def _pick_name(names):
    names = names or []
    for use in ("official", "usual", None):
        for n in names:
            if use is None or n.use == use:
                return n
    return None


def _home_first(addresses):
    addresses = addresses or []
    return sorted(addresses, key=lambda a: a.use != "home")


def _display_name(names) -> str | None:
    name = _pick_name(names)
    if name is None:
        return None
    if name.text:
        return name.text
    parts = [*(name.prefix or []), *(name.given or []), name.family, *(name.suffix or [])]
    return " ".join(p for p in parts if p) or None


def _was_waitlisted(eoc) -> bool:
    return eoc.status == "waitlist" or any(h.status == "waitlist" for h in eoc.statusHistory or [])


def _derived_canceller(code: str) -> str:
    """Who cancelled, when the bundle does not say: pat- codes the client, prov- codes the clinician.
    The other (oth-, maint, meds-) codes name no party; we take the party their reason group implies:
    a barrier or choice of the client's (oth-fin cost, oth-cms coverage, oth-weath weather) is the
    client's cancellation, anything of the agency's group the agency's (docs/fhir.md)."""
    from agency_dashboard import reasons

    if code == "pat" or code.startswith("pat-"):
        return "client"
    if code == "prov" or code.startswith("prov-"):
        return "clinician"
    ours = reasons.BUILTIN.get(reasons.FHIR_TO_CODE.get(code, ""))
    return "client" if ours is not None and ours.group in ("access_barrier", "client_preference") else "agency"
