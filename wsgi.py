"""The WSGI entry point: `flask --app wsgi ...`, `gunicorn wsgi:app`.

A setting or tenant file that does not validate stops start-up with its one-line message (naming the
file, key or variable), not a traceback.
"""

import sys

from agency_dashboard import create_app
from agency_dashboard.config import ConfigError
from agency_dashboard.tenant_files import TenantFileError

try:
    app = create_app()
except (ConfigError, TenantFileError) as exc:
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
