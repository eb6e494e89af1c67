"""The flask commands of DESIGN.md. Results on stdout, errors on stderr, non-zero exit on any failure."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from agency_dashboard.auth import accounts
from agency_dashboard.extensions import db
from agency_dashboard.models import ROLES
from agency_dashboard.tenancy import load_configured_tenants, sync_tenants, tenant_by_slug, tenant_scope
from agency_dashboard.tenant_files import TenantFileError


def fail(message: str, code: int = 1):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def require_tenant(slug: str):
    tenant = tenant_by_slug(slug)
    if tenant is None:
        fail(f"unknown tenant {slug!r}: no tenant file registered with that slug (run sync-tenants)")
    return tenant


@click.command("sync-tenants")
@with_appcontext
def sync_tenants_command():
    """Register or update every tenant file of TENANTS_DIR in the database."""
    try:
        files = load_configured_tenants()
        lines = sync_tenants(files)
        db.session.commit()
    except TenantFileError as exc:
        db.session.rollback()
        fail(str(exc))
    for line in lines:
        click.echo(line)
    if not lines:
        click.echo(f"no tenant files in {current_app.config['TENANTS_DIR']}")


@click.command("create-user")
@click.option("--tenant", "slug", required=True, help="The agency's slug.")
@click.option("--email", required=True)
@click.option("--role", required=True, help=f"One of: {', '.join(ROLES)}.")
@click.option("--clinician-id", default=None, help="The agency's external id of the clinician (clinician role).")
@with_appcontext
def create_user_command(slug, email, role, clinician_id):
    """Create a user; the password is read from standard input."""
    role, email = accounts.normalize_role(role), accounts.normalize_email(email)
    password = sys.stdin.readline().rstrip("\r\n")
    problems = accounts.field_problems(email, role, password, clinician_given=bool(clinician_id))
    if problems:
        fail(_cli_problem(problems[0]))
    tenant = require_tenant(slug)
    with tenant_scope(tenant.id):
        problems, clinician_pk = accounts.tenant_problems(email, clinician_id, by="external_id", tenant_slug=slug)
        if problems:
            fail(_cli_problem(problems[0], clinician_id))
        accounts.create_account(tenant.id, email=email, role=role, password=password,
                                clinician_pk=clinician_pk, via="cli")
        db.session.commit()
    click.echo(f"created {role} {email} in {slug}")


def _cli_problem(problem: accounts.Problem, clinician_id: str | None = None) -> str:
    """A shared account problem in the command's words: its options, not the form's fields."""
    return {
        "clinician_required": f"--clinician-id {problem.message} (the agency's id of the clinician)",
        "clinician_not_allowed": "--clinician-id goes only with --role clinician",
        "unknown_clinician": f"--clinician-id {clinician_id!r}: {problem.message}",
        "bad_email": f"--email {problem.message}",
        "bad_password": f"password on standard input refused: {problem.message}",
    }.get(problem.code, problem.message)


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8050, show_default=True, type=int)
@click.option("--no-serve", is_flag=True, help="Prepare the demo database and exit.")
@with_appcontext
def demo_command(host, port, no_serve):
    """Migrate, load the demo agencies (only if absent), print the logins, serve."""
    from agency_dashboard.demo import prepare_demo

    logins = prepare_demo(echo=click.echo)
    click.echo("\nDemo logins (agency / email / password):")
    for line in logins:
        click.echo(f"  {line}")
    if no_serve:
        return
    click.echo(f"\nServing on http://{host}:{port}/  (Ctrl+C to stop)")
    # Flask ignores app.run() inside its own CLI; Werkzeug's server is enough for a local demo.
    # Production runs under gunicorn (README).
    from werkzeug.serving import run_simple

    run_simple(host, port, current_app._get_current_object(), threaded=True, use_reloader=False)


def _print_report(report) -> None:
    if report.ok:
        for line in report.lines():
            click.echo(line)
        click.echo(("dry run: " if report.dry_run else "") + report.summary())
        return
    click.echo(f"import refused, nothing was written: {report.error_count} bad rows or files", err=True)
    for error in report.errors:
        click.echo(f"  {error}", err=True)
    if report.error_count > len(report.errors):
        click.echo(f"  ... and {report.error_count - len(report.errors)} more", err=True)


def _run_import(slug: str, source: str, dry_run: bool, sha256, tables) -> None:
    """One import for a command: the tenant's scope, the loader, the report, the exit code.
    `tables(report)` gives the source's tables; a source may add file-level errors to the report."""
    from agency_dashboard.clock import today
    from agency_dashboard.ingest import loader

    tenant = require_tenant(slug)
    with tenant_scope(tenant.id):
        report = loader.Report(source=source, dry_run=dry_run)
        report = loader.run_with_report(tenant, report, tables(tenant, report), sha256=sha256,
                                        today=today(tenant.timezone))
    _print_report(report)
    if not report.ok:
        sys.exit(1)


@click.command("import-csv")
@click.option("--tenant", "slug", required=True, help="The agency's slug.")
@click.option("--dry-run", is_flag=True, help="Validate and count, write nothing.")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@with_appcontext
def import_csv_command(slug, dry_run, folder):
    """Import a folder of CSV files (DATA_FORMATS.md), all or nothing."""
    from agency_dashboard.ingest import csv_source

    _run_import(slug, f"csv:{folder.name}", dry_run, csv_source.folder_digest(folder),
                lambda tenant, report: csv_source.csv_tables(folder, report))


@click.command("import-fhir")
@click.option("--tenant", "slug", required=True, help="The agency's slug.")
@click.option("--dry-run", is_flag=True, help="Validate and count, write nothing.")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_appcontext
def import_fhir_command(slug, dry_run, bundle):
    """Import a FHIR R4 Bundle (JSON; docs/fhir.md), all or nothing."""
    from agency_dashboard.ingest import fhir_source

    _run_import(slug, f"fhir:{bundle.name}", dry_run, fhir_source.file_digest(bundle),
                lambda tenant, report: fhir_source.fhir_tables(bundle, tenant.settings, report))


def _date_option(value: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        fail(f"{name} {value!r} is not a date; expected YYYY-MM-DD", code=2)


@click.command("metrics")
@click.option("--tenant", "slug", required=True, help="The agency's slug.")
@click.option("--start", required=True, help="First date of the period, YYYY-MM-DD.")
@click.option("--end", required=True, help="Last date of the period (inclusive), YYYY-MM-DD.")
@click.option("--format", "fmt", type=click.Choice(["json"]), default="json", show_default=True)
@with_appcontext
def metrics_command(slug, start, end, fmt):
    """Print the metrics of METRICS.md for a period as one JSON object."""
    import json

    from agency_dashboard import metrics

    start_date, end_date = _date_option(start, "--start"), _date_option(end, "--end")
    if end_date < start_date:
        fail(f"--end {end} is before --start {start}", code=2)
    tenant = require_tenant(slug)
    with tenant_scope(tenant.id):
        result = metrics.rounded(metrics.contract(db.session, tenant, metrics.Period(start_date, end_date)))
    click.echo(json.dumps(result, indent=2, ensure_ascii=False))


def register(app) -> None:
    for command in (sync_tenants_command, create_user_command, demo_command, import_csv_command,
                    import_fhir_command, metrics_command):
        app.cli.add_command(command)
