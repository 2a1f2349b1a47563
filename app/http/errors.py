"""One error shape everywhere, and the SQLSTATE -> HTTP status mapping.

    {"error": {"code": "...", "message": "...", "details": {...}}}

SQL raises ``raise sqlstate 'PT404' using message = ..., detail = '<json object>',
hint = '<code>'``: PTxyz becomes status xyz, the hint the code, the detail the details.

A little over ~200 lines: the whole mapping (SQLSTATE, psycopg, pool and Falcon
errors to the one shape) is kept in one place so every path answers alike.
"""

from __future__ import annotations

import json
import logging
import re
from http import HTTPStatus
from typing import Any

import falcon
import psycopg
from psycopg_pool import PoolTimeout

log = logging.getLogger(__name__)

CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
PT_STATUS = re.compile(r"^PT[0-9]{3}$")
CLIENT_CLASSES = ("22", "23")
UNAVAILABLE_CLASSES = ("08", "53", "57P", "40", "55P03")
DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    500: "internal_error",
    503: "unavailable",
    504: "timeout",
}


class ApiError(Exception):
    """An error answered with the JSON error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or default_code(status)
        self.details = details or {}
        self.headers = headers or {}

    def body(self) -> str:
        return json.dumps(
            {"error": {"code": self.code, "message": self.message, "details": self.details}}
        )


def cannot_cast(name: str, message: str | None, expected: str) -> ApiError:
    """400 for a value PostgreSQL could not cast to its argument's type, naming it."""
    return ApiError(
        400,
        f"{name}: {message or 'invalid value'}",
        "invalid_parameter",
        {"parameter": name, "expected": expected},
    )


def phrase(status: int) -> str:
    """The reason phrase of a status; a plain one for statuses HTTP does not name."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        classes = {1: "Informational", 2: "Success", 3: "Redirection", 4: "Client error"}
        return classes.get(status // 100, "Server error")


def default_code(status: int) -> str:
    """A code matching CODE for any status: "I'm a Teapot" -> "i_m_a_teapot"."""
    if status in DEFAULT_CODES:
        return DEFAULT_CODES[status]
    return re.sub(r"[^a-z0-9]+", "_", phrase(status).lower()).strip("_") or "error"


def status_for_sqlstate(sqlstate: str, authenticated: bool = False) -> int:
    """DESIGN.md §4: the HTTP status for a SQLSTATE."""
    if PT_STATUS.match(sqlstate) and 100 <= int(sqlstate[2:]) <= 599:
        return int(sqlstate[2:])
    if sqlstate in ("23505", "23503"):
        return 409
    if sqlstate.startswith(CLIENT_CLASSES) or sqlstate == "P0001":
        return 400
    if sqlstate == "42501":
        return 403 if authenticated else 401
    if sqlstate == "25006":
        return 405
    if sqlstate == "57014":
        return 504
    if sqlstate.startswith("54"):
        return 413
    if sqlstate.startswith(UNAVAILABLE_CLASSES):
        return 503
    return 500


def _details(diag: psycopg.errors.Diagnostic, sqlstate: str) -> dict[str, Any]:
    detail = diag.message_detail
    if detail:
        try:
            parsed = json.loads(detail)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    details: dict[str, Any] = {} if sqlstate.startswith("PT") else {"sqlstate": sqlstate}
    if detail and sqlstate.startswith(CLIENT_CLASSES):
        details["detail"] = detail
    return details


def from_database(exc: psycopg.Error, authenticated: bool = False) -> ApiError:
    """The client-facing error for a database error: no SQL, no context, no traceback."""
    sqlstate = exc.sqlstate or ""
    if not sqlstate:
        # Raised by psycopg itself: a value it cannot send (DataError), or a lost connection.
        if isinstance(exc, psycopg.DataError):
            return ApiError(400, f"invalid input: {exc}")
        return server_error(503 if isinstance(exc, psycopg.OperationalError) else 500, exc)
    status = status_for_sqlstate(sqlstate, authenticated)
    if status >= 500:
        return server_error(status, exc)
    if sqlstate == "42501" and not authenticated:
        # Not a grant problem the caller can fix: it sent no credentials (RFC 9110 401).
        return ApiError(401, CREDENTIALS_NEEDED, "credentials_required")
    hint = exc.diag.message_hint or ""
    message = exc.diag.message_primary or phrase(status)
    return ApiError(
        status, message, hint if CODE.match(hint) else None, _details(exc.diag, sqlstate)
    )


CREDENTIALS_NEEDED = (
    "this needs credentials: send an API key in X-API-Key, or a token in"
    " Authorization: Bearer <token>"
)


# Statements prepared on a connection missing in its next transaction, or there before
# it prepared them: the server connection is a transaction pooler's, shared by clients
# (app/http/calls.py retries a missing one once first).
POOLER_SYMPTOMS = (
    psycopg.errors.InvalidSqlStatementName,
    psycopg.errors.DuplicatePreparedStatement,
)
POOLER_HINT = (
    "prepared statements are not this connection's own: behind a pooler in transaction"
    " mode (PgBouncer), set PREPARED_STATEMENTS=false"
)


def server_error(status: int, exc: BaseException) -> ApiError:
    """5xx: log what happened, tell the client only what it can act on."""
    if isinstance(exc, POOLER_SYMPTOMS):
        log.error(POOLER_HINT)
    if status == 500:
        log.error("unexpected error", exc_info=exc)
        return ApiError(500, "internal server error")
    if isinstance(exc, PoolTimeout):
        log.warning("no database connection free within POOL_TIMEOUT: %s", exc)
        return ApiError(504, "timed out waiting for a database connection")
    if status == 504:
        # The role's statement_timeout ended the call: the database is up, the call slow.
        diag = getattr(exc, "diag", None)
        log.warning("statement timeout: %s", getattr(diag, "message_primary", None) or exc)
        return ApiError(
            504, "the call took longer than its statement timeout allows", "statement_timeout"
        )
    log.warning("database unavailable: %s", exc)
    return ApiError(
        status, "the database is unavailable, retry shortly", headers={"Retry-After": "1"}
    )


def from_falcon(exc: falcon.HTTPError) -> ApiError:
    """Falcon's own errors (unknown path, bad header...) in our shape."""
    status = int(exc.status_code)
    headers = dict(exc.headers or {})
    message = exc.description or exc.title or phrase(status)
    return ApiError(status, message, headers=headers)


async def handle(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, exc: Exception, params: dict[str, Any]
) -> None:
    """Falcon error handler for every exception: one JSON shape, never internals."""
    if isinstance(exc, ApiError):
        error = exc
    elif isinstance(exc, falcon.HTTPError):
        error = from_falcon(exc)
    elif isinstance(exc, PoolTimeout):
        error = server_error(504, exc)
    elif isinstance(exc, psycopg.Error):
        error = from_database(exc, authenticated=getattr(req.context, "authenticated", False))
    else:
        error = server_error(500, exc)
    if error.status == 401:
        # Anonymous and not allowed: say how to authenticate (RFC 9110).
        error.headers.setdefault("WWW-Authenticate", 'ApiKey realm="emberlog"')
    write(resp, error)


def write(resp: falcon.asgi.Response, error: ApiError) -> None:
    resp.status = error.status
    resp.content_type = falcon.MEDIA_JSON
    resp.text = error.body()
    for name, value in error.headers.items():
        resp.set_header(name, value)
