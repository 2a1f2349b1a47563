"""One client of a hub: its place in the hub's ring (Subscriber), and the frames it is
sent, in order: the retry hint and its position, a reset or a replay from the log if
it needs one, then live events from the ring, with pings while nothing happens.

A client resuming from an id the ring still covers starts inside the ring; an older
one first replays from the log (as its own role), then reads the ring, skipping ids it
has already sent. Ids become visible in order (see migrations/0007.event_queue.sql),
so "after id N" never skips an event that committed late. A client further behind than
SSE_REPLAY_LIMIT gets a ``reset`` instead of that replay, as if the log were pruned: a
replay costs the server a query per batch and the whole backlog's bytes per connection.
Which of these a client gets is decided when it subscribes (app/streams/hub.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from .frames import PING, Frame, encode, hello

if TYPE_CHECKING:
    from .hub import Hub

log = logging.getLogger("app.streams")  # one logger for everything the streams log


class SlowClient(Exception):
    """The client fell a whole ring behind: events it has not read are gone from it."""


class Subscriber:
    """One connected client: its place in the hub's ring and the last id it was sent."""

    __slots__ = (
        "closed",
        "last_id",
        "on_close",
        "ping",
        "position",
        "reset",
        "sending",
        "sending_since",
        "task",
        "values",
        "waiter",
        "wants",
    )

    def __init__(self, position: int, last_id: int) -> None:
        self.position = position
        self.last_id = last_id
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.ping = False
        self.sending = False
        self.sending_since = 0.0
        self.task = asyncio.current_task()
        self.reset: Frame | None = None  # sent first instead of a replay (too far behind)
        self.on_close: Callable[[], None] | None = None  # called once, when unsubscribed
        self.values: dict[str, Any] = {}  # the stream filters given (for the replay)
        self.wants: Callable[[Any], bool] | None = None  # which live frames (filters.py)

    def wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        await self.waiter


async def frames(
    hub: Hub, sub: Subscriber, replay: bool, context: Any, retry_ms: int
) -> AsyncIterator[Frame]:
    """The frames one client is sent: retry hint and position, a reset or a replay if
    needed, live.

    The first frame carries ``id:`` (no data): a client that connected without an
    id still resumes from here if the connection drops before its first event.
    ``sub.sending`` is true exactly while a frame is being written (the generator is
    suspended at a yield): a client stuck there can only be cancelled.
    """
    try:
        yield _sending(sub, hello(retry_ms, sub.last_id))
        sub.sending = False
        if sub.reset is not None:
            reset, sub.reset = sub.reset, None
            sub.last_id = reset.event_id
            hub.metrics.sse_events_delivered.inc()
            yield _sending(sub, reset)
            sub.sending = False
        if replay:
            try:
                async for frame in _replay(hub, sub, context):
                    yield _sending(sub, frame)
                    sub.sending = False
            except Exception as exc:  # e.g. the database is away: end; the client retries
                log.warning("stream %s: replay failed (%s)", hub.route.template, exc)
                return
        context = None  # only the replay reads as the client: not held while it idles
        while not sub.closed:
            frame = _next(hub, sub)
            if frame is None:
                await sub.wait()
                continue
            yield _sending(sub, frame)
            sub.sending = False
    except SlowClient:
        hub.metrics.sse_slow_disconnects.inc()
        log.warning("stream %s: closing a client that fell behind", hub.route.template)
    finally:
        hub.unsubscribe(sub)


def _sending(sub: Subscriber, frame: Frame) -> Frame:
    sub.sending = True
    sub.sending_since = asyncio.get_running_loop().time()
    return frame


def _next(hub: Hub, sub: Subscriber) -> Frame | None:
    frame = hub.take(sub)
    if frame is not None:
        hub.metrics.sse_events_delivered.inc()
        return frame
    if sub.ping:
        sub.ping = False
        return PING
    return None


async def _replay(hub: Hub, sub: Subscriber, context: Any) -> AsyncIterator[Frame]:
    """Every event after the client's id, from the log, as the client's role, through
    its filters. A stream with filters may return fewer rows than a whole batch and
    still have more (it reads a batch, then filters): it is read until a call moves the
    position no further."""
    filtered = bool(hub.route.stream_params)
    while not sub.closed:
        before = sub.last_id
        if filtered:
            rows = await hub.fetch(hub.route, sub.last_id, hub.batch, context, sub.values)
        else:
            rows = await hub.fetch(hub.route, sub.last_id, hub.batch, context)
        for event_id, event, data, *_ in rows:
            if sub.closed:
                return
            # Only a reset may move the position back (the log does not know the id).
            if event_id <= sub.last_id and event != "reset":
                continue
            sub.last_id = event_id
            if event is not None:
                hub.metrics.sse_events_replayed.inc()
                hub.metrics.sse_events_delivered.inc()
                yield encode(event_id, event, data)
        if (len(rows) < hub.batch) if not filtered else (not rows or sub.last_id == before):
            return
