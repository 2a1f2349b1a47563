"""One route's OpenAPI operation: its parameters (path, query, or a stream's
Last-Event-ID), request body, success response and the error responses it may give.

An optional query parameter may be sent blank: it then counts as absent (web forms
send blank fields).
"""

from __future__ import annotations

from typing import Any

from ..database.route_table import Argument, Route
from .openapi_schema import argument_schema, no_nul

BLANK = {"type": "string", "maxLength": 0}
ALWAYS = ("401", "403", "429", "431", "503", "504")


def _parameter(route: Route, arg: Argument, where: str) -> dict[str, Any]:
    required = where == "path" or arg.required
    schema = argument_schema(route, arg)
    if not required and not arg.is_array:
        schema = {"anyOf": [schema, BLANK]}  # blank counts as absent
    parameter: dict[str, Any] = {
        "name": arg.name,
        "in": where,
        "required": required,
        "schema": schema,
    }
    if arg.is_array:
        parameter.update(style="form", explode=True)
    return parameter


def _body(route: Route) -> dict[str, Any] | None:
    if route.method == "GET":
        return None
    body_arg = route.body_argument
    if body_arg is not None:
        schema = no_nul(route.body_schema) if route.body_schema else {"type": "object"}
        required = body_arg.required
    else:
        fields = [a for a in route.arguments if a.name not in route.path_params]
        if not fields:
            return None
        schema = {
            "type": "object",
            "properties": {a.name: argument_schema(route, a) for a in fields},
            "required": [a.name for a in fields if a.required],
        }
        required = bool(schema["required"])
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _parameters(route: Route) -> list[dict[str, Any]]:
    path = [_parameter(route, route.argument(p), "path") for p in route.path_params]  # type: ignore[arg-type]
    if route.method != "GET":
        return path
    query = [
        _parameter(route, a, "query") for a in route.arguments if a.name not in route.path_params
    ]
    if route.etag:
        query.append({
            "name": "If-None-Match", "in": "header", "required": False,
            "schema": {"type": "string"},
            "description": "An ETag this route gave: 304 while it is still current",
        })  # fmt: skip
    return path + query


def _stream_parameters(route: Route) -> list[dict[str, Any]]:
    """A stream's filters (its function's arguments after after_id and max_events), as
    a GET route's query parameters, then where to resume: a position, or (with a
    position function) any token it knows, e.g. an event's uuid."""
    event_id: dict[str, Any] = {"type": "string", "pattern": "^\\s*[0-9]{1,18}\\s*$"}
    if route.position is not None:
        event_id = {"type": "string", "description": "A position, or an event id (e.g. a uuid)"}
    filters = [_parameter(route, a, "query") for a in route.stream_params]
    return [
        *filters,
        {"name": "Last-Event-ID", "in": "header", "required": False, "schema": event_id},
        {"name": "last_event_id", "in": "query", "required": False, "schema": event_id},
    ]


def _errors(route: Route, has_input: bool) -> dict[str, Any]:
    codes = set(ALWAYS)
    if has_input:
        codes.add("400")
    if route.path_params:
        codes.add("404")
    if route.method != "GET":
        codes.update(("400", "409", "413", "415", "422"))
    return {code: {"$ref": f"#/components/responses/{code}"} for code in sorted(codes)}


def _success(route: Route) -> dict[str, Any]:
    if route.is_stream:
        media = {"text/event-stream": {"schema": {"type": "string"}}}
        return {
            "200": {"description": "Server-Sent Events, until the client leaves", "content": media}
        }
    ok = {"description": "The function's JSON", "content": {"application/json": {"schema": {}}}}
    if route.method == "POST":
        return {"200": ok, "201": {**ok, "description": "Created: the function's JSON"}}
    if route.etag:
        tag = {"ETag": {"description": "The answer's version", "schema": {"type": "string"}}}
        unchanged = "Not modified: If-None-Match names the current version (no body)"
        return {"200": {**ok, "headers": tag}, "304": {"description": unchanged, "headers": tag}}
    return {"200": ok}


def operation(route: Route, op_id: str, security: list[dict[str, list[str]]]) -> dict[str, Any]:
    parameters = _stream_parameters(route) if route.is_stream else _parameters(route)
    body = _body(route)
    summary, _, _ = route.description.partition("\n")
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary or f"{route.schema}.{route.function}",
        "description": route.description,
        "tags": ["stream"] if route.is_stream else [route.template.strip("/").split("/")[-1]],
        "parameters": parameters,
        "responses": {**_success(route), **_errors(route, bool(parameters or body))},
        "security": security,
        "x-sql-function": f"{route.schema}.{route.function}",
    }
    if body is not None:
        op["requestBody"] = body
    return op
