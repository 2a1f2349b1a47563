"""Connections: the request pool and how each of its connections is prepared."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from .settings import Settings, SettingsError

log = logging.getLogger(__name__)


def connect_kwargs(settings: Settings | None = None) -> dict[str, Any]:
    """Arguments for every connection the app makes (pools and listener). With
    PREPARED_STATEMENTS=false psycopg prepares nothing either: behind a pooler in
    transaction mode a statement prepared in one transaction may be gone in the next."""
    kwargs: dict[str, Any] = {"autocommit": True, "application_name": "emberlog-api"}
    if settings is not None and not settings.prepared_statements:
        kwargs["prepare_threshold"] = None
    return kwargs


async def prepare_connection(conn: psycopg.AsyncConnection, settings: Settings) -> None:
    """Once per new connection: become the authenticator, read naive times in NAIVE_TIMEZONE.

    Logging in as the authenticator is the production setup. When the URL logs in as
    another role (the embedded default is the superuser), switching at session level
    still makes every request start from the authenticator's (lack of) privileges.
    Behind a pooler in transaction mode, log in as the authenticator: the pooler keeps
    TimeZone for each client (it tracks that parameter), but not the role.
    """
    await conn.execute(
        "select pg_catalog.set_config('role', %s, false), "
        "pg_catalog.set_config('TimeZone', %s, false)",
        (settings.authenticator_role, settings.naive_timezone),
    )


def create_pool(
    settings: Settings, url: str | None = None, name: str = "requests"
) -> AsyncConnectionPool:
    """A request pool, not yet open (open it in the app's start-up): DATABASE_URL's,
    or another URL's (READ_DATABASE_URL), each connection prepared the same way."""
    url = url or settings.database_url
    assert url, "database_url is resolved before the app starts"

    async def configure(conn: psycopg.AsyncConnection) -> None:
        await prepare_connection(conn, settings)

    return AsyncConnectionPool(
        url,
        kwargs=connect_kwargs(settings),
        min_size=settings.pool_min_size,
        max_size=max(settings.pool_max_size, settings.pool_min_size),
        timeout=settings.pool_timeout,
        configure=configure,
        open=False,
        name=f"emberlog-{name}",
        reconnect_timeout=3600.0,
    )


def check_settings(database_url: str, settings: Settings) -> None:
    """Fail fast, with a clear message, on settings PostgreSQL would reject per connection."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        try:
            conn.execute(
                "select pg_catalog.set_config('TimeZone', %s, false)", (settings.naive_timezone,)
            )
        except psycopg.Error as exc:
            raise SettingsError(
                f"NAIVE_TIMEZONE={settings.naive_timezone!r} is not a time zone PostgreSQL knows"
            ) from exc


def describe(url: str) -> str:
    """A connection URL or DSN fit for a log line: host, port, database, user; never the
    password (psycopg parses both forms)."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    host = info.get("host") or "localhost"
    port = f":{info['port']}" if info.get("port") else ""
    return f"{info.get('user') or ''}@{host}{port}/{info.get('dbname') or ''}"
