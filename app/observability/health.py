"""Liveness, readiness and the health report: built in, not declared in SQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import falcon
from falcon.asgi import Request, Response

from .. import __version__
from ..http.errors import ApiError
from ..state import AppState
from .probes import database_checks

SERVICE = "emberlog-api"


def _json(resp: Response, body: dict[str, Any], status: int = 200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(body)


LIVE = json.dumps({"status": "ok"}).encode()  # written once: probes ask often


class Liveness:
    """GET /healthz: 200 while the process runs; never touches the database."""

    async def on_get(self, req: Request, resp: Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = LIVE


class Readiness:
    """GET /readyz: 200 when the database (and READ_DATABASE_URL's) answers, the routes
    are loaded and every stream knows where live starts; 503 otherwise, and from the
    moment shutdown begins."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    async def on_get(self, req: Request, resp: Response) -> None:
        checks = await database_checks(self.state)
        failing = {name: check.get("error") for name, check in checks.items()}
        routes = len(self.state.routes) if self.state.routes is not None else None
        streams = self.state.streams
        problems = [
            problem
            for problem, failing in (
                ("shutting down", streams is not None and streams.closing),
                *((_problem(name, error), True) for name, error in failing.items() if error),
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


PROBLEMS = {
    "unreachable": "{} unreachable",
    "timeout": "{} not answering in time",
    "reconnecting": "{} connections reconnecting",
}


def _problem(check: str, error: str) -> str:
    return PROBLEMS[error].format(check.replace("_", " "))


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
