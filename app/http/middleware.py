"""Per-request concerns every route shares: request id, the request log line, the
security headers, and the limits checked before authentication (header size, rate per
client address)."""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any

from falcon.asgi import Request, Response

from ..observability.metrics import Metrics
from ..settings import Settings
from . import docs
from .clients import of_request
from .errors import ApiError
from .limits import RateLimits

log = logging.getLogger("emberlog.request")

UNMATCHED = "unmatched"  # the route label of a request no route matched
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# The API answers JSON (and event streams) only: nothing to render, frame or refer from.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
# The one page, /docs, loads its scripts, styles and the document from this origin.
PAGE_POLICIES = {docs.PATH: docs.CONTENT_SECURITY_POLICY}
# Probes and scrapers must never be refused for being frequent.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/health", "/api/v1/health", "/metrics"})


class RequestIds:
    """32 hex digits, unique per process and across processes, without a system call per
    request (uuid4 asks the kernel for randomness each time): a random prefix drawn once
    per process (again after a fork) and a counter."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.counter = itertools.count()

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFFFFFFFFFFFFFF:016x}"


class RequestLog:
    """Honours or creates X-Request-ID, echoes it, counts every request in the metrics
    (route template, method, status, duration), and logs one JSON line per request
    worth a line: ACCESS_LOG=all (every request), errors (the default: status >= 400,
    or slower than ACCESS_LOG_SLOW_MS), off. Measured in issue 5, a line per request
    cost healthz 40 % of its throughput; /metrics counts every request anyway."""

    def __init__(self, metrics: Metrics, mode: str = "errors", slow_ms: float = 1000.0) -> None:
        self.ids = RequestIds()
        self.metrics = metrics
        self.mode = mode
        self.slow_ms = slow_ms

    async def process_request(self, req: Request, resp: Response) -> None:
        given = req.get_header("X-Request-ID") or ""
        req.context.request_id = given if REQUEST_ID.match(given) else self.ids.next()
        req.context.started = time.perf_counter()
        req.context.route = None
        req.context.role = None

    async def process_response(
        self, req: Request, resp: Response, resource: Any, req_succeeded: bool
    ) -> None:
        resp.set_header("X-Request-ID", req.context.request_id)
        status = resp.status_code
        seconds = time.perf_counter() - req.context.started
        # A bounded label: a route template, a fixed path, or "unmatched" (never a path).
        route = req.context.route or req.uri_template or UNMATCHED
        self.metrics.observe(route, req.method, status, seconds)
        duration = seconds * 1000
        if self.mode == "off" or (
            self.mode == "errors" and status < 400 and duration < self.slow_ms
        ):
            return
        log.info(
            "request",
            extra={
                "method": req.method,
                "path": req.path,
                "route": route,
                "status": int(status),
                "duration_ms": round(duration, 2),
                "request_id": req.context.request_id,
                "role": req.context.role,
            },
        )


def raw_headers(req: Request) -> Sequence[tuple[bytes | str, bytes | str]]:
    """The headers as sent, repeats included (Falcon's own dict merges or drops them);
    Falcon's dict only when the server gave a one-shot iterator (Falcon's test client)."""
    raw = req.scope.get("headers")
    if isinstance(raw, list | tuple):
        return raw
    return list(req.headers.items())


class SecurityHeaders:
    """Sets SECURITY_HEADERS on every response Falcon sends: errors, 404s and streams
    included (process_response runs before the first byte, whatever happened); a page
    of PAGE_POLICIES gets its own Content-Security-Policy instead."""

    async def process_response(
        self, req: Request, resp: Response, resource: Any, req_succeeded: bool
    ) -> None:
        resp.set_headers(SECURITY_HEADERS)
        policy = PAGE_POLICIES.get(req.path)
        if policy is not None:
            resp.set_header("Content-Security-Policy", policy)


class Limits:
    """Before authentication: 431 for too many or too large headers, then 429 when the
    client address is over its rate. Health, metrics and preflights are never limited
    by rate; a stream counts once, at connect."""

    def __init__(self, settings: Settings, limits: RateLimits) -> None:
        self.settings = settings
        self.limits = limits

    async def process_request(self, req: Request, resp: Response) -> None:
        self._check_headers(raw_headers(req))
        if req.method == "OPTIONS" or req.path in EXEMPT_PATHS:
            return
        if self.limits.per_address is not None:
            self.limits.check_address(of_request(req, self.settings.trusted_proxies))

    def _check_headers(self, headers: Sequence[tuple[bytes | str, bytes | str]]) -> None:
        settings = self.settings
        size = sum(len(name) + len(value) for name, value in headers)
        if len(headers) > settings.max_headers or size > settings.max_header_bytes:
            raise ApiError(
                431,
                "the request headers are too many or too large",
                "headers_too_large",
                details={
                    "max_headers": settings.max_headers,
                    "max_header_bytes": settings.max_header_bytes,
                },
            )
