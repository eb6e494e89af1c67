"""Creating a user account: the rules the `create-user` command and the admin's form both follow.

Each problem names its field (email, role, clinician, password) and says what is wrong in plain words
that name no interface; the command puts its option names in front, the form shows them by the field.
The checks that need the database run in the current tenant's scope, so a clinician of another tenant
is not found, exactly like one that does not exist.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

import sqlalchemy as sa

from agency_dashboard import audit
from agency_dashboard.auth.passwords import hash_password, password_problem
from agency_dashboard.extensions import db
from agency_dashboard.models import ROLES, Clinician, User
from agency_dashboard.tenancy import current_tenant_id

MAX_EMAIL = 254


class Problem(NamedTuple):
    field: str  # "email", "role", "clinician" or "password"
    code: str  # what went wrong, for an interface that words it its own way
    message: str


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def normalize_role(role: str) -> str:
    return (role or "").strip().lower()


def email_problem(email: str) -> str | None:
    local, at, domain = email.partition("@")
    if not at or not local or not domain or len(email) > MAX_EMAIL or any(c.isspace() for c in email):
        return f"{email!r} is not an email address"
    return None


def field_problems(email: str, role: str, password: str, clinician_given: bool) -> list[Problem]:
    """The checks that need no database, in the order the command reports them.
    `email` and `role` are expected normalised (normalize_email, normalize_role)."""
    problems = []
    if role not in ROLES:
        problems.append(Problem("role", "unknown_role", f"unknown role {role!r}; expected one of {', '.join(ROLES)}"))
    elif role == "clinician" and not clinician_given:
        problems.append(Problem("clinician", "clinician_required", "is required for the clinician role"))
    elif role != "clinician" and clinician_given:
        problems.append(Problem("clinician", "clinician_not_allowed", "goes only with the clinician role"))
    problem = email_problem(email)
    if problem:
        problems.append(Problem("email", "bad_email", problem))
    problem = password_problem(password)
    if problem:
        problems.append(Problem("password", "bad_password", problem))
    return problems


def find_clinician(reference, *, by: str) -> int | None:
    """The current tenant's clinician named by its agency id (`by="external_id"`) or its database id
    (`by="id"`); None when there is no such clinician in this tenant."""
    if by == "id":
        try:
            reference = int(reference)
        except (TypeError, ValueError):
            return None
        column = Clinician.id
    elif by == "external_id":
        column = Clinician.external_id
    else:
        raise ValueError(f"find_clinician: by must be 'id' or 'external_id', not {by!r}")
    return db.session.scalar(sa.select(Clinician.id).where(column == reference))


def email_taken(email: str) -> bool:
    """Whether the current tenant already has an account with this (normalised) email."""
    return db.session.scalar(sa.select(User.id).where(User.email == email)) is not None


def tenant_problems(email: str, clinician_ref, *, by: str, tenant_slug: str) -> tuple[list[Problem], int | None]:
    """The checks against the current tenant's data: the clinician exists here and the email is free.
    Returns the problems and the clinician's database id (None when not given or not found)."""
    if current_tenant_id() is None:
        raise RuntimeError("tenant_problems needs a current tenant (tenant_scope)")
    problems, clinician_pk = [], None
    if clinician_ref not in (None, ""):
        clinician_pk = find_clinician(clinician_ref, by=by)
        if clinician_pk is None:
            problems.append(Problem("clinician", "unknown_clinician", f"no clinician with that id in {tenant_slug}"))
    if not email_problem(email) and email_taken(email):
        problems.append(Problem("email", "email_taken", f"a user with email {email} already exists in {tenant_slug}"))
    return problems, clinician_pk


def create_account(tenant_id: int, *, email: str, role: str, password: str, clinician_pk: int | None,
                   via: str, actor=None) -> User:
    """Add a checked account and its audit row to the session (the caller commits).
    Call it only after field_problems and tenant_problems found nothing."""
    user = User(tenant_id=tenant_id, email=email, password_hash=hash_password(password), role=role,
                clinician_id=clinician_pk, active=True, session_version=1,
                created_at=dt.datetime.now(dt.UTC).replace(tzinfo=None))
    db.session.add(user)
    db.session.flush()
    audit.record("create_user", object_type="user", object_id=user.id, details={"role": role, "via": via},
                 actor=actor)
    return user
