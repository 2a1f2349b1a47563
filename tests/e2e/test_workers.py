"""WORKERS > 1 (app/processes/): connections shared evenly between the workers, however
they arrive; a worker that dies or hangs is replaced, and holds up no one meanwhile;
SIGHUP replaces them all one at a time while the others serve; one SIGTERM stops them
all."""

from __future__ import annotations

import collections
import contextlib
import http.client
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx

from ops.local import workers
from tests.waiting import wait_until

CONNECTIONS = 32


def both_running(server, without: int = 0) -> set[int]:
    """The two workers' pids, once there are two (and none of them is `without`)."""

    def running() -> set[int]:
        found = set(workers(server.process.pid))
        return found if len(found) == 2 and without not in found else set()

    return wait_until(running, what="two workers running")


@contextlib.contextmanager
def connected(port: int, count: int) -> Iterator[list[http.client.HTTPConnection]]:
    """count keep-alive connections, all opened before any is used (as wrk opens them),
    closed on the way out."""
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(count)]
    try:
        for connection in connections:
            connection.connect()
        yield connections
    finally:
        for connection in connections:
            connection.close()


def served_by(connection: http.client.HTTPConnection) -> str:
    """Which worker answered: its request ids share a prefix (app/http/middleware.py)."""
    connection.request("GET", "/healthz")
    response = connection.getresponse()
    response.read()
    assert response.status == 200
    return response.headers["X-Request-ID"][:16]


def serving(port: int) -> set[str]:
    """The workers that answer 8 new connections."""
    with connected(port, 8) as connections:
        return {served_by(c) for c in connections}


def test_a_burst_of_keep_alive_connections_is_shared_evenly(serve):
    server = serve(WORKERS="2")
    with connected(server.port, CONNECTIONS) as connections:
        shares = collections.Counter(served_by(c) for c in connections)
        assert len(shares) == 2, shares
        assert all(12 <= n <= 20 for n in shares.values()), shares  # uvicorn's own: 32/0 seen
        again = collections.Counter(served_by(c) for c in connections)
        assert again == shares  # each connection stays with its worker


def test_each_worker_opens_its_part_of_the_pool(serve):
    server = serve(WORKERS="2", POOL_MAX_SIZE="6", POOL_MIN_SIZE="2")
    with connected(server.port, CONNECTIONS) as connections:
        by_worker = {served_by(c): c for c in connections}
        assert len(by_worker) == 2, by_worker
        for connection in by_worker.values():
            connection.request("GET", "/metrics")
            response = connection.getresponse()
            text = response.read().decode()
            assert response.status == 200
            assert 'emberlog_pool_max_size{pool="requests"} 3.0' in text  # 6 split, not 6 each


def test_a_killed_worker_is_replaced_and_sigterm_stops_them_all(serve):
    server = serve(WORKERS="2")
    victim = min(both_running(server))
    os.kill(victim, signal.SIGKILL)
    now = both_running(server, without=victim)  # a replacement
    wait_until(lambda: len(serving(server.port)) == 2, what="both serving")
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(30) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in now)


def test_a_hung_worker_holds_up_no_new_connection_and_is_replaced(serve):
    server = serve(WORKERS="2")
    stuck = min(both_running(server))
    os.kill(stuck, signal.SIGSTOP)  # its loop no longer beats nor accepts
    try:
        assert len(serving(server.port)) == 1  # all by the live one
        both_running(server, without=stuck)  # killed, and replaced
        log = server.log_path.read_text()
        assert f"(pid {stuck}) hung for" in log and "killed" in log
    finally:
        if Path(f"/proc/{stuck}").exists():
            os.kill(stuck, signal.SIGKILL)


def test_sighup_replaces_every_worker_one_at_a_time_while_the_others_serve(serve):
    server = serve(WORKERS="2")
    before = both_running(server)
    answers: list[int] = []
    done = threading.Event()

    def client() -> None:
        """A new connection per request; one retry of a GET whose connection closed
        before any answer (a worker stopping right after taking it), as browsers do."""
        while not done.is_set():
            for attempt in (1, 2):
                try:
                    answers.append(httpx.get(f"{server.base}/healthz", timeout=10).status_code)
                    break
                except httpx.TransportError:
                    if attempt == 2:
                        answers.append(0)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        server.process.send_signal(signal.SIGHUP)
        after = wait_until(
            lambda: (pids := both_running(server)).isdisjoint(before) and pids,
            timeout=60,
            what="both workers replaced",
        )
        wait_until(lambda: len(serving(server.port)) == 2, what="both serving")
    finally:
        done.set()
        thread.join()
    assert set(answers) == {200}, collections.Counter(answers)
    assert server.process.poll() is None and len(after) == 2
