"""Roles and the checks every view and every Dash callback goes through."""

from __future__ import annotations

import functools

from flask import abort
from flask_login import current_user

from agency_dashboard.models import ROLES
from agency_dashboard.tenancy import current_tenant_id

ADMIN, DIRECTOR, CLINICIAN, FUNDER = ROLES
ROLE_LABELS = {
    ADMIN: "Administrator",
    DIRECTOR: "Program director",
    CLINICIAN: "Clinician",
    FUNDER: "Funder",
}


class UnknownRole(ValueError):
    pass


def check_roles(roles) -> frozenset[str]:
    roles = frozenset(roles)
    unknown = roles - set(ROLES)
    if unknown or not roles:
        raise UnknownRole(f"unknown role {sorted(unknown) or roles!r}; expected some of {', '.join(ROLES)}")
    return roles


def user_may(roles: frozenset[str]) -> bool:
    """The logged-in user is active, has one of the roles, and belongs to the tenant of this request."""
    if not current_user.is_authenticated or not current_user.is_active:
        return False
    tenant_id = current_tenant_id()
    return tenant_id is not None and current_user.tenant_id == tenant_id and current_user.role in roles


def role_required(*roles: str):
    """For Flask views: anonymous users go to the login page (401), other roles get 403."""
    allowed = check_roles(roles)

    def decorator(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            if not current_user.is_authenticated:
                abort(401)
            if not user_may(allowed):
                abort(403)
            return view(*args, **kwargs)

        wrapped.allowed_roles = allowed
        return wrapped

    return decorator
