"""make bench: the API's throughput and latency under wrk, beside what PostgreSQL alone
and a bare Falcon handler do on the same machine, in the same run.

1. A throwaway stack (embedded PostgreSQL, `emberlog-api serve` with WORKERS = cores, the
   production defaults, rate limits off: all load comes from one address) and BENCH_ROWS
   seeded incidents (ops/bench/seed.sql, reproducible).
2. wrk, 32 connections, a warm-up that is thrown away, then DURATION seconds per
   scenario: healthz, get_by_id, list, list_304 (If-None-Match: 304), list_filtered,
   list_search, create; the bare reference handlers (ops/bench/reference.py) on the
   get_by_id query, healthz and the list's SQL page; pgbench select-only with the same
   query and connection count: the database's ceiling. Then issue 18's ratios side by
   side (ops/bench/pairs.py): each scenario and its bare handler back to back, --rounds
   times, the median held against the target.
3. Growth: list, list_filtered and list_search at each size of --sizes, the table grown
   in place, with the count strategy the responses report.
4. RSS of each worker after the run; the table printed, and written into
   docs/performance.md between the bench markers (--no-readme to leave it).

    python ops/bench/api.py --rows 20000 --duration 20 --sizes 20000,200000,1000000

Long (about 600 lines) because it is one run's whole story, in the order it runs: the
servers, the load, the CPU readings and the report; the side-by-side rounds are
ops/bench/pairs.py, the stack ops/local.py.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.database.embedded import EmbeddedPostgres  # noqa: E402
from app.environment import from_env  # noqa: E402
from ops.bench.pairs import Pair, side_by_side  # noqa: E402
from ops.bench.pairs import report as pairs_report  # noqa: E402
from ops.bench.pairs import spread as worker_spread  # noqa: E402
from ops.bench.traffic_stack import cpu_of, postgres_pids  # noqa: E402
from ops.local import LocalServer, free_port, local_server, wait_ready, workers  # noqa: E402

HERE = Path(__file__).resolve().parent
# list_304: the list again, with If-None-Match naming its current ETag (issue 18's
# conditional requests): nothing is rendered. Before create, which changes the version.
SCENARIOS = ("healthz", "get_by_id", "list", "list_304", "list_filtered", "list_search", "create")
GROWTH_SCENARIOS = ("list", "list_filtered", "list_search", "events", "events_filtered")
# ops/bench/reference.py's handlers, by scenario: what each does.
BARE = {
    "reference": "get by id",
    "reference_contract": "get by id, the API's own SQL message",
    "reference_healthz": "healthz",
    "reference_list": "the list's SQL page",
}
TARGETS = {  # req/s on the 2-core reference machine (issue 5)
    "healthz": 20000,
    "get_by_id": 4500,
    "list": 2000,
    "list_filtered": 1500,
    "list_search": 1000,
    "create": 2500,
}
P99_TARGET_MS = 50.0
README_BEGIN = "<!-- bench:begin (make bench writes this block) -->"
README_END = "<!-- bench:end -->"
PK_QUERY = "select api.incident_json(i)::text from api.incidents as i where i.id = {id}"


@dataclass(frozen=True)
class Run:
    """One wrk (or pgbench) measurement."""

    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # status >= 400 plus socket errors (wrk); failed transactions (pgbench)
    socket_errors: int = 0  # of errors: connect, read, write and timeout errors (wrk)
    worker_cpu: tuple[float, ...] = ()  # CPU seconds of each server worker over the run
    app_us: float = float("nan")  # CPU of the server's workers per request (µs)
    postgres_us: float = float("nan")  # CPU of PostgreSQL's processes per request (µs)


Growth = tuple[int, dict[str, str], dict[str, Run]]  # incidents, count strategies, runs


# -- the load generators --------------------------------------------------------------


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit(
            "make bench needs wrk, the HTTP load generator. Install it with\n"
            "  sudo apt-get install wrk     (Debian, Ubuntu)\n"
            "  brew install wrk             (macOS)\n"
            "or build it from https://github.com/wg/wrk, then run make bench again."
        )
    return wrk


def wrk(base: str, scenario: str, seconds: float, args: argparse.Namespace, **env: str) -> Run:
    """One wrk run of a scenario of scenarios.lua; its done() prints a JSON line."""
    command = [
        args.wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-s",
        str(HERE / "scenarios.lua"),
        base,
    ]
    environ = {**os.environ, "BENCH_SCENARIO": scenario, **env}
    out = subprocess.run(command, env=environ, capture_output=True, text=True, check=True).stdout
    line = next(x for x in reversed(out.splitlines()) if x.startswith("{"))
    stats = json.loads(line)
    seconds_run = stats["duration_us"] / 1e6
    return Run(
        scenario,
        stats["requests"] / seconds_run,
        stats["p50_us"] / 1000,
        stats["p99_us"] / 1000,
        stats["status_errors"] + stats["socket_errors"],
        stats["socket_errors"],
    )


def measure(
    base: str, scenario: str, args: argparse.Namespace, server: int | None = None, **env: str
) -> Run:
    """Warm-up (thrown away), then the measured run; with the server's pid, what CPU its
    workers and PostgreSQL's processes spent per request over that run (side by side:
    where a difference in throughput comes from)."""
    if args.warmup > 0:
        wrk(base, scenario, args.warmup, args, **env)
    if server is None:
        return wrk(base, scenario, args.duration, args, **env)
    app, database = workers(server), postgres_pids(args.pgdata)
    before = cpu_of([*app, *database])
    run = wrk(base, scenario, args.duration, args, **env)
    after = cpu_of([*app, *database])
    used = {p: after[p] - before[p] for p in after if p in before}
    requests = run.rps * args.duration or 1.0
    return replace(
        run,
        worker_cpu=tuple(round(used.get(p, 0.0), 2) for p in app),
        app_us=1e6 * sum(used.get(p, 0.0) for p in app) / requests,
        postgres_us=1e6 * sum(used.get(p, 0.0) for p in database) / requests,
    )


def pgbench(database_url: str, rows: int, args: argparse.Namespace, workdir: Path) -> Run:
    """The database's ceiling: the get_by_id query with pgbench, same connection count."""
    script = workdir / "get_by_id.sql"
    script.write_text(f"\\set id random(1, {rows})\n{PK_QUERY.format(id=':id')};\n")
    command = [
        str(EmbeddedPostgres.bin_path("pgbench")),
        "--no-vacuum",
        "--protocol=prepared",
        f"--client={args.connections}",
        f"--jobs={args.threads}",
        f"--time={max(1, round(args.duration))}",
        "--report-per-command",
        f"--file={script}",
        database_url,
    ]
    if args.warmup > 0:
        warm = [*command]
        warm[warm.index(f"--time={max(1, round(args.duration))}")] = f"--time={round(args.warmup)}"
        subprocess.run(warm, capture_output=True, check=True)
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))  # type: ignore[union-attr]
    failed = re.search(r"number of failed transactions: (\d+)", out)
    return Run("pgbench", tps, latency, float("nan"), int(failed.group(1)) if failed else 0)


# -- the data ----------------------------------------------------------------------------


def grow(database_url: str, rows: int) -> float:
    """Append seeded incidents, and as many event envelopes, until there are `rows` of
    each; returns the seconds it took. Triggers are off for the load (no stream event per
    seeded row); the trigger-kept count is rebuilt after it, and the statistics
    refreshed."""
    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        for table, seed in (("incidents", "seed.sql"), ("event_envelopes", "seed_events.sql")):
            (have,) = conn.execute(f"select count(*) from data.{table}").fetchone()  # type: ignore[misc]
            if have >= rows:
                continue
            with conn.transaction():
                conn.execute("set local session_replication_role = replica")
                text = (HERE / seed).read_text()
                conn.execute(text, {"first": have + 1, "last": rows})  # type: ignore[arg-type]
            conn.execute(f"vacuum analyze data.{table}")
        conn.execute("select internal.recount_incidents()")
    return time.perf_counter() - started


# One request like each growth scenario's, to read whether its total was counted.
STRATEGY_PROBES = {
    "list": "/api/v1/incidents?page_size=50",
    "list_filtered": "/api/v1/incidents?page_size=50&incident_type=Structure%20Fire&units=E1",
    "list_search": "/api/v1/incidents?page_size=50&q=smoke",
    "events": "/api/v1/events?limit=50",
    "events_filtered": "/api/v1/events?limit=50&event_type=traffic.call.started&system=S1",
}


def count_strategy(base: str) -> dict[str, str]:
    """Per growth scenario: whether its responses' total was counted or estimated."""
    strategies = {}
    for name, path in STRATEGY_PROBES.items():
        body = httpx.get(f"{base}{path}", timeout=30).json()
        exact = body["pagination"]["total_exact"] if "pagination" in body else body["total_exact"]
        strategies[name] = "exact" if exact else "estimate"
    return strategies


# -- the servers ----------------------------------------------------------------------------


@contextlib.contextmanager
def reference_server(database_url: str, workers: int, log_path: Path) -> Iterator[tuple[str, int]]:
    """ops/bench/reference.py under uvicorn, with the API's worker count and each worker's
    pool as large as each of the API's (POOL_MAX_SIZE is the server's, split)."""
    port = free_port()
    api = from_env({**os.environ, "WORKERS": str(workers)})
    environ = {
        **os.environ,
        "DATABASE_URL": database_url,
        "POOL_MIN_SIZE": str(api.worker_pool_min_size),
        "POOL_MAX_SIZE": str(api.worker_pool_max_size),
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "ops.bench.reference:app",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server, path="/incidents/1")
        yield base, server.pid
    finally:
        server.terminate()
        server.wait(30)


def rss_mb(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


# -- the report ------------------------------------------------------------------------------


def ratio(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f} %" if whole else "-"


def report(
    runs: dict[str, Run],
    growth: list[Growth],
    rss: list[float],
    args: argparse.Namespace,
    pairs: list[Pair],
) -> str:
    healthz, ceiling, reference = runs["healthz"], runs["pgbench"], runs["reference"]
    lines = [
        f"Measured {datetime.date.today().isoformat()} on {machine()}; "
        f"`make bench` (BENCH_ROWS={args.rows}, WORKERS={args.workers}, wrk -t{args.threads} "
        f"-c{args.connections}, {args.warmup:g} s warm-up, {args.duration:g} s per scenario).",
        "",
        "| scenario | req/s | target | p50 ms | p99 ms | non-2xx | vs healthz | vs PostgreSQL |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in SCENARIOS:
        run = runs[name]
        target = f"{TARGETS[name]:,}" if name in TARGETS else "-"
        lines.append(
            f"| {name} | {run.rps:,.0f} | {target} | {run.p50_ms:.2f} | "
            f"{run.p99_ms:.2f} | {run.errors} | {ratio(run.rps, healthz.rps)} | "
            f"{ratio(run.rps, ceiling.rps)} |"
        )
    for name, what in BARE.items():
        run = runs[name]
        lines.append(
            f"| reference handler ({what}) | {run.rps:,.0f} | - | {run.p50_ms:.2f} | "
            f"{run.p99_ms:.2f} | {run.errors} | {ratio(run.rps, healthz.rps)} | "
            f"{ratio(run.rps, ceiling.rps)} |"
        )
    lines += [
        f"| PostgreSQL alone (pgbench, get by id) | {ceiling.rps:,.0f} | - | "
        f"{ceiling.p50_ms:.2f} (mean) | - | {ceiling.errors} | - | 100 % |",
        "",
        "Through the whole stack, against the bare handlers (issue 18's targets): get_by_id "
        f"**{ratio(runs['get_by_id'].rps, reference.rps)}** (>= 80 %, p99 "
        f"{runs['get_by_id'].p99_ms / reference.p99_ms:.1f}x, <= 2x), healthz "
        f"**{ratio(healthz.rps, runs['reference_healthz'].rps)}** (>= 70 %, p99 "
        f"{healthz.p99_ms / runs['reference_healthz'].p99_ms:.1f}x), list "
        f"**{ratio(runs['list'].rps, runs['reference_list'].rps)}** (>= 80 %, p99 "
        f"{runs['list'].p99_ms / runs['reference_list'].p99_ms:.1f}x). "
        f"Worker RSS after the run: {', '.join(f'{r:.0f} MB' for r in rss)} (target: < 80 MB). "
        f"The 304 path (list_304) at **{runs['list_304'].rps / runs['list'].rps:.2f}x** the 200"
        " path of the same list (target: >= 1.5x). Worker CPU under get_by_id: "
        f"{', '.join(f'{c:.1f} s' for c in runs['get_by_id'].worker_cpu)}, the busiest at "
        f"**{spread(runs['get_by_id'].worker_cpu)}** the least busy (target: <= 1.2x).",
        *pairs_report(pairs),
        "",
        "| incidents and events | scenario | p50 ms | p99 ms | req/s | count strategy |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for rows, strategy, grown in growth:
        for name in GROWTH_SCENARIOS:
            run = grown[name]
            lines.append(
                f"| {rows:,} | {name} | {run.p50_ms:.2f} | {run.p99_ms:.2f} | "
                f"{run.rps:,.0f} | {strategy[name]} |"
            )
    if growth:
        first, last = growth[0], growth[-1]
        ratios = ", ".join(
            f"{name} {last[2][name].p50_ms / first[2][name].p50_ms:.2f}x"
            for name in GROWTH_SCENARIOS
        )
        lines += [
            "",
            f"p50 at {last[0]:,} vs {first[0]:,} rows: {ratios} (target: <= 2x).",
        ]
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores ({cpu}), {system}, Python {platform.python_version()}"


def write_readme(table: str) -> None:
    """The table into docs/performance.md, between the bench markers."""
    readme = ROOT / "docs" / "performance.md"
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        print(f"{readme} has no bench markers; table not written", file=sys.stderr)
        return
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_BEGIN}\n{table}\n{README_END}{tail}")
    print("docs/performance.md: results table updated")


# -- the run -----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> str | None:
    """Everything, in order; the report when every scenario ran (None for a subset)."""
    env = {
        "WORKERS": str(args.workers),
        # 32 connections from one address: its per-address limits are off.
        "RATE_LIMIT_PER_ADDRESS": "0",
        "RATE_LIMIT_PER_KEY": "0",
        "CONCURRENCY_PER_ADDRESS": "0",
    }
    with tempfile.TemporaryDirectory(prefix="emberlog-bench-") as tmp:
        workdir = Path(tmp)
        args.pgdata = workdir / "pg"  # local_server's PostgreSQL (its CPU per request)
        with local_server(workdir, **env) as server:
            say(f"seeding {args.rows:,} incidents")
            say(f"  {grow(server.database_url, args.rows):.1f} s")
            runs = scenarios(server, args)
            pairs: list[Pair] = []
            if "reference" in args.scenarios or "get_by_id" in args.scenarios:
                log = workdir / "reference.log"
                with reference_server(server.database_url, args.workers, log) as reference:
                    runs.update(baselines(server.database_url, reference, workdir, args))
                    pairs = side_by_side_runs(server, reference, args)
            rss = [rss_mb(worker) for worker in workers(server.pid)]
            say("worker RSS: " + ", ".join(f"{r:.1f} MB" for r in rss))
            growth = [grown(server, size, args) for size in args.sizes]
    baseline = (*BARE, "pgbench")
    complete = all(name in runs for name in (*SCENARIOS, *baseline))
    return report(runs, growth, rss, args, pairs) if complete else None


def side_by_side_runs(
    server: LocalServer, reference: tuple[str, int], args: argparse.Namespace
) -> list[Pair]:
    """ops/bench/pairs.py: the API's scenarios and the bare handlers, back to back."""
    if args.rounds < 1:
        return []
    say(f"side by side, {args.rounds} rounds of {args.pair_duration:g} s each")
    timed = scaled(args, args.pair_duration)

    def ours(name: str) -> Run:
        return measure(server.base, name, timed, server.pid, BENCH_ROWS=str(args.rows))

    def bare(name: str) -> Run:
        return measure(reference[0], name, timed, reference[1], BENCH_ROWS=str(args.rows))

    return side_by_side(ours, bare, args.rounds, say)


def scenarios(server: LocalServer, args: argparse.Namespace) -> dict[str, Run]:
    """The API's scenarios (those of --scenarios), each with its warm-up."""
    runs = {}
    for name in [s for s in args.scenarios if s in SCENARIOS]:
        with profiling(server.pid, name, args):
            runs[name] = measure(
                server.base,
                name,
                args,
                server.pid,
                BENCH_ROWS=str(args.rows),
                BENCH_API_KEY=server.ingest_key,
                BENCH_NONCE=uuid.uuid4().hex[:8],
                BENCH_ETAG=current_etag(server.base, "/api/v1/incidents?page_size=50"),
            )
        used = runs[name].worker_cpu
        say(describe(runs[name]) + f"  worker CPU s {list(used)} (busiest/least {spread(used)})")
    return runs


def spread(cpu: tuple[float, ...]) -> str:
    """How much busier the busiest worker was than the least busy (1.00x: even)."""
    return f"{worker_spread(cpu):.2f}x" if len(cpu) > 1 else "-"


def current_etag(base: str, path: str) -> str:
    """The ETag a GET of path answers with now (checked: sent back, it is a 304)."""
    etag = httpx.get(base + path, timeout=30).headers["etag"]
    again = httpx.get(base + path, headers={"If-None-Match": etag}, timeout=30)
    if again.status_code != 304:
        raise RuntimeError(f"{path} with If-None-Match {etag}: {again.status_code}, not 304")
    return etag


def baselines(
    database_url: str, reference: tuple[str, int], workdir: Path, args: argparse.Namespace
) -> dict[str, Run]:
    """The bare reference handler and PostgreSQL alone, on the same data."""
    runs = {}
    base, pid = reference
    for name in BARE:
        runs[name] = measure(base, name, args, pid, BENCH_ROWS=str(args.rows))
        say(describe(runs[name]))
    runs["pgbench"] = pgbench(database_url, args.rows, args, workdir)
    say(describe(runs["pgbench"]))
    return runs


def grown(server: LocalServer, size: int, args: argparse.Namespace) -> Growth:
    """The tables grown to `size` incidents and events, then the list scenarios measured
    again."""
    say(f"growing to {size:,} incidents and events")
    say(f"  {grow(server.database_url, size):.1f} s")
    runs = {}
    for name in GROWTH_SCENARIOS:
        runs[name] = measure(server.base, name, scaled(args, args.growth_duration))
        say(f"  {describe(runs[name])}")
    return size, count_strategy(server.base), runs


@contextlib.contextmanager
def profiling(pid: int, scenario: str, args: argparse.Namespace) -> Iterator[None]:
    """With --profile DIR: py-spy records one worker during the scenario (speedscope)."""
    if not args.profile:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    worker = workers(pid)[0]
    args.profile.mkdir(parents=True, exist_ok=True)
    output = args.profile / f"{scenario}.speedscope.json"
    recorder = subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(worker),
            "--format",
            "speedscope",
            "--rate",
            "250",
            "--output",
            str(output),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        recorder.send_signal(2)
        recorder.wait(60)
        say(f"  profile: {output}")


def scaled(args: argparse.Namespace, duration: float) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "duration": duration})


def describe(run: Run) -> str:
    return (
        f"{run.name:<14} {run.rps:>9,.0f} req/s  p50 {run.p50_ms:6.2f} ms  "
        f"p99 {run.p99_ms:6.2f} ms  errors {run.errors}"
        f"{f' ({run.socket_errors} socket)' if run.socket_errors else ''}"
        f"  CPU/request µs: app {run.app_us:5.0f}, postgres {run.postgres_us:5.0f}"
    ).replace("nan", "  -")


def say(message: str) -> None:
    print(message, flush=True)


def sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_ROWS", "20000")))
    cores = os.cpu_count() or 1
    p.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", cores)))
    p.add_argument("--duration", type=float, default=20.0, help="seconds per scenario")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds, thrown away")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument(
        "--sizes",
        type=sizes,
        default=sizes(os.environ.get("BENCH_SIZES", "20000,200000,1000000")),
        help="incident counts for the growth table ('' to skip)",
    )
    p.add_argument("--growth-duration", type=float, default=10.0, help="seconds per growth run")
    p.add_argument(
        "--rounds", type=int, default=3, help="side-by-side rounds of each pair (0: none)"
    )
    p.add_argument("--pair-duration", type=float, default=8.0, help="seconds per side-by-side run")
    p.add_argument(
        "--scenarios",
        type=lambda text: tuple(text.split(",")),
        default=SCENARIOS,
        help="a subset to measure (docs/performance.md is then left alone)",
    )
    p.add_argument("--profile", type=Path, help="py-spy each scenario's first worker into DIR")
    p.add_argument(
        "--no-readme", action="store_true", help="print only; leave docs/performance.md as is"
    )
    args = p.parse_args()
    args.wrk = require_wrk()
    table = run(args)
    if table is None:
        return 0  # a subset: the lines above are the result
    print()
    print(table)
    if not args.no_readme:
        write_readme(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
