"""create_app(settings): wires the pieces together, and does nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import falcon
import falcon.asgi

from . import errors, logs
from .db import create_pool
from .gateway import Gateway
from .health import Health, Liveness, Readiness
from .listener import Listener
from .middleware import RequestLog
from .settings import Settings, from_env
from .state import AppState

log = logging.getLogger(__name__)

EXPOSED_HEADERS = ("Location", "X-Request-ID", "Retry-After")


class Lifespan:
    """Start-up: open the pool, start the listener (which loads the routes).
    Shutdown: stop the listener, close the pool."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    async def process_startup(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        state = self.state
        state.pool = create_pool(state.settings)
        await state.pool.open(wait=False)

        async def on_reload(payload: str | None) -> None:
            await state.reload_routes(drain=payload is not None)

        listener = Listener(state.settings, {state.settings.reload_channel: on_reload})
        state.tasks.append(asyncio.create_task(listener.run(), name="listener"))

    async def process_shutdown(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        for task in self.state.tasks:
            task.cancel()
        for task in self.state.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.state.pool is not None:
            await self.state.pool.close()


class EmberlogApp(falcon.asgi.App):
    """Falcon's ASGI app, holding the process state (pool, route table) for tests and tools."""

    state: AppState


def create_app(settings: Settings | None = None) -> EmberlogApp:
    """The ASGI app for these settings (default: from the environment, with JSON logs)."""
    if settings is None:
        settings = from_env()
        logs.configure(settings.log_level)
    state = AppState(settings)
    cors_origins = "*" if "*" in settings.cors_origins else list(settings.cors_origins)
    app = EmberlogApp(
        middleware=[
            Lifespan(state),
            RequestLog(),
            falcon.CORSMiddleware(allow_origins=cors_origins, expose_headers=EXPOSED_HEADERS),
        ],
    )
    app.req_options.strip_url_path_trailing_slash = True
    app.resp_options.default_media_type = falcon.MEDIA_JSON
    app.add_error_handler(Exception, errors.handle)
    app.add_error_handler(falcon.HTTPError, errors.handle)
    app.add_route("/healthz", Liveness())
    app.add_route("/readyz", Readiness(state))
    health = Health(state)
    app.add_route("/health", health)
    app.add_route("/api/v1/health", health)
    app.add_sink(Gateway(state), prefix="/")
    app.state = state
    return app
