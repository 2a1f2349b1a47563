"""Calling a route's function: bind request values to named arguments, run one
transaction, return the JSON text PostgreSQL rendered.

Per request (PostgREST's order): BEGIN [READ ONLY]; set the role and the request
settings with set_config(..., true); one statement; read response.status and
response.headers; COMMIT. All of it goes out in one pipeline: one round trip.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from .errors import ApiError
from .routes import Route

T = TypeVar("T")
log = logging.getLogger(__name__)

SET_CONTEXT = (
    "select pg_catalog.set_config('role', %s, true),"
    " pg_catalog.set_config('request.jwt.claims', %s, true),"
    " pg_catalog.set_config('request.headers', %s, true),"
    " pg_catalog.set_config('request.method', %s, true),"
    " pg_catalog.set_config('request.path', %s, true),"
    " pg_catalog.set_config('request.base_url', %s, true),"
    " pg_catalog.set_config('emberlog.audio_base_url', coalesce(%s,"
    " pg_catalog.current_setting('emberlog.audio_base_url', true), ''), true),"
    " pg_catalog.set_config('statement_timeout', coalesce(%s,"
    " pg_catalog.current_setting('statement_timeout')), true)"
)
READ_RESPONSE = (
    "select pg_catalog.current_setting('response.status', true),"
    " pg_catalog.current_setting('response.headers', true)"
)


@dataclass(frozen=True)
class Context:
    """Who is asking, and about what: becomes the transaction's role and settings."""

    role: str
    claims: Mapping[str, Any]
    headers: Mapping[str, str]
    method: str
    path: str
    base_url: str
    audio_base_url: str | None = None  # AUDIO_BASE_URL; None keeps the database's setting
    statement_timeout: str | None = None  # the role's (ALTER ROLE ... SET); None: the session's

    def params(self) -> tuple[str | None, ...]:
        return (
            self.role,
            json.dumps(self.claims),
            json.dumps(self.headers),
            self.method,
            self.path,
            self.base_url,
            self.audio_base_url,
            self.statement_timeout,
        )


@dataclass
class Call:
    """A route with its arguments bound: named values, and maybe a whole JSON body."""

    route: Route
    values: dict[str, Any] = field(default_factory=dict)
    body: str | None = None

    @property
    def body_argument(self) -> str | None:
        arg = self.route.body_argument
        return arg.name if arg is not None and self.body is not None else None

    def statement(self) -> sql.Composed:
        return call_statement(self.route, tuple(sorted(self.values)), self.body_argument)

    def params(self) -> dict[str, Any]:
        return {"values": json.dumps(self.values), "body": self.body}


@dataclass(frozen=True)
class Result:
    """What the function answered: JSON text, and the status/headers it asked for."""

    body: str
    status: str | None
    headers: str | None


@lru_cache(maxsize=1024)
def call_statement(route: Route, names: tuple[str, ...], body_arg: str | None) -> sql.Composed:
    """``select to_json(schema.fn(a => _.a, ...))::text from jsonb_to_record(...) as _(a type)``.

    Only the arguments the request gave are named, so PostgreSQL applies the defaults,
    and it casts every value to the argument's declared type.
    """
    named = [sql.SQL("{0} => _.{0}").format(sql.Identifier(n)) for n in names]
    if body_arg:
        named.append(sql.SQL("{} => %(body)s::jsonb").format(sql.Identifier(body_arg)))
    invocation = sql.SQL("{}({})").format(
        sql.Identifier(route.schema, route.function), sql.SQL(", ").join(named)
    )
    source = sql.SQL("")
    if names:
        columns = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(route.argument(n).type))
            for n in names
        )
        source = sql.SQL(" from pg_catalog.jsonb_to_record(%(values)s::jsonb) as _({})").format(
            columns
        )
    if route.returns_set:
        join = sql.SQL(", lateral ") if names else sql.SQL(" from ")
        return sql.SQL("select coalesce(pg_catalog.json_agg(_r), '[]')::text{}{}{} as _r").format(
            source, join, invocation
        )
    return sql.SQL("select pg_catalog.to_json({})::text{}").format(invocation, source)


@lru_cache(maxsize=64)
def stream_statement(route: Route) -> sql.Composed:
    """``select id, event, data::text from schema.fn(after_id, max_events)``."""
    return sql.SQL("select id, event, data::text from {}(%s, %s)").format(
        sql.Identifier(route.schema, route.function)
    )


class ConnectionLost(Exception):
    """The pooled connection died under the request (database restart, killed backend)."""


async def execute(pool: AsyncConnectionPool, call: Call, context: Context) -> Result:
    """Run the call in one transaction on a pooled connection.

    A read-only call whose connection turns out dead (e.g. after a database restart) is
    retried once, after the pool has dropped its other dead connections. A write is not:
    it may have committed, and the client decides (Calypso's retries are idempotent).
    """

    async def once(conn: psycopg.AsyncConnection) -> Result:
        answer, response = await _transaction(
            conn, context, call.route.read_only, call.statement(), call.params()
        )
        (body,) = await answer.fetchone()  # type: ignore[misc]
        status, headers = await response.fetchone()  # type: ignore[misc]
        return Result(body if body is not None else "null", status or None, headers or None)

    async def explain(conn: psycopg.AsyncConnection, exc: psycopg.Error) -> Exception:
        return await _name_bad_argument(conn, call, exc)

    return await _with_connection(pool, once, call.route.read_only, explain)


async def read_rows(
    pool: AsyncConnectionPool, statement: sql.Composable, params: Any, context: Context
) -> list[tuple[Any, ...]]:
    """A read-only statement in the same per-request transaction; all its rows."""

    async def once(conn: psycopg.AsyncConnection) -> list[tuple[Any, ...]]:
        answer, _ = await _transaction(conn, context, True, statement, params)
        return await answer.fetchall()

    return await _with_connection(pool, once, True)


async def _with_connection(
    pool: AsyncConnectionPool,
    once: Callable[[psycopg.AsyncConnection], Awaitable[T]],
    retry: bool,
    explain: Callable[[psycopg.AsyncConnection, psycopg.Error], Awaitable[Exception]] | None = None,
) -> T:
    for attempt in (1, 2):
        try:
            async with pool.connection() as conn:
                try:
                    return await once(conn)
                except psycopg.errors.InvalidSqlStatementName as exc:
                    # psycopg took a statement for prepared that an aborted pipeline never
                    # prepared (SET_CONTEXT failed under it). Nothing ran: drop the
                    # connection and go again, write or not.
                    await conn.close()
                    if attempt == 2:
                        raise
                    log.warning("dropped a connection with stale prepared statements (%s)", exc)
                    continue
                except psycopg.Error as exc:
                    if conn.broken:
                        raise ConnectionLost() from exc
                    with contextlib.suppress(psycopg.Error):
                        await conn.execute("rollback")
                    raise (await explain(conn, exc) if explain else exc) from None
        except ConnectionLost as lost:
            if attempt == 2 or not retry:
                raise lost.__cause__ from None  # type: ignore[misc]
            await pool.check()
    raise AssertionError("unreachable")


async def _transaction(
    conn: psycopg.AsyncConnection,
    context: Context,
    read_only: bool,
    statement: sql.Composable,
    params: Any,
) -> tuple[psycopg.AsyncCursor[Any], psycopg.AsyncCursor[Any]]:
    """BEGIN, the request settings, the statement, the response settings, COMMIT:
    one pipeline, one round trip. Returns the statement's and the response's cursors."""
    begin = "begin isolation level read committed read only" if read_only else "begin"
    async with conn.pipeline():
        await conn.execute(begin, prepare=False)
        await conn.execute(SET_CONTEXT, context.params())
        answer = await conn.execute(statement, params)
        # Never prepared: when the statement fails these are skipped, and psycopg would
        # take a statement it chose to prepare here for prepared (it was not).
        response = await conn.execute(READ_RESPONSE, prepare=False)
        await conn.execute("commit", prepare=False)
    return answer, response


async def _name_bad_argument(
    conn: psycopg.AsyncConnection, call: Call, exc: psycopg.Error
) -> psycopg.Error | ApiError:
    """After a data exception, find which argument PostgreSQL could not cast.

    Only on the error path: cast each bound value alone, report the first that fails.
    """
    if not (exc.sqlstate or "").startswith("22"):
        return exc
    for name, value in sorted(call.values.items()):
        arg_type = call.route.argument(name).type
        probe = sql.SQL("select from pg_catalog.jsonb_to_record(%s::jsonb) as _(v {})").format(
            sql.SQL(arg_type)
        )
        try:
            await conn.execute(probe, (json.dumps({"v": value}),))
        except psycopg.Error as cast_error:
            message = cast_error.diag.message_primary or "invalid value"
            return ApiError(
                400,
                f"{name}: {message}",
                "invalid_parameter",
                {"parameter": name, "expected": arg_type},
            )
    return exc
