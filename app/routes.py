"""The route table: HTTP routes declared in SQL, read from the catalog.

A function in the API schema becomes a route when its comment has a line
``@http METHOD /path/{param}``; the rest of the comment is its description.
A line ``@sse /path channel=name`` declares a live stream instead: a GET route
served as Server-Sent Events from a stream function (see app/streams.py).
Nothing here knows any particular route: add one with SQL and a reload NOTIFY.

Two more lines refine the OpenAPI document (app/openapi.py) where a signature says
too little: ``@param name {json schema}`` adds JSON Schema keywords to an argument
(e.g. ``{"minimum": 1, "maximum": 200}`` for what the function enforces), and
``@body {json schema}`` describes the JSON object a json/jsonb body argument takes.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import psycopg

log = logging.getLogger(__name__)

TAG = re.compile(r"^@http\s+([A-Z]+)\s+(/\S*)\s*$")
SSE_TAG = re.compile(r"^@sse\s+(/\S*)\s+channel=([a-z_][a-z0-9_]*)\s*$")
PARAM_TAG = re.compile(r"^@param\s+([a-z_][a-z0-9_]*)\s+(\{.*\})\s*$")
BODY_TAG = re.compile(r"^@body\s+(\{.*\})\s*$")
# A stream function: (after_id bigint, max_events integer) returning (id, event, data) rows.
STREAM_ARGUMENTS = ("bigint", "integer")
PARAM = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
JSON_TYPES = frozenset({"json", "jsonb"})

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
    p.pronargdefaults
from pg_catalog.pg_proc as p
where p.pronamespace = %s::regnamespace
    and p.prokind = 'f'
    and coalesce(array_position(p.proargmodes, 'o'), 0) = 0
    and pg_catalog.obj_description(p.oid, 'pg_proc') ~ '(^|\\n)@(http|sse)\\s'
order by p.proname
"""


@dataclass(frozen=True)
class Argument:
    """One named argument of a route's function."""

    name: str
    type: str
    required: bool

    @property
    def is_array(self) -> bool:
        return self.type.endswith("[]")

    @property
    def is_json(self) -> bool:
        return self.type in JSON_TYPES


@dataclass(frozen=True)
class Route:
    """One METHOD + path template bound to one SQL function."""

    method: str
    template: str
    schema: str
    function: str
    arguments: tuple[Argument, ...]
    volatility: str
    returns_set: bool
    description: str
    pattern: re.Pattern[str]
    channel: str | None = None  # set for a stream (@sse): the NOTIFY channel of its events
    # Documentation only (@param lines, @body): not part of a route's identity or hash.
    schemas: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, compare=False)
    body_schema: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def is_stream(self) -> bool:
        return self.channel is not None

    @cached_property
    def path_params(self) -> tuple[str, ...]:
        return tuple(PARAM.findall(self.template))

    @property
    def read_only(self) -> bool:
        """GET and non-volatile functions run in a READ ONLY transaction."""
        return self.method == "GET" or self.volatility != "v"

    @cached_property
    def body_argument(self) -> Argument | None:
        """The one json/jsonb argument that receives the whole body, if there is one."""
        candidates = [a for a in self.arguments if a.is_json and a.name not in self.path_params]
        return candidates[0] if len(candidates) == 1 and self.method != "GET" else None

    def argument(self, name: str) -> Argument | None:
        return next((a for a in self.arguments if a.name == name), None)


class RouteError(ValueError):
    """A route declaration in SQL that cannot be served."""


def compile_template(template: str) -> re.Pattern[str]:
    """``/a/{id}`` -> a regex with one named group per path parameter."""
    parts = PARAM.split(template.rstrip("/") or "/")
    regex = "".join(
        f"(?P<{part}>[^/]+)" if i % 2 else re.escape(part) for i, part in enumerate(parts)
    )
    return re.compile(f"^{regex}$")


def parse_routes(schema: str, row: tuple) -> list[Route]:
    """The routes one catalog row declares (a function may declare several)."""
    name, comment, volatility, returns_set, arg_names, arg_types, n_defaults = row
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
    routes = []
    for line in lines:
        if line.startswith(("@http", "@sse")):
            method, template, channel = _read_tag(f"{schema}.{name}", line.strip())
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
                schemas,
                body_schema,
            )
            _check(route)
            routes.append(route)
    return routes


def _read_tag(function: str, line: str) -> tuple[str, str, str | None]:
    """(method, path template, stream channel or None) from one tag line."""
    if line.startswith("@sse"):
        stream = SSE_TAG.match(line)
        if stream:
            return "GET", stream.group(1), stream.group(2)
    else:
        match = TAG.match(line)
        if match and match.group(1) in METHODS:
            return match.group(1), match.group(2), None
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
        return
    missing = [p for p in route.path_params if route.argument(p) is None]
    if missing:
        raise RouteError(f"{function}: path parameter(s) {missing} are not arguments")


@dataclass(frozen=True)
class Match:
    """The route a request resolved to, with its path parameters."""

    route: Route
    path_params: dict[str, str]


class RouteTable:
    """Every declared route; matched against (method, path) per request."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)

    def __len__(self) -> int:
        return len(self.routes)

    def match(self, method: str, path: str) -> Match | None:
        """The route for method + path; None if no route has this path or method."""
        path = path.rstrip("/") or "/"
        method = "GET" if method == "HEAD" else method
        for route in self.routes:
            found = route.pattern.match(path)
            if found and route.method == method:
                return Match(route, found.groupdict())
        return None

    def methods_for(self, path: str) -> list[str]:
        """Methods some route accepts at this path (for 405 and OPTIONS)."""
        path = path.rstrip("/") or "/"
        return sorted({r.method for r in self.routes if r.pattern.match(path)})


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
