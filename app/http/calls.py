"""Calling a route's function: run a bound call (or a stream's read) in one transaction
on a pooled connection and return what PostgreSQL rendered; which failures are
retried, and which argument a bad value was given for.

Per request, one transaction of two statements (PostgREST's order): set the role and
the request settings with set_config(..., true) (and transaction_read_only for a
read); then the call, which also reads response.status and response.headers after the
function ran. Both go out as one simple-query message, which PostgreSQL runs as one
implicit transaction (committed after the last statement, rolled back whole on an
error): one send, one round trip, no BEGIN/COMMIT. Measured in issue 5 against the
previous BEGIN/set/call/read/COMMIT pipeline (psycopg flushes each pipelined statement
with a send of its own): 0.54 -> 0.30 ms of client CPU per call (docs/performance.md).

The statements' text is app/http/statements.py; which of them each connection has prepared,
app/http/prepared.py.

A little over ~200 lines: the retry policy and the error path (naming the bad
argument) belong with the transaction they wrap.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.pq.abc import PGresult
from psycopg_pool import AsyncConnectionPool

from ..database.route_table import Route
from . import wire
from .errors import ApiError, cannot_cast
from .prepared import forget, prepare
from .statements import CONTEXT, Statement, call_statement, script

T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    """Who is asking, and about what: becomes the transaction's role and settings."""

    role: str
    claims: str  # request.jwt.claims: JSON text (Identity.claims_json)
    headers: str  # request.headers: JSON text
    method: str
    path: str
    base_url: str
    statement_timeout: str | None = None  # the role's (ALTER ROLE ... SET); None: the session's

    def params(self) -> dict[str, str | None]:
        """SET_CONTEXT's values (underscored: a route's statement names its own)."""
        return {
            "_role": self.role,
            "_claims": self.claims,
            "_headers": self.headers,
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
    version: str | None = None  # an @etag route's version the client holds (If-None-Match)

    @property
    def body_argument(self) -> str | None:
        arg = self.route.body_argument
        return arg.name if arg is not None and self.body is not None else None

    def statement(self) -> Statement:
        return call_statement(self.route, tuple(sorted(self.values)), self.body_argument)

    def params(self) -> dict[str, Any]:
        return {"values": json.dumps(self.values), "body": self.body, "version": self.version}


@dataclass(frozen=True)
class Result:
    """What the function answered: JSON text, and the status/headers it asked for; for
    an @etag route, the version read with it (and the function was not called when that
    is the version the client holds: ``not_modified``)."""

    body: bytes  # JSON, as PostgreSQL sent it
    status: str | None
    headers: str | None
    version: str | None = None
    not_modified: bool = False


class ConnectionLost(Exception):
    """The pooled connection died under the request (database restart, killed backend)."""


# A deploy re-created the api schema while the request ran: it reached an object by the
# oid the deploy dropped (an @etag route's version read accepts the deploy's catalog
# changes before the route's function is looked up). Nothing ran: a read is tried again,
# in a new transaction, which sees the new objects.
STALE_OBJECT = ("cache lookup failed for", "could not open relation with OID")


def _stale(exc: psycopg.Error) -> bool:
    return exc.sqlstate == "XX000" and str(exc).startswith(STALE_OBJECT)


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
        result = await _transaction(conn, context, read_only, statement, call.params(), prepared)
        body, status, headers, *version = wire.first_row(result)
        current = wire.text(version[0]) if version else None
        unchanged = current is not None and current == call.version
        return Result(
            body if body is not None else b"null", wire.text(status) or None,
            wire.text(headers) or None, current, unchanged,
        )  # fmt: skip

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
) -> list[wire.Row]:
    """A statement in the same per-request transaction; all its rows, as text. Retried
    once on a lost connection, so it must be safe to run twice (a read, or a publish of
    events)."""

    async def once(conn: psycopg.AsyncConnection) -> list[wire.Row]:
        return wire.rows(await _transaction(conn, context, read_only, statement, params, prepared))

    return await _with_connection(pool, once, True)


async def _with_connection(
    pool: AsyncConnectionPool,
    once: Callable[[psycopg.AsyncConnection], Awaitable[T]],
    retry: bool,
    explain: Callable[[psycopg.AsyncConnection, psycopg.Error], Awaitable[Exception]] | None = None,
) -> T:
    for attempt in (1, 2):
        try:
            # getconn/putconn, not pool.connection(): its context managers (the pool's and
            # the connection's, which commits on the way out) did nothing our one message
            # needs, at a few per cent of a request's Python (issue 18). putconn rolls
            # back or replaces a connection not left idle.
            conn = await pool.getconn()
            try:
                return await once(conn)
            except psycopg.errors.InvalidSqlStatementName:
                # Our record of this connection's statements was stale (someone ran
                # DEALLOCATE or DISCARD): the message failed as a whole, so nothing
                # ran. Forget the record and go again, write or not.
                forget(conn)
                if attempt == 2:
                    raise  # gone again: not our connection's (errors.POOLER_HINT)
                continue
            except psycopg.Error as exc:
                if conn.broken:
                    raise ConnectionLost() from exc
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    with contextlib.suppress(psycopg.Error):
                        await conn.execute("rollback")
                if retry and attempt == 1 and _stale(exc):
                    continue
                raise (await explain(conn, exc) if explain else exc) from None
            finally:
                await pool.putconn(conn)
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
) -> PGresult:
    """The request settings, then the statement: one message, one implicit transaction,
    one round trip (app/http/wire.py). Returns the statement's result."""
    if prepared:
        await prepare(conn, (CONTEXT[read_only], statement), context.role)
    message = script(statement, read_only, prepared).render(
        {**context.params(), **params}, conn.pgconn
    )
    return await wire.run(conn, message)


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
            return cannot_cast(name, cast_error.diag.message_primary, arg_type)
    return exc
