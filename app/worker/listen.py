"""The doorbell: a dedicated autocommit connection LISTENing on the alerts channel, so
that a delivery queued by an incident is claimed at once rather than at the next poll.

It only wakes the claim loop (the notification carries nothing). Lost, it reconnects
with backoff and wakes the loop once connected again (what was rung meanwhile is in the
table); meanwhile the loop polls every WORKER_POLL_SECONDS, so nothing waits for it.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg

from ..background import Backoff
from ..database.connections import connect_service
from ..settings import Settings
from . import service

log = logging.getLogger("emberlog.worker")

# internal.alerts_channel(): the worker's role may not call internal functions.
CHANNEL = "emberlog_alerts"


class Listener:
    def __init__(self, settings: Settings, wake: asyncio.Event) -> None:
        self.settings = settings
        self.wake = wake
        self.connected = False

    async def run(self) -> None:
        """Until cancelled."""
        backoff = Backoff()
        while True:
            try:
                await self._listen(backoff)
            except psycopg.Error as exc:
                if self.connected:
                    service.RECONNECTS.labels("listen").inc()
                self._set_connected(False)
                delay = backoff.next()
                log.warning("LISTEN connection lost or refused (%s): reconnecting in %.1f s",
                            str(exc).strip() or type(exc).__name__, delay)  # fmt: skip
                await asyncio.sleep(delay)

    async def _listen(self, backoff: Backoff) -> None:
        url = self.settings.listen_database_url or self.settings.database_url
        assert url
        conn = await connect_service(self.settings, url)
        try:
            await conn.execute(f"listen {CHANNEL}")
            self._set_connected(True)
            backoff.reset()
            self.wake.set()  # what was queued while not listening
            async for _ in conn.notifies():
                self.wake.set()
        finally:
            self._set_connected(False)
            await conn.close()

    def _set_connected(self, value: bool) -> None:
        self.connected = value
        service.CONNECTED.labels("listen").set(int(value))
