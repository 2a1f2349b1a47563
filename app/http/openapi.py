"""The OpenAPI 3.1 document GET /openapi.json serves, generated from the route table.

Everything comes from SQL: paths and methods from the @http/@sse tags, parameters
and their JSON Schema from the function's argument names, types and defaults
(refined by @param and @body annotations), descriptions from the comment, and who
may call an operation from the grants (anonymous access is offered only where the
anonymous role may execute the function). The error responses are the one JSON
shape of app/http/errors.py. Health and metrics routes are the platform's, not the
API's, and are not described.

Here: the document around the operations (paths, components: the Error schema, the
error responses, the security schemes; info). One operation is
app/http/openapi_operations.py; the JSON Schema of values, app/http/openapi_schema.py; the
resource that serves the document, app/http/documents.py.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

from ..database.route_table import Route, RouteTable
from ..settings import Settings
from .openapi_operations import operation
from .openapi_schema import json_value

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
REQUIRED_HEADERS = {"401": "WWW-Authenticate", "429": "Retry-After"}


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
            "schemas": {"Error": copy.deepcopy(ERROR_SCHEMA), "JsonValue": json_value()},
            "responses": {code: _error_response(code, text) for code, text in ERRORS.items()},
            "securitySchemes": schemes,
        },
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
