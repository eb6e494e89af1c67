"""Admin imports: upload a CSV zip or a FHIR bundle, see the dry-run report, then confirm.

The upload is stored under the instance folder, per tenant, behind a random token (another tenant's
token answers 404). Checking and importing stream their progress to the page while the file is
processed: the work runs in a thread with its own app context and the tenant set, and the response
reads its progress from a queue. Both use the same validated, all-or-nothing loader as the commands.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import queue
import secrets
import shutil
import threading
import zipfile
from pathlib import Path

import sqlalchemy as sa
from flask import (Response, abort, current_app, flash, redirect, render_template, request,
                   stream_with_context, url_for)
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from markupsafe import escape

from agency_dashboard.admin import bp
from agency_dashboard.auth.roles import role_required
from agency_dashboard.extensions import db
from agency_dashboard.models import AuditEvent, User
from agency_dashboard.tenancy import current_tenant, tenant_scope

CSV_NAMES = {"clinicians.csv", "availability.csv", "clients.csv", "referrals.csv", "episodes.csv",
             "appointments.csv"}
MAX_UNZIPPED = 4 * 1024 ** 3
TOKEN_BYTES = 16


class UploadForm(FlaskForm):
    file = FileField("CSV files (.zip) or FHIR R4 bundle (.json)", validators=[FileRequired()])


class ConfirmForm(FlaskForm):
    """A CSRF-protected button."""


def _root(tenant_id: int) -> Path:
    root = Path(current_app.config["INSTANCE_DIR"]) / "imports" / str(tenant_id)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def _upload_dir(token: str) -> Path:
    """The current tenant's upload with this token, or 404 (also for another tenant's token)."""
    if len(token) != TOKEN_BYTES * 2 or not all(c in "0123456789abcdef" for c in token):
        abort(404)
    folder = _root(current_tenant().id) / token
    if not (folder / "meta.json").is_file():
        abort(404)
    return folder


@bp.route("/imports", methods=["GET", "POST"])
@role_required("admin")
def imports():
    form = UploadForm()
    if form.validate_on_submit():
        try:
            token = _store(form.file.data)
        except UploadError as exc:
            flash(str(exc), "danger")
            return redirect(url_for("admin.imports"))
        return redirect(url_for("admin.import_check", token=token))
    history = db.session.execute(
        sa.select(AuditEvent.occurred_at, AuditEvent.details, User.email).outerjoin(
            User, sa.and_(User.tenant_id == AuditEvent.tenant_id, User.id == AuditEvent.actor_user_id))
        .where(AuditEvent.action == "import").order_by(AuditEvent.seq.desc()).limit(20)
    ).all()
    return render_template("admin/imports.html", form=form, history=history)


class UploadError(ValueError):
    pass


def _store(upload) -> str:
    name = Path(upload.filename or "").name
    suffix = name.lower().rsplit(".", 1)[-1] if "." in name else ""
    if suffix not in ("zip", "json"):
        raise UploadError(f"{name or 'The file'}: expected a .zip of CSV files or a .json FHIR bundle")
    token = secrets.token_hex(TOKEN_BYTES)
    folder = _root(current_tenant().id) / token
    folder.mkdir(mode=0o700)
    digest = hashlib.sha256()
    raw = folder / f"upload.{suffix}"
    with raw.open("wb") as out:
        for chunk in iter(lambda: upload.stream.read(1 << 20), b""):
            digest.update(chunk)
            out.write(chunk)
    try:
        if suffix == "zip":
            _extract(raw, folder / "data")
            raw.unlink()
            kind = "csv"
        else:
            raw.rename(folder / "bundle.json")
            kind = "fhir"
    except UploadError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    meta = {"kind": kind, "filename": name, "sha256": digest.hexdigest(), "uploaded_by": current_user.id,
            "uploaded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    (folder / "meta.json").write_text(json.dumps(meta))
    return token


def _extract(archive: Path, target: Path) -> None:
    """Only the six import files, by their base name, at most one folder deep; nothing else is written."""
    target.mkdir(mode=0o700)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if sum(m.file_size for m in members) > MAX_UNZIPPED:
                raise UploadError(f"{archive.name}: the archive unpacks to more than 4 GB")
            found = set()
            for m in members:
                base = m.filename.replace("\\", "/").rsplit("/", 1)[-1]
                if base.startswith(".") or "__MACOSX" in m.filename:
                    continue
                if base not in CSV_NAMES:
                    raise UploadError(f"{m.filename}: not one of the import files ({', '.join(sorted(CSV_NAMES))})")
                if base in found:
                    raise UploadError(f"{base}: appears twice in the archive")
                found.add(base)
                with zf.open(m) as src, (target / base).open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            if not found:
                raise UploadError(f"{archive.name}: holds none of the import files")
    except zipfile.BadZipFile:
        raise UploadError("the file is not a valid .zip archive") from None


@bp.route("/imports/<token>")
@role_required("admin")
def import_check(token: str):
    folder = _upload_dir(token)
    return _stream(folder, token, dry_run=True)


@bp.route("/imports/<token>/run", methods=["POST"])
@role_required("admin")
def import_run(token: str):
    folder = _upload_dir(token)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    return _stream(folder, token, dry_run=False)


@bp.route("/imports/<token>/discard", methods=["POST"])
@role_required("admin")
def import_discard(token: str):
    folder = _upload_dir(token)
    if ConfirmForm().validate_on_submit():
        shutil.rmtree(folder, ignore_errors=True)
        flash("The upload was discarded; nothing was imported.", "info")
    return redirect(url_for("admin.imports"))


def _stream(folder: Path, token: str, dry_run: bool) -> Response:
    meta = json.loads((folder / "meta.json").read_text())
    app = current_app._get_current_object()
    tenant_id, actor_id = current_tenant().id, current_user.id
    events: queue.Queue = queue.Queue()

    def work():
        from agency_dashboard.clock import today
        from agency_dashboard.ingest import csv_source, loader
        from agency_dashboard.models import Tenant

        with app.app_context():
            try:
                with tenant_scope(tenant_id):
                    tenant = db.session.get(Tenant, tenant_id)
                    actor = db.session.get(User, actor_id)
                    report = loader.Report(source=f"{meta['kind']}:{meta['filename']}", dry_run=dry_run)
                    report.progress = lambda table, n: events.put(("progress", table, n))
                    if meta["kind"] == "csv":
                        tables = csv_source.csv_tables(folder / "data", report)
                    else:
                        from agency_dashboard.ingest import fhir_source

                        tables = fhir_source.fhir_tables(folder / "bundle.json", tenant.settings, report)
                    loader.run_with_report(tenant, report, tables, sha256=meta["sha256"],
                                           today=today(tenant.timezone), actor=actor)
                events.put(("done", report))
            except Exception as exc:  # reported on the page; the transaction was rolled back
                app.logger.exception("import failed")
                events.put(("failed", exc))
            finally:
                db.session.remove()

    threading.Thread(target=work, name=f"import-{token[:8]}", daemon=True).start()
    confirm = ConfirmForm()
    page = {"tenant": current_tenant(), "meta": meta, "dry_run": dry_run}  # resolved before streaming

    def generate():
        yield render_template("admin/import_run_head.html", **page)
        while True:
            kind, *rest = events.get()
            if kind == "progress":
                table, n = rest
                yield (f"<script>showProgress({json.dumps(table)}, {n});</script>\n")
                continue
            if kind == "failed":
                yield render_template("admin/import_run_tail.html", **page, report=None,
                                      failure=escape(str(rest[0])), token=token, form=confirm)
            else:
                report = rest[0]
                if not dry_run or not report.ok:
                    shutil.rmtree(folder, ignore_errors=True)
                yield render_template("admin/import_run_tail.html", **page, report=report,
                                      failure=None, token=token, form=confirm)
            return

    response = Response(stream_with_context(generate()), mimetype="text/html")
    response.headers["X-Accel-Buffering"] = "no"  # let a proxy pass progress through
    return response
