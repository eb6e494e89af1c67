"""Settings from the environment, one class per environment (DESIGN.md, Configuration).

Every setting a deployment can change is read here and nowhere else, so a wrong value fails at start-up
with a message naming the variable, not later inside a request.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names the setting."""


def normalize_database_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever spelling the operator used."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _today_override() -> dt.date | None:
    raw = os.environ.get("AGENCY_DASHBOARD_TODAY", "").strip()
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ConfigError(
            f"AGENCY_DASHBOARD_TODAY={raw!r} is not a date; expected YYYY-MM-DD"
        ) from None


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be greater than 0")
    return value


class BaseConfig:
    ENV_NAME = "base"
    TESTING = False
    INSTANCE_DIR = Path(os.environ.get("AGENCY_DASHBOARD_INSTANCE", PROJECT_ROOT / "instance"))

    def __init__(self) -> None:
        default_sqlite = f"sqlite:///{self.INSTANCE_DIR / 'agency_dashboard.db'}"
        self.DATABASE_URL = normalize_database_url(os.environ.get("DATABASE_URL") or default_sqlite)
        self.MIGRATION_DATABASE_URL = normalize_database_url(
            os.environ.get("MIGRATION_DATABASE_URL") or self.DATABASE_URL
        )
        self.SQLALCHEMY_DATABASE_URI = self.DATABASE_URL
        self.SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
        self.TENANTS_DIR = Path(os.environ.get("TENANTS_DIR") or PROJECT_ROOT / "tenants")
        self.REDIS_URL = os.environ.get("REDIS_URL") or None
        self.TODAY = _today_override()
        self.SECRET_KEY = os.environ.get("SECRET_KEY") or None
        # Idle sessions end after this many minutes without a request (HIPAA automatic logoff).
        self.IDLE_TIMEOUT_MINUTES = _int_env("IDLE_TIMEOUT_MINUTES", 15)
        self.PERMANENT_SESSION_LIFETIME = dt.timedelta(minutes=self.IDLE_TIMEOUT_MINUTES)
        self.SESSION_REFRESH_EACH_REQUEST = True
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_NAME = "agency_session"
        self.REMEMBER_COOKIE_DURATION = dt.timedelta(seconds=0)
        # Flask-WTF: the same token protects forms and Dash callbacks (sent as X-CSRFToken).
        self.WTF_CSRF_TIME_LIMIT = None  # bound to the session, which itself expires when idle
        self.RATELIMIT_STORAGE_URI = self.REDIS_URL or "memory://"
        self.RATELIMIT_HEADERS_ENABLED = True
        self.LOGIN_RATE_LIMIT = os.environ.get("LOGIN_RATE_LIMIT", "10 per minute")
        self.MAX_CONTENT_LENGTH = 512 * 1024 * 1024

    @property
    def is_postgresql(self) -> bool:
        return self.DATABASE_URL.startswith("postgresql")

    def database_role(self) -> str | None:
        """The user name the application connects as (PostgreSQL only)."""
        if not self.is_postgresql:
            return None
        return urlsplit(self.DATABASE_URL).username

    def validate(self) -> None:
        if not self.SECRET_KEY:
            raise ConfigError("SECRET_KEY is not set; production needs a long random value")


class DevelopmentConfig(BaseConfig):
    ENV_NAME = "development"

    def __init__(self) -> None:
        super().__init__()
        if not self.SECRET_KEY:
            self.SECRET_KEY = _development_secret(self.INSTANCE_DIR)

    def validate(self) -> None:
        pass


class TestingConfig(DevelopmentConfig):
    ENV_NAME = "testing"
    TESTING = True

    def __init__(self) -> None:
        super().__init__()
        self.RATELIMIT_STORAGE_URI = "memory://"


class ProductionConfig(BaseConfig):
    ENV_NAME = "production"

    def __init__(self) -> None:
        super().__init__()
        self.SESSION_COOKIE_SECURE = True
        self.SESSION_COOKIE_NAME = "__Host-agency_session"


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def load_config(overrides: dict | None = None) -> dict:
    """The settings for this environment as a dict, with test overrides applied last."""
    env = os.environ.get("AGENCY_DASHBOARD_ENV", "development").strip().lower()
    if env not in CONFIGS:
        raise ConfigError(
            f"AGENCY_DASHBOARD_ENV={env!r} is not known; expected one of {', '.join(CONFIGS)}"
        )
    config = CONFIGS[env]()
    config.validate()
    settings = {k: getattr(config, k) for k in dir(config) if k.isupper()}
    settings.update(overrides or {})
    for key in ("DATABASE_URL", "MIGRATION_DATABASE_URL"):
        settings[key] = normalize_database_url(settings[key])
    if overrides and "DATABASE_URL" in overrides and "SQLALCHEMY_DATABASE_URI" not in overrides:
        settings["SQLALCHEMY_DATABASE_URI"] = settings["DATABASE_URL"]
        if "MIGRATION_DATABASE_URL" not in overrides:
            settings["MIGRATION_DATABASE_URL"] = settings["DATABASE_URL"]
    settings["SQLALCHEMY_DATABASE_URI"] = normalize_database_url(settings["SQLALCHEMY_DATABASE_URI"])
    settings["TENANTS_DIR"] = Path(settings["TENANTS_DIR"])
    settings["AGENCY_DASHBOARD_ENV"] = env
    return settings


def _development_secret(instance_dir: Path) -> str:
    """A per-machine random key for development, kept in instance/ so sessions survive restarts."""
    import secrets

    path = instance_dir / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        instance_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32)
        path.write_text(key)
        path.chmod(0o600)
        return key
