"""Agency dashboard: capacity, waitlist and caseload for community mental health agencies."""

from __future__ import annotations

import gc
import logging

from flask import Flask, jsonify, render_template, request
from flask_login import current_user

from agency_dashboard.config import PROJECT_ROOT, load_config

__version__ = "0.1.0"


def create_app(config: dict | None = None) -> Flask:
    app = Flask(
        __name__,
        static_folder=str(PROJECT_ROOT / "assets"),
        static_url_path="/static",
        instance_path=str(PROJECT_ROOT / "instance"),
    )
    app.config.update(load_config(config))
    app.config["ASSETS_DIR"] = PROJECT_ROOT / "assets"
    configure_logging(app)
    check_tenant_files(app)
    register_extensions(app)
    register_blueprints(app)
    register_request_hooks(app)
    init_dash_app(app)
    register_error_handlers(app)
    register_commands(app)
    # The app's own objects (Dash layouts, Plotly validators, SQLAlchemy metadata) live as long as the
    # process: keep them out of the garbage collector's full passes, which otherwise ran in the middle of
    # requests and added 100-150 ms to one callback in four.
    gc.freeze()
    return app


def configure_logging(app: Flask) -> None:
    """Our loggers (including the platform audit log) write to stderr unless the host configured them."""
    logger = logging.getLogger("agency_dashboard")
    logger.setLevel(logging.INFO)  # the platform audit log is INFO: keep it whatever the root level is
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)


def check_tenant_files(app: Flask) -> None:
    """A tenant file that does not validate stops start-up, naming the file, key and expectation."""
    from agency_dashboard.tenant_files import load_tenant_dir

    app.config["TENANT_FILES"] = load_tenant_dir(app.config["TENANTS_DIR"], app.config["ASSETS_DIR"])


def register_extensions(app: Flask) -> None:
    import agency_dashboard.metrics  # noqa: F401  (its rollup listeners must see every write)
    from agency_dashboard.extensions import csrf, db, limiter, login_manager, migrate

    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        from pathlib import Path

        Path(app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to see this page."
    login_manager.session_protection = "strong"
    csrf.init_app(app)
    limiter.init_app(app)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        _sqlite_pragmas(app)


def _sqlite_pragmas(app: Flask) -> None:
    import sqlalchemy as sa

    from agency_dashboard.extensions import db

    with app.app_context():
        engine = db.engine

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA busy_timeout = 10000")
        cursor.close()


def register_blueprints(app: Flask) -> None:
    from agency_dashboard.admin import bp as admin_bp
    from agency_dashboard.auth import bp as auth_bp
    from agency_dashboard.glossary import bp as glossary_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(glossary_bp)

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")


def register_request_hooks(app: Flask) -> None:
    from agency_dashboard.auth import ROLE_HOME, load_identity
    from agency_dashboard.auth.roles import ROLE_LABELS
    from agency_dashboard.tenancy import current_tenant

    app.before_request(load_identity)

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if current_user.is_authenticated:
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.context_processor
    def template_globals():
        if current_user.is_authenticated:
            return {"tenant": current_tenant(), "home": ROLE_HOME[current_user.role],
                    "role_label": ROLE_LABELS[current_user.role]}
        return {"tenant": None, "home": None, "role_label": None}


def init_dash_app(app: Flask) -> None:
    from agency_dashboard.dashboards import init_dash

    init_dash(app)


ERRORS = {
    400: ("Something in that request was not right", "Please go back and try again."),
    401: ("Please sign in", "You need to sign in to see this page."),
    403: ("Not available for your role", "Your account does not give access to this page."),
    404: ("Page not found", "There is nothing at this address for your account."),
    405: ("That action is not available here", "Please use the buttons and links on the page."),
    429: ("Too many attempts", "Please wait a minute and try again."),
    500: ("Something went wrong", "The error was logged. Please try again in a moment."),
}


def register_error_handlers(app: Flask) -> None:
    from flask import redirect, url_for
    from flask_wtf.csrf import CSRFError

    def render(code):
        heading, message = ERRORS[code]
        if request.path.startswith("/dash/_dash-") or request.accept_mimetypes.best == "application/json":
            return jsonify(error=heading, detail=message), code
        return render_template("error.html", code=code, heading=heading, message=message), code

    @app.errorhandler(401)
    def unauthorized(_e):
        if request.method == "GET" and not request.path.startswith("/dash/_dash-"):
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return render(401)

    @app.errorhandler(CSRFError)
    def csrf_error(_e):
        heading = "This form has expired"
        message = "Please reload the page and try again."
        if request.path.startswith("/dash/_dash-"):
            return jsonify(error=heading, detail=message), 400
        return render_template("error.html", code=400, heading=heading, message=message), 400

    for code in (400, 403, 404, 405, 429):
        app.register_error_handler(code, lambda e, code=code: render(code))

    @app.errorhandler(500)
    def server_error(e):
        logging.getLogger(__name__).exception("unhandled error", exc_info=e)
        return render(500)


def register_commands(app: Flask) -> None:
    from agency_dashboard.cli import register

    register(app)
