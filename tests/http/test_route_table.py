"""The route lookup (app/database/route_table.py): grouped by method and path segments,
it answers as a scan of the whole table in declaration order would."""

from __future__ import annotations

import itertools

from app.database.route_table import Route, RouteTable, compile_template

TEMPLATES = [
    ("GET", "/"),
    ("GET", "/a/{x}"),
    ("GET", "/a/b"),
    ("POST", "/a/b"),
    ("GET", "/a/{x}/c"),
    ("GET", "/a/b/{y}"),
    ("DELETE", "/a/{x}"),
]
PATHS = ["/", "/a", "/a/b", "/a/b/", "/a/z", "/a/b/c", "/a/z/c", "//a/b", "/a/b/c/d", "/x"]


def route(method: str, template: str) -> Route:
    return Route(method, template, "api", f"f{abs(hash(template))}", (), "stable", False, "",
                 compile_template(template))  # fmt: skip


def scan(routes: list[Route], method: str, path: str) -> Route | None:
    """What the table answered before it was grouped: the first route that matches."""
    path = path.rstrip("/") or "/"
    method = "GET" if method == "HEAD" else method
    return next((r for r in routes if r.method == method and r.pattern.match(path)), None)


def test_the_lookup_answers_as_the_scan_in_declaration_order():
    routes = [route(m, t) for m, t in TEMPLATES]
    for ordered in (routes, routes[::-1]):
        table = RouteTable(ordered)
        for method, path in itertools.product(("GET", "HEAD", "POST", "DELETE", "PUT"), PATHS):
            found = table.match(method, path)
            assert (found.route if found else None) == scan(ordered, method, path), (method, path)


def test_the_first_declared_wins_and_parameters_are_bound():
    table = RouteTable([route("GET", "/a/{x}"), route("GET", "/a/b")])
    found = table.match("GET", "/a/b")
    assert found is not None
    assert found.route.template == "/a/{x}" and found.path_params == {"x": "b"}
    assert table.match("HEAD", "/a/b/") is not None
    assert table.match("POST", "/a/b") is None
