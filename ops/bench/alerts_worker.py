"""make bench-alerts' worker scenarios (see ops/bench/alerts.py): throughput (a queue of N
deliveries, then one `emberlog-api worker`) and latency (the worker running, incidents
created at a steady rate: commit -> receipt at the receiver)."""

from __future__ import annotations

import argparse
import contextlib
import random
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ops.bench.alerts_stack import (
    CREATE_INCIDENT,
    Receiver,
    Worker,
    create_channels,
    create_rules,
    delivered,
    incident_body,
    statuses,
)
from ops.bench.sse import percentile
from ops.bench.traffic_stack import cpu_of, postgres_pids
from ops.local import LocalServer
from tests.alerts import as_user

CREATE_MANY = "select count(api.create_incident(b)) from jsonb_array_elements(%s::jsonb) as b"


def subscribers(conn: psycopg.Connection, receiver: Receiver, users: int, channels: int) -> None:
    """`users` users, each with `channels` channels at the receiver and one rule matching
    every incident."""
    for u in range(users):
        with as_user(conn, f"bench-hooks-{u}"), conn.transaction():
            urls = [receiver.url(f"/hook/{u}/{n}") for n in range(channels)]
            ids = create_channels(conn, urls)
            create_rules(conn, [{"name": "everything", "alert_channel_ids": ids}])


def wait_for(conn: psycopg.Connection, count: int, worker: Worker, timeout: float) -> float:
    """Until count deliveries are delivered; the moment it was seen (monotonic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if delivered(conn) >= count:
            return time.monotonic()
        worker.check()
        time.sleep(0.02)
    raise RuntimeError(f"{count} deliveries not delivered in {timeout:g} s: {statuses(conn)}")


def batches(conn: psycopg.Connection) -> dict[str, float]:
    """The worker's claims and finishes as the rows tell them: a claim sets
    last_attempt_at and a finish delivered_at to its transaction's now()."""
    row = conn.execute(
        "select count(distinct last_attempt_at), count(distinct delivered_at), count(*),"
        " max(attempts) from data.alert_deliveries"
    ).fetchone()
    assert row is not None
    claims, finishes, rows, attempts = row
    return {"claims": claims, "mean_claim": round(rows / max(claims, 1), 1),
            "finishes": finishes, "mean_finish": round(rows / max(finishes, 1), 1),
            "max_attempts": attempts}  # fmt: skip


def cpu_use(
    before: dict[int, float], pgdata: Path, receiver: Receiver, worker: Worker, wall: float
) -> dict[str, int]:
    """CPU in percent of one core over wall seconds: PostgreSQL (every process, the
    worker's new backends too), the worker (since its start), the receiver."""
    parts = {"postgres": postgres_pids(pgdata), "worker": [worker.process.pid],
             "receiver": [receiver.process.pid]}  # fmt: skip
    used = {}
    for name, pids in parts.items():
        now = cpu_of(pids)
        used[name] = round(100 * sum(v - before.get(p, 0.0) for p, v in now.items()) / wall)
    return used


def run_throughput(
    server: LocalServer, directory: Path, args: argparse.Namespace, concurrency: int
) -> dict[str, Any]:
    rng = random.Random(7)
    with contextlib.ExitStack() as stack:
        receiver = Receiver(directory / "receiver.log")
        stack.callback(receiver.stop)
        conn = stack.enter_context(psycopg.connect(server.database_url, autocommit=True))
        subscribers(conn, receiver, args.hook_users, args.channels)
        incidents = -(-args.deliveries // (args.hook_users * args.channels))
        bodies = [incident_body(rng, "queue", i) for i in range(incidents)]
        started = time.monotonic()
        conn.execute("set role emberlog_ingest")
        for i in range(0, incidents, 250):
            conn.execute(CREATE_MANY, (Jsonb(bodies[i : i + 250]),))
        conn.execute("reset role")
        queue_s = time.monotonic() - started
        n = statuses(conn).get("queued", 0)
        conn.execute("vacuum analyze data.alert_deliveries, data.alert_messages")
        profile = directory / "worker.prof" if args.profile else None
        pgdata = directory / "pg"
        before = cpu_of([*postgres_pids(pgdata), receiver.process.pid])
        worker = Worker(server.database_url, directory / "worker.log", profile,
                        WORKER_CONCURRENCY=str(concurrency),
                        WORKER_BATCH_SIZE=str(args.batch_size))  # fmt: skip
        stack.callback(worker.stop)
        done = wait_for(conn, n, worker, args.timeout)
        wall = done - worker.started
        cpu = cpu_use(before, pgdata, receiver, worker, wall)
        seen = receiver.stats()
        arrivals = receiver.arrivals()
        worker.stop()
        receiver_ids = {i for i, _ in arrivals}
        result = {
            "scenario": "throughput",
            "concurrency": concurrency,
            "batch_size": args.batch_size,
            "deliveries": n,
            "channels": args.channels,
            "users": args.hook_users,
            "incidents": incidents,
            "queue_s": round(queue_s, 2),
            "seconds": round(wall, 2),
            "per_s": round(n / wall),
            "first_receipt_s": round(seen["first"] - worker.started, 2),
            "steady_per_s": round((n - 1) / (seen["last"] - seen["first"])),
            "received": seen["count"],
            "distinct_received": len(receiver_ids),
            "cpu_pct_of_a_core": cpu,
            **batches(conn),
            "profile": str(profile) if profile else None,
        }
        result["errors"] = int(n != args.deliveries or seen["count"] != n or len(receiver_ids) != n)
        return result


def run_latency(server: LocalServer, directory: Path, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(11)
    with contextlib.ExitStack() as stack:
        receiver = Receiver(directory / "receiver.log")
        stack.callback(receiver.stop)
        conn = stack.enter_context(psycopg.connect(server.database_url, autocommit=True))
        subscribers(conn, receiver, 1, 1)
        worker = Worker(server.database_url, directory / "worker.log",
                        WORKER_CONCURRENCY=str(args.concurrency[0]),
                        WORKER_BATCH_SIZE=str(args.batch_size))  # fmt: skip
        stack.callback(worker.stop)
        writer = stack.enter_context(psycopg.connect(server.database_url, autocommit=True))
        writer.execute("set role emberlog_ingest")
        # Warm-up: the worker connected, listening and through its first deliveries.
        for i in range(5):
            writer.execute(CREATE_INCIDENT, (Jsonb(incident_body(rng, "warm", i)),))
        wait_for(conn, 5, worker, 30)
        committed: dict[str, float] = {}
        interval = 1 / args.rate
        next_at = time.monotonic()
        for i in range(args.latency_incidents):
            time.sleep(max(0.0, next_at - time.monotonic()))
            row = writer.execute(CREATE_INCIDENT, (Jsonb(incident_body(rng, "steady", i)),))
            committed[row.fetchone()[0]] = time.monotonic()  # type: ignore[index]
            next_at += interval
        wait_for(conn, 5 + len(committed), worker, 30)
        arrived = dict(receiver.arrivals())
        rows = conn.execute(
            "select id::text, incident_id::text from data.alert_deliveries"
            " where incident_id::text = any(%s)",
            (list(committed),),
        ).fetchall()
        ms = [(arrived[d] - committed[i]) * 1000 for d, i in rows if d in arrived]
        return {
            "scenario": "latency",
            "incidents": len(committed),
            "rate_per_s": args.rate,
            "received": len(ms),
            "p50_ms": round(percentile(ms, 0.5), 1),
            "p95_ms": round(percentile(ms, 0.95), 1),
            "p99_ms": round(percentile(ms, 0.99), 1),
            "max_ms": round(max(ms), 1) if ms else None,
            "concurrency": args.concurrency[0],
            "errors": int(len(ms) != len(committed)),
        }
