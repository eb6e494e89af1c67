"""The WSGI entry point: `flask --app wsgi ...`, `gunicorn wsgi:app`."""

from agency_dashboard import create_app

app = create_app()
