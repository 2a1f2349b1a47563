"""What the background commands (``mqtt-bridge``, ``worker``) share: one asyncio run that
ends on SIGTERM or SIGINT (the signal only sets ``stop``; each command drains in its own
way: the bridge applies what it received, the worker lets its webhooks finish), their
connection to the database, and the backoff between attempts at what keeps failing."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from .database.connections import connect_service
from .settings import Settings

# SQLSTATE classes of an error caused by what was sent (data exception, integrity
# constraint): the same call again would fail again, whereas anything else (a lost
# connection, a missing grant, a timeout) is the database's state, worth waiting out.
DATA_ERRORS = ("22", "23")


def run_until_signalled(service: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    """asyncio.run(service(stop)), stop set by SIGTERM or SIGINT; its exit status."""

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await service(stop)

    return asyncio.run(main())


class Backoff:
    """Capped exponential waits between attempts at something that keeps failing."""

    def __init__(self, first: float = 0.5, most: float = 30.0) -> None:
        self.first, self.most, self.delay = first, most, first

    def next(self) -> float:
        delay, self.delay = self.delay, min(self.delay * 2, self.most)
        return delay

    def reset(self) -> None:
        self.delay = self.first


class Connection:
    """A background command's one connection (app.database.connections.connect_service),
    opened on first use and again after it was lost; its state in the command's gauge
    (1 while connected) and its losses in its counter."""

    def __init__(self, settings: Settings, connected: Any, reconnects: Any) -> None:
        self.settings = settings
        self.connected = False
        self._gauge, self._reconnects = connected, reconnects
        self._conn: psycopg.AsyncConnection | None = None

    async def get(self) -> psycopg.AsyncConnection:
        if not self.alive:
            self._conn = None
            self._conn = await connect_service(self.settings)
            self._set(True)
        assert self._conn is not None
        return self._conn

    @property
    def alive(self) -> bool:
        return self._conn is not None and not self._conn.broken and not self._conn.closed

    def refused(self, exc: psycopg.Error, classes: tuple[str, ...] = DATA_ERRORS) -> bool:
        """The error is what was sent's (its SQLSTATE class one of classes), on a
        connection still alive."""
        return self.alive and (exc.sqlstate or "")[:2] in classes

    async def lost(self) -> None:
        """Counted, closed: the next get() connects again."""
        if self.connected:
            self._reconnects.inc()
        await self.close()

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
        self._conn = None
        self._set(False)

    def _set(self, value: bool) -> None:
        self.connected = value
        self._gauge.set(int(value))
