"""The database side of the worker: one connection (DATABASE_URL, prepared as the app's
are, then each transaction as WORKER_ROLE) for the four calls of
sql/30_api/alerts/40_worker.sql. Retries, backoff and dead letters are the database's;
this module only moves rows.

A call that fails (a lost connection, a missing grant, a timeout) raises Unavailable
after closing the connection: the caller waits (Backoff) and calls again, and the next
call connects anew. The process never exits on a lost database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import Jsonb

from ..background import Connection
from ..settings import Settings
from . import service
from .records import Delivery, Result

log = logging.getLogger("emberlog.worker")

SET_ROLE = "select pg_catalog.set_config('role', %s, true)"
CLAIM = (
    "select id::text, attempt, url, secret, body"
    " from api.claim_alert_deliveries(%s::text, %s::int, %s::float8, %s::int, %s::int)"
)
FINISH = (
    "select id::text, status, due_in_seconds"
    " from api.finish_alert_deliveries(%s::jsonb, %s::int, %s::float8, %s::float8)"
)
NOTIFIER = "select api.set_alert_notifier(%s::text, %s::text)"
QUEUE = "select status, deliveries, coalesce(oldest_due_seconds, 0) from api.alert_queue()"
# The local lease deadline is kept this much short of the database's (clock rates differ).
LEASE_SAFETY_SECONDS = 1.0
OUTCOMES = {"delivered": "delivered", "retrying": "failed", "dead": "dead"}
T = TypeVar("T")


class Unavailable(Exception):
    """The call failed for the database's sake (logged); try again after a backoff."""


class Refused(Exception):
    """The database refused what was sent (a data error, SQLSTATE class 22 or 23): the
    same call again would fail again."""


class Store:
    def __init__(self, settings: Settings) -> None:
        assert settings.database_url, "the worker needs DATABASE_URL"
        self.settings = settings
        self.lease_seconds = settings.webhook_timeout_seconds + 10.0
        self.db = Connection(
            settings, service.CONNECTED.labels("database"), service.RECONNECTS.labels("database")
        )
        # One transaction at a time on the connection (claims, results and gauges come
        # from separate tasks; psycopg serialises statements, not transactions).
        self._lock = asyncio.Lock()

    async def set_notifier(self) -> str | None:
        """Keep the system destination in step with NOTIFIER_BASE_URL (once, at start)."""
        s = self.settings
        rows = await self._call(NOTIFIER, (s.notifier_base_url, s.notifier_secret))
        return rows[0][0]

    async def claim(self, worker: str, count: int) -> list[Delivery]:
        """Up to count due deliveries, leased to this worker."""
        s = self.settings
        deadline = time.monotonic() + self.lease_seconds - LEASE_SAFETY_SECONDS
        params = (worker, count, self.lease_seconds, s.webhook_max_attempts,
                  s.webhook_user_in_flight)  # fmt: skip
        rows = await self._call(CLAIM, params)
        return [Delivery(*row, deadline=deadline) for row in rows]

    async def finish(self, results: list[Result]) -> dict[str, tuple[str, float | None]]:
        """Record results; each recorded one's outcome (delivered, failed, dead,
        cancelled) by id, and for a failed one in how many seconds it is due again. A
        result missing from the answer was stale: its attempt is no longer current."""
        s = self.settings
        params = (
            Jsonb([r.as_json() for r in results]),
            s.webhook_max_attempts,
            s.webhook_backoff_seconds,
            s.webhook_max_backoff_seconds,
        )
        rows = await self._call(FINISH, params)
        return {id_: (OUTCOMES.get(status, status), due_in) for id_, status, due_in in rows}

    async def refresh_gauges(self) -> None:
        rows = await self._call(QUEUE, ())
        counts = {status: count for status, count, _ in rows}
        for status in ("queued", "sending", "retrying"):
            service.QUEUE_DELIVERIES.labels(status).set(counts.get(status, 0))
        due = [oldest for status, _, oldest in rows if status in ("queued", "retrying")]
        service.QUEUE_OLDEST_DUE.set(max([0.0, *due]))

    @property
    def connected(self) -> bool:
        return self.db.connected

    async def close(self) -> None:
        await self.db.close()

    async def _call(self, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        async def work(conn: psycopg.AsyncConnection) -> list[tuple[Any, ...]]:
            async with conn.transaction():
                await conn.execute(SET_ROLE, (self.settings.worker_role,))
                cursor = await conn.execute(statement, params)
                return await cursor.fetchall()

        async with self._lock:
            return await self._once(work)

    async def _once(self, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        try:
            return await work(await self.db.get())
        except psycopg.Error as exc:
            if self.db.refused(exc):
                log.error("database refused the call (%s %s)", exc.sqlstate, str(exc).strip())
                raise Refused(str(exc)) from exc
            log.warning("database refused or unavailable (%s %s)",
                        exc.sqlstate or "connection", str(exc).strip())  # fmt: skip
            await self.db.lost()
            raise Unavailable(str(exc)) from exc
