"""`emberlog-api worker` as production runs it (a real process, logged in as the
authenticator) against a real PostgreSQL and a real webhook receiver on 127.0.0.1: retries
with the same webhook-id and valid signatures, a killed worker's delivery taken over after
its lease, two workers never sending one delivery twice at once, refused destinations,
the drain on SIGTERM, the notifier, and `emberlog-api verify-webhook`."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from ops.local import free_port
from tests import pg
from tests.e2e.conftest import ROOT, ServerProcess, cli
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

DELIVERIES = "select id::text, status, attempts, last_error from data.alert_deliveries"


class Receiver:
    """A webhook receiver in a thread of its own: records every request (path, headers,
    body, when it started and ended) and answers as ``script(nth, request)`` says: a status,
    or ("sleep", seconds, status), or ("hold", threading.Event, status), or ("body", bytes,
    status). nth counts the requests with that webhook-id, from 1. Notes any webhook-id in
    two requests at once."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.overlapping: list[str] = []
        self.script: Callable[[int, dict[str, Any]], Any] = lambda nth, request: 200
        self._active: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        assert self._started.wait(10)

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def by_id(self, webhook_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["headers"].get("webhook-id") == webhook_id]

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._started.set()
        self._loop.run_forever()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        webhook_id = headers.get("webhook-id", "")
        record = {"path": request.path, "headers": headers, "body": body,
                  "started": time.monotonic(), "ended": None}  # fmt: skip
        with self._lock:
            self.requests.append(record)
            nth = sum(1 for r in self.requests if r["headers"].get("webhook-id") == webhook_id)
            self._active[webhook_id] += 1
            if self._active[webhook_id] > 1:
                self.overlapping.append(webhook_id)
        try:
            action = self.script(nth, record)
            if isinstance(action, tuple) and action[0] == "sleep":
                await asyncio.sleep(action[1])
                action = action[2]
            elif isinstance(action, tuple) and action[0] == "hold":
                while not action[1].is_set():
                    await asyncio.sleep(0.02)
                action = action[2]
            if isinstance(action, tuple) and action[0] == "body":
                return web.Response(status=action[2], body=action[1])
            return web.Response(status=action, text="receiver says no" if action >= 300 else "")
        finally:
            with self._lock:
                self._active[webhook_id] -= 1
                record["ended"] = time.monotonic()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class WorkerProcess:
    """`emberlog-api worker`: DATABASE_URL the authenticator, quick timings for tests."""

    def __init__(self, database_url: str, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.log = log_path.open("ab")
        environ = {
            **os.environ,
            "DATABASE_URL": pg.as_authenticator(database_url),
            "HOST": "127.0.0.1",
            "WORKER_PORT": str(self.port),
            "LOG_FORMAT": "console",
            "WORKER_POLL_SECONDS": "0.5",
            "WEBHOOK_TIMEOUT_SECONDS": "1",
            "WEBHOOK_BACKOFF_SECONDS": "0.2",
            "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            **env,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"],
            cwd=ROOT,
            env={k: v for k, v in environ.items() if v is not None},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5)
        wait_until(self._ready, 30, 0.05, what=f"the worker ready (log: {log_path})")

    def _ready(self) -> bool:
        assert self.process.poll() is None, self.log_path.read_text()
        try:
            return self.http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def metric(self, name: str, **labels: str) -> float:
        wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
        prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
        for line in self.http.get("/metrics").text.splitlines():
            if line.startswith(prefix):
                return float(line.split()[-1])
        return 0.0

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def workers(tmp_path, database_url, db) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(**env: str) -> WorkerProcess:
        worker = WorkerProcess(database_url, tmp_path / f"worker{len(started)}.log", **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def channel(db: psycopg.Connection, *urls: str) -> str:
    """alice's channels (one per URL) and a rule matching every incident; the secret."""
    db.execute("set role emberlog_user")
    db.execute("""set request.jwt.claims = '{"sub": "alice"}'""")
    ids, secret = [], ""
    for n, url in enumerate(urls):
        row = db.execute(
            "select api.create_alert_channel(%s::jsonb)",
            (json.dumps({"name": f"hook{n}", "url": url}),),
        ).fetchone()
        assert row is not None
        ids.append(row[0]["id"])
        secret = row[0]["secret"]
    db.execute(
        "select api.create_alert_rule(%s::jsonb)",
        (json.dumps({"name": "everything", "alert_channel_ids": ids}),),
    )
    db.execute("reset role")
    db.execute("reset request.jwt.claims")
    return secret


def incidents(db: psycopg.Connection, count: int = 1, tag: str = "a") -> None:
    db.execute(
        "select api.create_incident(jsonb_build_object("
        "'dispatched_at', '2026-01-01T00:00:00Z', 'source_audio', %s || g::text))"
        " from generate_series(1, %s) as g",
        (f"{tag}-{time.monotonic_ns()}-", count),
    )


def deliveries(db: psycopg.Connection) -> list[tuple]:
    return db.execute(DELIVERIES + " order by created_at, id").fetchall()


def settled(db: psycopg.Connection, count: int, status: str = "delivered") -> list[tuple]:
    """Waits until count deliveries exist and all have that status."""

    def check() -> list[tuple] | None:
        rows = deliveries(db)
        return rows if len(rows) == count and all(r[1] == status for r in rows) else None

    return wait_until(check, 30, 0.1, what=f"{count} deliveries {status} (now {deliveries(db)})")


def verifies(secret: str, request: dict[str, Any]) -> bool:
    Webhook(secret).verify(request["body"], request["headers"])  # raises when not
    return True


def test_a_failing_receiver_is_retried_with_one_id_and_valid_signatures(db, receiver, workers):
    # 500, then a timeout (the receiver sleeps past WEBHOOK_TIMEOUT_SECONDS), then 200.
    receiver.script = lambda nth, request: {1: 500, 2: ("sleep", 3, 200)}.get(nth, 200)
    secret = channel(db, receiver.url())
    # No poll within the test: the NOTIFY brings the first attempt, and the worker wakes
    # itself when each retry comes due (WEBHOOK_BACKOFF_SECONDS 0.2).
    worker = workers(WORKER_POLL_SECONDS="600")
    incidents(db)
    ((delivery_id, _, attempts, error),) = settled(db, 1)
    assert attempts == 3 and error is None
    seen = receiver.by_id(delivery_id)
    assert len(seen) == 3  # one per attempt, each with the delivery's id
    for request in seen:
        assert verifies(secret, request)
        assert request["headers"]["content-type"] == "application/json"
        assert request["headers"]["user-agent"] == "emberlog-api-worker"
    assert len({r["headers"]["webhook-timestamp"] for r in seen}) >= 2  # signed per attempt
    assert len({r["body"] for r in seen}) == 1  # the same bytes every time
    body = json.loads(seen[0]["body"])
    assert body["event_type"] == "dispatch.incident.created"
    assert body["alert"]["delivery_id"] == delivery_id
    log = worker.output()
    assert "HTTP 500: receiver says no" in log and "timed out after 1 s" in log
    assert worker.metric("emberlog_worker_deliveries_total", outcome="delivered") == 1
    assert worker.metric("emberlog_worker_deliveries_total", outcome="failed") == 2


def test_a_killed_workers_delivery_is_sent_again_after_its_lease(db, receiver, workers):
    hold = threading.Event()
    receiver.script = lambda nth, request: ("hold", hold, 200) if nth == 1 else 200
    channel(db, receiver.url())
    # Its lease: its timeout (3 s) + 10 s; killed long before its attempt could end.
    first = workers(WEBHOOK_TIMEOUT_SECONDS="3")
    incidents(db)
    wait_until(lambda: receiver.requests, 20, what="the first attempt")
    first.process.kill()
    first.process.wait(10)
    hold.set()
    killed_at = time.monotonic()
    workers()
    ((delivery_id, _, attempts, _),) = settled(db, 1)
    assert attempts == 2
    seen = receiver.by_id(delivery_id)
    assert len(seen) == 2 and seen[1]["started"] - killed_at > 5  # after the lease, not before


def test_two_workers_share_the_queue_and_never_send_one_delivery_twice_at_once(
    db, receiver, workers
):
    receiver.script = lambda nth, request: ("sleep", 0.02, 200)
    channel(db, receiver.url())
    pair = [workers(WORKER_CONCURRENCY="4"), workers(WORKER_CONCURRENCY="4")]
    started = time.monotonic()
    incidents(db, 200)
    rows = settled(db, 200)
    took = time.monotonic() - started
    assert {r[2] for r in rows} == {1}  # every delivery sent once, recorded once
    assert receiver.overlapping == []
    assert sorted(r["headers"]["webhook-id"] for r in receiver.requests) == sorted(
        r[0] for r in rows
    )

    def shares() -> list[float] | None:
        c = [w.metric("emberlog_worker_deliveries_total", outcome="delivered") for w in pair]
        return c if sum(c) == 200 else None

    counts = wait_until(shares, 10, what="both workers' metrics")
    assert all(c > 0 for c in counts), counts  # both took a share
    print(f"200 deliveries by two workers in {took:.2f} s (shares {counts})")


def test_a_destination_that_is_not_public_is_refused_unless_allowed(db, receiver, workers):
    channel(db, receiver.url(), receiver.url(host="localhost"))  # an IP, and a name
    refusing = workers(WEBHOOK_ALLOWED_NETWORKS="")
    incidents(db)
    rows = settled(db, 2, "dead")
    for _, _, attempts, error in rows:
        assert attempts == 1  # permanent: no retry
        assert "is not allowed" in error and "WEBHOOK_ALLOWED_NETWORKS" in error
    assert any("127.0.0.1" in r[3] for r in rows)
    assert receiver.requests == []
    assert refusing.metric("emberlog_worker_deliveries_total", outcome="dead") == 2
    refusing.stop()
    workers()  # 127.0.0.0/8 allowed (and ::1 is not: localhost may resolve to it)
    incidents(db)
    wait_until(lambda: len(receiver.requests) == 2, 20, what="the allowed deliveries")
    statuses = collections.Counter(r[1] for r in deliveries(db))
    assert statuses == {"dead": 2, "delivered": 2}


def test_sigterm_lets_the_delivery_in_flight_finish_and_records_it(db, receiver, workers):
    receiver.script = lambda nth, request: ("sleep", 1.5, 200)
    channel(db, receiver.url())
    worker = workers(WEBHOOK_TIMEOUT_SECONDS="5")
    incidents(db)
    wait_until(lambda: receiver.requests, 20, what="the attempt")
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(20) == 0
    ((_, status, attempts, _),) = deliveries(db)
    assert (status, attempts) == ("delivered", 1)
    assert receiver.requests[0]["ended"] is not None
    assert "stopping: 1 webhook(s) in flight" in worker.output()


def test_the_notifier_gets_every_incident_and_verify_webhook_checks_a_capture(
    db, receiver, workers, tmp_path
):
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    workers(NOTIFIER_BASE_URL=receiver.url("/notifier/"), NOTIFIER_SECRET=secret)
    incidents(db, 2)
    wait_until(lambda: len(receiver.requests) == 2, 20, what="the notifier's deliveries")
    assert {r["path"] for r in receiver.requests} == {"/notifier/api/v1/events/new_incident"}
    assert all(verifies(secret, r) for r in receiver.requests)
    settled(db, 2)

    captured = receiver.requests[0]
    headers = tmp_path / "headers.txt"
    headers.write_text(
        "POST /notifier/api/v1/events/new_incident HTTP/1.1\n"
        + "".join(f"{k}: {v}\n" for k, v in captured["headers"].items())
        + "\n"
    )
    body = tmp_path / "body.json"
    body.write_bytes(captured["body"])
    secret_file = tmp_path / "secret"
    secret_file.write_text(secret + "\n")
    common = ["--secret-file", str(secret_file), "--headers-file", str(headers)]
    ok = cli("verify-webhook", *common, "--body-file", str(body))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip() == f"valid: {captured['headers']['webhook-id']}"
    from_environment = cli(
        "verify-webhook", "--headers-file", str(headers), "--body-file", str(body),
        WEBHOOK_SECRET=secret,
    )  # fmt: skip
    assert from_environment.returncode == 0, from_environment.stdout
    body.write_bytes(captured["body"].replace(b"dispatch", b"Dispatch", 1))
    tampered = cli("verify-webhook", *common, "--body-file", str(body))
    assert tampered.returncode == 1 and "no matching signature" in tampered.stdout
    wrong = cli("verify-webhook", "--headers-file", str(headers), "--body-file",
                str(tmp_path / "body.json"), WEBHOOK_SECRET="whsec_" + "A" * 44)  # fmt: skip
    assert wrong.returncode == 1


def test_a_receivers_binary_answer_holds_back_no_other_result(db, receiver, workers):
    """A receiver answering an error with a gzip body (NUL bytes, which PostgreSQL cannot
    store) gets a readable last_error; the results recorded beside it are recorded."""
    gzip_body = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03binary"

    def script(nth, request):
        return ("body", gzip_body, 500) if request["path"] == "/gz" else 204

    receiver.script = script
    channel(db, receiver.url("/ok"), receiver.url("/gz"))
    workers(WEBHOOK_BACKOFF_SECONDS="600")
    incidents(db)

    def recorded():
        rows = deliveries(db)
        return rows if sorted(r[1] for r in rows) == ["delivered", "retrying"] else None

    rows = wait_until(recorded, 30, 0.1, what=f"both recorded (now {deliveries(db)})")
    by_status = {status: (attempts, error) for _, status, attempts, error in rows}
    assert by_status["delivered"] == (1, None)
    attempts, error = by_status["retrying"]
    assert attempts == 1 and error.startswith("HTTP 500: ") and "\x00" not in error


def test_every_retry_coming_due_wakes_the_worker(db, receiver, workers):
    """Several deliveries failing at about the same time: each is tried again when it
    comes due, with polling effectively off (no alarm is forgotten)."""
    receiver.script = lambda nth, request: 503 if nth == 1 else 200
    channel(db, *(receiver.url(f"/hook{n}") for n in range(4)))
    workers(WORKER_POLL_SECONDS="600")
    incidents(db, 3)
    rows = settled(db, 12)
    assert sorted(attempts for _, _, attempts, _ in rows) == [2] * 12


def test_one_users_deliveries_beyond_their_in_flight_cap_follow_at_once(db, receiver, workers):
    """WEBHOOK_USER_IN_FLIGHT holds one user's webhooks to 2 at once; the rest are claimed
    as those are recorded, not at the next poll (off here)."""
    channel(db, *(receiver.url(f"/hook{n}") for n in range(5)))
    workers(WORKER_POLL_SECONDS="600", WEBHOOK_USER_IN_FLIGHT="2")
    incidents(db, 4)
    settled(db, 20)
    assert receiver.overlapping == []
    most = max(
        sum(1 for other in receiver.requests if other["started"] <= r["started"] < other["ended"])
        for r in receiver.requests
    )
    assert most <= 2  # never more than the cap at once


def test_the_whole_chain_from_a_users_rule_to_a_verified_webhook(
    db, database_url, receiver, workers, tmp_path
):
    """As users meet it: a listener signs in (a token with a sub) and makes a channel and a
    rule over HTTP on a real server; a test delivery verifies the channel; Calypso posts
    incidents; the matching one reaches the receiver, signed with the secret shown once."""
    signing = "e2e-" + "k" * 40
    server = ServerProcess(
        database_url, tmp_path / "server.log", JWT_SECRET=signing, JWT_DEFAULT_ROLE="emberlog_user"
    )
    try:
        token = jwt.encode({"sub": "listener-7", "exp": int(time.time()) + 300}, signing)
        me = {"Authorization": f"Bearer {token}"}
        made = server.http.post(
            "/api/v1/alert-channels", json={"name": "pager", "url": receiver.url()}, headers=me
        )
        assert made.status_code == 201, made.text
        hook, secret = made.json()["id"], made.json()["secret"]
        body = {"name": "E12 fires", "filters": {"units": ["e12"], "keywords": "smoke"},
                "alert_channel_ids": [hook]}  # fmt: skip
        assert server.http.post("/api/v1/alert-rules", json=body, headers=me).status_code == 201
        workers()
        tested = server.http.post(f"/api/v1/alert-channels/{hook}/test", headers=me)
        assert tested.status_code == 202
        channel_path = f"/api/v1/alert-channels/{hook}"
        wait_until(
            lambda: server.http.get(channel_path, headers=me).json()["verified"],
            30, 0.1, what="the channel verified by its test",
        )  # fmt: skip
        for n, units in enumerate((["E12", "L4"], ["M7"])):
            incident = {"dispatched_at": "2026-11-30T10:00:00Z", "source_audio": f"chain-{n}",
                        "units": units, "transcript": "smoke showing from the attic"}  # fmt: skip
            posted = server.http.post("/api/v1/incidents", json=incident, headers=server.ingest)
            assert posted.status_code == 201, posted.text

        def delivered() -> list[dict] | None:
            answer = server.http.get("/api/v1/alert-deliveries", headers=me).json()["data"]
            return answer if [d["status"] for d in answer] == ["delivered"] * 2 else None

        rule_delivery, test_delivery = wait_until(delivered, 30, 0.1, what="two deliveries")
        assert (rule_delivery["kind"], test_delivery["kind"]) == ("rule", "test")
        [request] = receiver.by_id(rule_delivery["id"])
        sent = Webhook(secret).verify(request["body"], request["headers"])
        assert sent["payload"]["units"] == ["E12", "L4"]
        assert sent["alert"]["rule"]["name"] == "E12 fires"
    finally:
        server.stop()
