"""The live stream with real uvicorn processes: every writer, resume, many concurrent
writers and resuming clients, killed listener, database restart, stalled clients,
memory over connect/disconnect cycles, SIGTERM, the per-address stream cap and the
replay limit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import socket
import threading
import time

import httpx
import psycopg

from tests import pg
from tests.incidents import payload
from tests.sse import SseClient
from tests.waiting import wait_until

CREATE = "select (api.create_incident(%s::jsonb)->>'id')::bigint"


def create_in_sql(url: str, count: int = 1, **overrides) -> list[int]:
    with pg.connect_as(url, "emberlog_ingest") as conn:
        return [
            conn.execute(CREATE, (json.dumps(payload(**overrides)),)).fetchone()[0]
            for _ in range(count)
        ]


def newest_event(url: str) -> int:
    return (all_events(url, 0) or [0])[-1]


def all_events(url: str, after: int) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return pg.event_ids(conn, after)


def metric(server, name: str) -> float:
    for line in server.http.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(x for x in status if x.startswith("VmRSS:"))
    return int(line.split()[1])


async def test_every_writer_reaches_every_process(serve, fault_database):
    first, second = serve(), serve()
    streams = [SseClient(first.base), SseClient(second.base)]
    async with (
        httpx.AsyncClient(timeout=30) as http,
        streams[0].connect(http),
        streams[1].connect(http),
    ):
        over_http = (
            await http.post(f"{first.base}/api/v1/incidents", json=payload(), headers=first.ingest)
        ).json()
        in_sql = await asyncio.to_thread(create_in_sql, fault_database)
        long_text = payload(transcript="x" * 20_000)  # beyond NOTIFY's 8000 bytes
        other = (
            await http.post(
                f"{second.base}/api/v1/incidents", json=long_text, headers=second.ingest
            )
        ).json()
        newest = newest_event(fault_database)
        for stream in streams:
            await stream.receive(until=newest)
    expected = [over_http["id"], *in_sql, other["id"]]
    for stream in streams:
        assert [e.data["id"] for e in stream.events] == expected
        assert stream.events[-1].data["transcript"] == "x" * 20_000
        assert [e.event for e in stream.events] == ["incident"] * 3


async def test_resume_sends_exactly_the_missed_events(serve, fault_database):
    server = serve()
    stream = SseClient(server.base)
    async with httpx.AsyncClient(timeout=30) as http:
        async with stream.connect(http):
            seen = create_in_sql(fault_database, 2)
            await stream.receive(until=newest_event(fault_database))
        missed = create_in_sql(fault_database, 3)
        async with stream.connect(http):
            await stream.receive(until=newest_event(fault_database))
            later = create_in_sql(fault_database, 1)
            await stream.receive(until=newest_event(fault_database))
    assert [e.data["id"] for e in stream.events] == seen + missed + later
    ids = [e.id for e in stream.events]
    assert ids == sorted(set(ids))


def write_concurrently(url: str, writers: int, transactions: int, stop: threading.Event) -> None:
    """Writers in overlapping transactions of varied length (1-8 incidents, pauses)."""

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        with pg.connect_as(url, "emberlog_ingest") as conn:
            for _ in range(transactions):
                with conn.transaction():
                    for _ in range(rng.randint(1, 8)):
                        conn.execute(CREATE, (json.dumps(payload()),))
                        if rng.random() < 0.3:
                            conn.execute("select pg_sleep(%s)", (rng.random() * 0.03,))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()


async def reconnecting_client(stream: SseClient, http, start: int, stop, url: str) -> None:
    """Connect, read for a random moment, drop, resume with Last-Event-ID; until done."""
    rng = random.Random(id(stream))
    first = True
    while True:
        params = {"last_event_id": str(start)} if first else {}
        first = False
        async with stream.connect(http, **params):
            try:
                async with asyncio.timeout(rng.uniform(0.02, 0.6)):
                    while True:
                        await stream._read()
            except TimeoutError:
                pass
        if stop.is_set():
            newest = newest_event(url)
            async with stream.connect(http):
                await stream.receive(until=newest, timeout=60)
            return


async def test_concurrent_writers_and_resuming_clients_lose_and_repeat_nothing(
    serve, fault_database
):
    # 12 clients per server from one address, each briefly holding two streams as it
    # reconnects (more than MAX_STREAMS_PER_ADDRESS' default share of them).
    env = {"MAX_STREAMS_PER_ADDRESS": "48"}
    servers = [serve(**env), serve(**env)]
    start = newest_event(fault_database)
    stop = threading.Event()
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        streams = [SseClient(servers[n % 2].base) for n in range(24)]
        writing = asyncio.to_thread(write_concurrently, fault_database, 8, 60, stop)
        await asyncio.gather(
            writing,
            *(reconnecting_client(s, http, start, stop, fault_database) for s in streams),
        )
    expected = all_events(fault_database, start)
    assert len(expected) >= 2000
    for stream in streams:
        assert [e.id for e in stream.events] == expected


async def test_a_killed_listener_and_a_database_restart_lose_nothing(
    serve, fault_server, fault_database
):
    server = serve()
    stream = SseClient(server.base)
    async with httpx.AsyncClient(timeout=30) as http, stream.connect(http):
        with psycopg.connect(fault_database, autocommit=True) as conn:
            killed = conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity"
                " where application_name = 'emberlog-api listener'"
            ).fetchall()
        assert killed == [(True,)]
        expected = create_in_sql(fault_database, 5)
        await stream.receive(until=newest_event(fault_database))

        expected += create_in_sql(fault_database, 3)
        fault_server.stop()  # possibly before the process fetched them
        fault_server.restart_after_stop()
        expected += create_in_sql(fault_database, 3)
        await stream.receive(until=newest_event(fault_database), timeout=60)
    assert [e.data["id"] for e in stream.events] == expected
    assert metric(server, "emberlog_listener_reconnects_total") >= 2


def stalled_stream(port: int) -> socket.socket:
    """A client that opens the stream and then never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /api/v1/sse/incidents HTTP/1.1\r\nHost: test\r\n\r\n")
    return sock


async def eventually(check, timeout: float = 20.0) -> None:
    """Poll check() without blocking the event loop (streams keep being read)."""
    async with asyncio.timeout(timeout):
        while not await asyncio.to_thread(check):
            await asyncio.sleep(0.05)


async def test_a_stalled_client_is_dropped_and_does_not_hold_up_others(serve, fault_database):
    server = serve(SSE_CLIENT_BUFFER="20")
    stalled = stalled_stream(server.port)
    stream = SseClient(server.base)
    slow = "emberlog_sse_slow_disconnects_total"
    try:
        async with httpx.AsyncClient(timeout=30) as http, stream.connect(http):
            await eventually(lambda: metric(server, "emberlog_sse_clients") == 2)
            created: list[int] = []
            # Write until the stalled client's socket buffers are full and the ring has
            # passed it; the reading client must get every event all the while.
            for _ in range(40):
                created += await asyncio.to_thread(
                    create_in_sql, fault_database, 10, transcript="y" * 100_000
                )
                await stream.receive(until=newest_event(fault_database))
                if metric(server, slow) >= 1:
                    break
            assert metric(server, slow) == 1
            await eventually(lambda: metric(server, "emberlog_sse_clients") == 1)
        assert [e.data["id"] for e in stream.events] == created
    finally:
        stalled.close()
    server.stop()
    assert b"Exception in ASGI application" not in server.log_path.read_bytes()
    assert b"without completing response" not in server.log_path.read_bytes()


async def test_a_client_stuck_in_a_write_on_a_quiet_stream_is_dropped(serve, fault_database):
    server = serve(SSE_HEARTBEAT="0.5")
    stalled = stalled_stream(server.port)
    try:
        await eventually(lambda: metric(server, "emberlog_sse_clients") == 1)
        # Far fewer events than the ring holds, but more bytes than the socket takes.
        await asyncio.to_thread(create_in_sql, fault_database, 60, transcript="z" * 200_000)
        await eventually(lambda: metric(server, "emberlog_sse_slow_disconnects_total") == 1)
        await eventually(lambda: metric(server, "emberlog_sse_clients") == 0)
    finally:
        stalled.close()


async def test_connect_disconnect_cycles_free_their_memory(serve):
    # 1,200 streams from one address, quickly; 8 at a time (plus those closing): a count
    # that leaked would soon refuse them.
    server = serve(RATE_LIMIT_PER_ADDRESS="0", MAX_STREAMS_PER_ADDRESS="40")
    stream = SseClient(server.base)

    async def cycles(http, count: int) -> None:
        for _ in range(count):
            async with stream.connect(http):
                pass

    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.gather(*(cycles(http, 25) for _ in range(8)))  # warm-up: 200
        before = rss_kib(server.process.pid)
        await asyncio.gather(*(cycles(http, 125) for _ in range(8)))  # 1,000 cycles
        after = rss_kib(server.process.pid)
    wait_until(lambda: metric(server, "emberlog_sse_clients") == 0)
    assert after - before < 2048, f"RSS grew by {after - before} KiB over 1,000 cycles"


async def test_sigterm_ends_open_streams_and_the_server_exits(serve):
    server = serve()
    stream = SseClient(server.base)
    async with httpx.AsyncClient(timeout=30) as http, stream.connect(http):
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        ended = False
        try:
            async with asyncio.timeout(10):
                while True:
                    await stream._read()
        except StopAsyncIteration:
            ended = True
    assert ended and time.monotonic() - started < 10
    # uvicorn shuts down gracefully, then re-raises the signal it caught: exit by SIGTERM
    assert server.process.wait(10) in (0, -signal.SIGTERM)
    log = server.log_path.read_bytes()
    assert b"Application shutdown complete" in log
    assert b"Traceback" not in log


async def test_resuming_from_a_pruned_id_gets_a_reset(serve, fault_database):
    create_in_sql(fault_database, 2)
    old = newest_event(fault_database) - 1
    with psycopg.connect(fault_database, autocommit=True) as conn:
        conn.execute("select internal.prune_events(interval '0')")
    server = serve()  # started after the prune: nothing of those events in memory
    stream = SseClient(server.base)
    async with httpx.AsyncClient(timeout=30) as http, stream.connect(http, last_event_id=old):
        await stream.receive(until=newest_event(fault_database))
        live = create_in_sql(fault_database)
        await stream.receive(until=newest_event(fault_database))
    reset, event = stream.events
    assert reset.event == "reset" and reset.data["last_event_id"] == old
    assert event.event == "incident" and [event.data["id"]] == live


async def open_streams(stack: contextlib.AsyncExitStack, http, base: str, count: int) -> None:
    for _ in range(count):
        await stack.enter_async_context(SseClient(base).connect(http))


async def assert_refused(http, base: str) -> None:
    refused = await http.get(base + "/api/v1/sse/incidents", timeout=10)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_streams"
    assert refused.json()["error"]["details"] == {"limit": 3}
    assert refused.headers["retry-after"] == "5"


async def test_the_stream_cap_holds_and_releases_across_real_disconnects(serve):
    server = serve(MAX_STREAMS_PER_ADDRESS="3")
    clients = "emberlog_sse_clients"
    async with httpx.AsyncClient(timeout=30) as http, contextlib.AsyncExitStack() as stack:
        abrupt = stalled_stream(server.port)  # a raw socket: closed without a word
        try:
            await eventually(lambda: metric(server, clients) == 1)
            await open_streams(stack, http, server.base, 2)
            await assert_refused(http, server.base)
        finally:
            abrupt.close()
        await eventually(lambda: metric(server, clients) == 2)
        async with contextlib.AsyncExitStack() as leaving:
            await open_streams(leaving, http, server.base, 1)  # the closed socket's place
            await assert_refused(http, server.base)
        await eventually(lambda: metric(server, clients) == 2)
        await open_streams(stack, http, server.base, 1)  # the httpx client's place
        await assert_refused(http, server.base)
    await eventually(lambda: metric(server, clients) == 0)
    async with httpx.AsyncClient(timeout=30) as http, contextlib.AsyncExitStack() as stack:
        await open_streams(stack, http, server.base, 3)  # every place given back
    assert metric(server, "emberlog_sse_streams_refused_total") == 3


async def test_resuming_from_0_beyond_the_replay_limit_gets_a_reset_then_live(
    serve, fault_database
):
    create_in_sql(fault_database, 12)
    head = newest_event(fault_database)
    server = serve(SSE_REPLAY_LIMIT="10")  # started after: its ring starts at head
    stream = SseClient(server.base)
    async with httpx.AsyncClient(timeout=30) as http, stream.connect(http, last_event_id=0):
        await stream.receive(until=head)
        live = create_in_sql(fault_database)
        await stream.receive(until=newest_event(fault_database))
    reset, event = stream.events
    assert reset.event == "reset" and reset.id == head
    assert reset.data["last_event_id"] == 0 and reset.data["resume_after"] == head
    assert event.event == "incident" and [event.data["id"]] == live
    assert metric(server, "emberlog_sse_replays_refused_total") == 1
    assert metric(server, "emberlog_sse_events_replayed_total") == 0
