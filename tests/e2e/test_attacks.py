"""Issue 13's attacks on a real server: the review's pool starvation (twelve heavy
searches in flight from one anonymous client over 20k incidents), and a page of another
site making a browser on a trusted network write (in a real Chromium)."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg

from ops.local import free_port
from tests.incidents import payload
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
ATTACKERS = 12
ATTACK_SECONDS = 8.0
NEGATED = " ".join(f"-x{n}" for n in range(2000))  # the review's query
# The heaviest search the bounds still allow: 16 negated terms, every text filter full.
WORST_ALLOWED = {
    "q": " ".join(f"-zz{n:02d}" for n in range(16)),
    "address_search": "e" * 200,
}


def seed(database_url: str, rows: int) -> None:
    """rows incidents from the benchmark's reproducible data set, triggers off."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("set local session_replication_role = replica")
            conn.execute((ROOT / "ops/bench/seed.sql").read_text(), {"first": 1, "last": rows})
        conn.execute("select internal.recount_incidents()")
        conn.execute("vacuum analyze data.incidents")


def attack(base: str, seconds: float, statuses: multiprocessing.Queue) -> None:
    """One process of ATTACKERS threads, each keeping one heavy search in flight (its
    own CPU, so the victim's timings are not the test process's GIL)."""
    import threading

    def one(n: int) -> None:
        seen: list[int] = []
        deadline = time.monotonic() + seconds
        with httpx.Client(base_url=base, timeout=30) as http:
            while time.monotonic() < deadline:
                params = {"q": NEGATED} if n % 2 else WORST_ALLOWED
                seen.append(http.get("/api/v1/incidents", params=params).status_code)
                time.sleep(0.2)  # ~5 requests a second each: under the rate limit
        statuses.put(seen)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(ATTACKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def p99_of(request, seconds: float) -> float:
    """The 99th percentile of request()'s time over `seconds` of requests, one at a time."""
    times: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or len(times) < 20:
        started = time.perf_counter()
        request()
        times.append(time.perf_counter() - started)
        time.sleep(0.02)
    return statistics.quantiles(times, n=100)[98]


def test_heavy_searches_in_flight_leave_the_service_ready_and_fast(serve, fault_database):
    seed(fault_database, 20_000)
    app = serve()
    victim = httpx.Client(
        base_url=app.base,
        timeout=10,
        transport=httpx.HTTPTransport(local_address="127.0.0.2"),  # another client
    )
    statuses: multiprocessing.Queue = multiprocessing.Queue()
    attacker = multiprocessing.get_context("fork").Process(
        target=attack, args=(app.base, ATTACK_SECONDS, statuses)
    )
    latencies: list[float] = []
    ready: list[int] = []
    quiet = p99_of(lambda: victim.get("/api/v1/incidents/1"), seconds=2)  # before the attack
    attacker.start()
    try:
        deadline = time.monotonic() + ATTACK_SECONDS - 1
        time.sleep(1)  # the attack is under way
        while time.monotonic() < deadline:
            started = time.perf_counter()
            got = victim.get("/api/v1/incidents/1")
            latencies.append(time.perf_counter() - started)
            assert got.status_code == 200
            ready.append(victim.get("/readyz").status_code)
            time.sleep(0.05)
    finally:
        attacker.join(60)
        victim.close()
    seen = [status for _ in range(ATTACKERS) for status in statuses.get(timeout=10)]
    assert set(ready) == {200}
    p99 = statistics.quantiles(latencies, n=100)[98]
    # The bound is 200 ms. On a machine busy with other work (make bench beside
    # the suite) even the quiet p99 can approach it, so the bound grows with the p99
    # this client saw just before the attack: the attack itself may not add much.
    bound = max(0.2, 4 * quiet)
    assert p99 < bound, f"GET by id p99 {p99 * 1000:.0f} ms under the attack (quiet {quiet:.3f} s)"
    assert 400 in seen  # the review's query is refused before the database
    assert set(seen) <= {200, 400, 429, 503}  # never a server error, never a hang


# --- cross-site writes, from a real browser ------------------------------------------

ATTACK_PAGE = """<html><head><title>start</title></head><body><script>
fetch(%(url)s, {method: "POST", mode: "no-cors", body: new Blob([%(body)s])})
  .then(() => { document.title = "sent"; }, (e) => { document.title = "failed"; });
</script></body></html>"""


def chromium() -> str:
    """Debian's Chromium (make test installs it when missing); never a skip."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Chromium is needed by the browser tests: run make test (it installs it)"
    return found


def open_in_chromium(url: str) -> str:
    """The page's DOM after its scripts ran (headless; the network waits are real)."""
    done = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",  # root in CI
            "--disable-gpu",
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout


def requests_counted(app, status: int) -> float:
    """POSTs to the incidents route the server answered with status (from /metrics)."""
    text = app.http.get("/metrics").text
    wanted = f'method="POST",route="/api/v1/incidents",status="{status}"'
    lines = [line for line in text.splitlines() if wanted in line and "_total" in line]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_a_page_of_another_site_cannot_write_through_a_trusting_network(
    serve, fault_database, tmp_path
):
    # The internal-only model: every address of this machine may write without a key.
    app = serve(TRUSTED_NETWORKS="127.0.0.0/8")
    with psycopg.connect(fault_database, autocommit=True) as conn:
        conn.execute("truncate data.incidents")
    page = tmp_path / "attack.html"
    target = json.dumps(f"{app.base}/api/v1/incidents")
    page.write_text(ATTACK_PAGE % {"url": target, "body": json.dumps(json.dumps(payload()))})
    site = subprocess.Popen(  # the other site: localhost, not 127.0.0.1
        [sys.executable, "-m", "http.server", str(port := free_port()), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: httpx.get(f"http://localhost:{port}/attack.html").status_code == 200)
        dom = open_in_chromium(f"http://localhost:{port}/attack.html")
    finally:
        site.terminate()
        site.wait(10)
    assert "<title>sent</title>" in dom  # the browser did send it (the answer is opaque)
    assert requests_counted(app, 403) == 1  # ...and the API refused it
    with psycopg.connect(fault_database, autocommit=True) as conn:
        assert conn.execute("select count(*) from data.incidents").fetchone()[0] == 0
    # The same network's servers still write as before (JSON, no browser headers).
    plain = app.http.post("/api/v1/incidents", json=payload())
    assert plain.status_code == 201
