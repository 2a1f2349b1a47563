"""Reading the routes declared in SQL: the catalog query, and the comment lines that
make a function a route, into a RouteTable (app/database/route_table.py).

A function in the API schema becomes a route when its comment has a line
``@http METHOD /path/{param}``; the rest of the comment is its description.
A line ``@sse /path channel=name`` declares a live stream instead: a GET route
served as Server-Sent Events from a stream function (see app/streams/hubs.py); with
``position=schema.function`` a client may also resume from any other token that
function turns into a position (e.g. an event's uuid). A stream function's arguments
after (after_id, max_events) are its query filters, each returned again per row as a
``match_<argument>`` column (app/streams/filters.py).
Nothing here knows any particular route: add one with SQL and a reload NOTIFY.

A GET route's ``@etag schema.function`` names a function of no arguments returning the
version of what the route reads (it must change with every committed change of it, from
any writer): responses then carry an ETag made from it, and a request whose
If-None-Match still names the version is answered 304 without calling the route's
function (app/http/etags.py). It runs before the route's function, in the same
statement: it must not wait on a deploy's locks (read data tables, security definer,
not api views), or the route's function would then be called by the oid the deploy
dropped (api.incidents_version).

Two more lines refine the OpenAPI document (app/http/openapi.py) where a signature says
too little: ``@param name {json schema}`` adds JSON Schema keywords to an argument
(e.g. ``{"minimum": 1, "maximum": 200}`` for what the function enforces), and
``@body {json schema}`` describes the JSON object a json/jsonb body argument takes.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from typing import Any

import psycopg

from .route_table import Argument, Route, RouteTable, compile_template

log = logging.getLogger(__name__)

TAG = re.compile(r"^@http\s+([A-Z]+)\s+(/\S*)\s*$")
SSE_TAG = re.compile(
    r"^@sse\s+(/\S*)\s+channel=([a-z_][a-z0-9_]*)"
    r"(?:\s+position=([a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*))?\s*$"
)
PARAM_TAG = re.compile(r"^@param\s+([a-z_][a-z0-9_]*)\s+(\{.*\})\s*$")
BODY_TAG = re.compile(r"^@body\s+(\{.*\})\s*$")
ETAG_TAG = re.compile(r"^@etag\s+([a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*)\s*$")
# A stream function: (after_id bigint, max_events integer) returning (id, event, data) rows.
STREAM_ARGUMENTS = ("bigint", "integer")
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})

CATALOG_QUERY = """
select
    p.proname::text,
    pg_catalog.obj_description(p.oid, 'pg_proc'),
    p.provolatile::text,
    p.proretset,
    coalesce(p.proargnames[1:p.pronargs], '{}')::text[],
    array(
        select pg_catalog.format_type(t, null)
        from unnest(p.proargtypes) with ordinality as a(t, n) order by n
    ),
    p.pronargdefaults,
    array(
        select a.n
        from unnest(p.proargnames, p.proargmodes) with ordinality as a(n, m, i)
        where a.m = 't'
        order by a.i
    )
from pg_catalog.pg_proc as p
where p.pronamespace = %s::regnamespace
    and p.prokind = 'f'
    and coalesce(array_position(p.proargmodes, 'o'), 0) = 0
    and pg_catalog.obj_description(p.oid, 'pg_proc') ~ '(^|\\n)@(http|sse)\\s'
order by p.proname
"""


class RouteError(ValueError):
    """A route declaration in SQL that cannot be served."""


def parse_routes(schema: str, row: tuple) -> list[Route]:
    """The routes one catalog row declares (a function may declare several)."""
    name, comment, volatility, returns_set, arg_names, arg_types, n_defaults, columns = row
    if len(arg_names) != len(arg_types) or any(not n for n in arg_names):
        raise RouteError(f"{schema}.{name}: every argument of a route function needs a name")
    n_required = len(arg_types) - n_defaults
    arguments = tuple(
        Argument(n, t, i < n_required)
        for i, (n, t) in enumerate(zip(arg_names, arg_types, strict=True))
    )
    lines = comment.splitlines()
    description = "\n".join(line for line in lines if not line.startswith("@")).strip()
    schemas, body_schema = _read_schemas(f"{schema}.{name}", lines, arg_names)
    etags = [m.group(1) for m in map(ETAG_TAG.match, lines) if m]
    routes = []
    for line in lines:
        if line.startswith(("@http", "@sse")):
            method, template, channel, position = _read_tag(f"{schema}.{name}", line.strip())
            route = Route(
                method,
                template.rstrip("/") or "/",
                schema,
                name,
                arguments,
                volatility,
                returns_set,
                description,
                compile_template(template),
                channel,
                position,
                tuple(columns or ()),
                etags[0] if etags else None,
                schemas,
                body_schema,
            )
            _check(route)
            routes.append(route)
    return routes


def _read_tag(function: str, line: str) -> tuple[str, str, str | None, str | None]:
    """(method, path template, stream channel or None, position function or None) from
    one tag line."""
    if line.startswith("@sse"):
        stream = SSE_TAG.match(line)
        if stream:
            return "GET", stream.group(1), stream.group(2), stream.group(3)
    else:
        match = TAG.match(line)
        if match and match.group(1) in METHODS:
            return match.group(1), match.group(2), None, None
    raise RouteError(f"{function}: cannot read route tag {line!r}")


def _read_schemas(
    function: str, lines: list[str], arg_names: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """The @param and @body JSON Schema annotations of a function's comment."""
    schemas: dict[str, dict[str, Any]] = {}
    body: dict[str, Any] | None = None
    for line in (line.strip() for line in lines):
        param, body_tag = PARAM_TAG.match(line), BODY_TAG.match(line)
        if param:
            if param.group(1) not in arg_names:
                raise RouteError(f"{function}: @param {param.group(1)} is not an argument")
            schemas[param.group(1)] = _json_object(function, param.group(2))
        elif body_tag:
            body = _json_object(function, body_tag.group(1))
        elif line.startswith(("@param", "@body")):
            raise RouteError(f"{function}: cannot read {line!r}")
    return schemas, body


def _json_object(function: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise RouteError(f"{function}: annotation is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise RouteError(f"{function}: an annotation must be a JSON object")
    return value


def _check(route: Route) -> None:
    function = f"{route.schema}.{route.function}"
    if route.is_stream:
        types = tuple(a.type for a in route.arguments[:2])
        if types != STREAM_ARGUMENTS or not route.returns_set or route.path_params:
            raise RouteError(
                f"{function}: a stream function takes (after_id bigint, max_events integer),"
                " returns a set of (id, event, data) rows and has no path parameters"
            )
        _check_stream_params(function, route)
        return
    missing = [p for p in route.path_params if route.argument(p) is None]
    if missing:
        raise RouteError(f"{function}: path parameter(s) {missing} are not arguments")
    if route.etag and (route.method != "GET" or route.returns_set):
        raise RouteError(f"{function}: @etag is for GET routes returning one value")


def _check_stream_params(function: str, route: Route) -> None:
    """A stream's filters (its arguments after the first two) are optional, and each is
    returned per row as match_<name>, after (id, event, data), to match live events."""
    required = [a.name for a in route.stream_params if a.required]
    if required:
        raise RouteError(f"{function}: stream filter(s) {required} need a default")
    if not route.stream_params:
        return
    wanted = [f"match_{a.name}" for a in route.stream_params]
    missing = [c for c in wanted if c not in route.columns[3:]]
    if route.columns[:3] != ("id", "event", "data") or missing:
        raise RouteError(
            f"{function}: a stream with filters returns table (id, event, data, "
            f"{', '.join(wanted)}); missing {missing or ['id, event, data first']}"
        )


def from_rows(schema: str, rows: Iterable[tuple]) -> RouteTable:
    """The table the catalog rows declare; a bad declaration is logged and left out."""
    routes: list[Route] = []
    for row in rows:
        try:
            routes.extend(parse_routes(schema, row))
        except RouteError as exc:
            log.error("route not loaded: %s", exc)
    return RouteTable(routes)


async def load(conn: psycopg.AsyncConnection, schema: str) -> RouteTable:
    """Read the route declarations of `schema` from the catalog."""
    cur = await conn.execute(CATALOG_QUERY, (schema,))
    return from_rows(schema, await cur.fetchall())


def load_sync(conn: psycopg.Connection, schema: str) -> RouteTable:
    """The same, for the CLI."""
    return from_rows(schema, conn.execute(CATALOG_QUERY, (schema,)).fetchall())
