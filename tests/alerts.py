"""Alert test helpers: acting as a user in SQL (a token's sub, as the API's sessions
carry it), channels, rules and incidents."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

_audio = itertools.count(1)


@contextlib.contextmanager
def as_user(conn: psycopg.Connection, sub: str) -> Iterator[psycopg.Connection]:
    """The owner's session switched to emberlog_user with a token whose sub is `sub`, as
    the API runs a signed-in request (a superuser session counts as the API's)."""
    conn.execute("set role emberlog_user")
    conn.execute("select set_config('request.jwt.claims', %s, false)", (json.dumps({"sub": sub}),))
    try:
        yield conn
    finally:
        conn.execute("reset role")
        conn.execute("reset request.jwt.claims")


@contextlib.contextmanager
def switched(conn: psycopg.Connection, role: str | None) -> Iterator[psycopg.Connection]:
    """The session as `role` (None: the login itself) for a while, then as it was."""
    row = conn.execute("select current_user::text").fetchone()
    assert row is not None
    conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)) if role else "reset role")
    try:
        yield conn
    finally:
        conn.execute(sql.SQL("set role {}").format(sql.Identifier(row[0])))


def call(conn: psycopg.Connection, function: str, *args: Any) -> Any:
    """select api.<function>(args...) -> its (JSON) value."""
    marks = ", ".join(["%s"] * len(args))
    row = conn.execute(f"select api.{function}({marks})", args).fetchone()
    assert row is not None
    return row[0]


def channel(conn: psycopg.Connection, url: str = "https://hooks.example/a", **fields: Any) -> dict:
    return call(conn, "create_alert_channel", json.dumps({"name": "hook", "url": url, **fields}))


def rule(conn: psycopg.Connection, channels: list[int], **fields: Any) -> dict:
    body = {"name": "rule", "alert_channel_ids": channels, **fields}
    return call(conn, "create_alert_rule", json.dumps(body))


def incident(conn: psycopg.Connection, **fields: Any) -> int:
    """A new incident (as the owner, like an ingest), its id."""
    body = {
        "dispatched_at": "2026-11-30T10:00:00Z",
        "source_audio": f"alerts-{next(_audio)}.mp3",
        **fields,
    }
    with switched(conn, None):
        return call(conn, "create_incident", json.dumps(body))["id"]


def deliveries(conn: psycopg.Connection) -> list[tuple]:
    """(incident_id, rule_id, channel_id, status) of every delivery, as the owner sees them."""
    with switched(conn, None):
        return conn.execute(
            "select incident_id, rule_id, channel_id, status from data.alert_deliveries"
            " where kind = 'rule' order by incident_id, rule_id, channel_id"
        ).fetchall()
