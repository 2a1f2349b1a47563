"""Live streams: the hubs of this process, one per stream route declared in SQL, kept
in step with the route table; and ``run``, the scheduler that pings their clients and
polls the log when LISTEN is not usable.

A stream's pieces, beside this module: frames.py (the SSE wire format), hub.py (one
stream's ring and clients), subscriber.py (what one client is sent), reads.py (reading a
stream function), sse.py (the HTTP route), limits.py (streams per address).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from ..database.route_table import Route
from ..observability.metrics import Metrics
from .hub import Fetch, Hub
from .limits import OpenStreams


class Streams:
    """Every hub of this process, kept in step with the route table."""

    def __init__(self, fetch: Fetch, metrics: Metrics, capacity: int, batch: int) -> None:
        self.fetch = fetch
        self.metrics = metrics
        self.capacity = capacity
        self.batch = batch
        self.hubs: dict[str, Hub] = {}
        self.closing = False
        self.per_address = OpenStreams()  # process-wide: outlives the hubs a reload replaces

    def sync(self, routes: list[Route]) -> set[str]:
        """Hubs for the stream routes now declared; returns their channels."""
        hubs: dict[str, Hub] = {}
        for route in routes:
            hub = self.hubs.get(route.template)
            if hub is None or hub.route.function != route.function:
                hub = Hub(route, self.fetch, self.capacity, self.batch, self.metrics)
                hub.poke()
            hub.route = route
            hubs[route.template] = hub
        for old in self.hubs.values():
            if old not in hubs.values():
                old.close_all()  # its clients reconnect to what the route is now
        self.hubs = hubs
        return {hub.route.channel for hub in hubs.values() if hub.route.channel}

    async def ready_hub(self, route: Route, timeout: float) -> Hub | None:
        """The route's hub once it knows where live starts (None if not within timeout)."""
        hub = self.hubs.get(route.template)
        if hub is None:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hub.ready.wait(), timeout)
        return hub if hub.ready.is_set() else None

    def ready(self) -> bool:
        """Every hub knows where live starts."""
        return all(hub.ready.is_set() for hub in self.hubs.values())

    def notified(self, channel: str) -> None:
        for hub in self.hubs.values():
            if hub.route.channel == channel:
                hub.poke()

    def poke_all(self) -> None:
        for hub in self.hubs.values():
            hub.poke()

    def shutdown(self) -> None:
        """Refuse new streams and end the open ones."""
        self.closing = True
        for hub in self.hubs.values():
            hub.close_all()

    async def run(
        self, heartbeat: float, poll_interval: float, polling: Callable[[], bool]
    ) -> None:
        """Heartbeats (with a catch-up fetch each), and polling when LISTEN is not usable.

        Checked every half interval, and a client is pinged only when no event went out
        in the half before: no client waits more than ``heartbeat`` seconds for a write.
        """
        half = heartbeat / 2
        tick = min(half, poll_interval)
        since_heartbeat = 0.0
        while True:
            await asyncio.sleep(tick)
            since_heartbeat += tick
            if since_heartbeat >= half:
                since_heartbeat = 0.0
                for hub in list(self.hubs.values()):
                    await hub.heartbeat(quiet_for=half, stuck_after=2 * heartbeat)
                self.poke_all()
            elif polling():
                self.poke_all()

    async def stop(self) -> None:
        self.closing = True
        for hub in self.hubs.values():
            await hub.stop()
