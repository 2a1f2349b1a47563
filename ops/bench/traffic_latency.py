"""make bench-traffic's latency scenario (see ops/bench/traffic.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import sys
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ops.bench.sse import (
    EnvelopeFrames,
    Received,
    StreamClient,
    connect_clients,
    cpu_seconds,
    percentile,
    pin,
    rss_kib,
)
from ops.bench.traffic_stack import (
    CALL_PREFIX,
    STARTED,
    TOPIC,
    Broker,
    close_publisher,
    publisher,
    start_bridge,
    start_broker,
    wait_applied,
    wait_published,
)
from ops.local import LocalServer
from tests.mqtt import BridgeProcess
from tests.traffic import call, message, rate

# --- latency -----------------------------------------------------------------------------


class CallFrames(EnvelopeFrames):
    """The event stream's parser (ops/bench/sse.py's): the sequence number of every
    traffic.call.started envelope of a bench call (call id bench-call-<n>), repeats
    included; any other envelope gives -1 (counted as non-matching: the filter should
    have kept it away)."""

    def sequence(self, envelope: dict) -> int | None:
        call_id = str(envelope.get("payload", {}).get("call_id", ""))
        if envelope.get("event_type") == STARTED and call_id.startswith(CALL_PREFIX):
            return int(call_id[len(CALL_PREFIX) :])
        return -1


def snapshot(instance: str, timestamp: int, call_id: str) -> bytes:
    entry = call(call_id, start_time=timestamp, elapsed=0)
    return json.dumps(message("calls_active", timestamp, [entry], instance)).encode()


async def notify_times(owner_url: str, times: list[float], listening: asyncio.Event) -> None:
    """The arrival time of every NOTIFY on the events channel (one per committed
    statement that inserted envelopes: one per calls_active message here)."""
    async with await psycopg.AsyncConnection.connect(owner_url, autocommit=True) as conn:
        row = await (await conn.execute("select internal.events_channel()")).fetchone()
        assert row is not None
        await conn.execute(f'listen "{row[0]}"')
        listening.set()
        async for _notify in conn.notifies():
            times.append(time.perf_counter())


def commit_latencies(posted: dict[int, float], times: list[float]) -> list[float]:
    """Publish -> NOTIFY, each notification matched with the latest publish before it
    (the messages are 1/rate apart, far more than this takes)."""
    order = sorted(posted.items(), key=lambda kv: kv[1])
    matched: dict[int, float] = {}
    for t in times:
        before = [seq for seq, at in order if at <= t]
        if before and before[-1] not in matched:
            matched[before[-1]] = t - posted[before[-1]]
    return list(matched.values())


async def measure_latency(
    server: LocalServer,
    bridge: BridgeProcess,
    broker: Broker,
    instance: str,
    t0: int,
    n: int,
    m: int,
    per_s: float,
) -> dict:
    parts = server.base.split("//")[1].rsplit(":", 1)
    host, port = parts[0], int(parts[1])
    received = Received()
    rss_before = rss_kib(server.pid)
    path = f"/api/v1/sse?event_type={STARTED}"
    wanted = set(range(m))
    make = lambda i, r, o: StreamClient(path, r, o, CallFrames(), wanted)  # noqa: E731
    transports, clients = await connect_clients(host, port, n, received, make)
    gc.freeze()  # the clients live to the end: keep the collector off them while timing
    times: list[float] = []
    listening = asyncio.Event()
    listener = asyncio.create_task(notify_times(server.database_url, times, listening))
    await asyncio.wait_for(listening.wait(), 10)
    client = publisher(broker.port, "latency")
    try:
        # Untimed: a rates message of the instance (decode events, which no client takes):
        # the server's first fetch and filtering of an envelope are slower than the next.
        warm = message("rates", t0 - 1, [rate(1, "BENCH-L1", 35.0)], instance)
        wait_published([client.publish(TOPIC + "rates", json.dumps(warm), qos=1)])
        await asyncio.to_thread(wait_applied, bridge, 2)
        await asyncio.sleep(1.0)
        rss_connected = rss_kib(server.pid)
        times.clear()
        server_cpu = cpu_seconds(server.pid)
        payloads = [snapshot(instance, t0 + seq, f"{CALL_PREFIX}{seq}") for seq in range(m)]
        infos = []
        started = time.perf_counter()
        for seq, payload in enumerate(payloads):
            await asyncio.sleep(max(0.0, started + seq / per_s - time.perf_counter()))
            received.posted[seq] = time.perf_counter()
            infos.append(client.publish(TOPIC + "calls_active", payload, qos=1))
        expected = n * m
        deadline = time.monotonic() + 30
        while received.delivered < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # time for any repeated or unexpected frame
        server_cpu = cpu_seconds(server.pid) - server_cpu
        await asyncio.to_thread(wait_published, infos)
    finally:
        close_publisher(client)
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
    rss_after = rss_kib(server.pid)
    for transport in transports:
        transport.close()
    gc.unfreeze()
    await asyncio.sleep(1.0)
    lat = [x * 1000 for x in received.latencies]
    commit = [x * 1000 for x in commit_latencies(received.posted, times)]
    missing = sum(len(wanted - c.seen) for c in clients)
    malformed = sum(getattr(c.parser, "malformed", 0) for c in clients)
    return {
        "scenario": "latency",
        "clients": n,
        "events": m,
        "rate_per_s": per_s,
        "delivered": received.delivered,
        "expected": expected,
        "missing": missing,
        "repeated": received.repeated,
        "non_matching": received.non_matching,
        "malformed": malformed,
        "errors": missing + received.repeated + received.non_matching + malformed,
        "p50_ms": round(percentile(lat, 0.50), 1),
        "p95_ms": round(percentile(lat, 0.95), 1),
        "p99_ms": round(percentile(lat, 0.99), 1),
        "max_ms": round(max(lat), 1) if lat else None,
        "commit_notified": len(commit),
        "commit_p50_ms": round(percentile(commit, 0.50), 1),
        "commit_p99_ms": round(percentile(commit, 0.99), 1),
        "commit_max_ms": round(max(commit), 1) if commit else None,
        "rss_before_kib": rss_before,
        "rss_connected_kib": rss_connected,
        "rss_after_kib": rss_after,
        "kib_per_client": round((rss_connected - rss_before) / n, 2),
        "server_cpu_ms_per_event": round(server_cpu * 1000 / m, 1),
    }


def run_latency(
    stack: contextlib.ExitStack, directory: Path, server: LocalServer, args: argparse.Namespace
) -> dict:
    broker = start_broker(stack, directory / "broker-latency", None)
    bridge = start_bridge(stack, server, broker, directory / "bridge-latency.log", "bench-latency")
    instance = f"bench-latency-{uuid.uuid4().hex[:6]}"
    t0 = int(time.time())
    # Untimed: the instance's first snapshot (a call that the first timed one ends), before
    # any client connects (the stream is live only: no client sees its started event).
    client = publisher(broker.port, "latency-warmup")
    try:
        wait_published(
            [client.publish(TOPIC + "calls_active", snapshot(instance, t0 - 2, "warmup"), qos=1)]
        )
    finally:
        close_publisher(client)
    wait_applied(bridge, 1)
    cores = os.sched_getaffinity(0)
    pin(server.pid)  # the server on the first core, this process on the other
    try:
        run = measure_latency(
            server, bridge, broker, instance, t0, args.clients, args.events, args.rate
        )
        return asyncio.run(run)
    finally:
        os.sched_setaffinity(0, cores)
        os.sched_setaffinity(server.pid, cores)
