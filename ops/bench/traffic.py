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
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ops.bench.sse import (
    raise_file_limit,
)
from ops.bench.traffic_latency import run_latency
from ops.bench.traffic_stack import (
    SERVER_ENV,
    STARTED,
    TARGET_P99_MS,
    TARGET_RATE,
)
from ops.bench.traffic_throughput import run_throughput
from ops.local import local_server
from tests.mqtt import mosquitto_binary

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
