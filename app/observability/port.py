"""The little HTTP port of a background CLI (the MQTT bridge's BRIDGE_PORT, the alert
worker's WORKER_PORT): /healthz, /readyz and /metrics, served by a thread of the
standard library's HTTP server, so that a busy or stuck event loop still answers the
liveness probe and the metrics."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger("emberlog.port")


def serve(
    host: str,
    port: int,
    registry: CollectorRegistry,
    ready: Callable[[], dict[str, bool]],
    name: str,
) -> ThreadingHTTPServer | None:
    """Start the port on a daemon thread named ``{name}-http`` (none when port is 0).
    ``ready`` says, per target (mqtt, database, listen...), whether the process is
    connected; /readyz is 200 only when all are. /metrics is ``registry``'s."""
    if not port:
        return None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
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
    threading.Thread(target=server.serve_forever, name=f"{name}-http", daemon=True).start()
    log.info("%s: health and metrics on %s:%d", name, host, server.server_address[1])
    return server
