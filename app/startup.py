"""What `emberlog-api serve` checks and reports before it starts the workers: whether
it migrates, that no login is a superuser, and the one start-up line an operator reads
first."""

from __future__ import annotations

import logging

import psycopg

from . import __version__
from .database import connections as db
from .database import deploy, routes
from .database.logins import Logins
from .settings import Settings

log = logging.getLogger("emberlog.cli")


def migrating(settings: Settings) -> bool:
    """Whether serve migrates first: MIGRATE_ON_START, except that the embedded
    database (make run) is always brought up to date."""
    return settings.migrate_on_start or settings.embedded


def check_logins(settings: Settings, app_url: str) -> str:
    """Refuse, once at start, app logins PostgreSQL could not hold to the API's roles (a
    superuser): DATABASE_URL's, and READ_DATABASE_URL's and LISTEN_DATABASE_URL's when
    set. Returns the role DATABASE_URL logs in as."""
    login = db.check_login(app_url, settings)
    for variable, url in (
        ("READ_DATABASE_URL", settings.read_database_url),
        ("LISTEN_DATABASE_URL", settings.listen_database_url),
    ):
        if url:
            db.check_login(url, settings, variable)
    return login


def log_start(logins: Logins, settings: Settings, applied: list[str] | None, login: str) -> None:
    """One line an operator reads first: what runs, against what, as whom, in what state.
    Routes are counted as the app sees them; pending migrations are read as the owner
    (the authenticator may not read yoyo's tables)."""
    with psycopg.connect(logins.app, **db.connect_kwargs(settings)) as conn:
        table = routes.load_sync(conn, settings.api_schema)
        server = conn.info.server_version
    try:
        pending: list[str] | str = deploy.pending_migrations(logins.owner)
    except Exception as exc:  # e.g. an owner URL that may not read yoyo's tables
        pending = f"unknown ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})"
    log.info(
        "starting",
        extra={
            "version": __version__,
            "database": db.describe(logins.app),
            "login": login,
            "postgres": f"{server // 10000}.{server % 10000}",
            "migrations_applied": "skipped (MIGRATE_ON_START=false)"
            if applied is None
            else applied,
            "migrations_pending": pending,
            "routes": len(table),
            "listen": f"{settings.host}:{settings.port}",
            "workers": settings.workers,
            "metrics": f":{settings.metrics_port}" if settings.metrics_port else "/metrics",
            "trusted_networks": [str(n) for n in settings.trusted_networks] or "off",
            "naive_timezone": settings.naive_timezone,
        },
    )
    if pending and isinstance(pending, list):
        log.warning("migrations pending: %s (run emberlog-api migrate)", ", ".join(pending))
