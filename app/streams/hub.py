"""The fan-out of one stream in this process: a ring of encoded events, filled from the
event log, that every client of the stream reads from a position of its own.

The listener's NOTIFY carries only an event id; it pokes the hub, which fetches every
row after its cursor, in batches, through the stream function. Each event is encoded
once and appended to a ring shared by all of the hub's clients. A client reads the ring
from its own position: a bounded queue that costs nothing per client. A client a whole
ring behind is closed (it resumes with Last-Event-ID) and never holds the others up.

Where a new client starts (in the ring, after a replay, or with a reset) is decided
here, at subscribe; what it is then sent, and the replay itself, is app/streams/subscriber.py.
Which hubs exist, and when they are pinged and polled, is app/streams/hubs.py.

Over 200 lines for a reason: one class, whose ring invariants (``end``, ``floor``,
``cursor`` and every subscriber's position) each method here keeps; split, they would
have to be read in several files at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..database.route_table import Route
from ..observability.metrics import Metrics
from .frames import Frame, encode
from .subscriber import SlowClient, Subscriber

log = logging.getLogger("app.streams")  # one logger for everything the streams log

# (event id, event name or None, data JSON text, then a filtered stream's match values)
Row = tuple[Any, ...]
# (route, after id, limit, context or None for the hub's own read, filters or None)
Fetch = Callable[..., Awaitable[list[Row]]]

TOO_FAR_BEHIND = "last_event_id is further behind than this server replays (SSE_REPLAY_LIMIT)"
UNKNOWN = "last_event_id is unknown"  # as internal.read_events says it
HEARTBEAT_SLICE = 500  # clients pinged per turn of the event loop
DROPPED = "emberlog: SSE client dropped"  # the cancel message the app absorbs


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
        for event_id, event, data, *matches in rows:
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
                self._push(encode(event_id, event, data, tuple(matches) if matches else None))
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
        wants: Callable[[Any], bool] | None = None,
    ) -> tuple[Subscriber, bool]:
        """A new client and whether it must first replay from the log.

        A client that would replay more than ``replay_limit`` events is given a reset
        instead. ``on_close`` is called once when the client is unsubscribed, however its
        stream ends; ``wants`` picks the live frames a filtered client takes
        (app/streams/filters.py). Synchronous on purpose: nothing is appended between choosing the
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
        sub.wants = wants
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

    def _reset_frame(self, last_id: int | str, reason: str = TOO_FAR_BEHIND) -> Frame:
        """The ``reset`` a pruned log gives (see internal.read_events): the client refetches
        and goes on live after the hub's cursor, where this client starts in the ring."""
        data = {
            "reason": reason,
            "last_event_id": last_id,
            "resume_after": self.cursor,
        }
        return encode(self.cursor, "reset", json.dumps(data))

    def reset_unknown(self, sub: Subscriber, token: str) -> None:
        """A client subscribed live (no id) whose resume token names no position (see
        app/streams/sse.py): it is sent a ``reset`` first, as for an unknown id."""
        sub.reset = self._reset_frame(token, UNKNOWN)

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
                if sub.wants is None or sub.wants(frame.matches):
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
            # Every client took that frame, but for filtered ones that did not want it:
            # those not written to within quiet_for are pinged all the same.
            subscribers = [
                s
                for s in self.subscribers
                if s.wants is not None and now - s.sending_since >= quiet_for
            ]
        else:
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

    async def stop(self) -> None:
        """End every stream and any fetch in flight."""
        self.close_all()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
