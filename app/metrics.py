"""The process's counters and gauges, in one place (Prometheus client types).

Each app gets its own registry, so several apps in one process (tests) do not clash.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class Metrics:
    """Everything the app counts; rendered by ``render()`` in the text exposition format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sse_clients = Gauge(
            "emberlog_sse_clients", "SSE clients connected to this process", registry=r
        )
        self.sse_events_delivered = Counter(
            "emberlog_sse_events_delivered", "Events written to SSE clients", registry=r
        )
        self.sse_events_replayed = Counter(
            "emberlog_sse_events_replayed",
            "Events sent from the log to resuming clients (part of delivered)",
            registry=r,
        )
        self.sse_slow_disconnects = Counter(
            "emberlog_sse_slow_disconnects",
            "SSE clients closed because they fell too far behind",
            registry=r,
        )
        self.listener_reconnects = Counter(
            "emberlog_listener_reconnects",
            "Times the LISTEN connection was lost and opened again",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
