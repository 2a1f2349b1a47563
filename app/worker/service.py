"""The worker's metrics, in a registry of its own, served on WORKER_PORT (with /healthz
and /readyz) by app/observability/port.py."""

from __future__ import annotations

from collections.abc import Callable
from http.server import ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..observability import port as port_server

REGISTRY = CollectorRegistry(auto_describe=True)
DELIVERIES = Counter(
    "emberlog_worker_deliveries",
    "Attempts recorded, by outcome: delivered, failed (retrying later), dead (no more"
    " attempts, or a refused destination), stale (not recorded: its lease had run out, so"
    " another worker may have taken the delivery over).",
    ["outcome"],
    registry=REGISTRY,
)
DELIVERY_SECONDS = Histogram(
    "emberlog_worker_delivery_seconds",
    "One webhook attempt, connect to answer (or to the timeout).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
QUEUE_DELIVERIES = Gauge(
    "emberlog_worker_queue_deliveries",
    "Deliveries waiting (queued, retrying) or in flight (sending), from api.alert_queue().",
    ["status"],
    registry=REGISTRY,
)
QUEUE_OLDEST_DUE = Gauge(
    "emberlog_worker_queue_oldest_due_seconds",
    "How overdue the oldest due delivery is (0: none waiting), from api.alert_queue().",
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "emberlog_worker_in_flight", "Webhooks being sent by this worker now.", registry=REGISTRY
)
CONNECTED = Gauge(
    "emberlog_worker_connected",
    "1 while connected, by target: database (claims and results), listen (NOTIFY).",
    ["target"],
    registry=REGISTRY,
)
RECONNECTS = Counter(
    "emberlog_worker_reconnects",
    "Connections lost and retried, by target.",
    ["target"],
    registry=REGISTRY,
)

for outcome in ("delivered", "failed", "dead", "stale"):
    DELIVERIES.labels(outcome)
for status in ("queued", "sending", "retrying"):
    QUEUE_DELIVERIES.labels(status)


def serve(host: str, port: int, ready: Callable[[], dict[str, bool]]) -> ThreadingHTTPServer | None:
    """Start WORKER_PORT on a daemon thread (none when port is 0)."""
    return port_server.serve(host, port, REGISTRY, ready, "worker")
