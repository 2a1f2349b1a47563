"""WORKERS > 1: the parent process. It binds the listening socket, starts the workers
(app/processes/balanced.py) with the memory they share their load in, replaces a worker
that dies or whose event loop stops beating, replaces them one at a time on SIGHUP (new
Python code without closing the socket, as uvicorn's supervisor does), and on SIGTERM or
SIGINT stops them all, each shutting down gracefully as uvicorn does.

Why not uvicorn's own supervisor (uvicorn.supervisors.Multiprocess): it builds a plain
uvicorn Server in each worker, with no way to give it another, and its workers accept
by chance (see balanced.py). What it does besides (SIGTTIN/SIGTTOU: one worker more or
less) the API does without.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import signal
import socket
import threading
import time
from multiprocessing.context import SpawnProcess

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from .balanced import BalancedServer
from .slots import Slots

log = logging.getLogger("emberlog.workers")
# How long a worker may take to stop once told (uvicorn's own wait is unbounded): its
# open streams end at once (app/lifespan.py); calls in flight get this long.
GRACE = 30.0  # seconds
SPAWN = multiprocessing.get_context("spawn")  # a fresh interpreter: no state forked


def run_worker(config: uvicorn.Config, slots: Slots, index: int, listener: socket.socket) -> None:
    """A worker process's main."""
    config.configure_logging()
    BalancedServer(config, slots, index).run(sockets=[listener])


class Supervisor:
    """The workers of one listening socket."""

    def __init__(self, config: uvicorn.Config, workers: int) -> None:
        self.config = config
        self.slots = Slots.create(workers)
        self.processes: list[SpawnProcess] = []
        self.stopping = threading.Event()
        self.grace = config.timeout_graceful_shutdown or GRACE
        self.to_restart: list[int] = []  # SIGHUP's workers, not yet replaced
        # The one being replaced, and when it was told to stop.
        self.retiring: tuple[int, SpawnProcess, float] | None = None

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the exit status (a worker's failed start ends all)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        signal.signal(signal.SIGHUP, lambda *_: self.restart())
        self.listener = self.config.bind_socket()
        self.listener.listen(self.config.backlog)  # bound only: uvicorn's loop would listen
        self.processes = [self.spawn(index) for index in range(len(self.slots))]
        status = 0
        while not self.stopping.wait(0.5):
            if not self.replace_lost():
                status = STARTUP_FAILURE
                break
            self.roll()
        self.stop_all()
        return status

    def spawn(self, index: int) -> SpawnProcess:
        self.slots.reset(index)  # not waited for until its loop beats
        target = functools.partial(run_worker, self.config, self.slots, index, self.listener)
        process = SPAWN.Process(target=target, name=f"emberlog-worker-{index}")
        process.start()
        log.info("worker %d started (pid %s)", index, process.pid)
        return process

    def replace_lost(self) -> bool:
        """Start a new worker for each one that died or hung; False when one could not
        start at all (the app or its settings are broken: every new one would fail)."""
        for index, process in enumerate(self.processes):
            silent = self.slots.silent_for(index)
            hung = silent is not None and silent > self.config.timeout_worker_healthcheck
            if process.is_alive() and not hung:
                continue
            if hung:
                log.error("worker %d (pid %s) hung for %.0f s: killed", index, process.pid, silent)
                process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                log.error("worker %d failed to start: stopping", index)
                return False
            if self.stopping.is_set():
                return True
            retired = self.retiring is not None and self.retiring[1] is process
            (log.info if retired else log.error)(
                "worker %d (pid %s) exited with %s", index, process.pid, process.exitcode
            )
            self.processes[index] = self.spawn(index)
        return True

    def restart(self) -> None:
        """SIGHUP: every worker replaced, one at a time (roll)."""
        if not self.to_restart:
            self.to_restart = list(range(len(self.processes)))
            log.info("restarting the workers one at a time (SIGHUP)")

    def roll(self) -> None:
        """The restart's next step: stop the next worker (gracefully) once the last one's
        replacement beats, so the others serve meanwhile (replace_lost starts the new)."""
        if self.retiring is not None:
            index, process, told = self.retiring
            if self.processes[index] is process:  # still stopping
                if time.monotonic() - told > self.grace:
                    self.kill_late(process)  # replace_lost starts the new one
                return
            if self.slots.silent_for(index) is None:
                return  # its replacement is not serving yet
            self.retiring = None
        if self.to_restart:
            index = self.to_restart.pop(0)
            self.retiring = (index, self.processes[index], time.monotonic())
            self.processes[index].terminate()

    def stop_all(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn's graceful shutdown in the worker
        for process in self.processes:
            process.join(self.grace)
            if process.is_alive():
                self.kill_late(process)
                process.join()
        self.listener.close()

    def kill_late(self, process: SpawnProcess) -> None:
        """A worker told to stop that has not within the grace period."""
        log.error("worker pid %s still running after %s s: killed", process.pid, self.grace)
        process.kill()
