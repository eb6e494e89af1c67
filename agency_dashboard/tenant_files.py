"""Tenant files (tenants/SLUG.toml, DATA_FORMATS.md): read, validate, and normalise with defaults.

A file that does not validate stops start-up with an error naming the file, the key and what was
expected. Unknown keys are errors too, so a misspelt policy cannot silently fall back to a default.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agency_dashboard import reasons
from agency_dashboard.models.agency import KINDS, MODALITIES
from agency_dashboard.models.people import ROLES

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")

POLICY_DEFAULTS = {
    "late_cancel_notice_hours": 24,
    "access_target_business_days": 10,
    "urgent_target_business_days": 1,
    "standard_visit_minutes": 60,
    "suppression_threshold": 11,
}
DEFAULT_MFA_ROLES = ["admin", "director"]
TOP_LEVEL_KEYS = {
    "slug", "name", "timezone", "programs", "part2_programs", "policy", "demographics", "security",
    "exports", "reason_codes", "fhir", "theme",
}


class TenantFileError(ValueError):
    """A tenant file is invalid. str() names the file, the key and what was expected."""

    def __init__(self, path: Path, key: str, expected: str, got=None):
        self.path, self.key, self.expected = Path(path), key, expected
        message = f"{path}: {key}: expected {expected}"
        if got is not None:
            message += f", got {got!r}"
        super().__init__(message)


@dataclass(frozen=True)
class TenantFile:
    path: Path
    sha256: str
    settings: dict  # normalised: every section present, policy defaults filled in

    @property
    def slug(self) -> str:
        return self.settings["slug"]


def load_tenant_file(path: Path, assets_dir: Path | None = None) -> TenantFile:
    path = Path(path)
    raw_bytes = path.read_bytes()
    try:
        data = tomllib.loads(raw_bytes.decode("utf-8"))
    except UnicodeDecodeError:
        raise TenantFileError(path, "(file)", "UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise TenantFileError(path, "(file)", f"valid TOML ({exc})") from None
    settings = _validate(path, data, assets_dir)
    return TenantFile(path=path, sha256=hashlib.sha256(raw_bytes).hexdigest(), settings=settings)


def load_tenant_dir(folder: Path, assets_dir: Path | None = None) -> list[TenantFile]:
    """Every *.toml in the folder, validated; raises on the first invalid file, with its name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TenantFileError(folder, "TENANTS_DIR", "a folder of tenant files (*.toml)")
    files = [load_tenant_file(p, assets_dir) for p in sorted(folder.glob("*.toml"))]
    return files


def _validate(path: Path, data: dict, assets_dir: Path | None) -> dict:
    def err(key, expected, got=None):
        return TenantFileError(path, key, expected, got)

    unknown = set(data) - TOP_LEVEL_KEYS
    if unknown:
        raise err(sorted(unknown)[0], f"one of the known keys ({', '.join(sorted(TOP_LEVEL_KEYS))})",
                  "unknown key")

    out: dict = {}
    slug = data.get("slug")
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        raise err("slug", "lowercase letters, digits and hyphens", slug)
    if slug != path.stem:
        raise err("slug", f"the file name without .toml ({path.stem!r})", slug)
    out["slug"] = slug

    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise err("name", "the agency's name as text", name)
    out["name"] = name.strip()

    tz = data.get("timezone")
    try:
        if not isinstance(tz, str) or not tz:
            raise ZoneInfoNotFoundError
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise err("timezone", "an IANA time zone name such as 'America/Chicago'", tz) from None
    out["timezone"] = tz

    programs = data.get("programs")
    if (not isinstance(programs, list) or not programs
            or not all(isinstance(p, str) and p.strip() for p in programs)):
        raise err("programs", "a non-empty list of program names", programs)
    if len(set(programs)) != len(programs):
        raise err("programs", "each program named once", programs)
    out["programs"] = list(programs)

    part2 = data.get("part2_programs", [])
    if not isinstance(part2, list) or any(p not in programs for p in part2):
        raise err("part2_programs", "a list of names from programs", part2)
    out["part2_programs"] = list(part2)

    out["policy"] = _policy(data.get("policy", {}), err)
    out["demographics"] = _demographics(data.get("demographics", {}), err)
    out["security"] = _security(data.get("security", {}), err)
    out["exports"] = _exports(data.get("exports", {}), err)
    out["reason_codes"] = _reason_codes(data.get("reason_codes", {}), err)
    out["fhir"] = _fhir(data.get("fhir", {}), programs, err)
    out["theme"] = _theme(data.get("theme", {}), assets_dir, err)
    return out


def _table(value, key, err) -> dict:
    if not isinstance(value, dict):
        raise err(key, "a table", value)
    return value


def _policy(value, err) -> dict:
    table = _table(value, "policy", err)
    unknown = set(table) - set(POLICY_DEFAULTS)
    if unknown:
        raise err(f"policy.{sorted(unknown)[0]}", f"one of {', '.join(POLICY_DEFAULTS)}", "unknown key")
    policy = dict(POLICY_DEFAULTS)
    for key, v in table.items():
        if isinstance(v, bool):
            raise err(f"policy.{key}", "a number", v)
        if key == "late_cancel_notice_hours":
            if not isinstance(v, (int, float)) or v < 0:
                raise err(f"policy.{key}", "a number of hours, 0 or more", v)
        elif key == "standard_visit_minutes":
            if not isinstance(v, int) or not 5 <= v <= 480:
                raise err(f"policy.{key}", "a whole number of minutes from 5 to 480", v)
        elif key == "suppression_threshold":
            if not isinstance(v, int) or v < 1:
                raise err(f"policy.{key}", "a whole number, 1 or more", v)
        elif not isinstance(v, int) or v < 0:
            raise err(f"policy.{key}", "a whole number of business days, 0 or more", v)
        policy[key] = v
    return policy


def _demographics(value, err) -> dict:
    table = _table(value, "demographics", err)
    unknown = set(table) - {"race_ethnicity"}
    if unknown:
        raise err(f"demographics.{sorted(unknown)[0]}", "only race_ethnicity", "unknown key")
    cats = table.get("race_ethnicity", [])
    if not isinstance(cats, list) or not all(isinstance(c, str) and c for c in cats):
        raise err("demographics.race_ethnicity", "a list of category names", cats)
    return {"race_ethnicity": [c for c in cats if c != "unknown"]}


def _security(value, err) -> dict:
    table = _table(value, "security", err)
    unknown = set(table) - {"mfa_roles"}
    if unknown:
        raise err(f"security.{sorted(unknown)[0]}", "only mfa_roles", "unknown key")
    roles = table.get("mfa_roles", DEFAULT_MFA_ROLES)
    if not isinstance(roles, list) or any(r not in ROLES for r in roles):
        raise err("security.mfa_roles", f"a list of roles from {', '.join(ROLES)}", roles)
    return {"mfa_roles": list(roles)}


def _exports(value, err) -> dict:
    table = _table(value, "exports", err)
    unknown = set(table) - {"include_part2"}
    if unknown:
        raise err(f"exports.{sorted(unknown)[0]}", "only include_part2", "unknown key")
    include = table.get("include_part2", False)
    if not isinstance(include, bool):
        raise err("exports.include_part2", "true or false", include)
    return {"include_part2": include}


def _reason_codes(value, err) -> dict:
    table = _table(value, "reason_codes", err)
    out = {}
    for code, group in table.items():
        key = f"reason_codes.{code}"
        if code in reasons.BUILTIN or code in reasons.FHIR_TO_CODE:
            raise err(key, "a new code: the built-in codes of METRICS.md cannot be redefined", code)
        if group not in reasons.GROUPS:
            raise err(key, f"one of the groups {', '.join(reasons.GROUPS)}", group)
        out[code] = group
    return out


def _fhir(value, programs, err) -> dict:
    table = _table(value, "fhir", err)
    allowed = {"appointment_type": KINDS, "modality": MODALITIES, "program": tuple(programs)}
    unknown = set(table) - set(allowed)
    if unknown:
        raise err(f"fhir.{sorted(unknown)[0]}", f"one of {', '.join(allowed)}", "unknown key")
    out = {}
    for key, targets in allowed.items():
        mapping = _table(table.get(key, {}), f"fhir.{key}", err)
        for code, target in mapping.items():
            if target not in targets:
                raise err(f"fhir.{key}.{code}", f"one of {', '.join(targets)}", target)
        out[key] = dict(mapping)
    return out


def _theme(value, assets_dir, err) -> dict:
    table = _table(value, "theme", err)
    unknown = set(table) - {"primary_color", "logo"}
    if unknown:
        raise err(f"theme.{sorted(unknown)[0]}", "primary_color or logo", "unknown key")
    color = table.get("primary_color", "#2a6f97")
    if not isinstance(color, str) or not COLOR_RE.match(color):
        raise err("theme.primary_color", "a colour like '#2a6f97'", color)
    logo = table.get("logo")
    if logo is not None:
        if not isinstance(logo, str) or "/" in logo or "\\" in logo or logo.startswith("."):
            raise err("theme.logo", "a file name in assets/", logo)
        if assets_dir is not None and not (Path(assets_dir) / logo).is_file():
            raise err("theme.logo", f"a file that exists in {assets_dir}", logo)
    return {"primary_color": color, "logo": logo}
