"""The app's start-up and shutdown (Falcon's lifespan middleware): what runs beside
the requests while the process lives, and the order it is stopped in.

Start-up: open the pools, create the streams, start the listener (which loads the
routes and finds the streams), the streams' heartbeat, the lag gauges' reads and the
key-use recorder, and the metrics port if METRICS_PORT is set. Shutdown undoes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from types import FrameType
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from .database.connections import create_pool
from .observability.probes import close_probes, probes
from .state import AppState
from .streams.hubs import Streams
from .streams.listener import Listener

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
STREAM_METRICS_EVERY = 5.0  # seconds between reads of each stream's head (lag gauge)

Scope = dict[str, Any]


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
