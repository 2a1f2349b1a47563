"""Calling a route's function: bind request values to named arguments, run one
transaction, return the JSON text PostgreSQL rendered.

Per request, one transaction of two statements (PostgREST's order): set the role and
the request settings with set_config(..., true) (and transaction_read_only for a
read); then the call, which also reads response.status and response.headers after the
function ran. Both go out as one simple-query message, which PostgreSQL runs as one
implicit transaction (committed after the last statement, rolled back whole on an
error): one send, one round trip, no BEGIN/COMMIT. Both statements are prepared once
per connection and run by EXECUTE, their values quoted as literals by psycopg's
client-side binding (AsyncClientCursor). Measured in issue 5 against the previous
BEGIN/set/call/read/COMMIT pipeline (psycopg flushes each pipelined statement with a
send of its own): 0.54 -> 0.30 ms of client CPU per call; preparing took PostgreSQL's
CPU per get_by_id from 0.36 to 0.28 ms (README, "Performance").

Behind a pooler in transaction mode (PgBouncer), a connection's prepared statements
are not the next transaction's: PREPARED_STATEMENTS=false sends each statement whole
instead, in the same one message, its values cast to the declared types.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import weakref
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

SET_CONTEXT = (
    "select pg_catalog.set_config('role', $1, true),"
    " pg_catalog.set_config('request.jwt.claims', $2, true),"
    " pg_catalog.set_config('request.headers', $3, true),"
    " pg_catalog.set_config('request.method', $4, true),"
    " pg_catalog.set_config('request.path', $5, true),"
    " pg_catalog.set_config('request.base_url', $6, true),"
    " pg_catalog.set_config('statement_timeout', coalesce($7,"
    " pg_catalog.current_setting('statement_timeout')), true)"
)
# Reads cannot write, whatever the function tries (as BEGIN READ ONLY would).
READ_ONLY = ", pg_catalog.set_config('transaction_read_only', 'on', true)"
# After the function in the same target list: what it set, evaluated after it ran.
RESPONSE_SETTINGS = (
    ", pg_catalog.current_setting('response.status', true),"
    " pg_catalog.current_setting('response.headers', true)"
)
# SET_CONTEXT's values, in order (underscored: a route's statement names its own).
CONTEXT_PARAMS = {
    name: "text"
    for name in (
        "_role",
        "_claims",
        "_headers",
        "_method",
        "_path",
        "_base_url",
        "_statement_timeout",
    )
}
# Quoted names and strings (kept whole), parameters outside them ($1, not a$1), and %.
PARAMETER = re.compile(r'"(?:[^"]|"")*"|\'(?:[^\']|\'\')*\'|(?<![\w$])\$(\d+)(?!\d)|%')


@dataclass(frozen=True)
class Statement:
    """One statement with numbered parameters, in the two ways it may be sent.

    Prepared by name on each pooled connection (PREPARE, once), then run with EXECUTE
    inside the request's message: parsed and planned once per connection instead of
    once per request. Or, where connections are not the app's own (PREPARED_STATEMENTS
    =false), sent inline: each $n replaced by its value as a literal of the declared
    type. Both carry psycopg's named placeholders for the values."""

    name: str
    definition: str  # PREPARE name (types) AS statement
    execute: str  # EXECUTE name(%(a)s, ...)
    inline: str  # the statement, $n written as (%(a)s)::type

    @classmethod
    def of(cls, label: str, statement: str, params: Mapping[str, str]) -> Statement:
        """params: placeholder name -> type, in $n order. Named after what it runs
        (pg_stat_activity shows "execute emberlog_<label>_...", so a DBA still sees
        which function a session is in), and a digest of it."""
        types = ", ".join(params.values())
        digest = hashlib.blake2b(f"{types}|{statement}".encode(), digest_size=8).hexdigest()
        name = f"emberlog_{re.sub(r'[^a-z0-9_]', '', label.lower())[:36]}_{digest}"
        values = [f"%({p})s" for p in params]
        casts = [f"({v})::{t}" for v, t in zip(values, params.values(), strict=True)]
        return cls(
            name,
            f"prepare {name} ({types}) as {statement}",
            f"execute {name}({', '.join(values)})",
            inline(statement, casts),
        )


def inline(statement: str, values: list[str]) -> str:
    """The statement with $n replaced by values[n - 1] and every other % doubled (for
    psycopg's client-side binding); text in quotes is left as it is."""

    def value(match: re.Match[str]) -> str:
        number = match.group(1)
        return values[int(number) - 1] if number else match.group(0).replace("%", "%%")

    return PARAMETER.sub(value, statement)


CONTEXT = {
    read_only: Statement.of(
        "context", SET_CONTEXT + (READ_ONLY if read_only else ""), CONTEXT_PARAMS
    )
    for read_only in (True, False)
}
PREPARED_LIMIT = 500  # per connection; past it, DEALLOCATE ALL and start again
AS_ROLE = "select pg_catalog.set_config('role', %(role)s, true)"


@dataclass(frozen=True)
class Context:
    """Who is asking, and about what: becomes the transaction's role and settings."""

    role: str
    claims: Mapping[str, Any]
    headers: Mapping[str, str]
    method: str
    path: str
    base_url: str
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

    def statement(self) -> Statement:
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
def call_statement(route: Route, names: tuple[str, ...], body_arg: str | None) -> Statement:
    """``select to_json(schema.fn(a => _.a, ...))::text from jsonb_to_record(...) as _(a type)``.

    Only the arguments the request gave are named, so PostgreSQL applies the defaults,
    and it casts every value to the argument's declared type.
    """
    named = [sql.SQL("{0} => _.{0}").format(sql.Identifier(n)) for n in names]
    if body_arg:
        named.append(sql.SQL("{} => $2").format(sql.Identifier(body_arg)))
    invocation = sql.SQL("{}({})").format(
        sql.Identifier(route.schema, route.function), sql.SQL(", ").join(named)
    )
    source = sql.SQL("")
    if names:
        columns = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(route.argument(n).type))
            for n in names
        )
        source = sql.SQL(" from pg_catalog.jsonb_to_record($1) as _({})").format(columns)
    if route.returns_set:
        join = sql.SQL(", lateral ") if names else sql.SQL(" from ")
        statement = sql.SQL(
            "select coalesce(pg_catalog.json_agg(_r), '[]')::text{}{}{}{} as _r"
        ).format(sql.SQL(RESPONSE_SETTINGS), source, join, invocation)
    else:
        statement = sql.SQL("select pg_catalog.to_json({})::text{}{}").format(
            invocation, sql.SQL(RESPONSE_SETTINGS), source
        )
    # Rendered once: names quoted the standard way. $1: the values, $2: the body.
    return Statement.of(
        route.function, statement.as_string(None), {"values": "jsonb", "body": "jsonb"}
    )


@lru_cache(maxsize=64)
def stream_statement(route: Route) -> Statement:
    """``select id, event, data::text from schema.fn(after_id, max_events)``."""
    statement = sql.SQL("select id, event, data::text from {}($1, $2)").format(
        sql.Identifier(route.schema, route.function)
    )
    return Statement.of(
        route.function, statement.as_string(None), {"after_id": "bigint", "limit": "integer"}
    )


@lru_cache(maxsize=2048)
def script(statement: Statement, read_only: bool, prepared: bool = True) -> str:
    """The whole transaction around one statement, as one simple-query message."""
    if prepared:
        return f"{CONTEXT[read_only].execute};\n{statement.execute}"
    return f"{CONTEXT[read_only].inline};\n{statement.inline}"


class ConnectionLost(Exception):
    """The pooled connection died under the request (database restart, killed backend)."""


async def execute(
    pool: AsyncConnectionPool, call: Call, context: Context, prepared: bool = True
) -> Result:
    """Run the call in one transaction on a pooled connection (prepared: see Statement).

    A read-only call whose connection turns out dead (e.g. after a database restart) is
    retried once, after the pool has dropped its other dead connections. A write is not:
    it may have committed, and the client decides (Calypso's retries are idempotent).
    """

    async def once(conn: psycopg.AsyncConnection) -> Result:
        statement = call.statement()
        read_only = call.route.read_only
        cursor = await _transaction(conn, context, read_only, statement, call.params(), prepared)
        body, status, headers = await cursor.fetchone()  # type: ignore[misc]
        return Result(body if body is not None else "null", status or None, headers or None)

    async def explain(conn: psycopg.AsyncConnection, exc: psycopg.Error) -> Exception:
        return await _name_bad_argument(conn, call, exc)

    return await _with_connection(pool, once, call.route.read_only, explain)


async def read_rows(
    pool: AsyncConnectionPool,
    statement: Statement,
    params: dict[str, Any],
    context: Context,
    read_only: bool = True,
    prepared: bool = True,
) -> list[tuple[Any, ...]]:
    """A statement in the same per-request transaction; all its rows. Retried once on a
    lost connection, so it must be safe to run twice (a read, or a publish of events)."""

    async def once(conn: psycopg.AsyncConnection) -> list[tuple[Any, ...]]:
        cursor = await _transaction(conn, context, read_only, statement, params, prepared)
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
                except psycopg.errors.InvalidSqlStatementName:
                    # Our record of this connection's statements was stale (someone ran
                    # DEALLOCATE or DISCARD): the message failed as a whole, so nothing
                    # ran. Forget the record and go again, write or not.
                    PREPARED.pop(conn, None)
                    if attempt == 2:
                        raise  # gone again: not our connection's (errors.POOLER_HINT)
                    continue
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
    statement: Statement,
    params: dict[str, Any],
    prepared: bool,
) -> psycopg.AsyncClientCursor[Any]:
    """The request settings, then the statement: one message, one implicit transaction,
    one round trip. Returns the cursor on the statement's result."""
    if prepared:
        await _prepare(conn, (CONTEXT[read_only], statement), context.role)
    cursor = psycopg.AsyncClientCursor(conn)
    sent = script(statement, read_only, prepared)
    await cursor.execute(sent, {**context.params(), **params})
    cursor.nextset()
    return cursor


# The statements prepared on each connection (psycopg keeps no such record for ours).
PREPARED: weakref.WeakKeyDictionary[psycopg.AsyncConnection, set[str]] = weakref.WeakKeyDictionary()


async def _prepare(
    conn: psycopg.AsyncConnection, statements: tuple[Statement, ...], role: str
) -> None:
    """PREPARE what this connection has not prepared yet: a round trip, once. As the
    request's role, which may look names up in api (the authenticator may not)."""
    known = PREPARED.setdefault(conn, set())
    missing = [s for s in statements if s.name not in known]
    if missing and len(known) + len(missing) > PREPARED_LIMIT:
        # e.g. many reloads that changed signatures. All at once, before preparing, so
        # nothing this request runs is deallocated under it.
        await conn.execute("deallocate all", prepare=False)
        known.clear()
        missing = list(statements)
    for statement in missing:
        cursor = psycopg.AsyncClientCursor(conn)
        definition = statement.definition.replace("%", "%%")
        await cursor.execute(f"{AS_ROLE};\n{definition}", {"role": role})
        known.add(statement.name)


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
