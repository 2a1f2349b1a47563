"""GET /openapi.json: an OpenAPI 3.1 document generated from the route table.

Everything comes from SQL: paths and methods from the @http/@sse tags, parameters
and their JSON Schema from the function's argument names, types and defaults
(refined by @param and @body annotations), descriptions from the comment, and who
may call an operation from the grants (anonymous access is offered only where the
anonymous role may execute the function). The error responses are the one JSON
shape of app/errors.py. Health and metrics routes are the platform's, not the
API's, and are not described.

PostgreSQL sets a few limits JSON Schema must spell out: no text (and no JSON string
or key) may hold U+0000, so every plain string says so with a pattern and any JSON is
a JsonValue; a timestamp's offset is at most 15:59 either way. An optional query
parameter may be sent blank: it then counts as absent (web forms send blank fields).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

from .bounds import terms_pattern
from .routes import Argument, Route, RouteTable
from .settings import Settings

NO_NUL = "^[^\\u0000]*$"
JSON_VALUE = {"$ref": "#/components/schemas/JsonValue"}
# PostgreSQL takes UTC offsets up to 15:59 either way; RFC 3339 allows up to 23:59.
PG_OFFSET = "([Zz]|[+-](0[0-9]|1[0-5]):[0-5][0-9])$"
BLANK = {"type": "string", "maxLength": 0}
INTEGERS = {
    "smallint": (-(2**15), 2**15 - 1, "int32"),
    "integer": (-(2**31), 2**31 - 1, "int32"),
    "bigint": (-(2**63), 2**63 - 1, "int64"),
}
NUMBERS = frozenset({"numeric", "real", "double precision"})
FORMATS = {
    "date": "date",
    "uuid": "uuid",
}
TIMESTAMP = {"type": "string", "format": "date-time", "pattern": PG_OFFSET}
TIMESTAMPS = frozenset({"timestamp with time zone", "timestamp without time zone"})
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "stable, machine-readable"},
                "message": {"type": "string", "description": "for people"},
                "details": {"type": "object"},
            },
        }
    },
}
ERRORS = {
    "400": "Bad input: a parameter or the body is not what the function takes",
    "401": "No credentials, or credentials that are not valid",
    "403": "The caller's role may not do this",
    "404": "No such resource",
    "409": "Conflicts with what is stored",
    "413": "The body is too large",
    "415": "The body is not JSON",
    "422": "A field of the body has the wrong type or value",
    "429": "Too many requests: retry after Retry-After seconds",
    "431": "The request's headers are too large",
    "503": "The database is unavailable: retry shortly",
    "504": "The database did not answer in time",
}
ALWAYS = ("401", "403", "429", "431", "503", "504")
REQUIRED_HEADERS = {"401": "WWW-Authenticate", "429": "Retry-After"}


def type_schema(pg_type: str) -> dict[str, Any]:
    """JSON Schema for a value of a PostgreSQL type, as it arrives in a request."""
    if pg_type.endswith("[]"):
        return {"type": "array", "items": type_schema(pg_type[:-2])}
    if pg_type in INTEGERS:
        low, high, fmt = INTEGERS[pg_type]
        return {"type": "integer", "format": fmt, "minimum": low, "maximum": high}
    if pg_type in NUMBERS:
        return {"type": "number"}
    if pg_type == "boolean":
        return {"type": "boolean"}
    if pg_type in ("json", "jsonb"):
        return dict(JSON_VALUE)
    if pg_type in TIMESTAMPS:
        return dict(TIMESTAMP)
    if pg_type in FORMATS:
        return {"type": "string", "format": FORMATS[pg_type]}
    return {"type": "string", "pattern": NO_NUL}


SCHEMA_KEYWORDS = frozenset({"items", "additionalProperties", "not", "propertyNames", "contains"})
SCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs"})


def _subschemas(keyword: str, value: Any) -> Any:
    """A keyword's value, with _no_nul applied where it holds schemas."""
    if keyword in SCHEMA_KEYWORDS and isinstance(value, dict):
        return _no_nul(value)
    if keyword in SCHEMA_LISTS and isinstance(value, list):
        return [_no_nul(v) for v in value]
    if keyword in SCHEMA_MAPS and isinstance(value, dict):
        return {name: _no_nul(v) for name, v in value.items()}
    return value


def _no_nul(schema: Any) -> Any:
    """A DBA's schema with PostgreSQL's limits added (recursively): no NUL in a plain
    string, date-time offsets PostgreSQL takes, and any further keys of an object (or
    an empty schema) a JsonValue."""
    if not isinstance(schema, dict):
        return schema
    if not schema:
        return dict(JSON_VALUE)
    out = {k: _subschemas(k, v) for k, v in schema.items()}
    kinds = out.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "string" in kinds and "pattern" not in out:
        if isinstance(out.get("x-max-terms"), int):
            out["pattern"] = terms_pattern(out["x-max-terms"])
        elif out.get("format") == "date-time":
            out["pattern"] = PG_OFFSET
        elif "format" not in out:
            out["pattern"] = NO_NUL
    if "object" in kinds:
        out.setdefault("propertyNames", {"pattern": NO_NUL})
        out.setdefault("additionalProperties", dict(JSON_VALUE))
    return out


def argument_schema(route: Route, arg: Argument) -> dict[str, Any]:
    return _no_nul({**type_schema(arg.type), **route.schemas.get(arg.name, {})})


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
        schema = _no_nul(route.body_schema) if route.body_schema else {"type": "object"}
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
    return path + query


def _stream_parameters() -> list[dict[str, Any]]:
    event_id = {"type": "string", "pattern": "^\\s*[0-9]{1,18}\\s*$"}
    return [
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
    return {"200": ok}


def operation(route: Route, op_id: str, security: list[dict[str, list[str]]]) -> dict[str, Any]:
    parameters = _stream_parameters() if route.is_stream else _parameters(route)
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


def security_schemes(settings: Settings, jwt: bool) -> dict[str, Any]:
    schemes: dict[str, Any] = {
        "ApiKey": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "A key issued with auth.create_api_key or `emberlog-api keys create`",
        }
    }
    if jwt:
        schemes["Bearer"] = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        schemes["Cookie"] = {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.jwt_cookie,
            "description": "The same JWT in an HttpOnly cookie; GET and HEAD only (EventSource)",
        }
    return schemes


def _security(route: Route, schemes: Iterable[str], anonymous: bool) -> list[dict[str, list[str]]]:
    usable = [s for s in schemes if s != "Cookie" or route.method == "GET"]
    return ([{}] if anonymous else []) + [{s: []} for s in usable]


def document(
    table: RouteTable, settings: Settings, anonymous: Mapping[str, bool], jwt: bool
) -> dict[str, Any]:
    """The OpenAPI document; anonymous maps "schema.function" to whether the anonymous
    role may execute it."""
    schemes = security_schemes(settings, jwt)
    paths: dict[str, dict[str, Any]] = {}
    seen: dict[str, int] = {}
    for route in table.routes:
        name = route.function
        seen[name] = seen.get(name, 0) + 1
        op_id = name if seen[name] == 1 else f"{name}_{seen[name]}"
        may = settings.anonymous_reads and anonymous.get(f"{route.schema}.{route.function}", False)
        security = _security(route, schemes, may)
        paths.setdefault(route.template, {})[route.method.lower()] = operation(
            route, op_id, security
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Emberlog API",
            "version": _version(),
            "description": _description(settings),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": {"Error": copy.deepcopy(ERROR_SCHEMA), "JsonValue": _json_value()},
            "responses": {code: _error_response(code, text) for code, text in ERRORS.items()},
            "securitySchemes": schemes,
        },
    }


def _json_value() -> dict[str, Any]:
    return {
        "description": "Any JSON value; no string or key may hold U+0000 (jsonb cannot)",
        "anyOf": [
            {"type": ["null", "boolean", "number"]},
            {"type": "string", "pattern": NO_NUL},
            {"type": "array", "items": JSON_VALUE},
            {
                "type": "object",
                "propertyNames": {"pattern": NO_NUL},
                "additionalProperties": JSON_VALUE,
            },
        ],
    }


def _error_response(code: str, text: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    header = REQUIRED_HEADERS.get(code)
    if header:
        response["headers"] = {header: {"required": True, "schema": {"type": "string"}}}
    return response


def _description(settings: Settings) -> str:
    lines = [
        "Generated from the routes declared in PostgreSQL (function comments).",
        'Errors: {"error": {"code", "message", "details"}}.',
        "Anonymous requests may read where the anonymous role is granted; writes need an"
        " API key or a token.",
    ]
    if not settings.anonymous_reads:
        lines[-1] = "Every route needs credentials (ANONYMOUS_READS is off)."
    if settings.trusted_networks:
        lines.append(
            "Writes without credentials from the server's TRUSTED_NETWORKS run as"
            f" {settings.trusted_network_role}."
        )
    return "\n".join(lines)


def _version() -> str:
    try:
        return metadata.version("emberlog-api")
    except metadata.PackageNotFoundError:
        return "0"
