"""Liveness, readiness and the health report: built in, not declared in SQL."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import falcon
from falcon.asgi import Request, Response
from psycopg_pool import AsyncConnectionPool

from . import __version__
from .errors import ApiError
from .state import AppState

SERVICE = "emberlog-api"


# The check's name for each pool (state.pools()).
CHECKS = {"requests": "database", "reads": "read_database"}


async def database_checks(state: AppState) -> dict[str, dict[str, Any]]:
    """The checks by name: database (DATABASE_URL), and read_database when
    READ_DATABASE_URL is set."""
    pools = state.pools() or {"requests": None}  # no pool yet: the database is unreachable
    return {CHECKS[name]: await database_check(state, pool) for name, pool in pools.items()}


async def database_check(state: AppState, pool: AsyncConnectionPool | None) -> dict[str, Any]:
    """One round trip to PostgreSQL, bounded by HEALTH_TIMEOUT."""
    started = time.perf_counter()
    try:
        assert pool is not None, "the pool opens at start-up"
        async with asyncio.timeout(state.settings.health_timeout):
            async with pool.connection(timeout=state.settings.health_timeout) as conn:
                await conn.execute("select 1")
        healthy = True
    except Exception:  # unreachable, timed out, pool closed: all mean unhealthy
        healthy = False
    elapsed = round((time.perf_counter() - started) * 1000, 2)
    return {"status": "healthy" if healthy else "unhealthy", "response_time_ms": elapsed}


def _json(resp: Response, body: dict[str, Any], status: int = 200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(body)


class Liveness:
    """GET /healthz: 200 while the process runs; never touches the database."""

    async def on_get(self, req: Request, resp: Response) -> None:
        _json(resp, {"status": "ok"})


class Readiness:
    """GET /readyz: 200 when the database (and READ_DATABASE_URL's) answers, the routes
    are loaded and every stream knows where live starts; 503 otherwise, and from the
    moment shutdown begins."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    async def on_get(self, req: Request, resp: Response) -> None:
        checks = await database_checks(self.state)
        unreachable = [name for name, check in checks.items() if check["status"] != "healthy"]
        routes = len(self.state.routes) if self.state.routes is not None else None
        streams = self.state.streams
        problems = [
            problem
            for problem, failing in (
                ("shutting down", streams is not None and streams.closing),
                *((f"{name.replace('_', ' ')} unreachable", True) for name in unreachable),
                ("routes not loaded", routes is None),
                ("streams not ready", streams is not None and not streams.ready()),
            )
            if failing
        ]
        if problems:
            raise ApiError(
                503,
                "not ready: " + ", ".join(problems),
                "not_ready",
                {**{name: check["status"] for name, check in checks.items()}, "routes": routes},
                headers={"Retry-After": "1"},
            )
        _json(resp, {"status": "ready", "routes": routes})


class Health:
    """GET /health and /api/v1/health: always 200, with the state of each dependency."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    async def on_get(self, req: Request, resp: Response) -> None:
        checks = await database_checks(self.state)
        healthy = all(check["status"] == "healthy" for check in checks.values())
        _json(
            resp,
            {
                "status": "healthy" if healthy else "degraded",
                "service": SERVICE,
                "version": __version__,
                "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "checks": checks,
            },
        )
