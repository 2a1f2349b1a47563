"""What one app process holds while it runs: the pools, the route table, the streams,
and the per-process guards; the one object the gateway, the health checks, the
listener and the streams share.

Its methods hand out what it holds (``require_pool``, ``pool_for``...). The work done
on it lives elsewhere, and the methods of that name here only delegate: the route
reload (app/database/reload.py), the grant cache (app/database/grants.py), reading
stream functions and the lag gauges (app/streams/reads.py), the pool gauges
(app/observability/metrics.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from .auth.authenticator import Authenticator
from .database.grants import Grants
from .database.reload import Reloader
from .database.route_table import Route, RouteTable
from .http.calls import Context
from .http.errors import ApiError
from .http.guards import InFlight, RouteSlots
from .http.limits import RateLimits
from .observability.metrics import Metrics, pool_gauges
from .observability.tracing import Tracing
from .settings import Settings
from .streams import reads as stream_reads
from .streams.hub import Row
from .streams.hubs import Streams
from .streams.listener import Listener


@dataclass
class AppState:
    """Shared by the gateway, the health checks, the listener and the streams."""

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    pool: AsyncConnectionPool | None = None
    read_pool: AsyncConnectionPool | None = None  # READ_DATABASE_URL's, if set
    routes: RouteTable | None = None
    reloads: int = 0
    routes_loaded: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    listener: Listener | None = None
    streams: Streams | None = None
    tracing: Tracing | None = None  # ENABLE_TRACING
    auth: Authenticator = field(init=False)
    limits: RateLimits = field(init=False)  # this process's rate-limit buckets
    in_flight: InFlight = field(init=False)  # requests running per client address
    route_slots: RouteSlots = field(init=False)  # each route's share of the pool
    fingerprint: str | None = None  # reload.SCHEMA_FINGERPRINT at the last reload
    probes: dict[str, Any] = field(default_factory=dict)  # health's DatabaseProbe by check
    grants: Grants = field(init=False)  # who may execute what, until the next reload
    reloader: Reloader = field(init=False)

    def __post_init__(self) -> None:
        self.auth = Authenticator(self.settings)
        self.limits = RateLimits.from_settings(self.settings)
        settings = self.settings
        self.in_flight = InFlight(settings.concurrency_per_address)
        self.route_slots = RouteSlots(
            settings.worker_pool_max_size, settings.route_pool_share, settings.pool_timeout
        )
        self.grants = Grants(self.require_pool)
        self.reloader = Reloader(self)
        self.metrics.watch(pool_gauges(self.pools))

    def pools(self) -> dict[str, AsyncConnectionPool]:
        """The open pools by name: "requests", and "reads" when READ_DATABASE_URL is set."""
        named = {"requests": self.pool, "reads": self.read_pool}
        return {name: pool for name, pool in named.items() if pool is not None}

    def require_pool(self) -> AsyncConnectionPool:
        assert self.pool is not None, "the pool opens at start-up"
        return self.pool

    def pool_for(self, route: Route) -> AsyncConnectionPool:
        """Where a call runs: read-only routes on READ_DATABASE_URL's pool when there is
        one (a replica), everything else on DATABASE_URL's. Streams are not calls: their
        fetches publish queued events, so they stay on the primary (fetch_events)."""
        if route.read_only and self.read_pool is not None:
            return self.read_pool
        return self.require_pool()

    def require_routes(self) -> RouteTable:
        """The route table, or a 503 the client may retry while it is not loaded yet."""
        if self.routes is None:
            raise ApiError(503, "the route table is not loaded yet", headers={"Retry-After": "1"})
        return self.routes

    def require_streams(self) -> Streams:
        assert self.streams is not None, "the streams start at start-up"
        return self.streams

    # --- delegated: the route reload (app/database/reload.py) ------------------------------------

    def request_reload(self) -> None:
        self.reloader.request_reload()

    async def reload_routes(self) -> None:
        await self.reloader.reload_routes()

    def stop_reloading(self) -> asyncio.Task[None] | None:
        return self.reloader.stop_reloading()

    # --- delegated: the grant cache (app/database/grants.py) -------------------------------------

    async def may_execute(self, route: Route, role: str) -> bool:
        return await self.grants.may_execute(route, role)

    # --- delegated: reading stream functions (app/streams/reads.py) ----------------------

    def stream_context(self, route: Route) -> Context:
        return stream_reads.stream_context(self, route)

    async def fetch_events(
        self,
        route: Route,
        after: int | None,
        limit: int,
        context: Context | None,
        values: Mapping[str, Any] | None = None,
    ) -> list[Row]:
        return await stream_reads.fetch_events(self, route, after, limit, context, values)

    async def refresh_stream_metrics(self, every: float) -> None:
        await stream_reads.refresh_stream_metrics(self, every)

    async def stream_metrics_once(self) -> None:
        await stream_reads.stream_metrics_once(self)
