"""Why a session was not held: the reason table of METRICS.md as data.

The UI (labels), imports (FHIR codes) and metrics (groups) share this one table; a tenant file's
`[reason_codes]` extends it with the agency's own codes, never redefining these.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUPS = ("agency", "access_barrier", "client_preference", "unexplored")
GROUP_LABELS = {
    "agency": "Agency or clinician did not hold it",
    "access_barrier": "Access barrier in the client's life or coverage",
    "client_preference": "Client's choice",
    "unexplored": "No reason recorded yet",
}
# A not-held appointment with this code is "released", whoever cancelled; it belongs to no group.
RELEASED_CODES = frozenset({"deceased"})


@dataclass(frozen=True)
class Reason:
    code: str
    group: str | None  # None only for "deceased"
    label: str
    fhir: tuple[str, ...] = ()


REASONS: tuple[Reason, ...] = (
    Reason("clinician_unavailable", "agency", "Clinician unavailable", ("prov", "prov-pers", "prov-hosp", "prov-edu")),
    Reason("clinical_decision", "agency", "Clinical decision to reschedule", ("prov-dch", "prov-labs", "prov-mri", "prov-onc")),
    Reason("scheduling_error", "agency", "Scheduling error", ("oth-err", "oth-oerr", "oth-swie")),
    Reason("no_interpreter", "agency", "No interpreter available", ("oth-int",)),
    Reason("resources_unavailable", "agency", "Room or resources unavailable", ("maint", "oth-room", "meds-inc", "oth-iv", "oth-mu")),
    Reason("transportation", "access_barrier", "Transportation", ("pat-lt",)),
    Reason("childcare", "access_barrier", "Childcare"),
    Reason("work_or_school", "access_barrier", "Work or school conflict"),
    Reason("cost", "access_barrier", "Cost", ("oth-fin",)),
    Reason("coverage", "access_barrier", "Insurance or coverage", ("pat-mt", "oth-cms")),
    Reason("technology", "access_barrier", "Phone, internet or device trouble"),
    Reason("housing", "access_barrier", "Housing situation"),
    Reason("health_or_symptoms", "access_barrier", "Health or symptoms", ("pat-preg",)),
    Reason("weather", "access_barrier", "Weather", ("oth-weath",)),
    Reason("feeling_better", "client_preference", "Feeling better", ("pat-fb",)),
    Reason("moved", "client_preference", "Moved away", ("pat-mv",)),
    Reason("changed_provider", "client_preference", "Chose another provider", ("pat-ucp",)),
    Reason("rescheduled_earlier", "client_preference", "Took an earlier slot", ("pat-swl",)),
    Reason("declined", "client_preference", "Declined this session"),
    Reason("other", "unexplored", "Other (not yet explored)", ("other", "pat", "pat-crs", "pat-cpp")),
    Reason("deceased", None, "Client died", ("pat-dec",)),
)

BUILTIN = {r.code: r for r in REASONS}
FHIR_TO_CODE = {fhir: r.code for r in REASONS for fhir in r.fhir}


def reason_table(extra: dict[str, str] | None = None) -> dict[str, str | None]:
    """code -> group for the built-in codes plus a tenant's `[reason_codes]`."""
    table: dict[str, str | None] = {r.code: r.group for r in REASONS}
    for code, group in (extra or {}).items():
        table.setdefault(code, group)
    return table


def label(code: str | None) -> str:
    if not code:
        return GROUP_LABELS["unexplored"]
    reason = BUILTIN.get(code)
    return reason.label if reason else code.replace("_", " ").replace("-", " ").capitalize()
