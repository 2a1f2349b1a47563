"""What one app process holds while it runs: the pool and the current route table."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from psycopg_pool import AsyncConnectionPool

from . import routes
from .routes import RouteTable
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass
class AppState:
    """Shared by the gateway, the health checks and the listener."""

    settings: Settings
    pool: AsyncConnectionPool | None = None
    routes: RouteTable | None = None
    reloads: int = 0
    routes_loaded: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def require_pool(self) -> AsyncConnectionPool:
        assert self.pool is not None, "the pool opens at start-up"
        return self.pool

    async def reload_routes(self, drain: bool = False) -> None:
        """Read the route table again; optionally drop pooled connections (old plans)."""
        pool = self.require_pool()
        async with pool.connection() as conn:
            table = await routes.load(conn, self.settings.api_schema)
        self.routes = table
        self.reloads += 1
        self.routes_loaded.set()
        if drain:
            await pool.drain()
        log.info("route table loaded: %d routes", len(table))
