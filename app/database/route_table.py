"""What a route is (Argument, Route) and the table a request is matched against
(RouteTable, Match). Reading the routes declared in SQL into one is app/database/routes.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

PARAM = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
JSON_TYPES = frozenset({"json", "jsonb"})


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
    position: str | None = None  # a stream's position=schema.function (resume by other ids)
    columns: tuple[str, ...] = ()  # the names of a TABLE function's output columns
    etag: str | None = None  # @etag schema.function: the version its ETags are made from
    # Documentation only (@param lines, @body): not part of a route's identity or hash.
    schemas: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, compare=False)
    body_schema: Mapping[str, Any] | None = field(default=None, compare=False)

    def __hash__(self) -> int:
        return self._hash

    @cached_property
    def _hash(self) -> int:
        """Worked out once: a route keys the statement caches on every request."""
        return hash(tuple(getattr(self, f.name) for f in fields(self) if f.compare))

    @property
    def is_stream(self) -> bool:
        return self.channel is not None

    @property
    def stream_params(self) -> tuple[Argument, ...]:
        """A stream function's arguments after (after_id, max_events): its query filters."""
        return self.arguments[2:] if self.is_stream else ()

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


def compile_template(template: str) -> re.Pattern[str]:
    """``/a/{id}`` -> a regex with one named group per path parameter."""
    parts = PARAM.split(template.rstrip("/") or "/")
    regex = "".join(
        f"(?P<{part}>[^/]+)" if i % 2 else re.escape(part) for i, part in enumerate(parts)
    )
    return re.compile(f"^{regex}$")


def _segments(path: str) -> int:
    return path.rstrip("/").count("/")


@dataclass(frozen=True)
class Match:
    """The route a request resolved to, with its path parameters."""

    route: Route
    path_params: dict[str, str]


class RouteTable:
    """Every declared route; matched against (method, path) per request.

    Built once per reload: the routes grouped by method and by how many segments their
    path has (a parameter is one segment, never a "/"), in declaration order, so a
    request tries only the few routes that could match, and the first that does wins
    as in a scan of the whole table."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        self.candidates: dict[tuple[str, int], tuple[Route, ...]] = {}
        for route in self.routes:
            key = (route.method, _segments(route.template))
            self.candidates[key] = (*self.candidates.get(key, ()), route)

    def __len__(self) -> int:
        return len(self.routes)

    def match(self, method: str, path: str) -> Match | None:
        """The route for method + path; None if no route has this path or method."""
        path = path.rstrip("/") or "/"
        method = "GET" if method == "HEAD" else method
        for route in self.candidates.get((method, _segments(path)), ()):
            found = route.pattern.match(path)
            if found:
                return Match(route, found.groupdict())
        return None

    def methods_for(self, path: str) -> list[str]:
        """Methods some route accepts at this path (for 405 and OPTIONS)."""
        path = path.rstrip("/") or "/"
        return sorted({r.method for r in self.routes if r.pattern.match(path)})
