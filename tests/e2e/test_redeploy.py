"""Deploying sql/ (deploy.apply_sql: api dropped and re-created, internal functions and
triggers replaced) on a populated database under traffic: no request fails, and every
acknowledged write is stored, counted, published and streamed, exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
from dataclasses import dataclass, field

import httpx
import psycopg

from app.database import deploy
from tests import pg
from tests.e2e.conftest import ServerProcess
from tests.incidents import payload
from tests.sse import SseClient
from tests.waiting import wait_until

POPULATION = 3000
RELOAD = "emberlog_reload"

# The behaviour this repository had before sql/ held the triggers: 0006's and 0007's
# functions, the triggers pointing at them (a DBA's database before this deploy).
OLD_TRIGGERS = """
create or replace function internal.tg_count_incidents() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    delta bigint;
begin
    if tg_op = 'TRUNCATE' then
        update data.incident_counts set incidents = 0 where incidents <> 0;
        return null;
    elsif tg_op = 'INSERT' then
        select count(*) into delta from new_rows;
    else
        select -count(*) into delta from old_rows;
    end if;
    if delta <> 0 then
        update data.incident_counts set incidents = incidents + delta
        where shard = pg_catalog.pg_backend_pid() % 16;
    end if;
    return null;
end
$$;
create or replace function internal.tg_queue_event() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
    insert into data.event_queue (stream, ref_id)
    select tg_argv[0], n.id from new_rows as n order by n.id;
    if found then
        perform pg_catalog.pg_notify(tg_argv[1], tg_argv[0]);
    end if;
    return null;
end
$$;
create or replace trigger _100_count_inserts after insert on data.incidents
referencing new table as new_rows
for each statement execute function internal.tg_count_incidents();
create or replace trigger _100_count_deletes after delete on data.incidents
referencing old table as old_rows
for each statement execute function internal.tg_count_incidents();
create or replace trigger _100_count_truncates after truncate on data.incidents
for each statement execute function internal.tg_count_incidents();
create or replace trigger _900_queue_event after insert on data.incidents
referencing new table as new_rows
for each statement execute function internal.tg_queue_event('incidents', 'emberlog_events');
"""

# Behaviour a DBA might lose by hand, off the request path (a write meanwhile still
# counts and queues): apply_sql must bring it back.
DROPPED_BY_HAND = """
drop trigger _100_count_truncates on data.incidents;
drop function internal.recount_incidents();
drop function internal.prune_events(interval);
"""


@dataclass
class Traffic:
    """Readers (list, list filtered, one by id) and writers (POST as the ingest service)
    in threads, until stopped; every response recorded."""

    server: ServerProcess
    known: list[int]
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    failures: list[str] = field(default_factory=list)
    created: list[int] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, readers: int = 3, writers: int = 3) -> None:
        self.threads = [
            threading.Thread(target=self._run, args=(self._read, n), daemon=True)
            for n in range(readers)
        ] + [
            threading.Thread(target=self._run, args=(self._write, n), daemon=True)
            for n in range(writers)
        ]
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def _run(self, request, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.server.base, timeout=30) as http:
            while not self.stop.is_set():
                began = time.monotonic()
                try:
                    response, what = request(http, rng)
                except httpx.HTTPError as exc:
                    response, what = None, f"{exc!r}"
                ended = time.monotonic()
                with self.lock:
                    self.spans.append((began, ended))
                    if response is None or not response.is_success:
                        status = response.status_code if response is not None else "-"
                        body = response.text[:300] if response is not None else ""
                        self.failures.append(f"{what}: {status} {body}")
                    elif response.request.method == "POST":
                        self.created.append(response.json()["id"])

    def _read(self, http: httpx.Client, rng: random.Random):
        kind = rng.random()
        if kind < 0.4:
            path = f"/api/v1/incidents/{rng.choice(self.known)}"
            return http.get(path), f"GET {path}"
        params = {"page": rng.randint(1, 30), "page_size": 25}
        if kind < 0.6:
            params["incident_type"] = "Structure Fire"
        elif kind < 0.7:
            params["q"] = "fire main"
        return http.get("/api/v1/incidents", params=params), f"GET list {params}"

    def _write(self, http: httpx.Client, rng: random.Random):
        headers = self.server.ingest
        return http.post("/api/v1/incidents", json=payload(), headers=headers), "POST"

    def during(self, window: tuple[float, float]) -> int:
        """Requests in flight at some moment of the window."""
        with self.lock:
            return sum(1 for began, ended in self.spans if began < window[1] and ended > window[0])


def populate(conn: psycopg.Connection, count: int) -> list[int]:
    """count incidents, written as the owner in one statement (the triggers fire)."""
    rows = conn.execute(
        "insert into data.incidents (dispatched_at, incident_type, address, source_audio,"
        " original_text, transcript, units, channel)"
        " select now() - n * interval '1 minute',"
        " (array['Structure Fire', 'Medical', 'Vehicle Accident'])[1 + n %% 3],"
        " n || ' Main Street', 'https://audio.example/populate/' || n || '.m4a',"
        " 'Engine ' || n || ', fire at ' || n || ' Main Street', 'fire at ' || n || ' Main',"
        " array['E' || n %% 7, 'M' || n %% 5], 'FIRE-DISP'"
        " from generate_series(1, %s) as n returning id",
        (count,),
    ).fetchall()
    return [r[0] for r in rows]


async def follow(
    stream: SseClient, http: httpx.AsyncClient, subscribed: asyncio.Event, reconnects: list[int]
) -> None:
    """Read the stream for good, resuming with Last-Event-ID when the server ends it."""
    while True:
        with contextlib.suppress(StopAsyncIteration, httpx.HTTPError):
            async with stream.connect(http):
                subscribed.set()
                await stream.receive(until=2**62, timeout=3600)
        reconnects.append(stream.last_id or 0)
        await asyncio.sleep(0.1)


def redeploy(url: str, reference: dict) -> list[tuple[float, float]]:
    """apply_sql several times: plain, from the old trigger functions (an upgrade), after
    behaviour was dropped by hand, and behind a psql user's long transaction (the deploy
    gives up its place in the lock queue and tries again). Returns the time windows."""
    windows: list[tuple[float, float]] = []
    with psycopg.connect(url, autocommit=True) as conn, psycopg.connect(url) as psql:
        for step in ("plain", "upgrade", "plain", "dropped", "blocked", "plain"):
            time.sleep(0.4)
            if step == "blocked":
                pg.as_role(psql, "emberlog_reader")
                psql.execute("select count(*) from api.incidents")  # transaction left open
                threading.Timer(2.5, psql.rollback).start()
            elif step == "upgrade":
                with conn.transaction():
                    conn.execute(OLD_TRIGGERS)
                assert pg.behaviour(conn) != reference
                time.sleep(0.3)  # writes through the old functions meanwhile
            elif step == "dropped":
                with conn.transaction():
                    conn.execute(DROPPED_BY_HAND)
                assert pg.behaviour(conn) != reference
            began = time.monotonic()
            deploy.apply_sql(url, RELOAD)
            windows.append((began, time.monotonic()))
            assert pg.behaviour(conn) == reference, step
        time.sleep(1.5)  # the servers reload (at most once a second) and go on serving
    return windows


async def test_redeploying_under_traffic_fails_no_request_and_loses_no_write(serve, fault_database):
    with psycopg.connect(fault_database, autocommit=True) as conn:
        known = populate(conn, POPULATION)
        reference = pg.behaviour(conn)
        pg.event_ids(conn)  # the population published
    server = serve(RATE_LIMIT_PER_ADDRESS="0", RATE_LIMIT_PER_KEY="0")
    traffic = Traffic(server, known)
    stream, subscribed, reconnects = SseClient(server.base), asyncio.Event(), []
    async with httpx.AsyncClient(timeout=30) as http:
        following = asyncio.create_task(follow(stream, http, subscribed, reconnects))
        await asyncio.wait_for(subscribed.wait(), 10)  # live starts here
        traffic.start()
        try:
            windows = await asyncio.to_thread(redeploy, fault_database, reference)
        finally:
            traffic.finish()
        with psycopg.connect(fault_database, autocommit=True) as conn:
            newest = pg.event_ids(conn)[-1]
        try:
            await asyncio.to_thread(wait_until, lambda: (stream.last_id or 0) >= newest, 30)
        finally:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following

    assert traffic.failures == []
    assert len(traffic.created) >= 50 and len(traffic.spans) >= 200
    assert all(traffic.during(window) > 0 for window in windows)  # traffic at every deploy
    created = sorted(traffic.created)
    with psycopg.connect(fault_database, autocommit=True) as conn:
        stored = conn.execute(
            "select id from data.incidents where id = any(%s) order by id", (created,)
        ).fetchall()
        assert [r[0] for r in stored] == created
        counted = conn.execute(
            "select (select incidents from api.incident_count),"
            " (select count(*) from data.incidents)"
        ).fetchone()
        assert counted[0] == counted[1] == POPULATION + len(created)
        events = conn.execute(
            "select count(*), count(distinct ref_id), count(*) filter (where ref_id = any(%s))"
            " from data.events where stream = 'incidents'",
            (created,),
        ).fetchone()
        assert events == (counted[1], counted[1], len(created))  # one each, none lost
        assert conn.execute("select count(*) from data.event_queue").fetchone() == (0,)
    streamed = [e.data["id"] for e in stream.events]
    # live: exactly what was written after subscribing (resumed after any reconnect)
    assert sorted(streamed) == created, f"stream reconnected after {reconnects}"
    ids = [e.id for e in stream.events]
    assert ids == sorted(set(ids))
    # No request answered 5xx: /readyz may say 503 while the server starts (routes not
    # loaded yet), before any traffic; that is readiness doing its job, not a failure.
    log = server.log_path.read_text().splitlines()
    lines = [json.loads(line) for line in log if line.startswith("{")]
    errors = [e for e in lines if e.get("status", 0) >= 500 and e.get("path") != "/readyz"]
    assert errors == []
