"""A stream's filters: its function's arguments after (after_id, max_events), bound from
the query string as an HTTP route's arguments are, and matched against live events.

The stream function applies the filters itself when it replays (they are its named
arguments). Live events come from the hub's one unfiltered fetch, so each row also
carries, after (id, event, data), one ``match_<filter>`` column per filter, kept with its
frame; a client with filters takes only frames whose values match what it gave: equal
for a scalar filter, one of the values for an array filter (a repeated key), a null
value never matching a given filter, AND across filters, no filter given: everything.
Nothing here knows any particular stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import falcon
import psycopg
from falcon.asgi import Request
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from ..database.route_table import Route
from ..http.binding import bind_query, check_bounds
from ..http.calls import Call
from ..http.errors import ApiError, cannot_cast

# Values of these types are compared as given: nothing to cast (no round trip).
AS_GIVEN = frozenset({"text", "text[]", "character varying", "character varying[]"})


class Wants:
    """Which frames a filtered client takes: (column index, accepted values) pairs."""

    __slots__ = ("tests",)

    def __init__(self, tests: tuple[tuple[int, frozenset[str]], ...]) -> None:
        self.tests = tests

    def __call__(self, matches: Sequence[str | None] | None) -> bool:
        if matches is None:
            return False
        return all(matches[i] in accepted for i, accepted in self.tests)


def bind(route: Route, req: Request) -> dict[str, Any]:
    """The filters the query string gives (last_event_id and unknown keys ignored),
    checked against the route's @param bounds; 400 before anything else happens."""
    names = {a.name for a in route.stream_params}
    if not names:
        return {}
    query = falcon.uri.parse_query_string(req.query_string, keep_blank=True, csv=False)
    values: dict[str, Any] = {}
    given = {k: v if isinstance(v, list) else [v] for k, v in query.items() if k in names}
    bind_query(route, given, values)
    for name, value in values.items():
        if any("\x00" in v for v in (value if isinstance(value, list) else [value])):
            raise ApiError(
                400, f"{name} must not contain NUL", "invalid_parameter", {"parameter": name}
            )
    check_bounds(Call(route, values))
    return values


async def canonical(
    pool: AsyncConnectionPool, route: Route, values: Mapping[str, Any]
) -> dict[str, Any]:
    """The values as the match columns spell them (``::text`` of the argument's type),
    a 400 naming the first one PostgreSQL cannot cast. Text needs no round trip."""
    result = dict(values)
    for arg in route.stream_params:
        if arg.name not in values or arg.type in AS_GIVEN:
            continue
        cast = sql.SQL("select (%s::{})::text{}").format(
            sql.SQL(arg.type), sql.SQL("[]" if arg.is_array else "")
        )
        try:
            async with pool.connection() as conn:
                row = await (await conn.execute(cast, (values[arg.name],))).fetchone()
        except psycopg.DataError as exc:
            raise cannot_cast(arg.name, exc.diag.message_primary, arg.type) from None
        assert row is not None
        result[arg.name] = row[0]
    return result


def wants(route: Route, values: Mapping[str, Any]) -> Wants | None:
    """The matcher for these (canonical) values; None when no filter was given."""
    tests = []
    for index, arg in enumerate(route.stream_params):
        if arg.name in values:
            value = values[arg.name]
            accepted = value if isinstance(value, list) else [value]
            tests.append((index, frozenset(accepted)))
    return Wants(tuple(tests)) if tests else None
