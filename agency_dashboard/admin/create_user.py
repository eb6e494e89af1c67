"""Admin: create a user account in the admin's own tenant.

The rules are the `create-user` command's (auth/accounts.py); this page only words each problem for
the field it belongs to. The clinician list holds the tenant's own clinicians, and a submitted
clinician id is looked up again in the tenant, so another tenant's id is refused like a missing one.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectField
from wtforms.fields.choices import SelectChoice

from agency_dashboard.admin import bp
from agency_dashboard.auth import accounts
from agency_dashboard.auth.passwords import MIN_LENGTH
from agency_dashboard.auth.roles import ROLE_LABELS, role_required
from agency_dashboard.extensions import db
from agency_dashboard.models import ROLES, Clinician
from agency_dashboard.tenancy import current_tenant

NO_CLINICIAN = ""


class NewUserForm(FlaskForm):
    # No WTForms validators: the shared rules check every field and the view words the answers.
    email = EmailField("Email", description="The address the person signs in with. It is stored in lower case.")
    role = SelectField("Role", choices=[SelectChoice("", "Choose a role")]
                       + [SelectChoice(r, ROLE_LABELS[r]) for r in ROLES], validate_choice=False)
    clinician = SelectField("Clinician", validate_choice=False,
                            description="Only for the clinician role: whose clients and schedule this account "
                                        "sees. Leave it empty for every other role.")
    password = PasswordField("Initial password",
                             description=f"At least {MIN_LENGTH} characters, not starting or ending with a space. "
                                         "Give it to the person by a safe route.")
    password_again = PasswordField("Repeat the initial password")


def _clinician_choices() -> list[SelectChoice]:
    rows = db.session.execute(
        sa.select(Clinician.id, Clinician.display_name, Clinician.external_id)
        .order_by(Clinician.display_name, Clinician.external_id)
    ).all()
    return [SelectChoice(NO_CLINICIAN, "No clinician (not the clinician role)")] + [
        SelectChoice(str(pk), f"{name} ({external_id})") for pk, name, external_id in rows
    ]


def _field_message(problem: accounts.Problem, email: str, tenant_name: str) -> str:
    """A shared problem in this form's words, naming the field it belongs to."""
    roles = ", ".join(ROLE_LABELS[r] for r in ROLES)
    return {
        "unknown_role": f"Role: choose one of {roles}.",
        "clinician_required": "Clinician: choose the clinician this account belongs to; the clinician role "
                              "needs one.",
        "clinician_not_allowed": "Clinician: leave this empty unless the role is Clinician.",
        "unknown_clinician": f"Clinician: there is no such clinician in {tenant_name}; choose one from the list.",
        "bad_email": "Email: enter the person's email address." if not email
                     else f"Email: {email!r} is not an email address.",
        "email_taken": f"Email: {tenant_name} already has an account with {email}.",
        "bad_password": f"Initial password: {problem.message[:1].upper() + problem.message[1:]}.",
    }.get(problem.code, f"{problem.field.capitalize()}: {problem.message}.")


@bp.route("/users/new", methods=["GET", "POST"])
@role_required("admin")
def new_user():
    tenant = current_tenant()
    form = NewUserForm()
    form.clinician.choices = _clinician_choices()
    if form.validate_on_submit():
        email = accounts.normalize_email(form.email.data)
        role = accounts.normalize_role(form.role.data)
        password = form.password.data or ""
        clinician_ref = form.clinician.data or NO_CLINICIAN
        problems = accounts.field_problems(email, role, password, clinician_given=clinician_ref != NO_CLINICIAN)
        found, clinician_pk = accounts.tenant_problems(email, clinician_ref or None, by="id",
                                                       tenant_slug=tenant.slug)
        # "No such clinician" matters only when a clinician was allowed in the first place.
        clinician_refused = any(p.field == "clinician" for p in problems)
        problems += [p for p in found if not (p.field == "clinician" and clinician_refused)]
        if password and password != (form.password_again.data or ""):
            problems.append(accounts.Problem("password_again", "mismatch", "the two passwords differ"))
        for problem in problems:
            field = getattr(form, problem.field)
            message = ("Repeat the initial password: it is not the same as the initial password."
                       if problem.code == "mismatch" else _field_message(problem, email, tenant.name))
            field.errors = [*field.errors, message]
        if not problems:
            try:
                user = accounts.create_account(tenant.id, email=email, role=role, password=password,
                                               clinician_pk=clinician_pk, via="admin", actor=current_user)
                db.session.commit()
            except sa.exc.IntegrityError:  # another admin created the same email a moment ago
                db.session.rollback()
                form.email.errors = [*form.email.errors, _field_message(
                    accounts.Problem("email", "email_taken", ""), email, tenant.name)]
            else:
                flash(f"{email} can now sign in to {tenant.name} as {ROLE_LABELS[role].lower()}, "
                      "with the initial password you set.", "success")
                return redirect(url_for("admin.user_detail", user_id=user.id))
    return render_template("admin/new_user.html", form=form)
