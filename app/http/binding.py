"""From an HTTP request to a Call: path parameters, query parameters and JSON body keys
bind to the function's named arguments. Bad input is rejected here, before any
database work; casting and defaults are left to PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import falcon
from falcon.asgi import Request

from ..database.route_table import Match, Route
from . import bounds
from .calls import Call
from .errors import ApiError

JSON_MEDIA_TYPES = ("application/json", "application/vnd.api+json", "text/json")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> tuple[Any, str]:
    """(value, text) of a JSON body; 400 naming the problem when it is not JSON."""
    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant), text
    except UnicodeDecodeError as exc:
        raise ApiError(400, "the body is not valid UTF-8", "invalid_body") from exc
    except ValueError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}", "invalid_json") from exc
    except RecursionError as exc:
        raise ApiError(400, "the body is nested too deeply", "invalid_json") from exc


async def read_body(req: Request, limit: int) -> bytes:
    """The request body, at most `limit` bytes (413 beyond)."""
    declared = req.content_length
    if declared is not None and declared > limit:
        raise _too_large(limit)
    raw = await req.stream.read(limit + 1)
    if len(raw) > limit:
        raise _too_large(limit)
    return raw


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the body is larger than {limit} bytes", details={"limit": limit})


def _check_media_type(req: Request) -> None:
    """A body must say it is JSON. Without a Content-Type it is refused too: that is
    what a browser sends for a no-cors fetch of a Blob, which a page of any site may
    make without a CORS preflight."""
    media = (req.content_type or "").split(";")[0].strip().lower()
    if not media:
        raise ApiError(415, "send the body with Content-Type: application/json")
    if media not in JSON_MEDIA_TYPES:
        raise ApiError(415, f"send the body as application/json, not {media}")


def bind_query(route: Route, query: Mapping[str, list[str]], values: dict[str, Any]) -> None:
    """Query parameters naming an argument bind to it; repeated keys fill array arguments.

    Blank values count as absent (forms send them for unset filters); unknown keys are
    ignored, as body keys are.
    """
    for name, given in query.items():
        present = [v for v in given if v != ""]
        arg = route.argument(name)
        if arg is None or not present or name in route.path_params:
            continue
        if arg.is_array:
            values[name] = present
        elif len(present) > 1:
            raise ApiError(
                400, f"{name} may be given only once", "invalid_parameter", {"parameter": name}
            )
        else:
            values[name] = present[0]


def bind_body(route: Route, body: Any, values: dict[str, Any]) -> None:
    """Keys of a JSON object body bind to the arguments of the same name."""
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object", "invalid_body")
    for name, value in body.items():
        if route.argument(name) is not None and name not in route.path_params:
            values[name] = value


def check_required(call: Call) -> None:
    route = call.route
    body_arg = route.body_argument
    for arg in route.arguments:
        if arg.name in call.values or not arg.required:
            continue
        if body_arg is not None and arg.name == body_arg.name:
            if call.body is None:
                raise ApiError(400, "a JSON body is required", "invalid_body")
            continue
        raise ApiError(400, f"{arg.name} is required", "missing_parameter", {"parameter": arg.name})


def check_bounds(call: Call) -> None:
    """The bounds the route declares (@param), before any database work (app/http/bounds.py)."""
    schemas = call.route.schemas
    for name, value in call.values.items():
        schema = schemas.get(name)
        if schema:
            bounds.check(name, value, schema)


async def bind(req: Request, match: Match, max_body_bytes: int) -> Call:
    """The Call for this request, or an ApiError (4xx) describing what is wrong."""
    route = match.route
    call = Call(route, dict(match.path_params))
    query = falcon.uri.parse_query_string(req.query_string, keep_blank=True, csv=False)
    bind_query(route, {k: v if isinstance(v, list) else [v] for k, v in query.items()}, call.values)
    if route.method != "GET":
        raw = await read_body(req, max_body_bytes)
        if raw.strip():
            _check_media_type(req)
            body, text = parse_json(raw)
            if route.body_argument is not None:
                call.body = text
            else:
                bind_body(route, body, call.values)
    check_required(call)
    check_bounds(call)
    return call
