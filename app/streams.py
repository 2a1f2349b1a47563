"""Live streams: one hub per stream declared in SQL, fed from the event log.

The listener's NOTIFY carries only an event id; it pokes the hub, which fetches every
row after its cursor, in batches, through the stream function. Each event is encoded
once and appended to a ring shared by all of the hub's clients. A client reads the ring
from its own position: a bounded queue that costs nothing per client. A client a whole
ring behind is closed (it resumes with Last-Event-ID) and never holds the others up.

A client resuming from an id the ring still covers starts inside the ring; an older
one first replays from the log (as its own role), then reads the ring, skipping ids it
has already sent. Ids become visible in order (see migrations/0007.event_queue.sql),
so "after id N" never skips an event that committed late. A client further behind than
SSE_REPLAY_LIMIT gets a ``reset`` instead of that replay, as if the log were pruned: a
replay costs the server a query per batch and the whole backlog's bytes per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .metrics import Metrics
from .routes import Route
from .stream_limits import OpenStreams

log = logging.getLogger(__name__)

Row = tuple[int, str | None, str | None]  # (event id, event name or None, data JSON text)
Fetch = Callable[[Route, int | None, int, Any], Awaitable[list[Row]]]


class Frame:
    """One encoded SSE frame. Falcon writes what ``serialize()`` returns."""

    __slots__ = ("data", "event_id")

    def __init__(self, event_id: int, data: bytes) -> None:
        self.event_id = event_id
        self.data = data

    def serialize(self, handler: object = None) -> bytes:
        return self.data


def encode(event_id: int, event: str, data: str | None) -> Frame:
    """``id:``, ``event:``, then ``data:`` lines (one line for JSON from PostgreSQL)."""
    lines = LINE_BREAK.split(data if data is not None else "null")
    body = "".join(f"data: {line}\n" for line in lines)
    name = " ".join(event.split())
    return Frame(event_id, f"id: {event_id}\nevent: {name}\n{body}\n".encode())


LINE_BREAK = re.compile(r"\r\n|\r|\n")  # SSE's line ends only (not U+2028 and the like)
PING = Frame(0, b": ping\n\n")


def hello(retry_ms: int, last_id: int | None = None) -> Frame:
    """The first frame: the reconnect delay, and the position the client is at (if any)."""
    position = "" if last_id is None else f"id: {last_id}\n"
    return Frame(last_id or 0, f"retry: {retry_ms}\n{position}\n".encode())


TOO_FAR_BEHIND = "last_event_id is further behind than this server replays (SSE_REPLAY_LIMIT)"
HEARTBEAT_SLICE = 500  # clients pinged per turn of the event loop


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
        "waiter",
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

    def wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        await self.waiter


class Hub:
    """The fan-out of one stream in this process."""

    def __init__(
        self, route: Route, fetch: Fetch, capacity: int, batch: int, metrics: Metrics
    ) -> None:
        self.route = route
        self.fetch = fetch
        self.capacity = capacity
        self.batch = batch
        self.metrics = metrics
        self.ring: list[Frame | None] = [None] * capacity
        self.end = 0  # frames ever appended; frame n is at ring[n % capacity]
        self.cursor = 0  # newest event id fetched
        self.floor = 0  # every frame with an id above floor is still in the ring
        self.last_frame_at = 0.0  # loop time of the newest frame
        self.ready = asyncio.Event()
        self.subscribers: set[Subscriber] = set()
        self._fetching = False
        self._again = False
        self._task: asyncio.Task[None] | None = None

    # --- filling the ring -------------------------------------------------------------

    def poke(self) -> None:
        """New events may exist: fetch them (coalesced: one fetch loop at a time)."""
        if self._fetching:
            self._again = True
            return
        self._fetching = True
        self._task = asyncio.create_task(self._fetch_new(), name=f"fetch {self.route.template}")

    async def _fetch_new(self) -> None:
        try:
            while True:
                self._again = False
                after = self.cursor if self.ready.is_set() else None
                rows = await self.fetch(self.route, after, self.batch, None)
                self._append(rows)
                if len(rows) < self.batch and not self._again:
                    return
        except Exception as exc:  # the database is away: the next poke catches up
            log.warning("stream %s: fetching events failed (%s)", self.route.template, exc)
        finally:
            self._fetching = False

    def _append(self, rows: list[Row]) -> None:
        appended = False
        for event_id, event, data in rows:
            if not self.ready.is_set():
                self._restart_at(event_id)  # the newest id: live starts after it
                self.ready.set()
            elif event == "reset":
                # The log no longer follows on from what this process has (a restored
                # database, a pruned gap): start over; clients reconnect and get the reset.
                log.warning("stream %s: event log reset at id %d", self.route.template, event_id)
                self._restart_at(event_id)
                self.close_all()
            elif event_id <= self.cursor:
                continue
            elif event is None:
                self.cursor = event_id  # a position only
            else:
                self._push(encode(event_id, event, data))
                appended = True
        if appended:
            self.last_frame_at = asyncio.get_running_loop().time()
            self._wake_all()

    def _restart_at(self, event_id: int) -> None:
        self.cursor = self.floor = event_id
        self.ring = [None] * self.capacity
        self.end = 0

    def _push(self, frame: Frame) -> None:
        slot = self.end % self.capacity
        evicted = self.ring[slot]
        if evicted is not None:
            self.floor = evicted.event_id
        self.ring[slot] = frame
        self.end += 1
        self.cursor = frame.event_id

    def _wake_all(self) -> None:
        oldest = self.end - self.capacity
        for sub in self.subscribers:
            if sub.waiter is not None:
                sub.wake()
            elif sub.sending and sub.position < oldest:
                self._drop_stuck(sub)  # blocked writing to a client that does not read

    # --- clients ----------------------------------------------------------------------

    def subscribe(
        self,
        last_id: int | None,
        replay_limit: int | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> tuple[Subscriber, bool]:
        """A new client and whether it must first replay from the log.

        A client that would replay more than ``replay_limit`` events is given a reset
        instead. ``on_close`` is called once when the client is unsubscribed, however its
        stream ends. Synchronous on purpose: nothing is appended between choosing the
        position and registering the client.
        """
        if last_id is None:
            sub, replay = Subscriber(self.end, self.cursor), False
        elif self.floor <= last_id <= self.cursor:
            sub, replay = Subscriber(self._position_after(last_id), last_id), False
        elif self._too_far_behind(last_id, replay_limit):
            sub, replay = Subscriber(self.end, last_id), False
            sub.reset = self._reset_frame(last_id)
            self.metrics.sse_replays_refused.inc()
        else:
            sub, replay = Subscriber(self.end, last_id), True
        sub.on_close = on_close
        self.subscribers.add(sub)
        self.metrics.sse_clients.inc()
        return sub, replay

    def _too_far_behind(self, last_id: int, replay_limit: int | None) -> bool:
        """Older than the ring and more than ``replay_limit`` ids behind the head. Ids are
        dense but for pruned gaps (and other streams' events), so this errs towards a
        reset, never towards a long replay."""
        if replay_limit is None or last_id >= self.floor:
            return False
        return self.cursor - last_id > replay_limit

    def _reset_frame(self, last_id: int) -> Frame:
        """The ``reset`` a pruned log gives (see internal.read_events): the client refetches
        and goes on live after the hub's cursor, where this client starts in the ring."""
        data = {
            "reason": TOO_FAR_BEHIND,
            "last_event_id": last_id,
            "resume_after": self.cursor,
        }
        return encode(self.cursor, "reset", json.dumps(data))

    def _position_after(self, last_id: int) -> int:
        position = self.end
        oldest = max(self.end - self.capacity, 0)
        while position > oldest:
            frame = self.ring[(position - 1) % self.capacity]
            if frame is None or frame.event_id <= last_id:
                break
            position -= 1
        return position

    def unsubscribe(self, sub: Subscriber) -> None:
        """The client is gone, closed or dropped: every way a stream ends comes here, at
        least once (its frames' finally, the connection's Watch, close_all)."""
        if sub in self.subscribers:
            self.subscribers.discard(sub)
            self.metrics.sse_clients.dec()
        sub.closed = True
        sub.wake()
        on_close, sub.on_close = sub.on_close, None
        if on_close is not None:
            on_close()

    def take(self, sub: Subscriber) -> Frame | None:
        """The client's next frame from the ring, or None when it has read everything."""
        if sub.position < self.end - self.capacity:
            raise SlowClient()
        while sub.position < self.end:
            frame = self.ring[sub.position % self.capacity]
            sub.position += 1
            assert frame is not None
            if frame.event_id > sub.last_id:
                sub.last_id = frame.event_id
                return frame
        return None

    async def heartbeat(self, quiet_for: float, stuck_after: float) -> None:
        """Ping every client, unless an event went out within ``quiet_for`` seconds (then
        every client has been written to since). In slices, so events are not held up."""
        now = asyncio.get_running_loop().time()
        for sub in [
            s for s in self.subscribers if s.sending and now - s.sending_since > stuck_after
        ]:
            self._drop_stuck(sub)  # one write has taken longer than stuck_after: gone
        if now - self.last_frame_at < quiet_for:
            return
        subscribers = list(self.subscribers)
        for start in range(0, len(subscribers), HEARTBEAT_SLICE):
            for sub in subscribers[start : start + HEARTBEAT_SLICE]:
                sub.ping = True
                if sub.waiter is not None:
                    sub.wake()
            await asyncio.sleep(0)

    def close_all(self) -> None:
        """Shutting down: end every stream (clients reconnect elsewhere and resume)."""
        for sub in list(self.subscribers):
            if sub.sending:
                self._cancel(sub)
            self.unsubscribe(sub)

    def _drop_stuck(self, sub: Subscriber) -> None:
        self.metrics.sse_slow_disconnects.inc()
        log.warning("stream %s: dropping a client that stopped reading", self.route.template)
        self._cancel(sub)
        self.unsubscribe(sub)

    @staticmethod
    def _cancel(sub: Subscriber) -> None:
        sub.closed = True
        if sub.task is not None and sub.task is not asyncio.current_task():
            sub.task.cancel(DROPPED)

    # --- one client's stream ----------------------------------------------------------

    async def frames(
        self, sub: Subscriber, replay: bool, context: Any, retry_ms: int
    ) -> AsyncIterator[Frame]:
        """The frames one client is sent: retry hint and position, a reset or a replay if
        needed, live.

        The first frame carries ``id:`` (no data): a client that connected without an
        id still resumes from here if the connection drops before its first event.
        ``sub.sending`` is true exactly while a frame is being written (the generator is
        suspended at a yield): a client stuck there can only be cancelled.
        """
        try:
            yield self._sending(sub, hello(retry_ms, sub.last_id))
            sub.sending = False
            if sub.reset is not None:
                reset, sub.reset = sub.reset, None
                sub.last_id = reset.event_id
                self.metrics.sse_events_delivered.inc()
                yield self._sending(sub, reset)
                sub.sending = False
            if replay:
                try:
                    async for frame in self._replay(sub, context):
                        yield self._sending(sub, frame)
                        sub.sending = False
                except Exception as exc:  # e.g. the database is away: end; the client retries
                    log.warning("stream %s: replay failed (%s)", self.route.template, exc)
                    return
            while not sub.closed:
                frame = self._next(sub)
                if frame is None:
                    await sub.wait()
                    continue
                yield self._sending(sub, frame)
                sub.sending = False
        except SlowClient:
            self.metrics.sse_slow_disconnects.inc()
            log.warning("stream %s: closing a client that fell behind", self.route.template)
        finally:
            self.unsubscribe(sub)

    @staticmethod
    def _sending(sub: Subscriber, frame: Frame) -> Frame:
        sub.sending = True
        sub.sending_since = asyncio.get_running_loop().time()
        return frame

    def _next(self, sub: Subscriber) -> Frame | None:
        frame = self.take(sub)
        if frame is not None:
            self.metrics.sse_events_delivered.inc()
            return frame
        if sub.ping:
            sub.ping = False
            return PING
        return None

    async def _replay(self, sub: Subscriber, context: Any) -> AsyncIterator[Frame]:
        """Every event after the client's id, from the log, as the client's role."""
        while not sub.closed:
            rows = await self.fetch(self.route, sub.last_id, self.batch, context)
            for event_id, event, data in rows:
                if sub.closed:
                    return
                # Only a reset may move the position back (the log does not know the id).
                if event_id <= sub.last_id and event != "reset":
                    continue
                sub.last_id = event_id
                if event is not None:
                    self.metrics.sse_events_replayed.inc()
                    self.metrics.sse_events_delivered.inc()
                    yield encode(event_id, event, data)
            if len(rows) < self.batch:
                return

    async def stop(self) -> None:
        """End every stream and any fetch in flight."""
        self.close_all()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


DROPPED = "emberlog: SSE client dropped"  # the cancel message the app absorbs


class Streams:
    """Every hub of this process, kept in step with the route table."""

    def __init__(self, fetch: Fetch, metrics: Metrics, capacity: int, batch: int) -> None:
        self.fetch = fetch
        self.metrics = metrics
        self.capacity = capacity
        self.batch = batch
        self.hubs: dict[str, Hub] = {}
        self.closing = False
        self.per_address = OpenStreams()  # process-wide: outlives the hubs a reload replaces

    def sync(self, routes: list[Route]) -> set[str]:
        """Hubs for the stream routes now declared; returns their channels."""
        hubs: dict[str, Hub] = {}
        for route in routes:
            hub = self.hubs.get(route.template)
            if hub is None or hub.route.function != route.function:
                hub = Hub(route, self.fetch, self.capacity, self.batch, self.metrics)
                hub.poke()
            hub.route = route
            hubs[route.template] = hub
        for old in self.hubs.values():
            if old not in hubs.values():
                old.close_all()  # its clients reconnect to what the route is now
        self.hubs = hubs
        return {hub.route.channel for hub in hubs.values() if hub.route.channel}

    async def ready_hub(self, route: Route, timeout: float) -> Hub | None:
        """The route's hub once it knows where live starts (None if not within timeout)."""
        hub = self.hubs.get(route.template)
        if hub is None:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hub.ready.wait(), timeout)
        return hub if hub.ready.is_set() else None

    def ready(self) -> bool:
        """Every hub knows where live starts."""
        return all(hub.ready.is_set() for hub in self.hubs.values())

    def notified(self, channel: str) -> None:
        for hub in self.hubs.values():
            if hub.route.channel == channel:
                hub.poke()

    def poke_all(self) -> None:
        for hub in self.hubs.values():
            hub.poke()

    def shutdown(self) -> None:
        """Refuse new streams and end the open ones."""
        self.closing = True
        for hub in self.hubs.values():
            hub.close_all()

    async def run(
        self, heartbeat: float, poll_interval: float, polling: Callable[[], bool]
    ) -> None:
        """Heartbeats (with a catch-up fetch each), and polling when LISTEN is not usable.

        Checked every half interval, and a client is pinged only when no event went out
        in the half before: no client waits more than ``heartbeat`` seconds for a write.
        """
        half = heartbeat / 2
        tick = min(half, poll_interval)
        since_heartbeat = 0.0
        while True:
            await asyncio.sleep(tick)
            since_heartbeat += tick
            if since_heartbeat >= half:
                since_heartbeat = 0.0
                for hub in list(self.hubs.values()):
                    await hub.heartbeat(quiet_for=half, stuck_after=2 * heartbeat)
                self.poke_all()
            elif polling():
                self.poke_all()

    async def stop(self) -> None:
        self.closing = True
        for hub in self.hubs.values():
            await hub.stop()
