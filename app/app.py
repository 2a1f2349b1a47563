"""create_app(settings): wires the pieces together, and does nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any
from wsgiref.simple_server import WSGIServer

import falcon
import falcon.asgi
from prometheus_client import start_http_server

from . import docs, errors, logs, openapi
from .db import create_pool
from .gateway import Gateway
from .health import Health, Liveness, Readiness, close_probes, probes
from .listener import Listener
from .middleware import Limits, RequestLog, SecurityHeaders
from .settings import Settings, from_env
from .state import AppState
from .streams import DROPPED, Streams
from .tracing import Tracing
from .watch import WATCH_KEY, Watch

log = logging.getLogger(__name__)

EXPOSED_HEADERS = ("Location", "X-Request-ID", "Retry-After")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
STREAM_METRICS_EVERY = 5.0  # seconds between reads of each stream's head (lag gauge)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Lifespan:
    """Start-up: open the pool, start the listener (which loads the routes and finds the
    streams) and the streams' heartbeat. Shutdown: stop them, close the pool."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.previous_handlers: dict[int, Any] = {}
        self.metrics_server: WSGIServer | None = None

    async def process_startup(self, scope: Scope, event: dict[str, Any]) -> None:
        state, settings = self.state, self.state.settings
        watched = probes(state)  # readiness learns of each new pooled connection
        state.pool = create_pool(settings, on_connect=watched["database"].pool_connected)
        await state.pool.open(wait=False)
        if settings.read_database_url:
            reads = watched["read_database"].pool_connected
            state.read_pool = create_pool(settings, settings.read_database_url, "reads", reads)
            await state.read_pool.open(wait=False)
        state.streams = Streams(
            state.fetch_events, state.metrics, settings.sse_client_buffer, settings.stream_batch
        )

        async def on_reload(payload: str | None) -> None:
            if payload is None:  # (re)connected: load now (a deploy may have come meanwhile)
                await state.reload_routes()
            else:
                state.request_reload()

        listener = Listener(
            settings,
            {settings.reload_channel: on_reload},
            probe=settings.stream_mode == "auto",
            on_reconnect=state.metrics.listener_reconnects.inc,
        )
        state.listener = listener

        def polling() -> bool:
            return settings.stream_mode == "poll" or listener.delivers is False

        heartbeat = state.streams.run(
            settings.sse_heartbeat, settings.stream_poll_interval, polling
        )
        state.tasks.append(asyncio.create_task(listener.run(), name="listener"))
        state.tasks.append(asyncio.create_task(heartbeat, name="stream heartbeat"))
        state.tasks.append(
            asyncio.create_task(
                state.refresh_stream_metrics(STREAM_METRICS_EVERY), name="stream metrics"
            )
        )
        state.tasks.append(asyncio.create_task(self._record_key_use(), name="key use"))
        if settings.metrics_port:
            self.metrics_server = start_http_server(
                settings.metrics_port, settings.host, registry=state.metrics.registry
            )[0]
        self._chain_stop_signals()

    async def _record_key_use(self) -> None:
        """Every API_KEY_TOUCH_SECONDS, the keys used since the last round get their
        last_used_at (one statement, off the request path); the rest at shutdown."""
        state = self.state
        while True:
            await asyncio.sleep(state.settings.api_key_touch_seconds)
            await state.auth.record_use(state.require_pool())

    def _chain_stop_signals(self) -> None:
        """Under uvicorn, SIGTERM/SIGINT also end the open streams at once: uvicorn waits
        for responses to finish before it shuts down, and a stream never would."""
        if threading.current_thread() is not threading.main_thread():
            return  # signals are the main thread's (e.g. an app run in a test thread)
        loop = asyncio.get_running_loop()
        streams = self.state.require_streams()
        for sig in STOP_SIGNALS:
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue  # not under a server that handles it (e.g. tests): leave it be

            def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(streams.shutdown)
                previous(signum, frame)

            self.previous_handlers[sig] = previous
            signal.signal(sig, handler)

    async def process_shutdown(self, scope: Scope, event: dict[str, Any]) -> None:
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        for sig, previous in self.previous_handlers.items():
            signal.signal(sig, previous)
        reloader = self.state.stop_reloading()
        tasks = [*self.state.tasks, *([reloader] if reloader is not None else [])]
        for task in tasks:  # first: nothing may start a fetch after this
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.state.streams is not None:
            await self.state.streams.stop()
        if self.state.pool is not None:
            await self.state.auth.record_use(self.state.pool)
            await self.state.pool.close()
        if self.state.read_pool is not None:
            await self.state.read_pool.close()
        await close_probes(self.state)
        if self.state.tracing is not None:
            self.state.tracing.shutdown()


async def require_reader(state: AppState, req: falcon.asgi.Request) -> None:
    """With ANONYMOUS_READS=false, the platform's documents (/metrics, /openapi.json)
    need credentials too, as every API route does (a 401 otherwise). Any valid key or
    token will do: they show no data, only what the API is and how busy it is."""
    if not state.settings.anonymous_reads:
        identity = await state.auth.identify(req, state.require_pool())
        req.context.role = identity.role


class Metrics:
    """GET /metrics: the process's counters in Prometheus' text format."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await require_reader(self.state, req)
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8"
        resp.data = self.state.metrics.render()


class OpenApi:
    """GET /openapi.json: the document app/openapi.py generates, rebuilt after a reload."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.cached: tuple[int, bytes] | None = None

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        state = self.state
        await require_reader(state, req)
        table = state.require_routes()
        if self.cached is None or self.cached[0] != state.reloads:
            reloads = state.reloads
            anon = state.settings.anon_role
            anonymous = {
                f"{r.schema}.{r.function}": await state.may_execute(r, anon) for r in table.routes
            }
            doc = openapi.document(table, state.settings, anonymous, state.auth.tokens.configured)
            self.cached = (reloads, json.dumps(doc).encode())
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.cached[1]


class EmberlogApp(falcon.asgi.App):
    """Falcon's ASGI app, holding the process state (pool, route table) for tests and tools.

    Each HTTP request gets a Watch: a streaming client is released as soon as it
    disconnects, and a stalled one the app cancels ends quietly.
    """

    state: AppState

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        watch = Watch()
        scope[WATCH_KEY] = watch

        async def watched_receive() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.disconnect":
                watch.release()
            return message

        watch.receive = watched_receive

        try:
            await super().__call__(scope, watched_receive, send)
        except asyncio.CancelledError as exc:
            if exc.args != (DROPPED,):
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            logs.DROPPED_CLIENT.set(True)
        finally:
            watch.release()
            watch.receive = None  # break the cycle (watch -> receive -> watch) at once


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
            RequestLog(state.metrics, settings.access_log, settings.access_log_slow_ms),
            SecurityHeaders(),
            Limits(settings, state.limits),
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
