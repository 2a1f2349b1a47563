"""The process's counters and gauges, in one place (Prometheus client types).

Each app gets its own registry, so several apps in one process (tests) do not clash.
Labels are bounded: a route label is a route template (or "unmatched"), never a path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from psycopg_pool import AsyncConnectionPool

# Seconds: from a cached health answer (~0.1 ms) to a statement timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Pool gauges, read from psycopg_pool's get_stats() at scrape time, labelled
# pool="requests" (DATABASE_URL) or pool="reads" (READ_DATABASE_URL).
POOL = (
    ("emberlog_pool_size", "Connections the pool holds (busy or idle)", "pool_size"),
    ("emberlog_pool_available", "Idle connections in the pool", "pool_available"),
    ("emberlog_pool_requests_waiting", "Requests waiting for a connection", "requests_waiting"),
    ("emberlog_pool_max_size", "Most connections the pool may open", "pool_max"),
)


class Metrics:
    """Everything the app counts; rendered by ``render()`` in the text exposition format."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.requests = Counter(
            "emberlog_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "emberlog_http_request_duration_seconds",
            "Time to answer (for a stream: to its first byte), by route template and method",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.route_reloads = Counter(
            "emberlog_route_table_reloads",
            "Times the route table was (re)loaded from the database catalog",
            registry=r,
        )
        self.routes = Gauge("emberlog_routes", "Routes in the loaded route table", registry=r)
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
        self.sse_streams_refused = Counter(
            "emberlog_sse_streams_refused",
            "SSE streams refused with 429: the address had MAX_STREAMS_PER_ADDRESS open",
            registry=r,
        )
        self.sse_replays_refused = Counter(
            "emberlog_sse_replays_refused",
            "Resuming SSE clients sent a reset instead of a replay (beyond SSE_REPLAY_LIMIT)",
            registry=r,
        )
        self.listener_reconnects = Counter(
            "emberlog_listener_reconnects",
            "Times the LISTEN connection was lost and opened again",
            registry=r,
        )
        self.stream_head = Gauge(
            "emberlog_stream_head_event_id",
            "Newest event id in the stream's published log (read every few seconds)",
            ["stream"],
            registry=r,
        )
        self.stream_position = Gauge(
            "emberlog_stream_position_event_id",
            "Newest event id this process has fetched into its ring",
            ["stream"],
            registry=r,
        )
        self.stream_lag = Gauge(
            "emberlog_stream_lag_events",
            "Events in the log this process has not fetched yet (head minus position)",
            ["stream"],
            registry=r,
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """One answered request. The labelled series are looked up once per (route,
        method, status) and kept (their labels are bounded: route templates, never
        paths): prometheus-client's labels() cost 3.5 us a request, the kept pair 1.3."""
        key = (route, method, status)
        series = self._series.get(key)
        if series is None:
            series = (self.requests.labels(route, method, str(status)),
                      self.latency.labels(route, method))  # fmt: skip
            self._series[key] = series
        series[0].inc()
        series[1].observe(seconds)

    def watch(self, collector: Collector) -> None:
        """Add a collector read at scrape time (pool, route table)."""
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Gauges(Collector):
    """Gauges whose values are read when scraped: per name, a callable returning a
    number per value of one label (none while there is nothing to report, e.g. before
    the pools exist)."""

    def __init__(
        self, label: str, gauges: dict[str, tuple[str, Callable[[], Mapping[str, float]]]]
    ) -> None:
        self.label = label
        self.gauges = gauges

    def collect(self) -> Iterator[Any]:
        for name, (documentation, read) in self.gauges.items():
            values = read()
            if values:
                family = GaugeMetricFamily(name, documentation, labels=[self.label])
                for label, value in values.items():
                    family.add_metric([label], value)
                yield family

    def describe(self) -> Iterator[Any]:
        return iter(())  # values may be absent at registration: describe nothing up front


def pool_gauges(pools: Callable[[], Mapping[str, AsyncConnectionPool]]) -> Gauges:
    """The POOL gauges of the pools open at scrape time, by name (AppState.pools)."""
    return Gauges("pool", {name: (doc, _pool_stat(pools, key)) for name, doc, key in POOL})


def _pool_stat(
    pools: Callable[[], Mapping[str, AsyncConnectionPool]], key: str
) -> Callable[[], dict[str, float]]:
    def read() -> dict[str, float]:
        return {name: pool.get_stats().get(key, 0) for name, pool in pools().items()}

    return read
