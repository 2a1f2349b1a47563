"""The bridge's own HTTP port (BRIDGE_PORT): /healthz, /readyz and /metrics, served by a
thread of the standard library's HTTP server, and the metrics themselves."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger("emberlog.bridge")

REGISTRY = CollectorRegistry(auto_describe=True)
MESSAGES = Counter(
    "emberlog_bridge_messages",
    "Messages handled, by type and outcome: applied, ignored (older or already applied),"
    " rejected (malformed: the database said why), invalid (not JSON), failed (the"
    " database could not apply it; logged).",
    ["type", "outcome"],
    registry=REGISTRY,
)
EVENTS = Counter(
    "emberlog_bridge_events", "Canonical events the messages recorded.", registry=REGISTRY
)
BATCH_SECONDS = Histogram(
    "emberlog_bridge_batch_seconds",
    "Time to apply one batch in the database (one transaction).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "emberlog_bridge_batch_messages",
    "Messages per batch.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
    registry=REGISTRY,
)
PENDING = Gauge(
    "emberlog_bridge_pending_messages",
    "Messages received and not yet applied (nor acknowledged).",
    registry=REGISTRY,
)
CONNECTED = Gauge(
    "emberlog_bridge_connected",
    "1 while connected, by target: mqtt, database.",
    ["target"],
    registry=REGISTRY,
)
RECONNECTS = Counter(
    "emberlog_bridge_reconnects",
    "Connections lost and retried, by target.",
    ["target"],
    registry=REGISTRY,
)


def serve(host: str, port: int, ready: Callable[[], dict[str, bool]]) -> ThreadingHTTPServer | None:
    """Start the port on a daemon thread (none when port is 0). ``ready`` says, per
    target, whether the bridge is connected; /readyz is 200 only when all are."""
    if not port:
        return None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                self._json(200, {"status": "ok"})
            elif self.path == "/readyz":
                state = ready()
                ok = all(state.values())
                self._json(200 if ok else 503, {"status": "ready" if ok else "not ready", **state})
            else:
                self._json(404, {"error": {"code": "not_found", "message": "no such path"}})

        def _json(self, status: int, body: dict) -> None:
            self._send(status, json.dumps(body).encode(), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # probes: no log lines
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="bridge-http", daemon=True).start()
    log.info("health and metrics on %s:%d", host, server.server_address[1])
    return server
