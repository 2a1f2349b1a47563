"""A real Mosquitto broker (Debian's package, installed by `make test` when missing) on a
loopback port of its own, a publisher as Trunk Recorder's plugin is one, and
`emberlog-api mqtt-bridge` in a subprocess."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt

from ops.local import free_port
from tests import pg
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    assert Path(found).exists(), "Mosquitto is needed: `make test` installs it (package mosquitto)"
    return found


class Mosquitto:
    """A broker that keeps sessions and queued messages across its restarts (persistence
    on, saved when it stops), as a production broker is configured."""

    def __init__(self, directory: Path, tls: tuple[Path, Path] | None = None) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        listener = [f"listener {self.port} 127.0.0.1"]
        if tls:
            listener += [f"certfile {tls[0]}", f"keyfile {tls[1]}"]
        self.config = directory / "mosquitto.conf"
        self.config.write_text(
            "\n".join([
                *listener,
                "allow_anonymous true",
                "persistence true",
                f"persistence_location {directory}/",
                f"user {getpass.getuser()}",
                "max_queued_messages 100000",
                "max_inflight_messages 100",
                f"log_dest file {directory}/mosquitto.log",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "",
            ])
        )  # fmt: skip

    def start(self) -> None:
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._accepting, 30, 0.05, what="Mosquitto listening")

    def stop(self) -> None:
        """Stopped as a service manager stops it (SIGTERM: it saves what it keeps)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _accepting(self) -> bool:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="probe")
        try:
            client.connect("127.0.0.1", self.port)
        except OSError:
            return False
        client.disconnect()
        return True


class Publisher:
    """Publishes as the plugin does, at QoS 1 (the plugin's `qos` option), waiting for
    each message's acknowledgement by the broker."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tr-status-test")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, message: Any, qos: int = 1) -> None:
        payload = message if isinstance(message, bytes) else json.dumps(message)
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(10)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class BridgeProcess:
    """`emberlog-api mqtt-bridge` as production runs it: DATABASE_URL the authenticator."""

    def __init__(self, database_url: str, broker_port: int, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.log = log_path.open("ab")
        environ = {
            **os.environ,
            "DATABASE_URL": pg.as_authenticator(database_url),
            "MQTT_HOST": "127.0.0.1",
            "MQTT_PORT": str(broker_port),
            "HOST": "127.0.0.1",
            "BRIDGE_PORT": str(self.port),
            **env,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "mqtt-bridge"],
            cwd=ROOT,
            env=environ,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5)

    def ready(self) -> bool:
        try:
            return self.http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self) -> None:
        wait_until(self.ready, 30, 0.05, what=f"the bridge ready (log: {self.log_path})")

    def metric(self, name: str, **labels: str) -> float:
        """One sample of /metrics (0 when absent)."""
        text = self.http.get("/metrics").text
        wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
        prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line.split()[-1])
        return 0.0

    def terminate(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.terminate()
        self.log.close()
