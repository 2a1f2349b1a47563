"""What a request must pass before it may use the database, beyond its credentials:

- **Cross-site writes.** A write that carries no credential of its own (it would run
  as the trusted networks' role, or be refused by a grant) is refused when a browser
  says it comes from another site's page (``Sec-Fetch-Site``, ``Origin``): such a page
  cannot read the answer, but it could still make a browser on a trusted network write.
- **Requests in flight per client address** (CONCURRENCY_PER_ADDRESS): one client
  without credentials, however it paces itself, holds at most that many of the pool's
  connections. A client with a key or token is bounded by its credential's rate limit
  and the routes' shares instead (a service may rightly write in parallel, and its
  key can be revoked).
- **A share of the pool per route** (ROUTE_POOL_SHARE): calls of one route hold at most
  that share of the worker's pool at once, so one slow route cannot starve the others.

All three answer at once, in the JSON error shape, and nothing is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Hashable, Iterator

from falcon.asgi import Request

from ..settings import Settings
from .errors import ApiError

CREDENTIAL_HEADERS = ("Authorization", "X-API-Key")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OTHER_SITES = frozenset({"cross-site", "same-site"})


def carries_credentials(req: Request, settings: Settings) -> bool:
    """Whether the request brings a key or token (valid or not: auth decides)."""
    if any(req.get_header(h) for h in CREDENTIAL_HEADERS):
        return True
    return req.method in ("GET", "HEAD") and bool(req.get_cookie_values(settings.jwt_cookie))


def refuse_cross_site_write(req: Request, settings: Settings) -> None:
    """403 for a credential-less write a browser sent from another site's page: one
    whose Sec-Fetch-Site says so, or whose Origin is not one of CORS_ORIGINS (``*``
    lets other sites read, never write without credentials). Servers and scripts send
    neither header and are not affected."""
    if req.method in SAFE_METHODS or carries_credentials(req, settings):
        return
    site = (req.get_header("Sec-Fetch-Site") or "").strip().lower()
    if site == "same-origin":
        return  # the browser vouches that the page is this API's own
    origin = req.get_header("Origin")
    if origin is not None and origin in settings.cors_origins:
        return  # a site the operator named in CORS_ORIGINS
    if site in OTHER_SITES or origin is not None:
        raise ApiError(
            403,
            "a write from another site's page needs credentials: send X-API-Key or"
            " Authorization: Bearer <token>",
            "cross_site_write",
        )


class InFlight:
    """Requests in flight per key (a client address): at most ``limit`` at once.

    Counts only while requests run, so memory follows the clients active right now.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counts: dict[Hashable, int] = {}

    @contextlib.contextmanager
    def hold(self, key: Hashable | None) -> Iterator[None]:
        if key is None or self.limit <= 0:
            yield
            return
        count = self.counts.get(key, 0)
        if count >= self.limit:
            raise ApiError(
                429,
                f"too many requests in flight from this address (at most {self.limit});"
                " wait for an answer before sending more",
                "too_many_in_flight",
                {"limit": self.limit},
                headers={"Retry-After": "1"},
            )
        self.counts[key] = count + 1
        try:
            yield
        finally:
            left = self.counts[key] - 1
            if left:
                self.counts[key] = left
            else:
                del self.counts[key]


class RouteSlots:
    """At most ``size`` calls of one route hold a connection at once; the next waits
    for a slot as long as it would wait for the pool (POOL_TIMEOUT), then gets a 503."""

    def __init__(self, pool_size: int, share: float, timeout: float) -> None:
        self.size = max(1, math.floor(pool_size * share))
        self.timeout = timeout
        self.slots: dict[Hashable, asyncio.Semaphore] = {}

    @contextlib.asynccontextmanager
    async def hold(self, route: Hashable) -> AsyncIterator[None]:
        slots = self.slots.get(route)
        if slots is None:
            slots = self.slots[route] = asyncio.Semaphore(self.size)
        try:
            if slots.locked():  # wait_for runs the wait as a task: only when waiting
                await asyncio.wait_for(slots.acquire(), self.timeout)
            else:
                await slots.acquire()  # a free slot: taken at once, nothing scheduled
        except TimeoutError:
            raise ApiError(
                503,
                "this route is busy: retry shortly",
                "route_busy",
                {"concurrent_calls": self.size},
                headers={"Retry-After": "1"},
            ) from None
        try:
            yield
        finally:
            slots.release()
