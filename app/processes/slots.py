"""The load the workers of one supervisor share (app/processes/supervisor.py): per
worker, how many connections it holds open and when its event loop last beat.

A flat array of doubles in shared memory, two per worker, each pair written only by its
worker's event loop (app/processes/balanced.py) and reset by the supervisor when it
starts a replacement. Readers take what they find: a count a moment
old only decides which worker accepts the next connection.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import MutableSequence
from dataclasses import dataclass

# A worker whose loop has not beaten for this long is not counted when the others decide
# whose turn it is (hung, stopping, or not started yet): it cannot hold up their accepts.
STALE = 2.0  # seconds
# A worker may run ahead of the least loaded by one connection in SLACK of that one's: at
# a few dozen connections the split stays exact, and a storm of thousands (streams
# reconnecting after a restart) is taken in runs instead of one by one (3,000 at once:
# 1.35 s strictly alternating, against 0.55-0.59 s with uvicorn's accept).
SLACK = 32


@dataclass(frozen=True)
class Slots:
    """Per worker: open connections, and the time.monotonic() of its last beat (0: none).
    CLOCK_MONOTONIC is one clock for every process of the machine."""

    shared: MutableSequence[float]

    @classmethod
    def create(cls, workers: int) -> Slots:
        """Zeroed memory the supervisor hands to each worker it spawns."""
        context = multiprocessing.get_context("spawn")
        return cls(context.RawArray("d", 2 * workers))

    def __len__(self) -> int:
        return len(self.shared) // 2

    def count(self, index: int, open_connections: int) -> None:
        """A worker's count, as it changes (a connection taken or closed)."""
        self.shared[2 * index] = float(open_connections)

    def beat(self, index: int, open_connections: int) -> None:
        """A worker's beat: its count, and that its loop runs (every BEAT seconds)."""
        self.count(index, open_connections)
        self.shared[2 * index + 1] = time.monotonic()

    def reset(self, index: int) -> None:
        """No beat yet (a worker starting, or one that stopped)."""
        self.shared[2 * index] = 0.0
        self.shared[2 * index + 1] = 0.0

    def silent_for(self, index: int) -> float | None:
        """Seconds since the worker's last beat; None if it has not beaten yet."""
        beat = self.shared[2 * index + 1]
        return time.monotonic() - beat if beat else None

    def my_turn(self, index: int, open_here: int) -> bool:
        """Whether this worker may accept: it holds no more connections than the least
        loaded of the other live workers, give or take one in SLACK of theirs (ties: any
        of them may)."""
        now = time.monotonic()
        return not any(
            self.shared[2 * other] + self.shared[2 * other] // SLACK < open_here
            for other in range(len(self))
            if other != index and self.live(other, now)
        )

    def live(self, index: int, now: float) -> bool:
        """It has beaten, and not too long ago."""
        beat = self.shared[2 * index + 1]
        return bool(beat) and now - beat < STALE
