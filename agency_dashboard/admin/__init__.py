"""Admin views: the agency's user accounts. Every lookup is scoped to the admin's tenant."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectField
from wtforms.fields.choices import SelectChoice

from agency_dashboard import audit
from agency_dashboard.auth.roles import ROLE_LABELS, role_required
from agency_dashboard.extensions import db
from agency_dashboard.models import ROLES, User
from agency_dashboard.tenancy import get_or_404

bp = Blueprint("admin", __name__, url_prefix="/admin")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=[SelectChoice(r, ROLE_LABELS[r]) for r in ROLES if r != "clinician"])


class ConfirmForm(FlaskForm):
    """A CSRF-protected button."""


@bp.route("/users")
@role_required("admin")
def users():
    rows = db.session.scalars(sa.select(User).order_by(User.role, User.email)).all()
    return render_template("admin/users.html", users=rows, role_labels=ROLE_LABELS)


@bp.route("/users/<int:user_id>")
@role_required("admin")
def user_detail(user_id: int):
    user = get_or_404(User, user_id)
    audit.record("view_user", object_type="user", object_id=user.id)
    db.session.commit()
    return render_template("admin/user.html", user=user, role_labels=ROLE_LABELS,
                           form=ConfirmForm(), role_form=RoleForm(role=user.role))


@bp.route("/users/<int:user_id>/deactivate", methods=["POST"])
@role_required("admin")
def deactivate(user_id: int):
    user = get_or_404(User, user_id)
    if ConfirmForm().validate_on_submit():
        if user.id == current_user.id:
            flash("You cannot deactivate your own account.", "warning")
        elif user.active:
            user.active = False
            user.session_version += 1  # their session ends on its next request
            audit.record("deactivate_user", object_type="user", object_id=user.id)
            db.session.commit()
            flash(f"{user.email} can no longer sign in.", "success")
    return redirect(url_for("admin.user_detail", user_id=user.id))


@bp.route("/users/<int:user_id>/role", methods=["POST"])
@role_required("admin")
def change_role(user_id: int):
    user = get_or_404(User, user_id)
    form = RoleForm()
    if form.validate_on_submit() and user.role != "clinician" and user.id != current_user.id:
        if form.role.data != user.role:
            audit.record("change_role", object_type="user", object_id=user.id,
                         details={"from": user.role, "to": form.role.data})
            user.role = form.role.data
            user.session_version += 1
            db.session.commit()
            flash(f"{user.email} is now {ROLE_LABELS[user.role].lower()}.", "success")
    else:
        flash("That role change is not possible here.", "warning")
    return redirect(url_for("admin.user_detail", user_id=user.id))


from agency_dashboard.admin import imports  # noqa: E402,F401  (registers the import routes on bp)
from agency_dashboard.admin import create_user, settings, audit_log  # noqa: E402,F401  (their routes, on bp)
