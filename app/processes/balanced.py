"""One worker's share of the connections (issue 18): it accepts from the shared listening
socket only while it holds no more connections than the least loaded live worker.

Why: wrk, a browser or a proxy opens its keep-alive connections in a burst and keeps
them. uvicorn's workers each accept in their event loop from the shared socket (or
SO_REUSEPORT's hash chooses): whichever loop wakes first drains the queue, and one
worker held all 32 of wrk's connections in a round of make bench (docs/performance.md).
A blocking accept alone does not fix that either: under a burst, the thread that asks
first takes the next connection again. So each worker looks at the others' counts
(app/processes/slots.py) before it takes one.

The accept runs in a thread of the worker, which polls the listening socket and hands
each connection to the event loop (loop.connect_accepted_socket with uvicorn's own HTTP
protocol); everything else is uvicorn's Server: lifespan, signals, graceful shutdown.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import select
import socket
import threading
import time
from collections.abc import Callable

import uvicorn

from .slots import Slots

log = logging.getLogger("emberlog.workers")

POLL = 0.1  # seconds an accept thread waits for a connection before it looks at stopping
# How long a waiting connection is left to a less loaded worker before this one takes it
# anyway: that worker's accept thread may not get the GIL at once from its busy loop.
PATIENCE = 0.1  # seconds
BEAT = 0.1  # seconds between a loop's beats (its count, and that it is alive)


class Acceptor:
    """The accept thread: waits for a connection, takes it when it is this worker's
    turn (or a waiting one has been left too long), hands it over."""

    def __init__(
        self,
        listener: socket.socket,
        turn: Callable[[], bool],
        hand_over: Callable[[socket.socket], None],
    ) -> None:
        self.listener = listener
        self.turn = turn
        self.hand_over = hand_over
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name="emberlog-accept", daemon=True)

    def start(self) -> None:
        self.listener.setblocking(False)  # every worker's accept may find the queue empty
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()

    def run(self) -> None:
        poller = select.poll()
        poller.register(self.listener, select.POLLIN)
        waiting_since: float | None = None
        while not self.stopping.is_set():
            if not poller.poll(POLL * 1000):
                waiting_since = None
                continue
            now = time.monotonic()
            if not self.turn():
                waiting_since = waiting_since or now
                if now - waiting_since < PATIENCE:
                    time.sleep(0.001)  # the queue is another worker's to take from
                    continue
            waiting_since = None
            self.accept_one()

    def accept_one(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it, or the client gave up
        except OSError as exc:  # e.g. out of file descriptors: wait, do not spin
            log.error("accept failed: %s", exc)
            self.stopping.wait(POLL)
            return
        sock.setblocking(False)
        self.hand_over(sock)


def counted(protocol: type[asyncio.Protocol], closed: Callable[[], None]) -> type:
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
        self.arriving = 0  # accepted, not yet connected to a protocol (loop thread's)
        self.lock = threading.Lock()
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
            counted(self.config.http_protocol_class, self.closed),
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        self.slots.beat(self.index, self.open_connections())
        self.beating = self.loop.create_task(self.beat())
        self.acceptor = Acceptor((sockets or [])[0], self.my_turn, self.hand_over)
        self.acceptor.start()

    def hand_over(self, sock: socket.socket) -> None:
        """From the accept thread: counted at once (the others see it), then the loop's."""
        with self.lock:
            self.arriving += 1
            self.slots.count(self.index, self.open_connections())
        self.loop.call_soon_threadsafe(self.adopt, sock)

    def closed(self) -> None:
        """A connection ended: the others see this worker's count drop at once."""
        self.slots.count(self.index, self.open_connections())

    def adopt(self, sock: socket.socket) -> None:
        task = self.loop.create_task(self.connect(sock))
        self.adopting.add(task)
        task.add_done_callback(self.adopting.discard)

    async def connect(self, sock: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.protocol, sock=sock, ssl=self.config.ssl)
        except OSError:
            sock.close()  # reset before it was ours: nothing to serve
        finally:
            with self.lock:
                self.arriving -= 1

    async def beat(self) -> None:
        """A sign of life, for the other workers and the supervisor."""
        while True:
            self.slots.beat(self.index, self.open_connections())
            await asyncio.sleep(BEAT)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.acceptor is not None:
            self.acceptor.stop()
            self.beating.cancel()
        self.slots.reset(self.index)  # no longer one of the workers the others wait for
        await super().shutdown(sockets=sockets)
