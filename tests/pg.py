"""Test databases: a real PostgreSQL, started by the fixtures themselves."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from app.database import deploy
from app.database.connections import login_as
from app.database.embedded import EmbeddedPostgres

AUTHENTICATOR = "emberlog_authenticator"

__all__ = [
    "AUTHENTICATOR",
    "EmbeddedPostgres",
    "as_authenticator",
    "as_role",
    "behaviour",
    "connect_as",
    "create_database",
    "denied",
    "drop_database",
    "empty_tables",
    "issue_key",
    "running",
    "start_embedded",
]


def with_database(url: str, name: str) -> str:
    """The same server URL, naming another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def with_user(url: str, user: str) -> str:
    """The same database URL, logging in as another role (no password: trust auth)."""
    return login_as(url, user)


def as_authenticator(url: str) -> str:
    """The same database, logged in as the app logs in: the authenticator (LOGIN
    NOINHERIT, no superuser), so PostgreSQL itself enforces every request's role."""
    return login_as(url, AUTHENTICATOR)


def start_embedded(directory) -> EmbeddedPostgres:
    """An embedded server tuned for tests (no fsync: the data is thrown away)."""
    server = EmbeddedPostgres(directory)
    server.start()
    with psycopg.connect(server.uri, autocommit=True) as conn:
        conn.execute("alter system set fsync = off")
        conn.execute("alter system set synchronous_commit = off")
        conn.execute("select pg_reload_conf()")
    return server


def create_database(server_url: str) -> str:
    """A new, migrated database on the server; returns its URL."""
    name = f"emberlog_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = with_database(server_url, name)
    deploy.migrate(url, "emberlog_reload")
    return url


def as_role(conn: psycopg.Connection, role: str) -> None:
    """Switch a session to a NOLOGIN role, as psql users and services are."""
    conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))


@contextlib.contextmanager
def connect_as(url: str, role: str) -> Iterator[psycopg.Connection]:
    """A new autocommit session as the owner, switched to role."""
    with psycopg.connect(url, autocommit=True) as conn:
        as_role(conn, role)
        yield conn


def denied(conn: psycopg.Connection, statement: str, params: Any = ()) -> bool:
    """True when the statement fails for lack of privilege (and only then)."""
    try:
        with conn.transaction():
            conn.execute(statement, params)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


def issue_key(
    conn: psycopg.Connection,
    name: str | None = None,
    role: str = "emberlog_ingest",
    expires: str | None = None,
) -> str:
    """A new API key (as a DBA issues one); a unique name unless one is given."""
    name = name or f"test-{uuid.uuid4().hex[:10]}"
    row = conn.execute(
        "select auth.create_api_key(%s, %s, %s::timestamptz)", (name, role, expires)
    ).fetchone()
    assert row is not None
    return row[0]


def running(conn: psycopg.Connection, function: str) -> int:
    """How many other sessions are running a call of this (unqualified) function now."""
    row = conn.execute(
        "select count(*) from pg_stat_activity where state = 'active'"
        " and query like %s and pid <> pg_backend_pid()",
        (f"%execute emberlog\\_{function}\\_%",),  # the API's prepared statement for it
    ).fetchone()
    assert row is not None
    return row[0]


def event_ids(conn: psycopg.Connection, after: int = 0) -> list[int]:
    """Ids in the event log after one, as a publisher sees them: what writers queued is
    published first (as the servers' hubs do on their next fetch)."""
    conn.execute("select internal.publish_events()")
    rows = conn.execute("select id from data.events where id > %s order by id", (after,))
    return [r[0] for r in rows.fetchall()]


# What sql/ defines, as the catalog holds it (no oids): functions and procedures of our
# schemas, views, triggers on our tables, row-level security policies, with definitions,
# grants and comments.
BEHAVIOUR = {
    "function": """
        select p.oid::regprocedure::text, pg_catalog.pg_get_functiondef(p.oid),
            p.proparallel::text,
            array(select a::text from unnest(p.proacl) as a order by 1)::text,
            pg_catalog.obj_description(p.oid, 'pg_proc')
        from pg_catalog.pg_proc as p
        where p.pronamespace::regnamespace::text in ('api', 'internal', 'auth', 'data')
    """,
    "view": """
        select c.oid::regclass::text, pg_catalog.pg_get_viewdef(c.oid),
            array(select a::text from unnest(c.relacl) as a order by 1)::text,
            pg_catalog.obj_description(c.oid, 'pg_class')
        from pg_catalog.pg_class as c
        where c.relkind in ('v', 'm')
            and c.relnamespace::regnamespace::text in ('api', 'internal', 'auth', 'data')
    """,
    "trigger": """
        select t.tgrelid::regclass::text || '.' || t.tgname, pg_catalog.pg_get_triggerdef(t.oid),
            t.tgenabled::text, pg_catalog.obj_description(t.oid, 'pg_trigger')
        from pg_catalog.pg_trigger as t
        where not t.tgisinternal
    """,
    "policy": """
        select p.schemaname || '.' || p.tablename || '.' || p.policyname,
            p.cmd, p.roles::text, p.qual, p.with_check
        from pg_catalog.pg_policies as p
    """,
    "comment": """
        select c.oid::regclass::text, pg_catalog.obj_description(c.oid, 'pg_class')
        from pg_catalog.pg_class as c
        where c.relkind in ('r', 'p') and c.relnamespace::regnamespace::text in ('data', 'auth')
    """,
}


def behaviour(conn: psycopg.Connection) -> dict[str, dict[str, tuple]]:
    """The database's behaviour by kind and name (see BEHAVIOUR): two databases that
    compare equal run the same functions and triggers."""
    return {
        kind: {row[0]: tuple(row[1:]) for row in conn.execute(query).fetchall()}
        for kind, query in BEHAVIOUR.items()
    }


def empty_tables(conn: psycopg.Connection) -> None:
    """Incidents, the event queue and log, the event envelopes, the traffic state and
    the alerts emptied, ids from 1 again, nothing pruned. Locked in the order a stream fetch locks
    them (queue, log, then what it joins), so emptying under a running server's fetch
    cannot deadlock."""
    conn.execute(
        "truncate data.event_queue, data.events, data.event_envelopes, data.incidents"
        " restart identity"
    )
    conn.execute(
        "truncate data.traffic_feeds, data.traffic_sites, data.traffic_decode_history,"
        " data.traffic_recorders, data.traffic_calls"
    )
    conn.execute(
        "truncate data.alert_deliveries, data.alert_messages, data.alert_rule_channels,"
        " data.alert_rules, data.alert_channels, data.alert_users,"
        " data.alert_system_destinations restart identity"
    )
    conn.execute("update data.event_log_state set pruned_through = 0, envelopes_pruned_through = 0")


def drop_database(server_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


def roll_back_to(url: str, keep: str) -> list[str]:
    """Roll back every migration applied after `keep` (yoyo's rollbacks); their ids."""
    from yoyo import get_backend, read_migrations

    backend = get_backend(deploy.yoyo_url(url))
    migrations = read_migrations(str(deploy.MIGRATIONS_DIR))
    with backend.lock():
        newer = [m for m in backend.to_rollback(migrations) if m.id > keep]
        backend.rollback_migrations(migrations.__class__(newer))
    return [m.id for m in newer]
