"""Trunk Recorder status messages (its MQTT status plugin) for the traffic tests: builders
and the recorded session in tests/data/trunk_recorder_session.jsonl."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SESSION = Path(__file__).parent / "data" / "trunk_recorder_session.jsonl"
INSTANCE = "trunk-recorder"
INGEST = (
    "select api.ingest_trunk_recorder(%s::jsonb)::jsonb, current_setting('response.status', true)"
)
CALL_TYPES = ("traffic.call.started", "traffic.call.ended")
DECODE_TYPE = "system.site.decode_rate.updated"


def session() -> list[tuple[str, dict[str, Any]]]:
    """The recorded session: (topic, message) in the order Trunk Recorder published them
    (24 s of three systems: rates and recorders every 3 s, calls_active every second,
    seven calls that start and end)."""
    rows = [json.loads(line) for line in SESSION.read_text().splitlines() if line]
    return [(row["topic"], row["payload"]) for row in rows]


def message(kind: str, timestamp: int, entries: list[dict], instance: str = INSTANCE) -> dict:
    key = {"rates": "rates", "recorders": "recorders", "calls_active": "calls"}[kind]
    return {"type": kind, key: entries, "timestamp": timestamp, "instance_id": instance}


def rate(sys_num: int, sys_name: str, decoderate: float, **extra: Any) -> dict:
    return {
        "sys_num": sys_num,
        "sys_name": sys_name,
        "decoderate": decoderate,
        "decoderate_interval": 3.0,
        "control_channel": 769118750,
        **extra,
    }


def call(call_id: str, **extra: Any) -> dict:
    return {
        "id": call_id,
        "sys_num": 1,
        "sys_name": "PRWC-J",
        "talkgroup": 4499,
        "talkgroup_alpha_tag": "Avondale PD A01",
        "talkgroup_description": "A01 Dispatch",
        "talkgroup_group": "Avondale Police",
        "talkgroup_tag": "Law Dispatch",
        "freq": 770118750.0,
        "elapsed": 4,
        "encrypted": False,
        "emergency": False,
        "phase2_tdma": True,
        "tdma_slot": 0,
        "unit": 707004,
        "src_num": 0,
        "rec_num": 0,
        "start_time": 1771215827,
        **extra,
    }


def ingest(conn, body: Any) -> tuple[dict, str | None]:
    """One message or a batch through api.ingest_trunk_recorder, committed."""
    with conn.transaction():
        return conn.execute(INGEST, (json.dumps(body),)).fetchone()


def events(conn, *types: str, after: int = 0) -> list[dict]:
    """Stored envelopes of these types (all when none) after a position, in log order."""
    rows = conn.execute(
        "select api.event_json(e)::jsonb from api.events as e"
        " where e.position > %s and (cardinality(%s::text[]) = 0 or e.event_type = any(%s))"
        " order by e.position",
        (after, list(types), list(types)),
    ).fetchall()
    return [row[0] for row in rows]


def newest_position(conn) -> int:
    row = conn.execute("select coalesce(max(position), 0) from data.event_envelopes").fetchone()
    return row[0]


def traffic_state(conn) -> tuple:
    """Everything the traffic monitor stores, to compare before and after."""
    return tuple(
        conn.execute(
            f"select coalesce(jsonb_agg(t order by t), '[]') from {table} as t"
        ).fetchone()[0]
        for table in (
            "data.traffic_feeds",
            "data.traffic_sites",
            "data.traffic_decode_history",
            "data.traffic_recorders",
            "data.traffic_calls",
            "data.event_envelopes",
        )
    )
