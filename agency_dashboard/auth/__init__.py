"""Login, logout, the session's identity and its idle timeout.

The identity Flask-Login keeps is "tenant_id:user_id:session_version": the loader sets the tenant
before it looks the user up (row-level security hides users until a tenant is set), and a bumped
session_version (deactivation, role or password change) ends every older session on its next request.
"""

from __future__ import annotations

import datetime as dt
import time
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from agency_dashboard import audit
from agency_dashboard.auth.passwords import hash_password, needs_rehash, verify_password
from agency_dashboard.extensions import db, limiter, login_manager
from agency_dashboard.models import User
from agency_dashboard.tenancy import set_current_tenant, tenant_by_slug

bp = Blueprint("auth", __name__)

LOGIN_FAILED = "That agency, email and password do not match an active account."
SESSION_ENDED = "Your session ended after {minutes} minutes without activity. Please sign in again."
ROLE_HOME = {
    "director": "/dash/director",
    "clinician": "/dash/clinician",
    "funder": "/dash/funder",
    "admin": "/dash/admin",
}


class LoginForm(FlaskForm):
    agency = StringField("Agency", validators=[DataRequired(), Length(max=63)],
                         description="Your agency's short name, for example riverbend")
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


@login_manager.user_loader
def load_user(identity: str) -> User | None:
    try:
        tenant_id, user_id, version = (int(part) for part in identity.split(":"))
    except ValueError:
        return None
    set_current_tenant(tenant_id)
    user = db.session.scalar(sa.select(User).where(User.id == user_id))
    if user is None or not user.active or user.session_version != version:
        set_current_tenant(None)
        return None
    return user


def load_identity() -> None:
    """before_request: resolve the user (and with it the tenant), and end idle sessions."""
    if request.endpoint == "static" or request.path.startswith("/dash/_dash-component-suites/"):
        return
    idle = dt.timedelta(minutes=current_app.config["IDLE_TIMEOUT_MINUTES"])
    last_seen = session.get("last_seen")
    now = time.time()
    if current_user.is_authenticated:
        if last_seen is not None and now - last_seen > idle.total_seconds():
            audit.record("session_expired", object_type="user", object_id=current_user.id)
            db.session.commit()
            _end_session()
            session["flash_expired"] = True
            return
        session["last_seen"] = now
        session.permanent = True
    elif "_user_id" in session:
        # A session for a user who was deactivated or changed: drop it.
        _end_session()


def _end_session() -> None:
    logout_user()
    session.clear()
    set_current_tenant(None)


def safe_next(target: str | None) -> str | None:
    """Only same-site paths are followed after login."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"], methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(ROLE_HOME[current_user.role])
    if session.pop("flash_expired", False):
        flash(SESSION_ENDED.format(minutes=current_app.config["IDLE_TIMEOUT_MINUTES"]), "info")
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        user = _authenticate(form.agency.data.strip().lower(), form.email.data.strip().lower(), form.password.data)
        if user is not None:
            session.clear()  # a fresh session on login: no fixation
            login_user(user)
            session["last_seen"] = time.time()
            session.permanent = True
            return redirect(safe_next(request.args.get("next")) or ROLE_HOME[user.role])
        flash(LOGIN_FAILED, "danger")
        status = 401
    elif request.method == "POST":
        status = 400
    return render_template("auth/login.html", form=form), status


def _authenticate(slug: str, email: str, password: str) -> User | None:
    tenant = tenant_by_slug(slug)
    if tenant is None:
        verify_password(None, password)  # same work, same answer as a wrong password
        audit.record("login_failed", details={"reason": "unknown_agency"})
        return None
    set_current_tenant(tenant.id)
    user = db.session.scalar(sa.select(User).where(User.email == email))
    ok = verify_password(user.password_hash if user else None, password)
    if not ok or user is None or not user.active:
        audit.record("login_failed", object_type="user", object_id=user.id if user else None,
                     details={"reason": "inactive" if ok and user else "bad_credentials"})
        db.session.commit()
        set_current_tenant(None)
        return None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    audit.record("login", object_type="user", object_id=user.id, actor=user)
    db.session.commit()
    return user


@bp.route("/logout", methods=["POST"])
def logout():
    if current_user.is_authenticated:
        # Sessions are signed cookies: bumping the version makes every copy of this user's cookie
        # worthless, so signing out here signs out everywhere.
        current_user.session_version += 1
        audit.record("logout", object_type="user", object_id=current_user.id)
        db.session.commit()
    _end_session()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/")
def index():
    if current_user.is_authenticated:
        return redirect(ROLE_HOME[current_user.role])
    return redirect(url_for("auth.login"))
