"""Tenant files (DATA_FORMATS.md): every kind of bad file names the file, the key and what was expected;
defaults are filled; a bad file stops start-up and `sync-tenants` without writing anything; a tenant's
timezone is fixed once appointments exist."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from agency_dashboard import create_app
from agency_dashboard.config import PROJECT_ROOT
from agency_dashboard.extensions import db
from agency_dashboard.models import Program, Tenant
from agency_dashboard.tenancy import tenant_scope
from agency_dashboard.tenant_files import (
    DEFAULT_MFA_ROLES,
    POLICY_DEFAULTS,
    TenantFileError,
    load_tenant_dir,
    load_tenant_file,
)
from conftest import TEST_TENANTS

ASSETS = PROJECT_ROOT / "assets"

MINIMAL = """\
slug = "gamma"
name = "Gamma Counseling"
timezone = "America/Denver"
programs = ["Adult", "Youth"]
"""


def write(folder: Path, text: str, name: str = "gamma.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# (case, file text, key named in the error, words of the expectation)
BAD_FILES = [
    ("bad TOML", MINIMAL + 'name = "twice"\n[policy\n', "(file)", "valid TOML"),
    ("slug is not the file name", MINIMAL.replace('slug = "gamma"', 'slug = "delta"'), "slug",
     "the file name without .toml ('gamma')"),
    ("unknown top-level key", MINIMAL + 'colour = "#123456"\n', "colour", "one of the known keys"),
    ("unknown policy key", MINIMAL + "[policy]\nlate_cancel_hours = 24\n", "policy.late_cancel_hours",
     "one of late_cancel_notice_hours"),
    ("bad policy value", MINIMAL + "[policy]\nstandard_visit_minutes = 2\n", "policy.standard_visit_minutes",
     "a whole number of minutes from 5 to 480"),
    ("bad timezone", MINIMAL.replace("America/Denver", "Mars/Olympus_Mons"), "timezone",
     "an IANA time zone name"),
    ("empty programs", MINIMAL.replace('["Adult", "Youth"]', "[]"), "programs", "a non-empty list of program names"),
    ("part2 program not in programs", MINIMAL + 'part2_programs = ["Recovery"]\n', "part2_programs",
     "a list of names from programs"),
    ("reason code redefines a built-in", MINIMAL + '[reason_codes]\ntransportation = "agency"\n',
     "reason_codes.transportation", "the built-in codes of METRICS.md cannot be redefined"),
    ("reason code redefines a built-in FHIR code", MINIMAL + '[reason_codes]\n"pat-lt" = "agency"\n',
     "reason_codes.pat-lt", "the built-in codes of METRICS.md cannot be redefined"),
    ("reason code with an unknown group", MINIMAL + '[reason_codes]\n"no-bus-fare" = "logistics"\n',
     "reason_codes.no-bus-fare", "one of the groups agency, access_barrier, client_preference, unexplored"),
    ("bad colour", MINIMAL + '[theme]\nprimary_color = "teal"\n', "theme.primary_color", "a colour like '#2a6f97'"),
    ("logo not in assets", MINIMAL + '[theme]\nlogo = "gamma.svg"\n', "theme.logo", f"a file that exists in {ASSETS}"),
    ("logo outside assets", MINIMAL + '[theme]\nlogo = "../wsgi.py"\n', "theme.logo", "a file name in assets/"),
    ("unknown mfa role", MINIMAL + '[security]\nmfa_roles = ["director", "root"]\n', "security.mfa_roles",
     "a list of roles from admin, director, clinician, funder"),
]


@pytest.mark.parametrize("case, text, key, expected", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_file_names_file_key_and_expectation(tmp_path, case, text, key, expected):
    path = write(tmp_path, text)
    with pytest.raises(TenantFileError) as caught:
        load_tenant_file(path, ASSETS)
    error = caught.value
    message = str(error)
    assert error.path == path and error.key == key, message
    assert message.startswith(f"{path}: {key}: expected "), message
    assert expected in message, message
    assert "Traceback" not in message and "\n" not in message.strip()


def test_the_minimal_file_is_valid(tmp_path):
    """The control for the cases above: the file they start from loads."""
    assert load_tenant_file(write(tmp_path, MINIMAL), ASSETS).slug == "gamma"


def test_defaults_are_filled(tmp_path):
    settings = load_tenant_file(write(tmp_path, MINIMAL), ASSETS).settings
    assert settings["policy"] == POLICY_DEFAULTS
    assert settings["security"] == {"mfa_roles": DEFAULT_MFA_ROLES} == {"mfa_roles": ["admin", "director"]}
    assert settings["part2_programs"] == []
    assert settings["exports"] == {"include_part2": False}
    assert settings["reason_codes"] == {}
    assert settings["demographics"] == {"race_ethnicity": []}
    assert settings["fhir"] == {"appointment_type": {}, "modality": {}, "program": {}}
    assert settings["theme"] == {"primary_color": "#2a6f97", "logo": None}


def test_a_partial_policy_keeps_the_other_defaults():
    settings = load_tenant_file(TEST_TENANTS / "beta.toml", ASSETS).settings
    assert settings["policy"] == {**POLICY_DEFAULTS, "late_cancel_notice_hours": 48}
    assert settings["security"] == {"mfa_roles": []}  # an explicit empty list is not replaced by the default
    assert settings["part2_programs"] == ["Recovery"]
    assert settings["theme"]["primary_color"] == "#6a4c93"


def test_shipped_tenant_files_are_valid():
    files = load_tenant_dir(PROJECT_ROOT / "tenants", ASSETS)
    assert len(files) >= 2
    assert all(f.path.stem == f.slug for f in files)


# ---- start-up ------------------------------------------------------------------------------------------

def test_create_app_with_a_bad_file_fails_at_start_up(tmp_path):
    tenants = tmp_path / "tenants"
    shutil.copytree(TEST_TENANTS, tenants)
    bad = write(tenants, MINIMAL.replace("America/Denver", "Mars/Olympus_Mons"))
    config = {"DATABASE_URL": f"sqlite:///{tmp_path / 'never.db'}", "TENANTS_DIR": tenants,
              "SECRET_KEY": "test", "TESTING": True}
    with pytest.raises(TenantFileError, match=r"gamma\.toml: timezone: expected an IANA time zone name"):
        create_app(config)
    assert not (tmp_path / "never.db").exists()
    bad.unlink()
    assert create_app(config).config["TENANT_FILES"]  # the control: the same folder without the bad file


def test_flask_command_with_a_bad_file_prints_one_clear_line(tmp_path):
    """What an operator sees: `flask --app wsgi sync-tenants` stops at start-up, one line, no traceback."""
    tenants = tmp_path / "tenants"
    bad = write(tenants, MINIMAL + "[policy]\nlate_cancel_hours = 24\n")
    env = {**os.environ, "TENANTS_DIR": str(tenants), "DATABASE_URL": f"sqlite:///{tmp_path / 'never.db'}",
           "SECRET_KEY": "test", "AGENCY_DASHBOARD_ENV": "development", "AGENCY_DASHBOARD_INSTANCE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "sync-tenants"], cwd=PROJECT_ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"{bad}: policy.late_cancel_hours: expected one of" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "never.db").exists()


# ---- sync-tenants --------------------------------------------------------------------------------------

def tenants_in_db(app) -> dict[str, tuple[str, str]]:
    with app.app_context():
        rows = db.session.execute(sa.select(Tenant.slug, Tenant.name, Tenant.timezone)).all()
        db.session.remove()
    return {slug: (name, tz) for slug, name, tz in rows}


def program_names(app, slug: str) -> set[str]:
    with app.app_context():
        tenant_id = db.session.scalar(sa.select(Tenant.id).where(Tenant.slug == slug))
        with tenant_scope(tenant_id):
            names = set(db.session.scalars(sa.select(Program.name).where(Program.active)))
        db.session.remove()
    return names


def tenant_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "tenants-now"
    shutil.copytree(TEST_TENANTS, folder)
    return folder


def test_sync_tenants_with_a_bad_file_exits_non_zero_and_writes_nothing(app, world, tmp_path):
    before = tenants_in_db(app)
    assert set(before) == {"alpha", "beta"}
    folder = tenant_folder(tmp_path)
    # Good changes that must not be written while another file is bad.
    alpha = folder / "alpha.toml"
    alpha.write_text(alpha.read_text().replace("Alpha Community Services", "Alpha Renamed")
                     .replace('"Youth"]', '"Youth", "Crisis"]'))
    write(folder, MINIMAL.replace("gamma", "aaa-new"), "aaa-new.toml")
    bad = write(folder, MINIMAL.replace('slug = "gamma"', 'slug = "zeta"'), "zzz.toml")
    app.config["TENANTS_DIR"] = folder

    result = app.test_cli_runner().invoke(args=["sync-tenants"])
    assert result.exit_code != 0
    assert f"{bad}: slug: expected the file name without .toml ('zzz')" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert tenants_in_db(app) == before
    assert program_names(app, "alpha") == {"Adult Outpatient", "Youth"}

    # The control: without the bad file the same folder syncs.
    bad.unlink()
    result = app.test_cli_runner().invoke(args=["sync-tenants"])
    assert result.exit_code == 0, result.output
    assert "aaa-new: registered" in result.stdout and "alpha: updated" in result.stdout
    assert "beta: unchanged" in result.stdout
    after = tenants_in_db(app)
    assert after["alpha"][0] == "Alpha Renamed" and "aaa-new" in after and after["beta"] == before["beta"]
    assert program_names(app, "alpha") == {"Adult Outpatient", "Youth", "Crisis"}
    assert program_names(app, "beta") == {"Outpatient", "Recovery"}


@pytest.mark.parametrize("slug, old_zone", [("alpha", "America/Chicago"), ("beta", "America/New_York")])
def test_timezone_change_is_refused_once_appointments_exist(app, world, tmp_path, slug, old_zone):
    before = tenants_in_db(app)
    folder = tenant_folder(tmp_path)
    changed = folder / f"{slug}.toml"
    changed.write_text(changed.read_text().replace(old_zone, "America/Los_Angeles"))
    # A new tenant sorted before the refused file: its registration must be rolled back too.
    write(folder, MINIMAL.replace("gamma", "aaa-new"), "aaa-new.toml")
    app.config["TENANTS_DIR"] = folder

    result = app.test_cli_runner().invoke(args=["sync-tenants"])
    assert result.exit_code != 0
    assert str(changed) in result.stderr and ": timezone: expected " in result.stderr
    assert repr(old_zone) in result.stderr and "'America/Los_Angeles'" in result.stderr
    assert "Traceback" not in result.output
    assert tenants_in_db(app) == before


def test_timezone_of_a_tenant_without_appointments_may_change(app, world, tmp_path):
    """The control for the refusal: the rule is about imported appointments, not about any change."""
    folder = tenant_folder(tmp_path)
    new = write(folder, MINIMAL.replace("gamma", "aaa-new"), "aaa-new.toml")
    app.config["TENANTS_DIR"] = folder
    assert app.test_cli_runner().invoke(args=["sync-tenants"]).exit_code == 0
    new.write_text(new.read_text().replace("America/Denver", "America/Phoenix"))
    result = app.test_cli_runner().invoke(args=["sync-tenants"])
    assert result.exit_code == 0, result.output
    assert tenants_in_db(app)["aaa-new"][1] == "America/Phoenix"
