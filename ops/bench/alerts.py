"""The alerts' benchmark (issue 17). Its two targets, and one figure more:

- matching: with 1,000 enabled rules, creating an incident costs at most 5 ms more at
  p50 than with none. 100 users (each through the API's SQL functions, one channel
  each) with 10 rules of a mix (incident types, units, radio channels, keywords, the
  address; one to three filters each; a fifth of the users on this feed's agency, the
  others naming their own units, channels and streets) and 10 rules that match every
  incident. Rounds alternate the rules enabled: none / the mix / none / the mix ...,
  then none / all-match (the worst case: 1,000 deliveries queued per incident; for
  information). Each round creates incidents (type, 1-4 units, channel, address, 30
  words of transcript) one at a time with `select api.create_incident(...)` as
  emberlog_ingest (autocommit: the commit is in the time) and, in turn, with POST
  /api/v1/incidents to one server process.
- throughput: the worker delivers >= 500 webhooks/s to a local receiver. --hook-users users
  (at most WEBHOOK_USER_IN_FLIGHT, 8, of each one's in flight: with one user that cap is
  the limit), each with a few channels at the receiver (ops/bench/alerts_receiver.py, a
  process of its own) and a rule that matches everything; N deliveries queued first;
  then one `emberlog-api worker` (WORKER_CONCURRENCY, WORKER_BATCH_SIZE) from its start
  until the database counts all N delivered. Once per --concurrency value.
- latency: the worker running, incidents created at --rate: commit (as the writer sees
  it) -> receipt at the receiver, p50/p99.

Everything is started here, a fresh stack per scenario (embedded PostgreSQL as
ops/local.py configures it, one server with WORKERS=1). Prints a Markdown block. Exit
status 1 only when a run is broken (deliveries missing or repeated), not when a target
is missed.

    python ops/bench/alerts.py
    python ops/bench/alerts.py --scenarios throughput --concurrency 16,32,64 --profile
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import sys
import tempfile
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ops.bench.alerts_matching import run_matching
from ops.bench.alerts_report import report
from ops.bench.alerts_worker import run_latency, run_throughput
from ops.bench.traffic import database_settings
from ops.bench.traffic_stack import SERVER_ENV
from ops.local import local_server


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scenarios", default="matching,throughput,latency")
    m = p.add_argument_group("matching")
    m.add_argument("--users", type=int, default=100)
    m.add_argument("--rules-per-user", type=int, default=10, help="of the mix (as many match all)")
    m.add_argument("--local-share", type=float, default=0.2, help="users on this feed's agency")
    m.add_argument("--incidents", type=int, default=300, help="per round (and path)")
    m.add_argument("--pairs", type=int, default=2, help="none/mix round pairs")
    m.add_argument("--worst-pairs", type=int, default=1, help="none/all-match round pairs")
    m.add_argument("--worst-incidents", type=int, default=60, help="per all-match round")
    m.add_argument("--no-http", dest="http", action="store_false", help="SQL only")
    w = p.add_argument_group("throughput and latency")
    w.add_argument("--deliveries", type=int, default=6000, help="queued first (throughput)")
    w.add_argument("--channels", type=int, default=5, help="the rule's channels (throughput)")
    w.add_argument(
        "--hook-users", type=int, default=20, help="users, each with that rule (throughput)"
    )
    w.add_argument("--concurrency", default="32", help="WORKER_CONCURRENCY, comma-separated")
    w.add_argument("--batch-size", type=int, default=50, help="WORKER_BATCH_SIZE")
    w.add_argument("--timeout", type=float, default=120, help="seconds for the queue to empty")
    w.add_argument("--profile", action="store_true", help="the worker under cProfile")
    w.add_argument("--latency-incidents", type=int, default=100)
    w.add_argument("--rate", type=float, default=20.0, help="incidents per second (latency)")
    args = p.parse_args()
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if unknown := set(args.scenarios) - {"matching", "throughput", "latency"}:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    return args


def main() -> int:
    args = arguments()
    command = shlex.join(["python", os.path.relpath(sys.argv[0]), *sys.argv[1:]])
    load = os.getloadavg()
    runs = []
    if "matching" in args.scenarios:
        runs.append(("matching", lambda server, d: run_matching(server, args)))
    if "throughput" in args.scenarios:
        for c in args.concurrency:
            runs.append((f"throughput-{c}", partial(run_throughput, args=args, concurrency=c)))
    if "latency" in args.scenarios:
        runs.append(("latency", lambda server, d: run_latency(server, d, args)))
    results, settings = [], ""
    top = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    try:
        for name, scenario in runs:
            directory = top / name
            directory.mkdir()
            with contextlib.ExitStack() as stack:
                server = stack.enter_context(local_server(directory, **SERVER_ENV))
                settings = database_settings(server.database_url)
                result = scenario(server, directory)
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        if not args.profile:  # --profile keeps the directory: the profiles are in it
            shutil.rmtree(top, ignore_errors=True)
    cores = len(os.sched_getaffinity(0))
    context = [
        f"Machine: {cores} cores, load average {load[0]:.2f} at the start (shared: figures "
        "vary from run to run).",
        "Each scenario on a fresh stack: embedded PostgreSQL as ops/local.py starts it "
        f"({settings}), one server (WORKERS=1, rate limits off); the worker as production "
        "runs it (logged in as the authenticator, defaults but for WORKER_CONCURRENCY, "
        "WORKER_BATCH_SIZE, WORKER_PORT=0, WEBHOOK_ALLOWED_NETWORKS=127.0.0.0/8).",
    ]
    print()
    report(command, context, results)
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
