"""The traffic monitor's benchmark: Trunk Recorder status messages published to a real
Mosquitto broker, `emberlog-api mqtt-bridge` applying them in PostgreSQL, one
`emberlog-api serve` process streaming the events. Two targets (the issue's):

- latency: MQTT publish -> SSE client p99 < 100 ms with 1,000 stream clients. N raw
  clients on /api/v1/sse?event_type=traffic.call.started; M calls_active snapshots of one
  instance at --rate, each one second newer than the last, each with one new call (one
  traffic.call.started every client takes; the previous call's traffic.call.ended none
  takes). Latency: receipt at each client - the moment just before the publish, over
  every (client, event) pair; every client must get every started event exactly once.
  Also timed: publish -> the commit's NOTIFY at a LISTEN connection of this process (the
  broker, bridge and database part of the latency).
- throughput: the bridge >= 2,000 messages/s. N messages (calls_active snapshots of four
  calls, one new and one gone each second, and every third second a rates message for
  3 sites) over several instances, published as fast as a QoS 1 publisher can, no
  stream clients; throughput = N / (first publish -> the bridge's metrics count the
  last one applied). Every message must be applied and every event recorded. Run once
  per --inflight value (Mosquitto's max_inflight_messages: how many unacknowledged QoS 1
  messages it sends the bridge; the bridge acknowledges after its batch commits); 100
  is tests/mqtt.py's broker configuration.

It starts everything itself (embedded PostgreSQL as ops/local.py configures it, one
server with WORKERS=1, a broker and a bridge per run) and prints a Markdown block of
measured figures. Exit status 1 only when a run is broken (events missing, repeated or
unexpected, messages not applied), not when a target is missed.

    python ops/bench/traffic.py
    python ops/bench/traffic.py --scenarios throughput --messages 50000 --inflight 100,1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
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
    raise_file_limit,
    rss_kib,
)
from ops.local import LocalServer, local_server
from tests.mqtt import BridgeProcess, Mosquitto, mosquitto_binary, wait_for
from tests.traffic import call, message, rate

TOPIC = "emberlog/trunkrecorder/"
STARTED = "traffic.call.started"
ENDED = "traffic.call.ended"
DECODE = "system.site.decode_rate.updated"
TARGET_P99_MS = 100.0
TARGET_RATE = 2000.0
CALL_PREFIX = "bench-call-"
SERVER_ENV = {
    "LOG_LEVEL": "WARNING",
    "WORKERS": "1",
    "POOL_MAX_SIZE": "10",
    "MAX_STREAMS_PER_ADDRESS": "0",  # N clients from one address
    "CONCURRENCY_PER_ADDRESS": "0",
    "RATE_LIMIT_PER_ADDRESS": "0",
    "RATE_LIMIT_PER_KEY": "0",
}


# --- the broker, the bridge, a publisher -------------------------------------------------


class Broker(Mosquitto):
    """tests/mqtt.py's broker, with another max_inflight_messages when given."""

    def __init__(self, directory: Path, inflight: int | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        super().__init__(directory)
        if inflight is not None:
            text = self.config.read_text()
            text, found = re.subn(
                r"(?m)^max_inflight_messages \d+$", f"max_inflight_messages {inflight}", text
            )
            assert found == 1, "tests/mqtt.py's broker configuration changed"
            self.config.write_text(text)
        match = re.search(r"(?m)^max_inflight_messages (\d+)$", self.config.read_text())
        self.inflight = int(match.group(1)) if match else 20  # Mosquitto's default


def publisher(port: int, name: str) -> mqtt.Client:
    """A QoS 1 publisher (paho, its own network thread) that keeps up to 1,000 messages
    unacknowledged by the broker (paho's default is 20)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-publisher-{name}")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def close_publisher(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def wait_published(infos: list[mqtt.MQTTMessageInfo], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for info in infos:
        info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        if not info.is_published():
            raise RuntimeError("the broker did not acknowledge a publish")


def metrics(bridge: BridgeProcess) -> dict[str, float]:
    """Every sample of the bridge's /metrics, by name and labels."""
    samples = {}
    for line in bridge.http.get("/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def outcomes(samples: dict[str, float]) -> Counter[str]:
    """Messages handled by the bridge, by outcome (applied, ignored, rejected, ...)."""
    found: Counter[str] = Counter()
    for name, value in samples.items():
        if name.startswith("emberlog_bridge_messages_total{"):
            match = re.search(r'outcome="([^"]*)"', name)
            found[match.group(1) if match else "?"] += int(value)
    return found


def wait_applied(bridge: BridgeProcess, count: int, timeout: float = 30) -> None:
    """Until the bridge has applied `count` messages in all; fails on any other outcome."""

    def applied() -> bool:
        handled = outcomes(metrics(bridge))
        if handled.total() != handled["applied"]:
            raise RuntimeError(f"warm-up not applied: {dict(handled)} (log: {bridge.log_path})")
        return handled["applied"] >= count

    wait_for(applied, f"the bridge to apply {count} warm-up message(s)", timeout)


def start_bridge(
    stack: contextlib.ExitStack, server: LocalServer, broker: Broker, log: Path, client_id: str
) -> BridgeProcess:
    bridge = BridgeProcess(
        server.database_url,
        broker.port,
        log,
        LOG_LEVEL="WARNING",
        MQTT_CLIENT_ID=f"bench-bridge-{client_id}",
    )
    stack.callback(bridge.stop)
    bridge.wait_ready()
    time.sleep(0.5)  # its SUBSCRIBE reaches the broker before anything is published
    return bridge


def start_broker(stack: contextlib.ExitStack, directory: Path, inflight: int | None) -> Broker:
    broker = Broker(directory, inflight)
    broker.start()
    stack.callback(broker.stop)
    return broker


def postgres_pids(pgdata: Path) -> list[int]:
    """The postmaster and its children (backends, background processes)."""
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as stat:
                if int(stat.read().rpartition(")")[2].split()[1]) == postmaster:
                    pids.append(int(entry))
    return pids


def cpu_of(pids: list[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            found[pid] = cpu_seconds(pid)
    return found


class CpuMeter:
    """CPU seconds of each part of the stack over an interval (postgres: all of its
    processes; bench: this process, its publishers' threads included)."""

    def __init__(self, parts: dict[str, list[int] | None]) -> None:
        self.parts = parts
        self.start = self._read()

    def _read(self) -> dict[str, dict[int, float]]:
        found = {name: cpu_of(pids or []) for name, pids in self.parts.items() if pids}
        found["bench"] = {0: sum(os.times()[:2])}
        return found

    def stop(self, wall: float) -> dict[str, float]:
        """Each part's CPU use in percent of one core over `wall` seconds."""
        end, used = self._read(), {}
        for name, pids in end.items():
            seconds = sum(v - self.start[name].get(pid, 0.0) for pid, v in pids.items())
            used[name] = round(100 * seconds / wall)
        return used


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


# --- throughput --------------------------------------------------------------------------


def instance_messages(instance: str, t0: int) -> Iterator[tuple[str, bytes, Counter[str]]]:
    """One instance's messages in its clock's order, with the events each must record:
    per second a calls_active snapshot of four calls (one new, one gone: a started and
    an ended event; the first snapshot starts four), every third second a rates message
    for 3 sites (3 decode events)."""
    previous: set[str] = set()
    for k in itertools.count():
        ts = t0 + k
        ids = range(max(0, k - 3), k + 1)
        calls = [
            call(f"{instance}-{j}", talkgroup=4000 + j % 50, start_time=t0 + j, elapsed=k - j,
                 freq=770_000_000.0 + 12_500 * (j % 40), unit=700_000 + j)
            for j in ids
        ]  # fmt: skip
        current = {c["id"] for c in calls}
        events = Counter({STARTED: len(current - previous), ENDED: len(previous - current)})
        previous = current
        body = message("calls_active", ts, calls, instance)
        yield "calls_active", json.dumps(body).encode(), +events
        if k % 3 == 2:
            sites = [rate(s, f"BENCH-S{s}", 28.0 + (k + s) % 13) for s in (1, 2, 3)]
            body = message("rates", ts, sites, instance)
            yield "rates", json.dumps(body).encode(), Counter({DECODE: 3})


def traffic_mix(n: int, instances: list[str], t0: int) -> tuple[list, Counter[str], Counter[str]]:
    """N messages, the instances' streams interleaved (one message of each in turn):
    [(instance index, topic, payload)], the events they must record, messages by type."""
    streams = [instance_messages(name, t0) for name in instances]
    messages, events, kinds = [], Counter(), Counter()
    for i in itertools.cycle(range(len(streams))):
        if len(messages) == n:
            break
        kind, payload, produced = next(streams[i])
        messages.append((i, TOPIC + kind, payload))
        events += produced
        kinds[kind] += 1
    return messages, events, kinds


def recorded(owner_url: str, instances: list[str]) -> Counter[str]:
    with psycopg.connect(owner_url, autocommit=True) as conn:
        rows = conn.execute(
            "select event_type, count(*) from data.event_envelopes"
            " where source_instance = any(%s) group by event_type",
            (instances,),
        ).fetchall()
    return Counter({kind: count for kind, count in rows})


def run_throughput(
    stack: contextlib.ExitStack,
    directory: Path,
    server: LocalServer,
    args: argparse.Namespace,
    inflight: int,
) -> dict:
    label = f"inflight{inflight}"
    broker = start_broker(stack, directory / f"broker-{label}", inflight)
    bridge = start_bridge(stack, server, broker, directory / f"bridge-{label}.log", label)
    run_id = uuid.uuid4().hex[:6]
    # Each instance's messages cover (its share x 3/4) seconds of its clock: they end now,
    # as a backlog does (a timestamp far ahead of the database's clock is refused).
    t0 = int(time.time()) - (args.messages // args.instances) * 3 // 4 - 30
    # Untimed: a few messages of an instance of their own (the bridge's and the database's
    # first statements are slower).
    warm, _events, _kinds = traffic_mix(12, [f"bench-warm-{run_id}"], t0)
    client = publisher(broker.port, f"warm-{label}")
    try:
        wait_published([client.publish(topic, payload, qos=1) for _i, topic, payload in warm])
    finally:
        close_publisher(client)
    wait_applied(bridge, len(warm))
    instances = [f"bench-tp-{run_id}-{i}" for i in range(args.instances)]
    messages, expected, kinds = traffic_mix(args.messages, instances, t0)
    clients = [publisher(broker.port, f"{label}-{p}") for p in range(args.publishers)]
    before = metrics(bridge)
    meter = CpuMeter({
        "bridge": [bridge.process.pid],
        "postgres": postgres_pids(directory / "pg"),
        "broker": [broker.process.pid] if broker.process else None,
        "server": [server.pid],
    })  # fmt: skip
    try:
        started = time.perf_counter()
        infos = [
            clients[i % len(clients)].publish(topic, payload, qos=1)
            for i, topic, payload in messages
        ]
        wait_published(infos, timeout=300)
        published = time.perf_counter()
    finally:
        for client in clients:
            close_publisher(client)
    base = outcomes(before)["applied"]
    done, seen, last_progress, stalled = base, base, time.monotonic(), False
    while done - base < len(messages):
        time.sleep(0.05)
        done = outcomes(metrics(bridge))["applied"]
        if done != seen:
            seen, last_progress = done, time.monotonic()
        elif time.monotonic() - last_progress > 30:
            stalled = True
            break
    finished = time.perf_counter()
    wall = finished - started
    cpu = meter.stop(wall)
    after = metrics(bridge)
    handled = outcomes(after) - outcomes(before)
    stored = recorded(server.database_url, instances)
    batches = after.get("emberlog_bridge_batch_seconds_count", 0) - before.get(
        "emberlog_bridge_batch_seconds_count", 0
    )
    in_batches = after.get("emberlog_bridge_batch_seconds_sum", 0) - before.get(
        "emberlog_bridge_batch_seconds_sum", 0
    )
    batched = after.get("emberlog_bridge_batch_messages_sum", 0) - before.get(
        "emberlog_bridge_batch_messages_sum", 0
    )
    events = int(after["emberlog_bridge_events_total"] - before["emberlog_bridge_events_total"])
    not_applied = sum(v for k, v in handled.items() if k != "applied")
    errors = (
        (len(messages) - handled["applied"]) + not_applied + stalled
        + (stored != expected) + (events != expected.total())
    )  # fmt: skip
    return {
        "scenario": "throughput",
        "broker_max_inflight": broker.inflight,
        "messages": len(messages),
        "by_type": dict(kinds),
        "instances": args.instances,
        "publishers": args.publishers,
        "applied": handled["applied"],
        "other_outcomes": {k: v for k, v in handled.items() if k != "applied"},
        "stalled": stalled,
        "seconds": round(wall, 2),
        "messages_per_s": round(handled["applied"] / wall),
        "publish_seconds": round(published - started, 2),
        "publisher_messages_per_s": round(len(messages) / (published - started)),
        "events_expected": expected.total(),
        "events_bridge": events,
        "events_recorded": stored.total(),
        "events_recorded_by_type": dict(stored),
        "batches": int(batches),
        "mean_batch_messages": round(batched / batches, 1) if batches else None,
        "mean_batch_ms": round(in_batches * 1000 / batches, 1) if batches else None,
        "in_transactions_pct": round(100 * in_batches / wall),
        "cpu_pct_of_a_core": cpu,
        "errors": int(errors),
    }


# --- the report --------------------------------------------------------------------------


def mosquitto_version() -> str:
    shown = subprocess.run([mosquitto_binary(), "-h"], capture_output=True, text=True).stdout
    return shown.splitlines()[0].removeprefix("mosquitto ") if shown else "Mosquitto"


def database_settings(owner_url: str) -> str:
    with psycopg.connect(owner_url, autocommit=True) as conn:
        found = [
            f"{name}={conn.execute(f'show {name}').fetchone()[0]}"  # type: ignore[index]
            for name in ("fsync", "synchronous_commit", "shared_buffers")
        ]
    return ", ".join(found)


def report(command: str, context: list[str], results: list[dict]) -> None:
    latency = [r for r in results if r["scenario"] == "latency"]
    throughput = [r for r in results if r["scenario"] == "throughput"]
    print("### Traffic monitor benchmark\n")
    print(f"`{command}`\n")
    print("| target | measured | measured / target | |")
    print("|---|---:|---:|---|")
    for r in latency:
        met = "met" if r["errors"] == 0 and r["p99_ms"] < TARGET_P99_MS else "not met"
        print(
            f"| publish -> SSE p99 < {TARGET_P99_MS:.0f} ms, {r['clients']:,} clients "
            f"| {r['p99_ms']} ms | {r['p99_ms'] / TARGET_P99_MS:.2f} | {met} |"
        )
    for r in throughput:
        met = "met" if r["errors"] == 0 and r["messages_per_s"] >= TARGET_RATE else "not met"
        print(
            f"| bridge >= {TARGET_RATE:,.0f} msg/s, broker max_inflight_messages "
            f"{r['broker_max_inflight']} | {r['messages_per_s']:,} msg/s "
            f"| {r['messages_per_s'] / TARGET_RATE:.2f} | {met} |"
        )
    print()
    for r in latency:
        print(
            f"Latency: {r['events']} calls_active messages at {r['rate_per_s']:g}/s, one "
            f"{STARTED} each, to {r['clients']:,} clients on /api/v1/sse?event_type={STARTED}"
        )
        print()
        print("| delivered/expected | errors | p50 ms | p95 ms | p99 ms | max ms "
              "| publish -> commit NOTIFY p50 / p99 / max ms |")  # fmt: skip
        print("|---:|---:|---:|---:|---:|---:|---:|")
        print(
            f"| {r['delivered']:,}/{r['expected']:,} | {r['errors']} | {r['p50_ms']} "
            f"| {r['p95_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['commit_p50_ms']} / "
            f"{r['commit_p99_ms']} / {r['commit_max_ms']} |"
        )
        print()
        print(
            f"Server RSS {r['rss_before_kib'] / 1024:.0f} MiB before the clients, "
            f"{r['rss_connected_kib'] / 1024:.0f} MiB with them connected "
            f"({r['kib_per_client']} KiB/client), {r['rss_after_kib'] / 1024:.0f} MiB after "
            f"the events; server CPU {r['server_cpu_ms_per_event']} ms per event. Errors: "
            f"missing {r['missing']}, repeated {r['repeated']}, non-matching "
            f"{r['non_matching']}, malformed {r['malformed']}.\n"
        )
    if throughput:
        first = throughput[0]
        kinds = ", ".join(f"{v:,} {k}" for k, v in first["by_type"].items())
        print(
            f"Throughput: {first['messages']:,} messages ({kinds}) over "
            f"{first['instances']} instances, QoS 1, {first['publishers']} publisher(s), "
            "no stream clients; N / (first publish -> last applied per the bridge's metrics)"
        )
        print()
        print("| max_inflight | applied/N | msg/s | publisher msg/s | events recorded/expected "
              "| mean batch | mean batch ms | in transactions | CPU % of a core |")  # fmt: skip
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in throughput:
            cpu = ", ".join(f"{k} {v}" for k, v in r["cpu_pct_of_a_core"].items())
            print(
                f"| {r['broker_max_inflight']} | {r['applied']:,}/{r['messages']:,} "
                f"| {r['messages_per_s']:,} | {r['publisher_messages_per_s']:,} "
                f"| {r['events_recorded']:,}/{r['events_expected']:,} "
                f"| {r['mean_batch_messages']} | {r['mean_batch_ms']} "
                f"| {r['in_transactions_pct']} % | {cpu} |"
            )
        print()
        for r in throughput:
            if r["errors"]:
                print(
                    f"max_inflight {r['broker_max_inflight']}: BROKEN: other outcomes "
                    f"{r['other_outcomes']}, stalled {r['stalled']}, events by the bridge "
                    f"{r['events_bridge']:,}, recorded {r['events_recorded_by_type']}, expected "
                    f"{r['events_expected']:,}"
                )
    for line in context:
        print(f"- {line}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", type=int, default=1000, help="SSE clients (latency)")
    p.add_argument("--events", type=int, default=50, help="calls_active messages (latency)")
    p.add_argument("--rate", type=float, default=5.0, help="messages per second (latency)")
    p.add_argument("--messages", type=int, default=20000, help="messages (throughput)")
    p.add_argument(
        "--inflight",
        default="100",
        help="Mosquitto max_inflight_messages, comma-separated: one throughput run each"
        " (100: tests/mqtt.py's configuration)",
    )
    p.add_argument("--instances", type=int, default=8, help="Trunk Recorder instances (throughput)")
    p.add_argument("--publishers", type=int, default=1, help="MQTT publishers (throughput)")
    p.add_argument("--scenarios", default="latency,throughput", help="latency,throughput")
    args = p.parse_args()
    scenarios = {s.strip() for s in args.scenarios.split(",") if s.strip()}
    if unknown := scenarios - {"latency", "throughput"}:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    raise_file_limit()
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    command = shlex.join(["python", os.path.relpath(sys.argv[0]), *sys.argv[1:]])
    load = os.getloadavg()
    results = []
    runs: list[tuple[str, Callable]] = []
    if "latency" in scenarios:
        runs.append(("latency", lambda run, d, server: run_latency(run, d, server, args)))
    if "throughput" in scenarios:
        for inflight in [int(x) for x in args.inflight.split(",")]:
            runs.append((f"throughput-{inflight}", lambda run, d, server, i=inflight:
                         run_throughput(run, d, server, args, i)))  # fmt: skip
    settings = ""
    with tempfile.TemporaryDirectory(prefix="bench-") as top:
        # Each run on a stack of its own (database, server, broker, bridge): a run's
        # leftovers (1,000 closed streams) must not weigh on the next one's figures.
        for name, scenario in runs:
            directory = Path(top) / name
            directory.mkdir()
            with contextlib.ExitStack() as run:
                server = run.enter_context(local_server(directory, **SERVER_ENV))
                settings = database_settings(server.database_url)
                result = scenario(run, directory, server)
            print(json.dumps(result), flush=True)
            results.append(result)
    cores = len(os.sched_getaffinity(0))
    context = [
        f"Machine: {cores} cores, load average {load[0]:.2f} at the start (shared: figures "
        "vary from run to run).",
        "Each run on a fresh stack: one server (WORKERS=1, rate limits off), one bridge "
        "(defaults: BRIDGE_BATCH_SIZE "
        "500, BRIDGE_CONNECTIONS 2), "
        f"Mosquitto ({mosquitto_version()}) configured as tests/mqtt.py configures it but for "
        "max_inflight_messages where the table says, embedded PostgreSQL as ops/local.py "
        f"starts it ({settings}).",
    ]
    if "latency" in scenarios:
        context.append(
            "Latency: server pinned to one core, this load generator to the other; broker, "
            "bridge and PostgreSQL unpinned; untimed warm-up messages first."
        )
    if "throughput" in scenarios:
        context.append(
            "Throughput: nothing pinned; the publisher runs while the bridge applies; "
            "untimed warm-up messages first."
        )
    print()
    report(command, context, results)
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
