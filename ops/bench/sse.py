"""make bench-sse: N concurrent SSE clients on one server process, M incidents at a fixed
rate; reports delivered/expected, latency from just before each POST to receipt, and
the server's memory before and after the clients connect.

--filtered runs the filtered-stream case instead (issue 15): N clients on the event
stream GET /api/v1/sse with mixed filters (a quarter each: one event_type, two
event_types, one system, an event_type and a system), M envelopes of mixed types and
systems posted one per batch to POST /api/v1/ingest/events at --rate; latency over every
(client, matching event) pair, and every client must get exactly the events matching
its filter (a missing, a non-matching or a repeated one is an error).

By default it starts its own embedded PostgreSQL and one `emberlog-api serve` process
(WORKERS=1); with --url (and --pid for memory) it measures a running server instead.

    python ops/bench/sse.py --clients 100,1000,10000 --events 40 --rate 2
    python ops/bench/sse.py --filtered --clients 1000 --events 50 --rate 2
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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ops.local import local_server

MARK = b"bench-"
TARGET_P99_MS = 100.0  # issue 15's target for the filtered case
TYPES = ("bench.a.created", "bench.b.created", "bench.c.created")
SYSTEMS = ("S1", "S2", "S3")
# (query string, event types it takes or None for any, system it takes or None for any)
FILTERS = (
    ("event_type=bench.a.created", {TYPES[0]}, None),
    ("event_type=bench.b.created&event_type=bench.c.created", {TYPES[1], TYPES[2]}, None),
    ("system=S1", None, "S1"),
    ("event_type=bench.a.created&system=S2", {TYPES[0]}, "S2"),
)


@dataclass
class Received:
    """Receipt times of every marked event, per client."""

    posted: dict[int, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    delivered: int = 0
    non_matching: int = 0  # frames a client's filter should have kept from it
    repeated: int = 0  # the same event twice on one client


class MarkerScanner:
    """The incident stream's parser, as cheap as possible: finds `bench-<seq>` markers
    anywhere in the bytes, each once."""

    def __init__(self) -> None:
        self.tail = b""
        self.seen: set[int] = set()

    def feed(self, data: bytes) -> list[int]:
        found = []
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
                found.append(seq)
            start = chunk.find(MARK, stop)
        self.tail = chunk[-32:]
        return found


class EnvelopeFrames:
    """The event stream's parser: undoes the HTTP framing (chunked or not), splits SSE
    frames and returns the sequence number (``sequence``: payload.bench_seq) of every
    envelope frame, repeats included. A frame whose `event:` is not its envelope's
    event_type, or without a sequence number, counts in `malformed`."""

    def __init__(self) -> None:
        self.raw = b""
        self.body = b""
        self.chunked: bool | None = None  # None until the headers are in
        self.malformed = 0

    def feed(self, data: bytes) -> list[int]:
        self.raw += data
        if self.chunked is None:
            head, sep, rest = self.raw.partition(b"\r\n\r\n")
            if not sep:
                return []
            self.chunked = b"transfer-encoding: chunked" in head.lower()
            self.raw = rest
        if not self.chunked:
            self.body, self.raw = self.body + self.raw, b""
        while self.chunked:
            line_end = self.raw.find(b"\r\n")
            if line_end == -1:
                break
            size = int(self.raw[:line_end].split(b";")[0], 16)
            start = line_end + 2
            if len(self.raw) < start + size + 2:
                break
            self.body += self.raw[start : start + size]
            self.raw = self.raw[start + size + 2 :]
        found = []
        while b"\n\n" in self.body:
            frame, self.body = self.body.split(b"\n\n", 1)
            event, data_ = None, None
            for line in frame.split(b"\n"):
                if line.startswith(b"event: "):
                    event = line[7:].decode()
                elif line.startswith(b"data: "):
                    data_ = line[6:]
            if data_ is None or event == "reset":
                continue  # the retry hint, a position, a comment
            envelope = json.loads(data_)
            seq = self.sequence(envelope) if event == envelope.get("event_type") else None
            if seq is None:
                self.malformed += 1
                continue
            found.append(seq)
        return found

    def sequence(self, envelope: dict) -> int | None:
        """The envelope's sequence number (None: malformed). Subclasses read others."""
        seq = envelope.get("payload", {}).get("bench_seq")
        return seq if isinstance(seq, int) else None


class StreamClient(asyncio.Protocol):
    """One SSE connection: its parser finds the posted events' sequence numbers, this
    times them; with `wanted`, only those count as delivered, others as non-matching."""

    def __init__(
        self,
        path: str,
        received: Received,
        opened: asyncio.Future[None],
        parser: MarkerScanner | EnvelopeFrames | None = None,
        wanted: set[int] | None = None,
    ) -> None:
        self.path = path
        self.received = received
        self.opened = opened
        self.parser = parser if parser is not None else MarkerScanner()
        self.wanted = wanted
        self.seen: set[int] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        request = f"GET {self.path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"
        transport.write(request.encode())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if not self.opened.done() and b"retry:" in data:
            self.opened.set_result(None)
        received = self.received
        for seq in self.parser.feed(data):
            if self.wanted is not None and seq not in self.wanted:
                received.non_matching += 1
            elif seq in self.seen:
                received.repeated += 1
            else:
                self.seen.add(seq)
                received.delivered += 1
                received.latencies.append(now - received.posted[seq])

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


def incident_clients(i: int, received: Received, opened: asyncio.Future[None]) -> StreamClient:
    return StreamClient("/api/v1/sse/incidents", received, opened)


async def connect_clients(
    host: str,
    port: int,
    n: int,
    received: Received,
    make: Callable[[int, Received, asyncio.Future[None]], StreamClient] = incident_clients,
) -> tuple[list, list[StreamClient]]:
    loop = asyncio.get_running_loop()
    transports, clients = [], []
    for start in range(0, n, 250):
        batch = []
        for i in range(start, min(n, start + 250)):
            opened: asyncio.Future[None] = loop.create_future()
            factory = lambda i=i, o=opened: make(i, received, o)  # noqa: E731
            batch.append((loop.create_connection(factory, host, port), opened))
        for connecting, opened in batch:
            transport, client = await connecting
            transports.append(transport)
            clients.append(client)
            await asyncio.wait_for(opened, 30)
    return transports, clients


def incident_post(seq: int) -> tuple[str, dict]:
    return "/api/v1/incidents", {
        "dispatched_at": "2026-11-22T10:00:00Z",
        "source_audio": f"bench/{uuid.uuid4().hex}.m4a",
        "transcript": f"{MARK.decode()}{seq}",
    }


def event_kind(seq: int) -> tuple[str, str]:
    """Event `seq`'s (event_type, source.system): every pair of the 3 x 3 in turn."""
    return TYPES[seq % 3], SYSTEMS[(seq // 3) % 3]


def matches(client: int, seq: int) -> bool:
    _query, types, system = FILTERS[client % len(FILTERS)]
    event_type, event_system = event_kind(seq)
    return (types is None or event_type in types) and (system is None or event_system == system)


def filtered_client(
    i: int, received: Received, opened: asyncio.Future[None], m: int
) -> StreamClient:
    query = FILTERS[i % len(FILTERS)][0]
    wanted = {seq for seq in range(m) if matches(i, seq)}
    return StreamClient(f"/api/v1/sse?{query}", received, opened, EnvelopeFrames(), wanted)


def envelope_post(seq: int) -> tuple[str, dict]:
    event_type, system = event_kind(seq)
    envelope = {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "schema_version": "1.0.0",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "source": {"module": "bench", "instance": "b1", "system": system},
        "payload": {"bench_seq": seq},
    }
    return "/api/v1/ingest/events", {"events": [envelope]}


async def warm_up(base: str, key: str) -> None:
    """One untimed envelope that no client's filter takes: the first ingest and the
    first fetch of an envelope are slower (about 300 ms once, against 15-50 ms after)."""
    _path, body = envelope_post(0)
    event = body["events"][0]
    event |= {"event_type": "bench.warmup.created", "payload": {}}
    event["source"]["system"] = "W"
    async with httpx.AsyncClient(base_url=base, timeout=30, headers={"X-API-Key": key}) as http:
        response = await http.post("/api/v1/ingest/events", json=body)
        response.raise_for_status()


async def post_events(
    base: str,
    key: str,
    m: int,
    rate: float,
    received: Received,
    request: Callable[[int], tuple[str, dict]] = incident_post,
) -> None:
    headers = {"X-API-Key": key}
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers) as http:
        started = time.perf_counter()
        for seq in range(m):
            await asyncio.sleep(max(0.0, started + seq / rate - time.perf_counter()))
            path, body = request(seq)
            received.posted[seq] = time.perf_counter()
            response = await http.post(path, json=body)
            response.raise_for_status()
            if "events" in body and response.json().get("accepted") != 1:
                raise RuntimeError(f"event {seq} was not accepted: {response.text}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_once(
    base: str, key: str, pid: int | None, n: int, m: int, rate: float, filtered: bool = False
) -> dict:
    parts = urlsplit(base)
    received = Received()
    idle_before = rss_kib(pid) if pid else None
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if filtered:
        make = lambda i, r, o: filtered_client(i, r, o, m)  # noqa: E731
        transports, clients = await connect_clients(host, port, n, received, make)
        expected = sum(len(c.wanted or ()) for c in clients)
        await warm_up(base, key)
    else:
        transports, clients = await connect_clients(host, port, n, received)
        expected = n * m
    gc.freeze()  # the clients live to the end: keep the collector off them while timing
    await asyncio.sleep(1.0)
    idle_after = rss_kib(pid) if pid else None
    server_cpu, client_cpu = (cpu_seconds(pid) if pid else 0.0), own_cpu_seconds()
    await post_events(base, key, m, rate, received, envelope_post if filtered else incident_post)
    deadline = time.monotonic() + 30
    while received.delivered < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if filtered:
        await asyncio.sleep(1.0)  # time for any frame that should not come
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
        "expected": expected,
        "p50_ms": round(percentile(lat, 0.50), 1),
        "p99_ms": round(percentile(lat, 0.99), 1),
        "max_ms": round(max(lat), 1) if lat else None,
        "mean_ms": round(statistics.fmean(lat), 1) if lat else None,
        "bench_cpu_ms_per_event": round(client_cpu * 1000 / m, 1),
    }
    if filtered:
        missing = sum(len((c.wanted or set()) - c.seen) for c in clients)
        malformed = sum(getattr(c.parser, "malformed", 0) for c in clients)
        result |= {
            "filters": [f[0] for f in FILTERS],
            "missing": missing,
            "non_matching": received.non_matching,
            "repeated": received.repeated,
            "malformed": malformed,
            "errors": missing + received.non_matching + received.repeated + malformed,
            "target_p99_lt_100ms_met": bool(lat) and result["p99_ms"] < TARGET_P99_MS,
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
    p.add_argument(
        "--clients", help="comma-separated N values (100,1000,10000; with --filtered 1000)"
    )
    p.add_argument("--events", type=int, help="M incidents per run (40; with --filtered 50)")
    p.add_argument("--rate", type=float, default=2.0, help="incidents (or envelopes) per second")
    p.add_argument(
        "--filtered",
        action="store_true",
        help="the filtered case: clients on /api/v1/sse with mixed filters, envelopes posted",
    )
    p.add_argument("--url", help="measure this running server instead of starting one")
    p.add_argument("--pid", type=int, help="the running server's pid (for memory)")
    p.add_argument("--api-key", help="an ingest key for the running server (with --url)")
    args = p.parse_args()
    raise_file_limit()
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if args.clients is None:
        args.clients = "1000" if args.filtered else "100,1000,10000"
    if args.events is None:
        args.events = 50 if args.filtered else 40
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
                "RATE_LIMIT_PER_KEY": "0",  # every POST carries the one ingest key
            }
            server = stack.enter_context(local_server(directory, **env))
            base, pid, key = server.base, server.pid, server.ingest_key
            pin(pid)
        for n in counts:
            run = run_once(base, key, pid, n, args.events, args.rate, args.filtered)
            result = asyncio.run(run)
            print(json.dumps(result), flush=True)
            results.append(result)
    print()
    if args.filtered:
        return report_filtered(results)
    print("| clients | delivered/expected | p50 ms | p99 ms | max ms | KiB/client idle |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in results:
        per_client = r.get("kib_per_client", "n/a")
        print(
            f"| {r['clients']:,} | {r['delivered']:,}/{r['expected']:,} | {r['p50_ms']} "
            f"| {r['p99_ms']} | {r['max_ms']} | {per_client} |"
        )
    return 0 if all(r["delivered"] == r["expected"] for r in results) else 1


def report_filtered(results: list[dict]) -> int:
    print(
        "| clients | delivered/expected | errors | p50 ms | p99 ms | max ms "
        f"| p99 < {TARGET_P99_MS:.0f} ms |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        met = "met" if r["target_p99_lt_100ms_met"] else "not met"
        print(
            f"| {r['clients']:,} | {r['delivered']:,}/{r['expected']:,} | {r['errors']} "
            f"| {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {met} |"
        )
    for r in results:
        print(
            f"N={r['clients']:,}: missing {r['missing']}, non-matching {r['non_matching']}, "
            f"repeated {r['repeated']}, malformed {r['malformed']}; target p99 < "
            f"{TARGET_P99_MS:.0f} ms {'met' if r['target_p99_lt_100ms_met'] else 'not met'}"
        )
    ok = all(r["errors"] == 0 and r["delivered"] == r["expected"] for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
