"""The database side of the bridge: one connection (DATABASE_URL, prepared as the app's
are: NAIVE_TIMEZONE and DB_SETTINGS, then the authenticator), each batch one
transaction as BRIDGE_ROLE calling ``api.ingest_trunk_recorder``.

A lost connection, or any error that is the database's state (a missing grant, a
timeout), is retried with backoff until the batch is applied: nothing received is
acknowledged before its transaction committed. Only an error the messages themselves
cause (a data exception: a message the database cannot apply) is ``BatchFailed``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import Jsonb

from ..background import Backoff, Connection
from ..settings import Settings
from . import service

log = logging.getLogger("emberlog.bridge")

INGEST = "select api.ingest_trunk_recorder(%s::jsonb)::jsonb"
SET_ROLE = "select pg_catalog.set_config('role', %s, true)"
# SQLSTATE classes an error of the messages themselves raises (data exception,
# integrity constraint, program limit): the batch is then tried message by message.
MESSAGE_ERRORS = ("22", "23", "54")
T = TypeVar("T")


class BatchFailed(Exception):
    """The database refused the batch itself (not the connection): a message it cannot
    apply. The caller applies the messages one by one to find it."""


class Sink:
    def __init__(self, settings: Settings) -> None:
        assert settings.database_url, "the bridge needs DATABASE_URL"
        self.settings = settings
        self.db = Connection(
            settings, service.CONNECTED.labels("database"), service.RECONNECTS.labels("database")
        )

    @property
    def connected(self) -> bool:
        return self.db.connected

    async def open(self) -> None:
        """Connect, waiting (with backoff) for the database to answer."""
        await self._retrying(lambda conn: asyncio.sleep(0))

    async def apply(self, messages: list[Any]) -> list[dict[str, Any]]:
        """Each message's result ({"status": applied|ignored|rejected, ...}), in order,
        once committed; waits through connection losses."""
        report = await self._retrying(lambda conn: self._call(conn, messages))
        return report["results"]

    async def _retrying(self, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        backoff = Backoff()
        while True:
            try:
                return await work(await self.db.get())
            except psycopg.Error as exc:
                if self.db.refused(exc, MESSAGE_ERRORS):
                    raise BatchFailed(str(exc)) from exc
                # Anything else is the database's state, not the messages': a lost
                # connection, a missing grant or function, a timeout. Nothing is
                # acknowledged; the batch waits and is tried again.
                await self._lost(exc, backoff.next())

    async def close(self) -> None:
        await self.db.close()

    async def _call(self, conn: psycopg.AsyncConnection, messages: list[Any]) -> dict[str, Any]:
        with service.BATCH_SECONDS.time():
            async with conn.transaction():
                await conn.execute(SET_ROLE, (self.settings.bridge_role,))
                cursor = await conn.execute(INGEST, (Jsonb(messages),))
                row = await cursor.fetchone()
        assert row is not None
        return row[0]

    async def _lost(self, exc: psycopg.Error, delay: float) -> None:
        log.warning(
            "database refused or unavailable (%s %s): retrying in %.1f s",
            exc.sqlstate or "connection",
            str(exc).strip(),
            delay,
        )
        await self.db.lost()
        await asyncio.sleep(delay)
