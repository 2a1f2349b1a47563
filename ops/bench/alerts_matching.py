"""make bench-alerts' matching scenario (see ops/bench/alerts.py): what 1,000 enabled rules
add to creating an incident, `select api.create_incident(...)` and POST /api/v1/incidents
side by side, in alternating rounds."""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.types.json import Jsonb

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ops.bench.alerts_stack import (
    CREATE_INCIDENT,
    DISCARD,
    create_channels,
    create_rules,
    incident_body,
    rule_filters,
    vacuum,
)
from ops.bench.sse import percentile
from ops.local import LocalServer
from tests.alerts import as_user

SETS = {"none": "false", "mix": "r.name like 'mix-%%'", "all": "r.name like 'all-%%'"}


def seed_rules(conn: psycopg.Connection, users: int, per_user: int, local_share: float) -> int:
    """users x per_user rules of the mix (disabled), and as many that match everything
    (disabled): each user through the API's functions, with one channel. Local users: the
    share whose rules name this feed's values."""
    rng = random.Random(17)
    local_users = 0
    for u in range(users):
        local = rng.random() < local_share
        local_users += local
        with as_user(conn, f"bench-user-{u}"), conn.transaction():
            (channel,) = create_channels(conn, [DISCARD])
            rules = [
                {"name": f"{kind}-{u}-{k}", "enabled": False, "alert_channel_ids": [channel],
                 "throttle_sec": 60 if kind == "mix" and k == 9 else 0,
                 "filters": rule_filters(rng, local, k) if kind == "mix" else {}}
                for kind in ("mix", "all") for k in range(per_user)
            ]  # fmt: skip
            create_rules(conn, rules)
    return local_users


def enable(conn: psycopg.Connection, which: str) -> None:
    conn.execute(f"update data.alert_rules as r set enabled = {SETS[which]}")
    vacuum(conn, "data.alert_rules", "data.alert_deliveries")


def deliveries(conn: psycopg.Connection) -> tuple[int, int]:
    row = conn.execute(
        "select count(*) filter (where status = 'queued'), count(*) from data.alert_deliveries"
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def one_round(
    sql: psycopg.Connection, http: httpx.Client | None, rng: random.Random, tag: str, n: int
) -> dict[str, list[float]]:
    """n incidents through SQL, and n through HTTP when given, one of each in turn; each
    call timed on this side (the SQL call commits: autocommit)."""
    times: dict[str, list[float]] = {"sql": [], "http": []}
    for i in range(n):
        body = incident_body(rng, tag, i)
        started = time.perf_counter()
        sql.execute(CREATE_INCIDENT, (Jsonb(body),))
        times["sql"].append((time.perf_counter() - started) * 1000)
        if http is not None:
            body = {**body, "source_audio": f"{body['source_audio']}.http"}
            started = time.perf_counter()
            response = http.post("/api/v1/incidents", json=body)
            times["http"].append((time.perf_counter() - started) * 1000)
            if response.status_code != 201:
                raise RuntimeError(f"POST: {response.status_code} {response.text}")
    return times


def run_matching(server: LocalServer, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(5)
    headers = {"X-API-Key": server.ingest_key}
    owner = psycopg.connect(server.database_url, autocommit=True)
    sql = psycopg.connect(server.database_url, autocommit=True)
    http = httpx.Client(base_url=server.base, headers=headers, timeout=30) if args.http else None
    try:
        started = time.monotonic()
        local_users = seed_rules(owner, args.users, args.rules_per_user, args.local_share)
        setup_s = time.monotonic() - started
        sql.execute("set role emberlog_ingest")  # as the HTTP route writes
        per_round = args.incidents
        order = ["none", "mix"] * args.pairs + ["none", "all"] * args.worst_pairs
        # Untimed warm-up: plans cached, pages read, both paths of the trigger taken.
        for which in ("mix", "all", "none"):
            enable(owner, which)
            one_round(sql, http, rng, f"warm-{which}", 20)
        rounds = []
        for r, which in enumerate(order):
            enable(owner, which)
            n = per_round if which != "all" else args.worst_incidents
            queued_before, total_before = deliveries(owner)
            times = one_round(sql, http, rng, f"r{r}", n)
            queued_after, total_after = deliveries(owner)
            made = len(times["sql"]) + len(times["http"])
            rounds.append({
                "rules": which, "incidents": made, "sql_ms": times["sql"], "http_ms": times["http"],
                "deliveries_per_incident": round((total_after - total_before) / made, 2),
                "queued_per_incident": round((queued_after - queued_before) / made, 2),
            })  # fmt: skip
        return summarize(rounds, args, local_users, setup_s)
    finally:
        if http is not None:
            http.close()
        sql.close()
        owner.close()


def figures(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 0.5), 2),
        "p99_ms": round(percentile(values, 0.99), 2),
        "mean_ms": round(sum(values) / len(values), 2) if values else float("nan"),
    }


def summarize(
    rounds: list[dict], args: argparse.Namespace, local_users: int, setup_s: float
) -> dict:
    by: dict[str, dict[str, Any]] = {}
    for which in ("none", "mix", "all"):
        chosen = [r for r in rounds if r["rules"] == which]
        if not chosen:
            continue
        made = sum(r["incidents"] for r in chosen)
        per = sum(r["deliveries_per_incident"] * r["incidents"] for r in chosen) / made
        by[which] = {
            "rounds": len(chosen),
            "deliveries_per_incident": round(per, 2),
            **{path: figures([t for r in chosen for t in r[f"{path}_ms"]])
               for path in ("sql", "http")},
            "round_p50_ms": {path: [round(percentile(r[f"{path}_ms"], 0.5), 2) for r in chosen]
                             for path in ("sql", "http")},
        }  # fmt: skip
    return {
        "scenario": "matching",
        "rules": args.users * args.rules_per_user,
        "users": args.users,
        "local_users": local_users,
        "setup_s": round(setup_s, 1),
        "order": [r["rules"] for r in rounds],
        "by_rules": by,
        "errors": 0,
    }
