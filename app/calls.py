"""Calling a route's function: bind request values to named arguments, run one
transaction, return the JSON text PostgreSQL rendered.

Per request, one transaction of two statements (PostgREST's order): set the role and
the request settings with set_config(..., true) (and transaction_read_only for a
read); then the call, which also reads response.status and response.headers after the
function ran. Both go out as one simple-query message, which PostgreSQL runs as one
implicit transaction (committed after the last statement, rolled back whole on an
error): one send, one round trip, no BEGIN/COMMIT. Values are quoted as literals by
psycopg's client-side binding (AsyncClientCursor). Measured in issue 5 against the
previous BEGIN/set/call/read/COMMIT pipeline (psycopg flushes each pipelined statement
with a send of its own): about half the client CPU and half the server CPU per call
(README, "Performance").
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
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from .errors import ApiError
from .routes import Route

T = TypeVar("T")
log = logging.getLogger(__name__)

SET_CONTEXT = (
    "select pg_catalog.set_config('role', %(_role)s, true),"
    " pg_catalog.set_config('request.jwt.claims', %(_claims)s, true),"
    " pg_catalog.set_config('request.headers', %(_headers)s, true),"
    " pg_catalog.set_config('request.method', %(_method)s, true),"
    " pg_catalog.set_config('request.path', %(_path)s, true),"
    " pg_catalog.set_config('request.base_url', %(_base_url)s, true),"
    " pg_catalog.set_config('emberlog.audio_base_url', coalesce(%(_audio_base_url)s::text,"
    " pg_catalog.current_setting('emberlog.audio_base_url', true), ''), true),"
    " pg_catalog.set_config('statement_timeout', coalesce(%(_statement_timeout)s::text,"
    " pg_catalog.current_setting('statement_timeout')), true)"
)
# Reads cannot write, whatever the function tries (as BEGIN READ ONLY would).
READ_ONLY = ", pg_catalog.set_config('transaction_read_only', 'on', true)"
# After the function in the same target list: what it set, evaluated after it ran.
RESPONSE_SETTINGS = (
    ", pg_catalog.current_setting('response.status', true),"
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

    def params(self) -> dict[str, str | None]:
        """SET_CONTEXT's values (underscored: a route's statement names its own)."""
        return {
            "_role": self.role,
            "_claims": json.dumps(self.claims),
            "_headers": json.dumps(self.headers),
            "_method": self.method,
            "_path": self.path,
            "_base_url": self.base_url,
            "_audio_base_url": self.audio_base_url,
            "_statement_timeout": self.statement_timeout,
        }


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

    def statement(self) -> str:
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
def call_statement(route: Route, names: tuple[str, ...], body_arg: str | None) -> str:
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
        statement = sql.SQL(
            "select coalesce(pg_catalog.json_agg(_r), '[]')::text{}{}{}{} as _r"
        ).format(sql.SQL(RESPONSE_SETTINGS), source, join, invocation)
    else:
        statement = sql.SQL("select pg_catalog.to_json({})::text{}{}").format(
            invocation, sql.SQL(RESPONSE_SETTINGS), source
        )
    return statement.as_string(None)  # rendered once: names are quoted the standard way


@lru_cache(maxsize=64)
def stream_statement(route: Route) -> str:
    """``select id, event, data::text from schema.fn(after_id, max_events)``."""
    return (
        sql.SQL("select id, event, data::text from {}(%(after_id)s::bigint, %(limit)s::integer)")
        .format(sql.Identifier(route.schema, route.function))
        .as_string(None)
    )


@lru_cache(maxsize=2048)
def script(statement: str, read_only: bool) -> str:
    """The whole transaction around one statement, as one simple-query message."""
    return f"{SET_CONTEXT}{READ_ONLY if read_only else ''};\n{statement}"


class ConnectionLost(Exception):
    """The pooled connection died under the request (database restart, killed backend)."""


async def execute(pool: AsyncConnectionPool, call: Call, context: Context) -> Result:
    """Run the call in one transaction on a pooled connection.

    A read-only call whose connection turns out dead (e.g. after a database restart) is
    retried once, after the pool has dropped its other dead connections. A write is not:
    it may have committed, and the client decides (Calypso's retries are idempotent).
    """

    async def once(conn: psycopg.AsyncConnection) -> Result:
        cursor = await _transaction(
            conn, context, call.route.read_only, call.statement(), call.params()
        )
        body, status, headers = await cursor.fetchone()  # type: ignore[misc]
        return Result(body if body is not None else "null", status or None, headers or None)

    async def explain(conn: psycopg.AsyncConnection, exc: psycopg.Error) -> Exception:
        return await _name_bad_argument(conn, call, exc)

    return await _with_connection(pool, once, call.route.read_only, explain)


async def read_rows(
    pool: AsyncConnectionPool, statement: str, params: dict[str, Any], context: Context
) -> list[tuple[Any, ...]]:
    """A read-only statement in the same per-request transaction; all its rows."""

    async def once(conn: psycopg.AsyncConnection) -> list[tuple[Any, ...]]:
        cursor = await _transaction(conn, context, True, statement, params)
        return await cursor.fetchall()

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
                except psycopg.Error as exc:
                    if conn.broken:
                        raise ConnectionLost() from exc
                    if conn.info.transaction_status != TransactionStatus.IDLE:
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
    statement: str,
    params: dict[str, Any],
) -> psycopg.AsyncClientCursor[Any]:
    """The request settings, then the statement: one message, one implicit transaction,
    one round trip. Returns the cursor on the statement's result."""
    cursor = psycopg.AsyncClientCursor(conn)
    await cursor.execute(script(statement, read_only), {**context.params(), **params})
    cursor.nextset()
    return cursor


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
