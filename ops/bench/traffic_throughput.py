"""make bench-traffic's throughput scenario (see ops/bench/traffic.py)."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ops.bench.traffic_stack import (
    DECODE,
    ENDED,
    STARTED,
    TOPIC,
    CpuMeter,
    close_publisher,
    metrics,
    outcomes,
    postgres_pids,
    publisher,
    start_bridge,
    start_broker,
    wait_applied,
    wait_published,
)
from ops.local import LocalServer
from tests.traffic import call, message, rate

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
