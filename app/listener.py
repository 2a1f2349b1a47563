"""The process's dedicated LISTEN connection (autocommit, outside the pool).

It reconnects with capped backoff; each (re)connect counts as a reload, since a
NOTIFY sent while it was away is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import psycopg
from psycopg import sql

from .db import connect_kwargs, prepare_connection
from .settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[str | None], Awaitable[None]]


class Listener:
    """LISTEN on some channels and call a handler per channel (payload, or None on connect)."""

    def __init__(
        self,
        settings: Settings,
        handlers: dict[str, Handler],
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
    ) -> None:
        self.settings = settings
        self.handlers = handlers
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.connected = asyncio.Event()
        self.reconnects = 0

    async def run(self) -> None:
        """Listen until cancelled, reconnecting whenever the connection is lost."""
        backoff = self.min_backoff
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: log, wait, reconnect
                if self.connected.is_set():
                    backoff = self.min_backoff
                self.connected.clear()
                log.warning("listener connection lost (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                self.reconnects += 1

    async def _listen(self) -> None:
        assert self.settings.database_url
        conn = await psycopg.AsyncConnection.connect(self.settings.database_url, **connect_kwargs())
        async with conn:
            await prepare_connection(conn, self.settings)
            for channel in self.handlers:
                await conn.execute(sql.SQL("listen {}").format(sql.Identifier(channel)))
            self.connected.set()
            for handler in self.handlers.values():
                await handler(None)
            async for notify in conn.notifies():
                await self.handlers[notify.channel](notify.payload)
