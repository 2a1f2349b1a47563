"""How evenly WORKERS=2 share wrk's load (issue 18): per trial, the keep-alive
connections each worker holds (counted with ss halfway through the run), each worker's
CPU over the run and the busiest over the least busy, and the req/s; with --close, wrk
opens a connection per request instead (Connection: close), the case where a worker is
out of turn after nearly every accept; with --pin, PostgreSQL runs on a core of its own
and the workers and wrk on the other (as with the database on another machine).

    python ops/bench/balance.py --path /api/v1/incidents/17 --trials 5
    python ops/bench/balance.py --path /healthz --close
    python ops/bench/balance.py --path '/api/v1/incidents?page_size=50' --pin

A throwaway stack (ops/local.py: embedded PostgreSQL, `emberlog-api serve`, rate limits
off), --rows incidents seeded as make bench seeds them.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ops.bench.api import grow, require_wrk
from ops.bench.pairs import spread
from ops.bench.traffic_stack import cpu_of, postgres_pids
from ops.local import local_server, workers

LIMITS_OFF = {"RATE_LIMIT_PER_ADDRESS": "0", "RATE_LIMIT_PER_KEY": "0"}
APP_CPUS, DATABASE_CPUS = "0", "1"  # --pin: as if PostgreSQL had a machine of its own


def pin(pids: list[int], cpus: str) -> None:
    """Every thread of each process onto cpus (children forked later inherit it)."""
    for pid in pids:
        subprocess.run(
            ["taskset", "-a", "-p", "-c", cpus, str(pid)], capture_output=True, check=True
        )


def connections(port: int, pids: list[int]) -> list[int]:
    """Established client connections to `port` held by each of `pids`."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"sport = :{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [len(re.findall(rf"pid={pid},", out)) for pid in pids]


def trial(base: str, pids: list[int], args: argparse.Namespace) -> str:
    """One wrk run: the line printed for it."""
    port = int(base.rsplit(":", 1)[1])
    held: list[list[int]] = []
    timer = threading.Timer(args.seconds / 2, lambda: held.append(connections(port, pids)))
    command = [
        args.wrk,
        "--latency",
        f"-t{args.threads}",
        "-c32",
        f"-d{args.seconds}s",
        f"{base}{args.path}",
    ]
    if args.close:
        command[1:1] = ["-H", "Connection: close"]
    if args.pin:
        command[0:0] = ["taskset", "-c", APP_CPUS]
    before = cpu_of(pids)
    timer.start()
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    timer.join()
    after = cpu_of(pids)
    used = tuple(after[pid] - before[pid] for pid in pids)
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    rps = float(found.group(1)) if found else float("nan")
    p99 = re.search(r"99%\s+(\S+)", out)
    return (
        f"p99 {p99.group(1) if p99 else '-'}  connections {'/'.join(map(str, held[0]))}  "
        "worker CPU s "
        f"{', '.join(f'{u:.2f}' for u in used)} (busiest/least {spread(used):.2f}x)  "
        f"{rps:,.0f} req/s"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--path", default="/api/v1/incidents/17")
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--seconds", type=int, default=4, help="per wrk run")
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--close", action="store_true", help="a new connection per request")
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument(
        "--pin", action="store_true", help="PostgreSQL on CPU 1, the workers and wrk on CPU 0"
    )
    args = p.parse_args()
    args.wrk = require_wrk()
    with (
        tempfile.TemporaryDirectory() as tmp,
        local_server(Path(tmp), WORKERS="2", CONCURRENCY_PER_ADDRESS="0", **LIMITS_OFF) as server,
    ):
        grow(server.database_url, args.rows)
        pids = workers(server.pid)
        if args.pin:
            pin(postgres_pids(Path(tmp) / "pg"), DATABASE_CPUS)
            pin(pids, APP_CPUS)
        for number in range(1, args.trials + 1):
            print(f"{args.path} trial {number}: {trial(server.base, pids, args)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
