"""The traffic monitor end to end: a recorded Trunk Recorder session published to a real
Mosquitto broker, `emberlog-api mqtt-bridge` feeding the database, a real server's routes
and a live /api/v1/sse client; the broker restarted, the bridge killed and restarted,
the database restarted; TLS to the broker."""

from __future__ import annotations

import asyncio
import datetime
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests import pg
from tests.mqtt import BridgeProcess, Mosquitto, Publisher
from tests.sse import SseClient
from tests.traffic import CALL_TYPES, DECODE_TYPE, message, rate, session
from tests.waiting import wait_until

TOPIC = "emberlog/trunkrecorder/"
TRAFFIC_FILTERS = {"event_type": [DECODE_TYPE, *CALL_TYPES]}


@pytest.fixture
def broker(tmp_path) -> Iterator[Mosquitto]:
    directory = tmp_path / "broker"
    directory.mkdir()
    server = Mosquitto(directory)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bridges(tmp_path, fault_database) -> Iterator:
    started: list[BridgeProcess] = []

    def start(port: int, **env: str) -> BridgeProcess:
        log = tmp_path / f"bridge{len(started)}.log"
        bridge = BridgeProcess(fault_database, port, log, **env)
        started.append(bridge)
        return bridge

    with psycopg.connect(fault_database, autocommit=True) as conn:
        pg.empty_tables(conn)
    yield start
    for bridge in started:
        bridge.stop()


def iso(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def expected_events(messages: list[tuple[str, dict]]) -> tuple[list, list]:
    """What the session must produce, worked out here independently of the SQL: decode
    events (one per site per rates message, by group then name) and call events (the
    difference between successive snapshots: started, then ended, by call id)."""
    decode, calls, previous = [], [], set()
    for _, body in messages:
        if body["type"] == "rates":
            sites = sorted(
                body["rates"], key=lambda r: (r["sys_name"].split("-")[0], r["sys_name"])
            )
            decode += [(r["sys_name"], iso(body["timestamp"])) for r in sites]
        elif body["type"] == "calls_active":
            current = {c["id"] for c in body["calls"]}
            calls += [("traffic.call.started", i) for i in sorted(current - previous)]
            calls += [("traffic.call.ended", i) for i in sorted(previous - current)]
            previous = current
    return decode, calls


def expected_live_call(entry: dict) -> dict:
    """A calls_active entry as GET /api/v1/traffic/live-calls shows it (upstream's rules)."""
    return {
        "id": entry["id"],
        "started_at": iso(entry["start_time"]),
        "elapsed_s": entry["elapsed"],
        "sys_num": entry["sys_num"],
        "sys_name": entry["sys_name"],
        "group": entry["sys_name"].split("-")[0],
        "talkgroup_id": entry["talkgroup"],
        "talkgroup": entry["talkgroup_alpha_tag"],
        "description": entry["talkgroup_description"],
        "category": entry["talkgroup_group"],
        "tag": entry["talkgroup_tag"],
        "freq_mhz": entry["freq"] / 1e6,
        "encrypted": entry["encrypted"],
        "emergency": entry["emergency"],
        "phase2_tdma": entry["phase2_tdma"],
        "tdma_slot": entry["tdma_slot"],
        "unit": entry["unit"],
        "src_num": entry["src_num"],
        "rec_num": entry["rec_num"],
        "recorder_id": f"{entry['src_num']}_{entry['rec_num']}",
    }


def phase(messages, first: int, last: int) -> list[tuple[str, dict]]:
    """The messages of seconds first..last of the session (t0 = its first timestamp)."""
    t0 = messages[0][1]["timestamp"]
    return [(t, b) for t, b in messages if first <= b["timestamp"] - t0 <= last]


def publish(port: int, messages: list[tuple[str, dict]]) -> None:
    publisher = Publisher(port)
    try:
        for topic, body in messages:
            publisher.publish(topic, body)
    finally:
        publisher.close()


def applied(database_url: str, messages: list[tuple[str, dict]]) -> None:
    """Wait until the database holds the newest message of each type among these."""
    newest: dict[str, int] = {}
    for _, body in messages:
        newest[body["type"]] = max(newest.get(body["type"], 0), body["timestamp"])

    def caught_up() -> bool:
        with psycopg.connect(database_url, autocommit=True) as conn:
            rows = dict(
                conn.execute(
                    "select message_type, extract(epoch from reported_at)::bigint"
                    " from data.traffic_feeds"
                ).fetchall()
            )
        return all(rows.get(kind, 0) >= ts for kind, ts in newest.items())

    wait_until(caught_up, timeout=60)


def ignored(bridge: BridgeProcess) -> float:
    return sum(
        bridge.metric("emberlog_bridge_messages_total", outcome="ignored", type=kind)
        for kind in ("rates", "recorders", "calls_active")
    )


def newest_event_id(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return pg.event_ids(conn)[-1]


def check_reads(server, messages: list[tuple[str, dict]]) -> None:
    """The summary and live calls as of the newest messages among these."""
    last = {body["type"]: body for _, body in messages}
    live = server.http.get("/api/v1/traffic/live-calls").json()
    calls = sorted(last["calls_active"]["calls"], key=lambda c: -c["start_time"])
    assert live == {
        "instance_id": "trunk-recorder",
        "updated_at": iso(last["calls_active"]["timestamp"]),
        "calls": [expected_live_call(c) for c in calls],
    }
    summary = server.http.get("/api/v1/traffic/summary").json()
    rates = last["rates"]
    assert summary["event_type"] == "system.decode_sites.snapshot"
    assert summary["timestamp"] == iso(rates["timestamp"])
    sites = summary["payload"]["decode_sites"]
    assert [(s["sys_name"], s["sys_num"], s["updated_at"]) for s in sites] == sorted(
        ((r["sys_name"], r["sys_num"], iso(rates["timestamp"])) for r in rates["rates"]),
        key=lambda s: (s[0].split("-")[0], s[0]),
    )
    by_name = {r["sys_name"]: r for r in rates["rates"]}
    for site in sites:
        sent = by_name[site["sys_name"]]
        assert site["decode_rate_pct"] == pytest.approx(sent["decoderate"] / 40 * 100, abs=0.01)
        assert site["control_channel_mhz"] == sent["control_channel"] / 1e6
    recorders = last["recorders"]["recorders"]
    counted = summary["payload"]["recorders"]
    assert (counted["total"], counted["recording"]) == (
        len(recorders),
        sum(r["rec_state_type"] == "RECORDING" for r in recorders),
    )
    assert summary["payload"]["feed"]["status"] == "healthy"


async def test_a_recorded_session_survives_a_broker_restart_and_a_killed_bridge(
    serve, fault_database, broker, bridges
):
    messages = session()
    decode, calls = expected_events(messages)
    server = serve()
    bridge = bridges(broker.port)
    await asyncio.to_thread(bridge.wait_ready)
    client = SseClient(server.base, "/api/v1/sse")
    async with httpx.AsyncClient(timeout=30) as http, client.connect(http, **TRAFFIC_FILTERS):
        first = phase(messages, 0, 10)
        await asyncio.to_thread(publish, broker.port, first)
        await asyncio.to_thread(applied, fault_database, first)
        await asyncio.to_thread(check_reads, server, first)

        await asyncio.to_thread(broker.restart)  # mid-session; the bridge reconnects
        await asyncio.to_thread(publish, broker.port, phase(messages, 11, 15))

        bridge.kill()  # perhaps between a commit and its acknowledgement
        await asyncio.to_thread(publish, broker.port, phase(messages, 16, 19))  # queued
        bridge = bridges(broker.port)
        await asyncio.to_thread(bridge.wait_ready)
        last = phase(messages, 20, 23)
        await asyncio.to_thread(publish, broker.port, last)
        await asyncio.to_thread(applied, fault_database, messages)
        # Delivered again (as a broker does what was not acknowledged): nothing new.
        await asyncio.to_thread(publish, broker.port, last)
        wait_until(lambda: ignored(bridge) >= len(last))
        await client.receive(until=newest_event_id(fault_database))

    got_decode = [(e.data["source"]["system"], e.data["timestamp"]) for e in client.events
                  if e.event == DECODE_TYPE]  # fmt: skip
    got_calls = [(e.event, e.data["payload"]["call_id"]) for e in client.events
                 if e.event in CALL_TYPES]  # fmt: skip
    assert got_calls == calls  # each call started and ended once, none lost or repeated
    assert got_decode == decode
    assert len(client.events) == len(decode) + len(calls)
    assert server.http.get("/api/v1/traffic/live-calls").json()["calls"] == []
    assert bridge.terminate() == 0  # drains and stops on SIGTERM


async def test_bad_messages_are_counted_and_the_bridge_goes_on(fault_database, broker, bridges):
    bridge = bridges(broker.port, BRIDGE_MAX_MESSAGE_BYTES="4096")
    await asyncio.to_thread(bridge.wait_ready)
    good = message("rates", 1771215900, [rate(1, "PRWC-J", 39.0)])
    batch = [
        (TOPIC + "rates", b"{not json"),
        (TOPIC + "rates", b"[" * 100_000),  # nested too deep for any JSON parser
        (TOPIC + "rates", b'{"pad": "' + b"x" * 5000 + b'"}'),  # over the size limit
        (TOPIC + "rates", b"null"),
        (TOPIC + "calls_active", {"instance_id": "trunk-recorder", "timestamp": 5, "calls": "x"}),
        (TOPIC + "rates", good),
    ]
    await asyncio.to_thread(publish, broker.port, batch)
    await asyncio.to_thread(applied, fault_database, [(TOPIC + "rates", good)])

    def counted(outcome: str, kind: str = "rates") -> float:
        return bridge.metric("emberlog_bridge_messages_total", outcome=outcome, type=kind)

    wait_until(lambda: counted("invalid") == 3)
    assert counted("rejected") == 1  # JSON null: not a message object
    assert counted("rejected", "calls_active") == 1
    assert counted("applied") == 1
    assert bridge.ready() and bridge.process.poll() is None
    log = bridge.log_path.read_text()
    assert (
        "calls must be an array" in log and "not JSON" in log and "BRIDGE_MAX_MESSAGE_BYTES" in log
    )


async def test_the_bridge_waits_out_a_database_restart(
    fault_server, fault_database, broker, bridges
):
    bridge = bridges(broker.port)
    await asyncio.to_thread(bridge.wait_ready)
    fault_server.stop()
    try:
        sent = [(TOPIC + "rates", message("rates", 1771216000, [rate(2, "PRWC-N", 31.0)]))]
        await asyncio.to_thread(publish, broker.port, sent)
        wait_until(lambda: not bridge.ready())  # its batch failed: the database is gone
    finally:
        fault_server.restart_after_stop()
    await asyncio.to_thread(applied, fault_database, sent)
    wait_until(bridge.ready)
    assert bridge.metric("emberlog_bridge_reconnects_total", target="database") >= 1


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), as a private CA would issue one."""
    cert, key = directory / "broker.pem", directory / "broker.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_mqtt_tls_verifies_the_broker_against_the_ca_given(tmp_path, fault_database, bridges):
    directory = tmp_path / "tls-broker"
    directory.mkdir()
    cert, key = self_signed(directory)
    broker = Mosquitto(directory, tls=(cert, key))
    broker.start()
    try:
        trusted = bridges(
            broker.port, MQTT_TLS="true", MQTT_TLS_CA_FILE=str(cert), MQTT_CLIENT_ID="a"
        )
        untrusted = bridges(broker.port, MQTT_TLS="true", MQTT_CLIENT_ID="b")  # system CAs only
        await asyncio.to_thread(trusted.wait_ready)
        wait_until(lambda: "certificate verify failed" in untrusted.log_path.read_text())
        assert not untrusted.ready()
        plain = bridges(broker.port, MQTT_CLIENT_ID="c")  # MQTT_TLS off: no TLS handshake
        await asyncio.sleep(1)
        assert not plain.ready()
    finally:
        broker.stop()


async def test_a_database_that_refuses_is_waited_out_never_a_message_dropped(
    fault_database, broker, bridges
):
    """A missing grant (or function, or a timeout) is the database's state, not the
    message's: nothing is acknowledged, the batch is tried again until it goes in."""
    bridge = bridges(broker.port)
    await asyncio.to_thread(bridge.wait_ready)
    grant = "execute on function api.ingest_trunk_recorder(jsonb) {} emberlog_ingest"
    with psycopg.connect(fault_database, autocommit=True) as conn:
        conn.execute(f"revoke {grant.format('from')}")
        try:
            sent = [(TOPIC + "rates", message("rates", 1771216100, [rate(4, "PRWC-S", 33.0)]))]
            await asyncio.to_thread(publish, broker.port, sent)
            wait_until(lambda: "42501" in bridge.log_path.read_text())  # permission denied
            stored = conn.execute("select count(*) from data.traffic_sites where sys_num = 4")
            assert stored.fetchone() == (0,)
            assert (
                bridge.metric("emberlog_bridge_messages_total", outcome="failed", type="rates") == 0
            )
        finally:
            conn.execute(f"grant {grant.format('to')}")
    await asyncio.to_thread(applied, fault_database, sent)
    assert bridge.metric("emberlog_bridge_messages_total", outcome="applied", type="rates") == 1
