"""The database checks behind /readyz and /health: a probe per database over a
connection of its own (never behind request traffic), its answer reused for a second,
telling a slow database from an unreachable one and from a pool still reconnecting."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..database.connections import connect_kwargs
from ..settings import Settings
from ..state import AppState

# The check's name for each pool (state.pools()).
CHECKS = {"requests": "database", "reads": "read_database"}
FRESH_FOR = 1.0  # seconds a check's answer is reused: a flood of probes is one query a second


class DatabaseProbe:
    """Asks one database ``select 1`` over a connection of its own, outside the pools:
    a probe never waits behind request traffic, so a pool busy with slow requests does
    not read as a dead database. Tells a database that does not answer in time from one
    that cannot be reached, and both from a database that is back while the app's pool
    has not reconnected yet (its reconnect attempts back off). One check at a time; its
    answer is reused for FRESH_FOR."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self.settings = settings
        self.conn: psycopg.AsyncConnection | None = None
        self.lock = asyncio.Lock()
        self.answer: tuple[float, dict[str, Any]] | None = None
        self.down_at = float("-inf")  # when the database was last seen away
        self.pool_ok_at = float("-inf")  # when the pool last made or used a connection

    def pool_connected(self) -> None:
        """The pool made a new connection (its configure hook): it works again."""
        self.pool_ok_at = time.monotonic()

    async def check(self, pool: AsyncConnectionPool | None = None) -> dict[str, Any]:
        async with self.lock:
            now = time.monotonic()
            if self.answer is None or now - self.answer[0] >= FRESH_FOR:
                self.answer = (now, await self._probe(pool))
            return self.answer[1]

    async def _probe(self, pool: AsyncConnectionPool | None) -> dict[str, Any]:
        started = time.perf_counter()
        error = await self._database()
        if error is None and pool is not None and not await self._pool_serves(pool):
            error = "reconnecting"
        elapsed = round((time.perf_counter() - started) * 1000, 2)
        check = {"status": "unhealthy" if error else "healthy", "response_time_ms": elapsed}
        return {**check, "error": error} if error else check

    async def _database(self) -> str | None:
        """None when the database answers; else "timeout" or "unreachable"."""
        try:
            async with asyncio.timeout(self.settings.health_timeout):
                await self._select_one()
            return None
        except TimeoutError:
            error = "timeout"
        except Exception:  # refused, reset, authentication failed: cannot be reached
            error = "unreachable"
        self.down_at = time.monotonic()
        await self.close()  # a stuck or broken connection is not used again
        return error

    async def _select_one(self) -> None:
        """On the probe's connection; once more on a new one if it had died (the database
        restarted: it is back, but the pool's connections died with the old one)."""
        for attempt in (1, 2):
            if self.conn is None or self.conn.closed:
                kwargs = {**connect_kwargs(self.settings), "application_name": PROBE_NAME}
                self.conn = await psycopg.AsyncConnection.connect(self.url, **kwargs)
            try:
                await self.conn.execute("select 1")
                return
            except psycopg.OperationalError:
                self.down_at = time.monotonic()
                await self.close()
                if attempt == 2:
                    raise

    async def _pool_serves(self, pool: AsyncConnectionPool) -> bool:
        """Whether the pool works since the database was last away. An idle connection is
        tried (never waited for: a busy pool is not a broken one); a dead one makes the
        pool check all of its idle connections and reconnect at once."""
        if pool.get_stats().get("pool_available", 0) > 0:
            try:
                async with asyncio.timeout(self.settings.health_timeout):
                    async with pool.connection(timeout=IDLE_WAIT) as conn:
                        await conn.execute("select 1")
                self.pool_ok_at = time.monotonic()
            except PoolTimeout:
                pass  # taken meanwhile: busy, not broken
            except Exception:
                # Drop the dead idle connections and start new ones; bounded, as a probe is.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.settings.health_timeout):
                        await pool.check()
                return False
        return self.pool_ok_at >= self.down_at

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


IDLE_WAIT = 0.05  # seconds readiness waits for an idle pooled connection
PROBE_NAME = "emberlog-api health"


def probes(state: AppState) -> dict[str, DatabaseProbe]:
    """A probe per database the app uses: DATABASE_URL's and READ_DATABASE_URL's."""
    settings = state.settings
    urls = {"database": settings.database_url, "read_database": settings.read_database_url}
    for name, url in urls.items():
        if url and name not in state.probes:
            state.probes[name] = DatabaseProbe(url, settings)
    return state.probes


async def database_checks(state: AppState) -> dict[str, dict[str, Any]]:
    """The checks by name: database (DATABASE_URL, with the request pool), and
    read_database (with the reads pool) when READ_DATABASE_URL is set."""
    pools = {CHECKS[name]: pool for name, pool in state.pools().items()}
    return {name: await probe.check(pools.get(name)) for name, probe in probes(state).items()}


async def close_probes(state: AppState) -> None:
    for probe in state.probes.values():
        await probe.close()
