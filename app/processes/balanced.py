"""One worker's share of the connections (issue 18): it accepts from the shared listening
socket only while it holds no more connections than the least loaded live worker (give
or take one in slots.SLACK).

Why: wrk, a browser or a proxy opens its keep-alive connections in a burst and keeps
them. uvicorn's workers each accept in their event loop from the shared socket (or
SO_REUSEPORT's hash chooses): whichever loop wakes first drains the queue, and one
worker held all 32 of wrk's connections in a round of make bench (docs/performance.md).
A blocking accept alone does not fix that either: under a burst, the thread that asks
first takes the next connection again. So each worker looks at the others' counts
(app/processes/slots.py) before it takes one.

The worker's event loop watches the listening socket itself and takes one connection at
a time (loop.connect_accepted_socket, with uvicorn's own HTTP protocol), publishing its
count before it looks again; everything else is uvicorn's Server: lifespan, signals,
graceful shutdown.

A little over ~200 lines: the accept's states (watching, paused, looking again) and the
server whose counts drive them are one mechanism, read together.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import select
import socket
import time
from collections.abc import Callable

import uvicorn

from .slots import Slots

log = logging.getLogger("emberlog.workers")

# How long a waiting connection is left to a less loaded worker before this one takes it
# anyway (that worker's loop may be busy with a long piece of work, or hung).
PATIENCE = 0.1  # seconds
# While it is not its turn, a worker looks at the counts again after RECHECK, doubling
# up to LATEST while no connection waits (a quiet server is not woken 1,000 times a
# second); its own connection closing, or the turn coming back, ends the pause at once.
RECHECK = 0.001  # seconds
LATEST = 0.05  # seconds
BEAT = 0.1  # seconds between a loop's beats (its count, and that it is alive)
BATCH = 16  # connections taken at most per wake-up: the requests in flight come first


class Acceptor:
    """Reads the listening socket in the worker's event loop while it is this worker's
    turn; otherwise stops watching it and looks at the counts again a little later (or at
    once when one of its own connections closes). The count lives in the loop too, so no
    thread and no lock. A first version (a thread per worker, sleeping 1 ms whenever it
    was not its turn) served a connection-per-request client 2,200 req/s against
    uvicorn's 9,800: with connections that come and go, a worker is out of turn after
    nearly every accept, and a fixed sleep capped the rate (docs/performance.md)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        listener: socket.socket,
        turn: Callable[[], bool],
        adopt: Callable[[socket.socket], None],
    ) -> None:
        self.loop = loop
        self.listener = listener
        self.turn = turn
        self.adopt = adopt
        self.watching = False
        self.later: asyncio.TimerHandle | None = None
        self.delay = RECHECK
        self.waiting_since: float | None = None
        self.poller = select.poll()
        self.poller.register(listener, select.POLLIN)

    def start(self) -> None:
        self.listener.setblocking(False)  # every worker's accept may find the queue empty
        self.watch()

    def stop(self) -> None:
        self.unwatch()
        if self.later is not None:
            self.later.cancel()

    def watch(self) -> None:
        if self.later is not None:
            self.later.cancel()
            self.later = None
        if not self.watching:
            self.loop.add_reader(self.listener.fileno(), self.ready)
            self.watching = True

    def unwatch(self) -> None:
        if self.watching:
            self.loop.remove_reader(self.listener.fileno())
            self.watching = False

    def pause(self, delay: float = RECHECK) -> None:
        """Not this worker's turn: the queue is left to the others for now."""
        self.unwatch()
        self.delay = delay
        if self.later is None:
            self.later = self.loop.call_later(delay, self.recheck)

    def maybe_resume(self) -> None:
        """This worker's count dropped: its turn may have come."""
        if not self.watching and self.turn():
            self.watch()

    def ready(self) -> None:
        """The socket has a connection waiting (or had: another worker may be faster)."""
        for _ in range(BATCH):
            if not self.turn():
                return self.pause()
            if not self.take():
                return None
        return None

    def recheck(self) -> None:
        self.later = None
        if self.turn():
            return self.watch()
        if not self.poller.poll(0):
            self.waiting_since = None
            return self.pause(min(self.delay * 2, LATEST))
        now = time.monotonic()
        self.waiting_since = self.waiting_since or now
        if now - self.waiting_since >= PATIENCE:
            self.take()  # left too long by the less loaded: this one takes it
        return self.pause()

    def take(self) -> bool:
        """Accept one connection; False when there was none (or it failed)."""
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return False  # another worker took it, or the client left
        except OSError as exc:  # e.g. out of file descriptors: wait, do not spin
            log.error("accept failed: %s", exc)
            self.pause(PATIENCE)
            return False
        self.waiting_since = None
        sock.setblocking(False)
        self.adopt(sock)
        return True


def counting(protocol: type[asyncio.Protocol], closed: Callable[[], None]) -> type:
    """uvicorn's HTTP protocol, calling closed() once it has forgotten a connection."""

    class Counted(protocol):  # type: ignore[valid-type,misc]
        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            closed()

    return Counted


class BalancedServer(uvicorn.Server):
    """uvicorn's Server, but its listening socket is read by an Acceptor."""

    def __init__(self, config: uvicorn.Config, slots: Slots, index: int) -> None:
        super().__init__(config)
        self.slots = slots
        self.index = index
        self.arriving = 0  # accepted, not yet connected to its protocol
        self.adopting: set[asyncio.Task[None]] = set()
        self.acceptor: Acceptor | None = None  # from startup on

    def open_connections(self) -> int:
        return len(self.server_state.connections) + self.arriving

    def my_turn(self) -> bool:
        return self.slots.my_turn(self.index, self.open_connections())

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # lifespan, and no listener of uvicorn's
        self.loop = asyncio.get_running_loop()
        self.protocol = functools.partial(
            counting(self.config.http_protocol_class, self.closed),
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        self.slots.beat(self.index, self.open_connections())
        self.beating = self.loop.create_task(self.beat())
        self.acceptor = Acceptor(self.loop, (sockets or [])[0], self.my_turn, self.adopt)
        self.acceptor.start()

    def publish(self) -> None:
        """Publish the count as it changes: the others see it at once."""
        self.slots.count(self.index, self.open_connections())

    def closed(self) -> None:
        self.publish()
        if self.acceptor is not None:
            self.acceptor.maybe_resume()

    def adopt(self, sock: socket.socket) -> None:
        self.arriving += 1
        self.publish()
        task = self.loop.create_task(self.connect(sock))
        self.adopting.add(task)
        task.add_done_callback(self.adopting.discard)

    async def connect(self, sock: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.protocol, sock=sock, ssl=self.config.ssl)
        except OSError:
            sock.close()  # reset before it was ours: nothing to serve
        finally:
            self.arriving -= 1

    async def beat(self) -> None:
        """A sign of life, for the other workers and the supervisor."""
        while True:
            self.slots.beat(self.index, self.open_connections())
            await asyncio.sleep(BEAT)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.acceptor is not None:
            # Forgotten first: a connection closing during the shutdown below must not
            # start watching the socket again (closed() resumes only a live acceptor).
            acceptor, self.acceptor = self.acceptor, None
            acceptor.stop()
            self.beating.cancel()
        self.slots.reset(self.index)  # no longer one of the workers the others wait for
        await super().shutdown(sockets=sockets)
