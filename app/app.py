"""create_app(settings): wires the pieces together, and does nothing else; and
EmberlogApp, Falcon's ASGI app with the process state and each connection's Watch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import falcon
import falcon.asgi

from .environment import from_env
from .http import docs, errors
from .http.documents import Metrics, OpenApi
from .http.gateway import Gateway
from .http.middleware import Edge
from .http.watch import WATCH_KEY, Watch
from .lifespan import Lifespan, Scope
from .observability import logs
from .observability.health import Health, Liveness, Readiness
from .observability.tracing import Tracing
from .settings import Settings
from .state import AppState
from .streams.hub import DROPPED

EXPOSED_HEADERS = ("Location", "X-Request-ID", "Retry-After", "ETag")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class EmberlogApp(falcon.asgi.App):
    """Falcon's ASGI app, holding the process state (pool, route table) for tests and tools.

    Each HTTP request gets a Watch: a streaming client is released as soon as it
    disconnects, and a stalled one the app cancels ends quietly.
    """

    state: AppState

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        watch = Watch(receive)
        scope[WATCH_KEY] = watch
        try:
            await super().__call__(scope, watch, send)
        except asyncio.CancelledError as exc:
            if exc.args != (DROPPED,):
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            logs.DROPPED_CLIENT.set(True)
        finally:
            watch.release()
            watch.receive = None  # the request is over: nothing more to read


def create_app(settings: Settings | None = None) -> EmberlogApp:
    """The ASGI app for these settings (default: from the environment, with JSON logs)."""
    if settings is None:
        settings = from_env()
        logs.configure(settings.log_level, settings.log_format)
    state = AppState(settings, tracing=Tracing() if settings.enable_tracing else None)
    cors_origins = "*" if "*" in settings.cors_origins else list(settings.cors_origins)
    app = EmberlogApp(
        middleware=[
            Lifespan(state),
            *([state.tracing.middleware()] if state.tracing is not None else []),
            Edge(settings, state.limits, state.metrics),
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
    if not settings.metrics_port:  # else only on its own port (started at start-up)
        app.add_route("/metrics", Metrics(state))
    app.add_route("/openapi.json", OpenApi(state))
    docs.add_routes(app)  # GET /docs: Swagger UI on /openapi.json, served from here
    app.add_sink(Gateway(state), prefix="/")
    app.state = state
    return app
