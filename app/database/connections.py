"""Connections: the request pool and how each of its connections is prepared."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg_pool import AsyncConnectionPool

from ..settings import Settings, SettingsError

log = logging.getLogger(__name__)


def connect_kwargs(settings: Settings | None = None) -> dict[str, Any]:
    """Arguments for every connection the app makes (pools and listener). With
    PREPARED_STATEMENTS=false psycopg prepares nothing either: behind a pooler in
    transaction mode a statement prepared in one transaction may be gone in the next."""
    # UTF-8: app/http/wire.py encodes the values it quotes so.
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "application_name": "emberlog-api",
        "client_encoding": "utf8",
    }
    if settings is not None and not settings.prepared_statements:
        kwargs["prepare_threshold"] = None
    return kwargs


# A background command's connection that silently died (a half-open socket) is noticed
# within about a minute.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
              "keepalives_count": 3}  # fmt: skip


async def connect_service(settings: Settings, url: str | None = None) -> psycopg.AsyncConnection:
    """A connection of a background command (mqtt-bridge, worker): DATABASE_URL (or url),
    TCP keepalives, prepared as the app's are; closed again if preparing it fails."""
    target = url or settings.database_url
    assert target, "DATABASE_URL is needed"
    conn = await psycopg.AsyncConnection.connect(target, **connect_kwargs(settings), **KEEPALIVES)
    try:
        await prepare_connection(conn, settings)
    except BaseException:
        await conn.close()
        raise
    return conn


async def prepare_connection(conn: psycopg.AsyncConnection, settings: Settings) -> None:
    """Once per new connection: read naive times in NAIVE_TIMEZONE, set DB_SETTINGS (the
    deployment's values SQL reads with current_setting), and, only when the login is
    another role than the authenticator, switch to the authenticator.

    That switch is a convenience, not a security boundary: it is session-level, so SQL
    running on the connection may switch back to the login role (``reset role``,
    ``set_config('role', ...)``). What PostgreSQL enforces is the login itself, hence
    DATABASE_URL logs in as the authenticator (LOGIN NOINHERIT): ``serve`` refuses a
    superuser login (``check_login``). Behind a pooler in transaction mode the switch
    would not even last (the pooler keeps TimeZone per client, but not the role).
    """
    values = [("TimeZone", settings.naive_timezone), *settings.db_settings]
    if conn.info.user != settings.authenticator_role:
        values.append(("role", settings.authenticator_role))
    calls = ", ".join("pg_catalog.set_config(%s, %s, false)" for _ in values)
    await conn.execute(f"select {calls}", [part for pair in values for part in pair])


def create_pool(
    settings: Settings,
    url: str | None = None,
    name: str = "requests",
    on_connect: Callable[[], None] | None = None,
) -> AsyncConnectionPool:
    """A request pool, not yet open (open it in the app's start-up): DATABASE_URL's,
    or another URL's (READ_DATABASE_URL), each connection prepared the same way.
    on_connect is told of every new connection (readiness: the pool has recovered)."""
    url = url or settings.database_url
    assert url, "database_url is resolved before the app starts"

    async def configure(conn: psycopg.AsyncConnection) -> None:
        await prepare_connection(conn, settings)
        if on_connect is not None:
            on_connect()

    return AsyncConnectionPool(
        url,
        kwargs=connect_kwargs(settings),
        min_size=settings.worker_pool_min_size,
        max_size=settings.worker_pool_max_size,
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


def login_as(url: str, user: str) -> str:
    """The same server and database, logging in as another role, without a password:
    for the embedded server, which trusts connections on its unix socket. Keeps the
    form it is given (a ``postgresql://`` URL stays a URL, for yoyo and the README)."""
    if "://" not in url:
        params = psycopg.conninfo.conninfo_to_dict(url)
        params.pop("password", None)
        return psycopg.conninfo.make_conninfo(**{**params, "user": user})
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}@{host}"))


LOGIN = """
select r.rolname, r.rolsuper, r.rolinherit,
       coalesce((select pg_catalog.pg_has_role(r.oid, a.oid, 'member')
                   from pg_catalog.pg_roles a where a.rolname = %(anon)s), false)
  from pg_catalog.pg_roles r
 where r.rolname = session_user
"""


def check_login(url: str, settings: Settings, variable: str = "DATABASE_URL") -> str:
    """The role `url` logs in as, refused when it is a superuser: a superuser may
    ``set role`` to anyone, so a route function could undo the per-request role and
    PostgreSQL would enforce nothing. Warns when the login is not the NOINHERIT
    authenticator that may become ANON_ROLE (it works, but is not the setup the grants
    were written for)."""
    with psycopg.connect(url, **connect_kwargs(settings)) as conn:
        row = conn.execute(LOGIN, {"anon": settings.anon_role}).fetchone()
    assert row is not None, "session_user is a role"
    login, superuser, inherit, may_be_anon = row
    if superuser:
        fix = f"Log in as the authenticator ({settings.authenticator_role})"
        if variable == "DATABASE_URL":
            fix += " and give the owner's login as MIGRATE_DATABASE_URL"
        raise SettingsError(
            f"{variable} logs in as superuser {login}: PostgreSQL cannot enforce the "
            f"API's roles. {fix}"
        )
    if login != settings.authenticator_role:
        log.warning(
            "%s logs in as %s, not the authenticator %s: SQL may switch back to %s",
            variable,
            login,
            settings.authenticator_role,
            login,
        )
    if inherit:
        log.warning("%s logs in as %s, which is not NOINHERIT", variable, login)
    if not may_be_anon:
        log.warning(
            "%s logs in as %s, which may not become %s", variable, login, settings.anon_role
        )
    return login


def describe(url: str) -> str:
    """A connection URL or DSN fit for a log line: host, port, database, user; never the
    password (psycopg parses both forms)."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    host = info.get("host") or "localhost"
    port = f":{info['port']}" if info.get("port") else ""
    return f"{info.get('user') or ''}@{host}{port}/{info.get('dbname') or ''}"
