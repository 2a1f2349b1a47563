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


class Edge:
    """What every request passes on its way in and out, in one middleware (one await
    each way, not three: issue 18's profiles), in this order:

    - in: honour or create X-Request-ID; then the limits checked before
      authentication: 431 for too many or too large headers, 429 when the client
      address is over its rate (health, metrics and preflights are never limited by
      rate; a stream counts once, at connect);
    - out, on every response Falcon sends (errors, 404s and streams included: it runs
      before the first byte, whatever happened): SECURITY_HEADERS (a page of
      PAGE_POLICIES gets its own Content-Security-Policy), the X-Request-ID echoed;
      every request counted in the metrics (route template, method, status, duration);
      and one JSON line per request worth a line: ACCESS_LOG=all (every request),
      errors (the default: status >= 400, or slower than ACCESS_LOG_SLOW_MS), off.
      Measured in issue 5, a line per request cost healthz 40 % of its throughput;
      /metrics counts every request anyway.
    """

    def __init__(self, settings: Settings, limits: RateLimits, metrics: Metrics) -> None:
        self.ids = RequestIds()
        self.settings = settings
        self.limits = limits
        self.metrics = metrics
        self.mode = settings.access_log
        self.slow_ms = settings.access_log_slow_ms

    async def process_request(self, req: Request, resp: Response) -> None:
        context = req.context
        given = req.get_header("X-Request-ID") or ""
        context.request_id = given if REQUEST_ID.match(given) else self.ids.next()
        context.started = time.perf_counter()
        context.route = None
        context.role = None
        check_headers(raw_headers(req), self.settings)
        if self.limits.per_address is None or req.method == "OPTIONS":
            return
        if req.path not in EXEMPT_PATHS:
            self.limits.check_address(of_request(req, self.settings.trusted_proxies))

    async def process_response(
        self, req: Request, resp: Response, resource: Any, req_succeeded: bool
    ) -> None:
        resp.set_headers(SECURITY_HEADERS)
        policy = PAGE_POLICIES.get(req.path)
        if policy is not None:
            resp.set_header("Content-Security-Policy", policy)
        resp.set_header("X-Request-ID", req.context.request_id)
        self._record(req, resp.status_code)

    def _record(self, req: Request, status: int) -> None:
        """The metrics, and the log line when the request is worth one."""
        context = req.context
        seconds = time.perf_counter() - context.started
        # A bounded label: a route template, a fixed path, or "unmatched" (never a path).
        route = context.route or req.uri_template or UNMATCHED
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
                "request_id": context.request_id,
                "role": context.role,
            },
        )


def raw_headers(req: Request) -> Sequence[tuple[bytes | str, bytes | str]]:
    """The headers as sent, repeats included (Falcon's own dict merges or drops them);
    Falcon's dict only when the server gave a one-shot iterator (Falcon's test client)."""
    raw = req.scope.get("headers")
    if isinstance(raw, list | tuple):
        return raw
    return list(req.headers.items())


def check_headers(headers: Sequence[tuple[bytes | str, bytes | str]], settings: Settings) -> None:
    """431 for more than MAX_HEADERS headers, or more than MAX_HEADER_BYTES of them."""
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
