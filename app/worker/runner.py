"""The worker's loop: a pipeline, not batch-and-wait. Whenever slots are free and there
may be work (a NOTIFY woke it, the poll timer ran out, or the last claim came back full),
claim up to min(WORKER_BATCH_SIZE, free slots); each delivery is a task of its own, at
most WORKER_CONCURRENCY at once, so a slow or hostile receiver holds one slot and nothing
else; each result goes to the recorder, which records them in batches.

SIGTERM or SIGINT: claim nothing more, let what is in flight end (up to
WORKER_DRAIN_SECONDS: an attempt is bounded by WEBHOOK_TIMEOUT_SECONDS anyway), record
the results, exit 0. What was not recorded is claimed again by a worker after its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import socket
from collections.abc import Awaitable, Callable

from ..background import Backoff, run_until_signalled
from ..settings import Settings
from . import service
from .listen import Listener
from .recorder import Recorder
from .records import Delivery
from .sender import Sender
from .store import Store, Unavailable

log = logging.getLogger("emberlog.worker")

FINAL_FLUSH_SECONDS = 5.0  # after the drain: time to record the last results
MAX_DUES = 10_000  # retry due times kept for their alarm


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.store = Store(settings)
        self.sender = Sender(settings)
        self.wake = asyncio.Event()
        self.recorder = Recorder(self.store, self.wake_in, self.wake.set)
        self._dues: list[float] = []  # when retries come due (loop time), a heap
        self._alarm: asyncio.TimerHandle | None = None  # set for the earliest of them
        self.listener = Listener(settings, self.wake)
        self.in_flight: set[asyncio.Task] = set()
        self._slot_freed = asyncio.Event()

    def wake_in(self, seconds: float) -> None:
        """Claim again when a failed delivery comes due (sooner than the next poll). Due
        times wait in a heap, one alarm set for the earliest; at most MAX_DUES of them
        (beyond, the poll finds the rest)."""
        loop = asyncio.get_running_loop()
        if len(self._dues) < MAX_DUES:
            heapq.heappush(self._dues, loop.time() + max(seconds, 0.0))
        self._set_alarm(loop)

    def _set_alarm(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._dues and self._dues[0] <= loop.time():
            heapq.heappop(self._dues)
            self.wake.set()
        if not self._dues:
            return
        earliest = self._dues[0]
        if self._alarm is not None:
            if self._alarm.when() <= earliest and not self._alarm.cancelled():
                return
            self._alarm.cancel()
        self._alarm = loop.call_at(earliest, self._alarm_rang, loop)

    def _alarm_rang(self, loop: asyncio.AbstractEventLoop) -> None:
        self._alarm = None
        self._set_alarm(loop)

    def ready(self) -> dict[str, bool]:
        return {"database": self.store.connected, "listen": self.listener.connected}

    async def run(self, stop: asyncio.Event) -> int:
        """Until stop is set (then drain), or the claim loop fails (a bug: exit 1)."""
        s = self.settings
        http = service.serve(s.host, s.worker_port, self.ready)
        await self.sender.open()
        log.info("worker %s: up to %d webhooks at once, timeout %g s, lease %g s",
                 self.name, s.worker_concurrency, s.webhook_timeout_seconds,
                 self.store.lease_seconds)  # fmt: skip
        helpers = [asyncio.create_task(self.listener.run()), asyncio.create_task(self._gauges())]
        recording = asyncio.create_task(self.recorder.run())
        claiming = asyncio.create_task(self._claim_loop(stop))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({claiming, stopping}, return_when=asyncio.FIRST_COMPLETED)
        failed = claiming.done() and not claiming.cancelled() and claiming.exception() is not None
        if failed:
            log.critical("the claim loop failed: exiting", exc_info=claiming.exception())
        await self._drain(claiming, recording)
        for task in (*helpers, stopping):
            task.cancel()
        await asyncio.gather(*helpers, stopping, return_exceptions=True)
        await self.sender.close()
        await self.store.close()
        if http is not None:
            http.shutdown()
        log.info("stopped")
        return 1 if failed else 0

    async def _drain(self, claiming: asyncio.Task, recording: asyncio.Task) -> None:
        drain = self.settings.worker_drain_seconds
        done, _ = await asyncio.wait({claiming}, timeout=drain)  # a claim under way ends
        if not done:
            claiming.cancel()
        log.info("stopping: %d webhook(s) in flight (waiting up to %g s)", len(self.in_flight),
                 drain)  # fmt: skip
        if self.in_flight:
            _, late = await asyncio.wait(set(self.in_flight), timeout=drain)
            for task in late:
                task.cancel()  # not recorded: claimed again after its lease
            await asyncio.gather(*late, return_exceptions=True)
            if late:
                log.warning("%d webhook(s) still in flight after the drain: abandoned", len(late))
        self.recorder.close()
        try:
            await asyncio.wait_for(recording, FINAL_FLUSH_SECONDS)
        except TimeoutError:
            log.warning("%d result(s) not recorded: claimed again after their lease",
                        len(self.recorder.pending))  # fmt: skip

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        await self._retrying(stop, self._set_notifier)
        backoff = Backoff()
        more = True  # at start there may be work waiting
        while not stop.is_set():
            free = self.settings.worker_concurrency - len(self.in_flight)
            if free <= 0:
                self._slot_freed.clear()
                await _first(stop, self._slot_freed)
                continue
            if not more:
                await _first(stop, self.wake, timeout=self.settings.worker_poll_seconds)
                if stop.is_set():
                    break
            self.wake.clear()
            want = min(self.settings.worker_batch_size, free)
            try:
                claimed = await self.store.claim(self.name, want)
            except Unavailable:
                more = True
                await _first(stop, timeout=backoff.next())
                continue
            backoff.reset()
            more = len(claimed) == want
            for delivery in claimed:
                self._start(delivery)

    def _start(self, delivery: Delivery) -> None:
        task = asyncio.create_task(self._deliver(delivery))
        self.in_flight.add(task)
        service.IN_FLIGHT.inc()

        def ended(task: asyncio.Task) -> None:
            self.in_flight.discard(task)
            service.IN_FLIGHT.dec()
            self._slot_freed.set()

        task.add_done_callback(ended)

    async def _deliver(self, delivery: Delivery) -> None:
        result, seconds = await self.sender.send(delivery)
        service.DELIVERY_SECONDS.observe(seconds)
        self.recorder.add(result)

    async def _set_notifier(self) -> None:
        if self.settings.notifier_base_url is None:
            log.info(
                "NOTIFIER_BASE_URL unset: the system destination is left as the database has it"
            )
            return
        url = await self.store.set_notifier()
        log.info("notifier destination: %s", url)

    async def _retrying(self, stop: asyncio.Event, call: Callable[[], Awaitable[None]]) -> None:
        backoff = Backoff()
        while not stop.is_set():
            try:
                return await call()
            except Unavailable:
                await _first(stop, timeout=backoff.next())

    async def _gauges(self) -> None:
        """The queue's gauges, every poll (skipped while the database is away)."""
        while True:
            with contextlib.suppress(Unavailable):
                await self.store.refresh_gauges()
            await asyncio.sleep(self.settings.worker_poll_seconds)


async def _first(*events: asyncio.Event, timeout: float | None = None) -> None:
    """Until any of the events is set, or timeout seconds."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def run(settings: Settings) -> int:
    """``emberlog-api worker``: until SIGTERM or SIGINT."""
    return run_until_signalled(lambda stop: Worker(settings).run(stop))
