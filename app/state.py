"""What one app process holds while it runs: the pool, the route table, the streams."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from . import calls, routes
from .auth import Authenticator
from .calls import Context
from .errors import ApiError
from .guards import InFlight, RouteSlots
from .limits import RateLimits
from .listener import Listener
from .metrics import Gauges, Metrics
from .routes import Route, RouteTable
from .settings import Settings
from .streams import Row, Streams
from .tracing import Tracing

log = logging.getLogger(__name__)

EXECUTE_GRANT = (
    "select coalesce(bool_or(pg_catalog.has_function_privilege(%(role)s, p.oid, 'execute')),"
    " false) from pg_catalog.pg_proc as p"
    " where p.pronamespace = %(schema)s::regnamespace and p.proname = %(fn)s"
)
# Roles a token may name: those the authenticator is a member of (it may SET ROLE),
# with the statement_timeout each was given (ALTER ROLE ... SET), applied per request.
SWITCHABLE_ROLES = (
    "select r.rolname::text, (select pg_catalog.substr(c, 19) from unnest(r.rolconfig) as c"
    " where c like 'statement\\_timeout=%%' limit 1) from pg_catalog.pg_roles as r"
    " where r.rolname <> %(a)s and r.rolname !~ '^pg_'"
    " and pg_catalog.pg_has_role(%(a)s, r.oid, 'member')"
)
# What the API schema is made of right now: its functions and relations (their oids
# change when a deploy re-creates it). Pooled connections hold statements planned
# against the old ones; they are drained only when this changes.
SCHEMA_FINGERPRINT = (
    "select pg_catalog.md5(coalesce(pg_catalog.string_agg(o::text, ',' order by o), ''))"
    " from (select p.oid from pg_catalog.pg_proc as p where p.pronamespace = %(s)s::regnamespace"
    " union all select c.oid from pg_catalog.pg_class as c"
    " where c.relnamespace = %(s)s::regnamespace) as _(o)"
)
RELOAD_EVERY = 1.0  # seconds: at most one reload a second, however many NOTIFYs come

# Pool gauges, read from psycopg_pool's get_stats() at scrape time, labelled
# pool="requests" (DATABASE_URL) or pool="reads" (READ_DATABASE_URL).
POOL = (
    ("emberlog_pool_size", "Connections the pool holds (busy or idle)", "pool_size"),
    ("emberlog_pool_available", "Idle connections in the pool", "pool_available"),
    ("emberlog_pool_requests_waiting", "Requests waiting for a connection", "requests_waiting"),
    ("emberlog_pool_max_size", "Most connections the pool may open", "pool_max"),
)


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
    fingerprint: str | None = None  # SCHEMA_FINGERPRINT at the last reload
    probes: dict[str, Any] = field(default_factory=dict)  # health's DatabaseProbe by check
    _reload_wanted: bool = False
    _reloader: asyncio.Task[None] | None = None
    _reloaded_at: float = float("-inf")
    _grants: dict[tuple[str, str, str], bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.auth = Authenticator(self.settings)
        self.limits = RateLimits.from_settings(self.settings)
        settings = self.settings
        self.in_flight = InFlight(settings.concurrency_per_address)
        self.route_slots = RouteSlots(
            settings.pool_max_size, settings.route_pool_share, settings.pool_timeout
        )
        gauges = {name: (doc, self._pool_stat(key)) for name, doc, key in POOL}
        self.metrics.watch(Gauges("pool", gauges))

    def pools(self) -> dict[str, AsyncConnectionPool]:
        """The open pools by name: "requests", and "reads" when READ_DATABASE_URL is set."""
        named = {"requests": self.pool, "reads": self.read_pool}
        return {name: pool for name, pool in named.items() if pool is not None}

    def _pool_stat(self, key: str) -> Callable[[], dict[str, float]]:
        def read() -> dict[str, float]:
            return {name: pool.get_stats().get(key, 0) for name, pool in self.pools().items()}

        return read

    async def refresh_stream_metrics(self, every: float) -> None:
        """Every few seconds, the streams' lag gauges (see stream_metrics_once)."""
        while True:
            await asyncio.sleep(every)
            await self.stream_metrics_once()

    async def stream_metrics_once(self) -> None:
        """Each stream's head in the log against what this process has fetched
        (emberlog_stream_lag_events). Read-only: it publishes nothing."""
        metrics = self.metrics
        for hub in list(self.streams.hubs.values()) if self.streams is not None else []:
            name = hub.route.template
            try:
                context = self.stream_context(hub.route)
                rows = await self.fetch_events(hub.route, None, 1, context)
            except Exception as exc:  # the database is away: health reports that
                log.debug("stream %s: reading the head failed (%s)", name, exc)
                continue
            head = rows[0][0] if rows else 0
            metrics.stream_head.labels(name).set(head)
            metrics.stream_position.labels(name).set(hub.cursor)
            metrics.stream_lag.labels(name).set(max(head - hub.cursor, 0))

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

    def request_reload(self) -> None:
        """A reload NOTIFY came: reload soon, without holding up the listener. Coalesced:
        one reload at a time and at most one every RELOAD_EVERY seconds, since any
        database login may NOTIFY the channel."""
        self._reload_wanted = True
        if self._reloader is None or self._reloader.done():
            self._reloader = asyncio.create_task(self._reload_when_due(), name="route reload")

    async def _reload_when_due(self) -> None:
        loop = asyncio.get_running_loop()
        while self._reload_wanted:
            await asyncio.sleep(max(0.0, self._reloaded_at + RELOAD_EVERY - loop.time()))
            self._reload_wanted = False
            try:
                await self.reload_routes()
            except Exception as exc:  # the database is away: the listener's reconnect reloads
                log.warning("route reload failed (%s)", exc)

    async def reload_routes(self) -> None:
        """Read the route table again. Pooled connections are drained (their statements
        were planned against the old schema) only when the schema changed since the last
        load. Stream hubs follow the table, and the listener learns their channels."""
        pool = self.require_pool()
        self._reloaded_at = asyncio.get_running_loop().time()
        schema = self.settings.api_schema
        async with pool.connection() as conn:
            table = await routes.load(conn, schema)
            cur = await conn.execute(SWITCHABLE_ROLES, {"a": self.settings.authenticator_role})
            roles = await cur.fetchall()
            cur = await conn.execute(SCHEMA_FINGERPRINT, {"s": schema})
            (fingerprint,) = await cur.fetchone()  # type: ignore[misc]
        changed = self.fingerprint is not None and fingerprint != self.fingerprint
        self.fingerprint = fingerprint
        self.auth.roles = frozenset(role for role, _ in roles)
        self.auth.timeouts = {role: timeout for role, timeout in roles if timeout}
        self.routes = table
        self._grants = {}
        self.reloads += 1
        self.metrics.route_reloads.inc()
        self.metrics.routes.set(len(table))
        if self.streams is not None:
            channels = self.streams.sync([r for r in table.routes if r.is_stream])
            if self.listener is not None and self.settings.stream_mode != "poll":
                for channel in channels:
                    self.listener.add(channel, self._stream_handler(channel))
        self.routes_loaded.set()
        if changed:
            for each in self.pools().values():
                await each.drain()
        log.info("route table loaded: %d routes%s", len(table), " (pools drained)" * changed)

    def stop_reloading(self) -> asyncio.Task[None] | None:
        """Shutdown: no reload may start after this; returns the one running, if any."""
        self._reload_wanted = False
        reloader, self._reloader = self._reloader, None
        if reloader is not None:
            reloader.cancel()
        return reloader

    def _stream_handler(self, channel: str) -> Any:
        streams = self.require_streams()

        async def notified(payload: str | None) -> None:
            streams.notified(channel)  # payload is only an id: fetch everything new

        return notified

    async def may_execute(self, route: Route, role: str) -> bool:
        """Whether role may execute the route's function. A stream asks at connect (live
        events are read once per process, not as each client); the OpenAPI document asks
        for the anonymous role. Kept until the next reload."""
        key = (route.schema, route.function, role)
        known = self._grants.get(key)
        if known is None:
            async with self.require_pool().connection() as conn:
                cur = await conn.execute(
                    EXECUTE_GRANT, {"role": role, "schema": route.schema, "fn": route.function}
                )
                (known,) = await cur.fetchone()  # type: ignore[misc]
            self._grants[key] = bool(known)
        return bool(known)

    def stream_context(self, route: Route) -> Context:
        """How the process-wide hub reads a stream: as the anonymous role."""
        anonymous = self.auth.anonymous
        return Context(
            role=anonymous.role,
            claims=anonymous.claims,
            headers={},
            method="GET",
            path=route.template,
            base_url=self.settings.public_url or "",
            statement_timeout=self.auth.timeouts.get(anonymous.role),
        )

    async def fetch_events(
        self, route: Route, after: int | None, limit: int, context: Context | None
    ) -> list[Row]:
        """Rows of a stream function after an id: the hub's (context None), in a
        transaction that may write, so the function may publish what writers queued
        (internal.publish_events); or a resuming client's, read-only, as it."""
        return await calls.read_rows(  # type: ignore[return-value]
            self.require_pool(),
            calls.stream_statement(route),
            {"after_id": after, "limit": limit},
            context or self.stream_context(route),
            read_only=context is not None,
            prepared=self.settings.prepared_statements,
        )
