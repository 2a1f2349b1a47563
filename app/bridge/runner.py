"""The bridge's loop: what the broker delivered, in order and in batches, into the
database (a batch split by Trunk Recorder instance over BRIDGE_CONNECTIONS connections);
each message acknowledged, in the order received, once its batch committed (or once it is known that
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
import zlib
from typing import Any

from ..background import run_until_signalled
from ..settings import Settings
from . import service
from .sink import BatchFailed, Sink
from .source import Received, Source

log = logging.getLogger("emberlog.bridge")
UNREADABLE = object()  # a payload that is not JSON: dropped, counted invalid


class Bridge:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.queue: asyncio.Queue[Received] = asyncio.Queue()
        self.sinks = [Sink(settings) for _ in range(settings.bridge_connections)]
        self.source: Source | None = None

    def ready(self) -> dict[str, bool]:
        return {
            "mqtt": bool(self.source and self.source.connected),
            "database": all(sink.connected for sink in self.sinks),
        }

    async def run(self, stop: asyncio.Event) -> int:
        """Until stop is set (then drain) or the feeding loop fails (then exit 1, so that
        the process is restarted: nothing it had not applied was acknowledged)."""
        loop = asyncio.get_running_loop()

        def received(message: Received) -> None:  # on paho's thread
            loop.call_soon_threadsafe(self._enqueue, message, stop)

        self.source = Source(self.settings, received)
        http = service.serve(self.settings.host, self.settings.bridge_port, self.ready)
        self.source.start()  # what arrives before the database answers waits, unacknowledged
        feeding = asyncio.create_task(self._feed(stop))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({feeding, stopping}, return_when=asyncio.FIRST_COMPLETED)
        failed = feeding.done() and not feeding.cancelled() and feeding.exception() is not None
        if failed:
            log.critical("the bridge failed: exiting", exc_info=feeding.exception())
        else:
            await self._drain(feeding)
        stopping.cancel()
        self.source.stop()
        for sink in self.sinks:
            await sink.close()
        if http is not None:
            http.shutdown()
        log.info("stopped; %d received message(s) left to the broker", self.queue.qsize())
        return 1 if failed else 0

    async def _drain(self, feeding: asyncio.Task) -> None:
        """Apply what was received (nothing more is taken in) for up to the drain time."""
        drain = self.settings.bridge_drain_seconds
        log.info("stopping: applying what was received (up to %.0f s)", drain)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(feeding), drain)
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeding

    def _enqueue(self, message: Received, stop: asyncio.Event) -> None:
        if stop.is_set():  # draining: not taken, not acknowledged (the broker keeps it)
            return
        self.queue.put_nowait(message)
        service.PENDING.inc()

    async def _feed(self, stop: asyncio.Event) -> None:
        """Batches until stopped and nothing received is left."""
        await asyncio.gather(*(sink.open() for sink in self.sinks))
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
        limit = self.settings.bridge_max_message_bytes
        parsed = [(message, _parsed(message, limit)) for message in batch]
        valid = [(message, body) for message, body in parsed if body is not UNREADABLE]
        results = await self._results([body for _, body in valid])
        for (message, body), result in zip(valid, results, strict=True):
            _count(message, body, result)
        for message, body in parsed:
            if body is UNREADABLE:
                service.MESSAGES.labels(message.message_type, "invalid").inc()
            self._ack(message)
        service.BATCH_SIZE.observe(len(batch))

    async def _results(self, bodies: list[Any]) -> list[dict[str, Any]]:
        """Each message's result, in order. The batch is split by Trunk Recorder
        instance over the connections (an instance's messages always on the same one,
        in order: a feed's order is all that matters), applied side by side."""
        shards: dict[int, list[int]] = {}
        for i, body in enumerate(bodies):
            shards.setdefault(self._shard(body), []).append(i)
        answers = await asyncio.gather(
            *(
                self._shard_results(self.sinks[k], [bodies[i] for i in at])
                for k, at in shards.items()
            )
        )
        results: list[dict[str, Any]] = [{}] * len(bodies)
        for at, answer in zip(shards.values(), answers, strict=True):
            for i, result in zip(at, answer, strict=True):
                results[i] = result
        return results

    def _shard(self, body: Any) -> int:
        instance = body.get("instance_id") if isinstance(body, dict) else None
        return zlib.crc32(str(instance).encode()) % len(self.sinks)

    async def _shard_results(self, sink: Sink, bodies: list[Any]) -> list[dict[str, Any]]:
        try:
            return await sink.apply(bodies)
        except BatchFailed:
            return [await self._alone(sink, body) for body in bodies]

    async def _alone(self, sink: Sink, body: Any) -> dict[str, Any]:
        """One message of a failed batch on its own: its result, or its failure."""
        try:
            return (await sink.apply([body]))[0]
        except BatchFailed as exc:
            return {"status": "failed", "error": {"message": str(exc)}}

    def _ack(self, message: Received) -> None:
        assert self.source is not None
        self.source.ack(message)
        service.PENDING.dec()


def _parsed(message: Received, limit: int) -> Any:
    """The message as JSON, its type the topic's (as upstream reads it); UNREADABLE when
    the payload is too large or not JSON (logged)."""
    if len(message.payload) > limit:
        log.warning("%s message of %d bytes, over BRIDGE_MAX_MESSAGE_BYTES: dropped",
                    message.message_type, len(message.payload))  # fmt: skip
        return UNREADABLE
    try:
        body = json.loads(message.payload)
    except Exception as exc:  # not UTF-8, not JSON, nested too deep (RecursionError)
        reason = f"{type(exc).__name__}: {exc}"[:200]
        log.warning("%s message is not JSON (%s): dropped", message.message_type, reason)
        return UNREADABLE
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
    return run_until_signalled(lambda stop: Bridge(settings).run(stop))
