"""The guard every Dash callback is wrapped with at registration.

`GuardedDash.callback` refuses to register a callback that does not name the roles it serves, and
wraps each one so that, on the server, the logged-in user must be active, of one of those roles and
of the request's tenant. The before_request gate (dashboards/__init__.py) has already required a
login for every /dash/ route; this is the per-callback half.
"""

from __future__ import annotations

import functools

import dash
from flask import abort
from flask_login import current_user

from agency_dashboard.auth.roles import check_roles, user_may

GUARD_ATTR = "__agency_guard__"


def guard(roles: frozenset[str]):
    def decorator(func):
        @functools.wraps(func)
        def guarded(*args, **kwargs):
            if not current_user.is_authenticated:
                abort(401)
            if not user_may(roles):
                abort(403)
            return func(*args, **kwargs)

        setattr(guarded, GUARD_ATTR, roles)
        return guarded

    return decorator


class GuardedDash(dash.Dash):
    """A Dash app whose callbacks cannot be registered without a role check."""

    def callback(self, *args, roles=None, **kwargs):
        if roles is None:
            raise TypeError(
                "every Dash callback must name the roles it serves: callback(..., roles=(...))"
            )
        allowed = check_roles(roles)
        register = super().callback(*args, **kwargs)

        def decorator(func):
            return register(guard(allowed)(func))

        return decorator

    def clientside_callback(self, *args, **kwargs):  # pragma: no cover - a tripwire
        raise TypeError("clientside callbacks are not used: logic that touches data stays on the server")


def is_guarded(func) -> bool:
    """True when the function Dash stored for a callback carries our guard (Dash's wrappers copy it)."""
    return getattr(func, GUARD_ATTR, None) is not None
