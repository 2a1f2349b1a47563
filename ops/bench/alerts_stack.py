"""make bench-alerts' pieces (ops/bench/alerts.py runs the scenarios): incident bodies,
the rule mix, users acting through the API's SQL functions, the receiver and the worker
as processes of their own."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.database.connections import login_as
from ops.local import ROOT

TARGET_EXTRA_P50_MS = 5.0
TARGET_RATE = 500.0
DISCARD = "http://127.0.0.1:9/hook"  # a channel the matching scenario never sends to
CREATE_INCIDENT = "select api.create_incident(%s::jsonb) ->> 'id'"

TYPES = ["Structure Fire", "Medical Emergency", "Traffic Collision", "Vehicle Fire",
         "Brush Fire", "Alarm Activation", "Gas Leak", "Hazmat", "Rescue",
         "Smoke Investigation", "Water Rescue", "Lift Assist"]  # fmt: skip
UNITS = [f"E{n}" for n in range(1, 22)] + ["L1", "L2", "L3", "L4"] + [f"M{n}" for n in range(1, 9)]
UNITS += ["BC1", "BC2", "R1"]
CHANNELS = ["FD Dispatch", "Fire Tac 2", "Fire Tac 3", "EMS 1", "Ops 4"]
STREETS = ["Main", "Oak", "Maple", "Cedar", "Pine", "Elm", "Washington", "Lake", "Hill",
           "Sunset", "Park", "River", "Church", "Mill", "Spring", "Ridge", "Valley",
           "Highland", "Meadow", "Forest"]  # fmt: skip
SUFFIXES = ["St", "Ave", "Rd", "Blvd", "Dr", "Ln", "Ct", "Way"]
WORDS = """engine medic ladder respond to the report of smoke showing from a two story
residential patient conscious breathing fall victim elderly female male chest pain difficulty
vehicle versus pole airbags deployed fuel leak alarm sounding commercial structure caller
states flames visible investigate odor gas in area units staging command established on side
alpha water supply hydrant rescue extrication needed brush near trail""".split()  # noqa: SIM905
KEYWORDS = ["smoke", "flames visible", '"chest pain"', "extrication", "gas or fuel",
            "hydrant -drill", "elderly fall", "airbags deployed", "commercial alarm"]  # fmt: skip
# Users of other agencies on the same server: their rules name units, channels and
# streets this feed never has (matching still weighs every one of them).
FOREIGN_TYPES = ["STRUCTURE FIRE - RESIDENTIAL", "MVA W/ INJURIES", "CARDIAC ARREST",
                 "FIRE ALARM - COMMERCIAL", "ODOR INVESTIGATION", "WILDLAND"]  # fmt: skip
FOREIGN_CHANNELS = [f"County Fire {n}" for n in range(1, 9)]
FOREIGN_STREETS = ["Alder", "Birch", "Juniper", "Sequoia", "Magnolia", "Cypress", "Willow"]


def incident_body(rng: random.Random, tag: str, n: int) -> dict[str, Any]:
    """A realistic incident: type, 1-4 units, a channel, an address, 30 words heard."""
    return {
        "dispatched_at": "2026-12-01T12:00:00Z",
        "source_audio": f"bench/{tag}/{n}.mp3",
        "incident_type": rng.choice(TYPES),
        "units": rng.sample(UNITS, rng.randint(1, 4)),
        "channel": rng.choice(CHANNELS),
        "address": f"{rng.randint(100, 9999)} {rng.choice(STREETS)} {rng.choice(SUFFIXES)}",
        "transcript": " ".join(rng.choice(WORDS) for _ in range(30)),
        "special_call": False,
    }


def rule_filters(rng: random.Random, local: bool, k: int) -> dict[str, Any]:
    """Rule k (0-9) of a user: one to three filters of a kind that cycles with k. A local
    user (this feed's agency) names this feed's values, the others their own."""
    types, streets = (TYPES, STREETS) if local else (FOREIGN_TYPES, FOREIGN_STREETS)
    units = UNITS if local else [f"Q{n}" for n in range(1, 30)]
    channel = rng.choice(CHANNELS if local else FOREIGN_CHANNELS)
    kinds = [
        {"incident_types": rng.sample(types, 2)},
        {"units": rng.sample(units, 2)},
        {"channels": [channel], "incident_types": rng.sample(types, 3)},
        {"keywords": rng.choice(KEYWORDS), "channels": [channel]},
        {"keywords": rng.choice(KEYWORDS), "incident_types": rng.sample(types, 2)},
        {"address": rng.choice(streets)},
        {"address": rng.choice(streets), "units": rng.sample(units, 3)},
        {"units": rng.sample(units, 3), "channels": [channel]},
        {"keywords": rng.choice(KEYWORDS), "address": rng.choice(streets)},
        {"incident_types": rng.sample(types, 3), "units": rng.sample(units, 4),
         "keywords": rng.choice(KEYWORDS)},
    ]  # fmt: skip
    return kinds[k % len(kinds)]


def create_channels(conn: psycopg.Connection, urls: list[str]) -> list[int]:
    ids = []
    for n, url in enumerate(urls):
        body = json.dumps({"name": f"hook {n}", "url": url})
        row = conn.execute("select api.create_alert_channel(%s::jsonb) -> 'id'", (body,)).fetchone()
        assert row is not None
        ids.append(int(row[0]))
    return ids


def create_rules(conn: psycopg.Connection, rules: list[dict[str, Any]]) -> None:
    conn.execute(
        "select count(api.create_alert_rule(r)) from jsonb_array_elements(%s::jsonb) as r",
        (json.dumps(rules),),
    )


def vacuum(conn: psycopg.Connection, *tables: str) -> None:
    """What autovacuum would have done by now (the bench's changes are quick)."""
    conn.execute(f"vacuum analyze {', '.join(tables)}")


class Receiver:
    """ops/bench/alerts_receiver.py, started and stopped."""

    def __init__(self, log: Path) -> None:
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "ops/bench/alerts_receiver.py")],
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip():
            raise RuntimeError(f"the receiver did not start (log: {log})")
        self.port = int(line)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stats(self) -> dict[str, Any]:
        return self.http.get("/stats").json()

    def arrivals(self) -> list[tuple[str, float]]:
        return [(i, t) for i, t in self.http.get("/arrivals").json()]

    def stop(self) -> None:
        self.http.close()
        self.process.terminate()
        self.process.wait(10)
        self.log.close()


class Worker:
    """`emberlog-api worker` as production runs it (logged in as the authenticator), no
    health port; under cProfile when profile is a path."""

    def __init__(self, owner_url: str, log: Path, profile: Path | None = None, **env: str) -> None:
        environ = {
            **os.environ,
            "DATABASE_URL": login_as(owner_url, "emberlog_authenticator"),
            "HOST": "127.0.0.1",
            "WORKER_PORT": "0",
            "LOG_LEVEL": "WARNING",
            "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            **env,
        }
        runner = ["-m", "cProfile", "-o", str(profile)] if profile else []
        self.log = log.open("ab")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, *runner, "-m", "app.cli", "worker"],
            cwd=ROOT,
            env=environ,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.log_path = log

    def check(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"the worker exited ({self.log_path}):\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


def delivered(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "select count(*) from data.alert_deliveries where status = 'delivered'"
    ).fetchone()
    assert row is not None
    return row[0]


def statuses(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute("select status, count(*) from data.alert_deliveries group by 1")
    return dict(rows.fetchall())
