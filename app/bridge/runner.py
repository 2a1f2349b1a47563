"""The bridge's loop: what the broker delivered, in order and in batches, into the
database; each message acknowledged once its batch committed (or once it is known that
it never can be: not JSON, malformed, failing on its own: logged and counted).

SIGTERM or SIGINT: go on applying what was received for up to BRIDGE_DRAIN_SECONDS,
then disconnect. What is left unacknowledged the broker delivers again (QoS 1, the
session is kept), and the database ignores what it already applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from typing import Any

from ..settings import Settings
from . import service
from .sink import BatchFailed, Sink
from .source import Received, Source

log = logging.getLogger("emberlog.bridge")


class Bridge:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.queue: asyncio.Queue[Received] = asyncio.Queue()
        self.sink = Sink(settings)
        self.source: Source | None = None

    def ready(self) -> dict[str, bool]:
        return {
            "mqtt": bool(self.source and self.source.connected),
            "database": self.sink.connected,
        }

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()

        def received(message: Received) -> None:  # on paho's thread
            loop.call_soon_threadsafe(self._enqueue, message)

        self.source = Source(self.settings, received)
        http = service.serve(self.settings.host, self.settings.bridge_port, self.ready)
        self.source.start()  # what arrives before the database answers waits, unacknowledged
        feeding = asyncio.create_task(self._feed(stop))
        await stop.wait()
        drain = self.settings.bridge_drain_seconds
        log.info("stopping: applying what was received (up to %.0f s)", drain)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(feeding), drain)
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeding
        self.source.stop()
        await self.sink.close()
        if http is not None:
            http.shutdown()
        log.info("stopped; %d received message(s) left to the broker", self.queue.qsize())

    def _enqueue(self, message: Received) -> None:
        self.queue.put_nowait(message)
        service.PENDING.inc()

    async def _feed(self, stop: asyncio.Event) -> None:
        """Batches until stopped and nothing received is left."""
        await self.sink.open()
        while not (stop.is_set() and self.queue.empty()):
            batch = await self._next_batch(stop)
            if batch:
                await self._apply(batch)

    async def _next_batch(self, stop: asyncio.Event) -> list[Received]:
        if self.queue.empty():
            getting = asyncio.ensure_future(self.queue.get())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not getting.done():
                getting.cancel()
                return []
            batch = [getting.result()]
        else:
            batch = [self.queue.get_nowait()]
        while len(batch) < self.settings.bridge_batch_size and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        return batch

    async def _apply(self, batch: list[Received]) -> None:
        parsed = [(message, _parsed(message)) for message in batch]
        valid = [(message, body) for message, body in parsed if body is not None]
        results = await self._results([body for _, body in valid])
        for (message, body), result in zip(valid, results, strict=True):
            _count(message, body, result)
        for message, body in parsed:
            if body is None:
                service.MESSAGES.labels(message.message_type, "invalid").inc()
            self._ack(message)
        service.BATCH_SIZE.observe(len(batch))

    async def _results(self, bodies: list[Any]) -> list[dict[str, Any]]:
        if not bodies:
            return []
        try:
            return await self.sink.apply(bodies)
        except BatchFailed:
            return [await self._alone(body) for body in bodies]

    async def _alone(self, body: Any) -> dict[str, Any]:
        """One message of a failed batch on its own: its result, or its failure."""
        try:
            return (await self.sink.apply([body]))[0]
        except BatchFailed as exc:
            return {"status": "failed", "error": {"message": str(exc)}}

    def _ack(self, message: Received) -> None:
        assert self.source is not None
        self.source.ack(message)
        service.PENDING.dec()


def _parsed(message: Received) -> Any:
    """The message as JSON, its type the topic's (as upstream reads it); None when the
    payload is not JSON (logged)."""
    try:
        body = json.loads(message.payload)
    except (UnicodeDecodeError, ValueError) as exc:
        log.warning("%s message is not JSON (%s): dropped", message.message_type, exc)
        return None
    if isinstance(body, dict):
        body["type"] = message.message_type
    return body


def _count(message: Received, body: Any, result: dict[str, Any]) -> None:
    status = result.get("status", "failed")
    service.MESSAGES.labels(message.message_type, status).inc()
    service.EVENTS.inc(result.get("events") or 0)
    if status in ("rejected", "failed"):
        error = (result.get("error") or {}).get("message")
        instance = body.get("instance_id") if isinstance(body, dict) else None
        log_line = log.error if status == "failed" else log.warning
        log_line("%s message from %r %s: %s", message.message_type, instance, status, error)


def run(settings: Settings) -> int:
    """``emberlog-api mqtt-bridge``: until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Bridge(settings).run(stop)

    asyncio.run(main())
    return 0
