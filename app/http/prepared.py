"""Which statements each pooled connection has prepared, and preparing the ones a
request needs that it has not: once per connection, as the request's role, and all
over again past PREPARED_LIMIT. psycopg keeps no such record for statements prepared
by name (app/http/statements.py); app/http/calls.py has a connection's record forgotten when
PostgreSQL says it is stale.
"""

from __future__ import annotations

import weakref

import psycopg

from .statements import Statement

PREPARED_LIMIT = 500  # per connection; past it, DEALLOCATE ALL and start again
AS_ROLE = "select pg_catalog.set_config('role', %(role)s, true)"

# The statements prepared on each connection (psycopg keeps no such record for ours).
PREPARED: weakref.WeakKeyDictionary[psycopg.AsyncConnection, set[str]] = weakref.WeakKeyDictionary()


async def prepare(
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


def forget(conn: psycopg.AsyncConnection) -> None:
    """The record of what conn has prepared is stale (someone ran DEALLOCATE or DISCARD):
    the next request prepares what it needs again."""
    PREPARED.pop(conn, None)
