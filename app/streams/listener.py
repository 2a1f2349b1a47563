"""The process's dedicated LISTEN connection (autocommit, outside the pool).

It reconnects with capped backoff, and calls every handler with None on each
(re)connect: a NOTIFY sent while it was away is lost, so handlers catch up then.
Channels may be added while it runs (streams are declared in SQL, found at reload).

With ``probe=True`` it checks once that notifications really arrive: behind a
pooler in transaction mode LISTEN succeeds but nothing is ever delivered. Then
``delivers`` becomes False and the streams poll the event log instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable

import psycopg
from psycopg import sql

from ..database.connections import connect_kwargs, prepare_connection
from ..settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[str | None], Awaitable[None]]
PROBE_CHANNEL = "emberlog_listen_probe"


class Listener:
    """LISTEN on some channels and call a handler per channel (payload, or None on connect)."""

    def __init__(
        self,
        settings: Settings,
        handlers: dict[str, Handler],
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        probe: bool = False,
        probe_timeout: float = 2.0,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.handlers = dict(handlers)
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.probe = probe
        self.probe_timeout = probe_timeout
        self.on_reconnect = on_reconnect
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.delivers: bool | None = None  # None until probed (or when not probing)
        self._listening: set[str] = set()

    def add(self, channel: str, handler: Handler) -> None:
        """Listen on one more channel (from the next moment the listener is idle)."""
        self.handlers.setdefault(channel, handler)

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
                if self.on_reconnect is not None:
                    self.on_reconnect()

    async def _listen(self) -> None:
        # LISTEN_DATABASE_URL: straight to PostgreSQL when requests go through a pooler.
        url = self.settings.listen_database_url or self.settings.database_url
        assert url
        conn = await psycopg.AsyncConnection.connect(
            url,
            **{**connect_kwargs(), "application_name": "emberlog-api listener"},
        )
        async with conn:
            await prepare_connection(conn, self.settings)
            self._listening = set()
            await self._listen_new(conn, notify_handlers=False)
            if self.probe and self.delivers is None:
                self.delivers = await self._probe(conn)
            self.connected.set()
            for handler in list(self.handlers.values()):
                await handler(None)
            while True:
                await self._listen_new(conn, notify_handlers=True)
                async for notify in conn.notifies(timeout=1.0):
                    await self._dispatch(notify.channel, notify.payload)

    async def _listen_new(self, conn: psycopg.AsyncConnection, notify_handlers: bool) -> None:
        for channel in [c for c in self.handlers if c not in self._listening]:
            await conn.execute(sql.SQL("listen {}").format(sql.Identifier(channel)))
            self._listening.add(channel)
            if notify_handlers:
                await self.handlers[channel](None)

    async def _dispatch(self, channel: str, payload: str | None) -> None:
        handler = self.handlers.get(channel)
        if handler is not None:
            await handler(payload)

    async def _probe(self, conn: psycopg.AsyncConnection) -> bool:
        """Send ourselves a NOTIFY from another connection; True if it arrives."""
        assert self.settings.database_url
        token = uuid.uuid4().hex
        await conn.execute(sql.SQL("listen {}").format(sql.Identifier(PROBE_CHANNEL)))
        async with await psycopg.AsyncConnection.connect(
            self.settings.database_url, **connect_kwargs(self.settings)
        ) as other:
            await other.execute("select pg_catalog.pg_notify(%s, %s)", (PROBE_CHANNEL, token))
        arrived = False
        async with contextlib.aclosing(conn.notifies(timeout=self.probe_timeout)) as notifies:
            async for notify in notifies:
                if notify.channel == PROBE_CHANNEL and notify.payload == token:
                    arrived = True
                    break
                await self._dispatch(notify.channel, notify.payload)
        await conn.execute(sql.SQL("unlisten {}").format(sql.Identifier(PROBE_CHANNEL)))
        if not arrived:
            log.warning(
                "LISTEN does not deliver notifications on this connection (a pooler in"
                " transaction mode?); streams poll the event log every %.1fs instead",
                self.settings.stream_poll_interval,
            )
        return arrived
