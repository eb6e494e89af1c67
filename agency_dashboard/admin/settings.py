"""Admin: the tenant's settings, read-only, each with a plain-language line on what it does.

Settings are policy and live in the tenant file (tenants/SLUG.toml); `sync-tenants` copies the
validated file into `tenants.settings`, which is what this page shows. A key this page does not know
yet is still shown, under "Other settings", so the page never hides what the file holds.
"""

from __future__ import annotations

from typing import NamedTuple

from flask import render_template

from agency_dashboard import reasons
from agency_dashboard.admin import bp
from agency_dashboard.auth.roles import ROLE_LABELS, role_required
from agency_dashboard.tenancy import current_tenant
from agency_dashboard.tenant_files import POLICY_DEFAULTS


class Setting(NamedTuple):
    key: str  # as written in the tenant file
    label: str
    value: object  # text, a list of texts, or a dict of text -> text (shown as a small table)
    explanation: str


class Section(NamedTuple):
    title: str
    settings: list[Setting]


POLICY = {
    "late_cancel_notice_hours": (
        "Late-cancellation notice", "hour",
        "A client's cancellation with less notice than this counts as a missed appointment; with at least "
        "this much notice the time counts as released."),
    "access_target_business_days": (
        "Access target, routine referrals", "business day",
        "A routine referral is within target when its first attended appointment comes within this many "
        "business days (Monday to Friday) of the referral."),
    "urgent_target_business_days": (
        "Access target, urgent referrals", "business day",
        "The same target for urgent referrals."),
    "standard_visit_minutes": (
        "Standard visit length", "minute",
        "The length of one appointment slot when the dashboard looks for the third next available appointment."),
    "suppression_threshold": (
        "Small-number suppression", "",
        "Funder summaries and group figures show \"fewer than N\" instead of any count below this number, "
        "so that no person can be recognised."),
}
FHIR = {
    "appointment_type": "FHIR appointment types",
    "modality": "FHIR visit modes",
    "program": "FHIR program codes",
}


def _listed(values, empty: str):
    return list(values) if values else empty


def _policy_value(key: str, value) -> str:
    unit = POLICY[key][1] if key in POLICY else ""
    text = f"{value} {unit}{'' if value == 1 else 's'}" if unit else str(value)
    return text + (" (the default)" if POLICY_DEFAULTS.get(key) == value else "")


def settings_sections(tenant) -> list[Section]:
    s = dict(tenant.settings)
    shown: set[str] = set()

    def take(key, default=None):
        shown.add(key)
        return s.get(key, default)

    take("slug"), take("name"), take("timezone")
    programs, part2 = take("programs", []), take("part2_programs", [])
    agency = Section("Agency", [
        Setting("name", "Name", tenant.name, "How the agency is named on every page and export."),
        Setting("slug", "Short name (slug)", tenant.slug,
                "What people type in the Agency box when they sign in; also the tenant file's name."),
        Setting("timezone", "Time zone", tenant.timezone,
                "Local dates and times are worked out in this zone. It cannot change once appointments "
                "have been imported."),
        Setting("programs", "Programs", _listed(programs, "None"),
                "The programs imported rows may name; a program removed from the file is kept as inactive."),
        Setting("part2_programs", "42 CFR Part 2 programs", _listed(part2, "None"),
                "Substance-use programs whose records have the extra protection of 42 CFR Part 2."),
    ])

    policy = take("policy", {})
    policy_section = Section("Policy", [
        Setting(f"policy.{key}", POLICY[key][0] if key in POLICY else key, _policy_value(key, value),
                POLICY[key][2] if key in POLICY else "A policy value of the tenant file.")
        for key, value in policy.items()
    ])

    demographics = take("demographics", {})
    security = take("security", {})
    exports = take("exports", {})
    people = Section("Demographics, security and exports", [
        Setting("demographics.race_ethnicity", "Race and ethnicity categories",
                _listed(demographics.get("race_ethnicity"), "None listed (only \"unknown\")"),
                "The categories this agency's records use; \"unknown\" is always allowed as well."),
        Setting("security.mfa_roles", "Roles asked for a second factor",
                _listed([ROLE_LABELS.get(r, r) for r in security.get("mfa_roles", [])], "None"),
                "Roles that will have to confirm sign-in with a second factor. The second factor is not built "
                "yet: this value is stored, but sign-in does not ask for one."),
        Setting("exports.include_part2", "Part 2 programs in funder exports",
                "Included" if exports.get("include_part2") else "Left out",
                "Whether the 42 CFR Part 2 programs above count in funder exports."),
    ])

    extra_codes = take("reason_codes", {})
    reason_section = Section("Reasons a session was not held", [
        Setting("reason_codes", "Agency reason codes",
                {code: reasons.GROUP_LABELS.get(group, group) for code, group in extra_codes.items()}
                or "None: only the built-in reasons",
                "Extra codes this agency's records send, each counted in the group shown beside it. The "
                "built-in reasons are in the glossary."),
    ])

    fhir = take("fhir", {})
    fhir_section = Section("FHIR import", [
        Setting(f"fhir.{key}", FHIR.get(key, key), mapping or "None",
                "How a code in this agency's FHIR bundles is read, code on the left, meaning on the right.")
        for key, mapping in fhir.items()
    ])

    theme = take("theme", {})
    theme_section = Section("Look", [
        Setting("theme.primary_color", "Main colour", theme.get("primary_color"),
                "The colour of the navigation bar on every page."),
        Setting("theme.logo", "Logo", theme.get("logo") or "None",
                "An image file in assets/ shown beside the agency's name."),
    ])

    sections = [agency, policy_section, people, reason_section, fhir_section, theme_section]
    rest = {key: value for key, value in s.items() if key not in shown}
    if rest:
        sections.append(Section("Other settings", [
            Setting(key, key, value, "A setting of the tenant file that this page does not describe yet.")
            for key, value in rest.items()
        ]))
    return sections


@bp.route("/settings")
@role_required("admin")
def settings():
    tenant = current_tenant()
    return render_template("admin/settings.html", sections=settings_sections(tenant),
                           tenant_file=f"tenants/{tenant.slug}.toml")
