"""Results into the database in batches: each attempt's result is queued here the moment
it ends, and one ``api.finish_alert_deliveries`` call records what gathered within
FLUSH_SECONDS (or BATCH_SIZE of them), so a thousand quick deliveries are a handful of
transactions, and a slow one never holds the others' results back.

While the database is away, results wait and are tried again with backoff, but only until
their lease would run out: after that another worker may have claimed the delivery again,
so a result kept that long is dropped (counted stale) and the delivery is retried after
its lease, as though this worker had died. A batch the database refuses (a data error:
trying it again cannot help) is recorded one result at a time, so that one bad result
cannot hold the others back; one that is refused on its own is dropped the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from ..background import Backoff
from . import service
from .records import Result
from .store import Refused, Store, Unavailable

log = logging.getLogger("emberlog.worker")

FLUSH_SECONDS = 0.005
BATCH_SIZE = 200
# A result is recorded only if its finish call can end before the lease does.
FINISH_MARGIN_SECONDS = 2.0


class Recorder:
    def __init__(
        self, store: Store, retry_due: Callable[[float], None], recorded: Callable[[], None]
    ) -> None:
        """retry_due(seconds) is told when a failed delivery is due again; recorded() after
        each batch is recorded (those deliveries no longer count against their user's
        WEBHOOK_USER_IN_FLIGHT: more of theirs may be claimed now)."""
        self.store = store
        self.retry_due = retry_due
        self.recorded = recorded
        self.pending: list[Result] = []
        self.closing = False  # set once nothing more will be added: run() ends when empty
        self._arrived = asyncio.Event()

    def add(self, result: Result) -> None:
        self.pending.append(result)
        self._arrived.set()

    def close(self) -> None:
        self.closing = True
        self._arrived.set()

    async def run(self) -> None:
        """Until closed and every result recorded (or dropped as stale)."""
        backoff = Backoff(0.2, 5.0)
        while True:
            if not self.pending:
                if self.closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            if len(self.pending) < BATCH_SIZE and not self.closing:
                await asyncio.sleep(FLUSH_SECONDS)  # let the results of a burst gather
            if await self._flush():
                backoff.reset()
            else:
                await asyncio.sleep(backoff.next())

    async def _finish(self, results: list[Result]) -> dict[str, tuple[str, float | None]]:
        """finish(results); when the database refuses the batch, each result on its own
        (what is refused alone is left out: stale, retried after its lease)."""
        try:
            return await self.store.finish(results)
        except Refused:
            if len(results) == 1:
                return {}
        outcomes: dict[str, tuple[str, float | None]] = {}
        for result in results:
            with contextlib.suppress(Refused):
                outcomes.update(await self.store.finish([result]))
        return outcomes

    async def _flush(self) -> bool:
        """Record the oldest batch; False when the database could not be reached."""
        batch = self.pending[:BATCH_SIZE]
        now = time.monotonic()
        live = [r for r in batch if r.deadline > now + FINISH_MARGIN_SECONDS]
        for result in batch:
            if result not in live:
                log.warning("delivery %s attempt %d: result not recorded, its lease ran out",
                            result.id, result.attempt)  # fmt: skip
                service.DELIVERIES.labels("stale").inc()
        outcomes: dict[str, tuple[str, float | None]] = {}
        if live:
            try:
                outcomes = await self._finish(live)
            except Unavailable:
                self.pending[: len(batch)] = live  # the stale ones go, the live ones wait
                return False
        del self.pending[: len(batch)]
        if outcomes:
            self.recorded()
        for result in live:
            outcome, due_in = outcomes.get(result.id, ("stale", None))
            service.DELIVERIES.labels(outcome).inc()
            if due_in is not None:
                self.retry_due(due_in)
            if outcome != "delivered":
                line = log.info if outcome == "failed" else log.warning
                line("delivery %s attempt %d %s: %s", result.id, result.attempt,
                     "retrying" if outcome == "failed" else outcome,
                     result.error or "superseded")  # fmt: skip
        return True
