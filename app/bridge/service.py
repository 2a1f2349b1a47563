"""The bridge's own HTTP port (BRIDGE_PORT): /healthz, /readyz and /metrics (served by
app/observability/port.py, as the alert worker's), and the metrics themselves."""

from __future__ import annotations

from collections.abc import Callable
from http.server import ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..observability import port as port_server

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
    return port_server.serve(host, port, REGISTRY, ready, "bridge")
