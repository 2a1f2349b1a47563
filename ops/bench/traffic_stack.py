"""make bench-traffic's stack: the broker, the bridge, a publisher, the figures read from
them (ops/bench/traffic.py runs the scenarios)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ops.bench.sse import (
    cpu_seconds,
)
from ops.local import LocalServer
from tests.mqtt import BridgeProcess, Mosquitto
from tests.waiting import wait_until

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

    wait_until(applied, timeout, 0.05, what=f"the bridge applying {count} warm-up message(s)")


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
