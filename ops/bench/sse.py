"""make bench-sse: N concurrent SSE clients on one server process, M incidents at a fixed
rate; reports delivered/expected, latency from just before each POST to receipt, and
the server's memory before and after the clients connect.

By default it starts its own embedded PostgreSQL and one `emberlog-api serve` process
(WORKERS=1); with --url (and --pid for memory) it measures a running server instead.

    python ops/bench/sse.py --clients 100,1000,10000 --events 40 --rate 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ops.local import local_server

MARK = b"bench-"


@dataclass
class Received:
    """Receipt times of every marked event, per client."""

    posted: dict[int, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    delivered: int = 0


class StreamClient(asyncio.Protocol):
    """One SSE connection, as cheap as possible: find markers, time them."""

    def __init__(self, path: str, received: Received, opened: asyncio.Future[None]) -> None:
        self.path = path
        self.received = received
        self.opened = opened
        self.tail = b""
        self.seen: set[int] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        request = f"GET {self.path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"
        transport.write(request.encode())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if not self.opened.done() and b"retry:" in data:
            self.opened.set_result(None)
        chunk = self.tail + data
        start = chunk.find(MARK)
        while start != -1:
            end = start + len(MARK)
            stop = end
            while stop < len(chunk) and 48 <= chunk[stop] <= 57:
                stop += 1
            if stop == len(chunk):
                break  # the number may go on in the next chunk
            seq = int(chunk[end:stop])
            if seq not in self.seen:
                self.seen.add(seq)
                self.received.delivered += 1
                self.received.latencies.append(now - self.received.posted[seq])
            start = chunk.find(MARK, stop)
        self.tail = chunk[-32:]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("stream closed before it opened"))


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(x for x in status if x.startswith("VmRSS:")).split()[1])


async def connect_clients(host: str, port: int, n: int, received: Received) -> list:
    loop = asyncio.get_running_loop()
    transports = []
    for start in range(0, n, 250):
        batch = []
        for _ in range(start, min(n, start + 250)):
            opened: asyncio.Future[None] = loop.create_future()
            factory = lambda o=opened: StreamClient("/api/v1/sse/incidents", received, o)  # noqa: E731
            batch.append((loop.create_connection(factory, host, port), opened))
        for connecting, opened in batch:
            transport, _ = await connecting
            transports.append(transport)
            await asyncio.wait_for(opened, 30)
    return transports


async def post_events(base: str, key: str, m: int, rate: float, received: Received) -> None:
    headers = {"X-API-Key": key}
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers) as http:
        started = time.perf_counter()
        for seq in range(m):
            await asyncio.sleep(max(0.0, started + seq / rate - time.perf_counter()))
            body = {
                "dispatched_at": "2026-11-22T10:00:00Z",
                "source_audio": f"bench/{uuid.uuid4().hex}.m4a",
                "transcript": f"{MARK.decode()}{seq}",
            }
            received.posted[seq] = time.perf_counter()
            response = await http.post("/api/v1/incidents", json=body)
            response.raise_for_status()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_once(base: str, key: str, pid: int | None, n: int, m: int, rate: float) -> dict:
    parts = urlsplit(base)
    received = Received()
    idle_before = rss_kib(pid) if pid else None
    transports = await connect_clients(parts.hostname or "127.0.0.1", parts.port or 80, n, received)
    gc.freeze()  # the clients live to the end: keep the collector off them while timing
    await asyncio.sleep(1.0)
    idle_after = rss_kib(pid) if pid else None
    server_cpu, client_cpu = (cpu_seconds(pid) if pid else 0.0), own_cpu_seconds()
    await post_events(base, key, m, rate, received)
    deadline = time.monotonic() + 30
    while received.delivered < n * m and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    server_cpu = (cpu_seconds(pid) - server_cpu) if pid else 0.0
    client_cpu = own_cpu_seconds() - client_cpu
    for transport in transports:
        transport.close()
    gc.unfreeze()
    await asyncio.sleep(1.0)
    lat = [x * 1000 for x in received.latencies]
    result = {
        "clients": n,
        "events": m,
        "rate_per_s": rate,
        "delivered": received.delivered,
        "expected": n * m,
        "p50_ms": round(percentile(lat, 0.50), 1),
        "p99_ms": round(percentile(lat, 0.99), 1),
        "max_ms": round(max(lat), 1) if lat else None,
        "mean_ms": round(statistics.fmean(lat), 1) if lat else None,
        "bench_cpu_ms_per_event": round(client_cpu * 1000 / m, 1),
    }
    if pid:
        result |= {
            "rss_before_kib": idle_before,
            "rss_connected_kib": idle_after,
            "kib_per_client": round((idle_after - idle_before) / n, 2),
            "server_cpu_ms_per_event": round(server_cpu * 1000 / m, 1),
        }
    return result


def pin(server_pid: int) -> None:
    """With two or more cores: the server on the first, this load generator on the
    others, so they do not take turns on one core (PostgreSQL may run anywhere)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return
    os.sched_setaffinity(server_pid, {cores[0]})
    os.sched_setaffinity(0, set(cores[1:]))


def raise_file_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", default="100,1000,10000", help="comma-separated N values")
    p.add_argument("--events", type=int, default=40, help="M incidents per run")
    p.add_argument("--rate", type=float, default=2.0, help="incidents per second")
    p.add_argument("--url", help="measure this running server instead of starting one")
    p.add_argument("--pid", type=int, help="the running server's pid (for memory)")
    p.add_argument("--api-key", help="an ingest key for the running server (with --url)")
    args = p.parse_args()
    raise_file_limit()
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    counts = [int(x) for x in args.clients.split(",")]
    results = []
    with contextlib.ExitStack() as stack:
        if args.url:
            base, pid, key = args.url, args.pid, args.api_key or ""
        else:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
            env = {
                "LOG_LEVEL": "WARNING",
                "WORKERS": "1",
                "POOL_MAX_SIZE": "10",
                "MAX_STREAMS_PER_ADDRESS": "0",  # N clients from one address
                "RATE_LIMIT_PER_ADDRESS": "0",
            }
            server = stack.enter_context(local_server(directory, **env))
            base, pid, key = server.base, server.pid, server.ingest_key
            pin(pid)
        for n in counts:
            result = asyncio.run(run_once(base, key, pid, n, args.events, args.rate))
            print(json.dumps(result), flush=True)
            results.append(result)
    print()
    print("| clients | delivered/expected | p50 ms | p99 ms | max ms | KiB/client idle |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in results:
        per_client = r.get("kib_per_client", "n/a")
        print(
            f"| {r['clients']:,} | {r['delivered']:,}/{r['expected']:,} | {r['p50_ms']} "
            f"| {r['p99_ms']} | {r['max_ms']} | {per_client} |"
        )
    return 0 if all(r["delivered"] == r["expected"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
