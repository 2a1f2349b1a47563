"""A throwaway stack for the benchmarks and the fuzz run: an embedded PostgreSQL in a
directory, a fresh migrated database, an ingest key, and one `emberlog-api serve`
process started the way `make run` starts it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.database import deploy  # noqa: E402
from app.database.connections import login_as  # noqa: E402
from app.database.embedded import EmbeddedPostgres  # noqa: E402


@dataclass(frozen=True)
class LocalServer:
    base: str  # http://127.0.0.1:port
    pid: int
    database_url: str  # the owner's (seeding, pgbench); the server's is the authenticator
    ingest_key: str  # X-API-Key for writes, as the ingest service sends it
    log_path: Path


def issue_ingest_key(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "select auth.create_api_key(%s, 'emberlog_ingest')", (f"local-{uuid.uuid4().hex[:8]}",)
        ).fetchone()
    assert row is not None
    return row[0]


def logins(owner_url: str) -> dict[str, str]:
    """A server's variables as production sets them: the app logs in as the authenticator
    (so PostgreSQL enforces its roles), migrations as the owner."""
    return {
        "DATABASE_URL": login_as(owner_url, "emberlog_authenticator"),
        "MIGRATE_DATABASE_URL": owner_url,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workers(pid: int) -> list[int]:
    """The worker processes of `emberlog-api serve` (pid): its children but multiprocessing's
    resource tracker (with WORKERS=1 it serves in its own process: [pid])."""
    children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    found = [
        child
        for child in children
        if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()
    ]
    return found or [pid]


def _new_database(server_url: str) -> str:
    name = f"local_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = urlsplit(server_url)._replace(path=f"/{name}").geturl()
    deploy.migrate(url, "emberlog_reload")
    return url


def wait_ready(
    base: str, server: subprocess.Popen[bytes], timeout: float = 30, path: str = "/readyz"
) -> None:
    """Until GET base+path answers 200; fails if the server exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}{path}").status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the server was not ready in {timeout} s")


@contextlib.contextmanager
def local_server(directory: Path, **env: str) -> Iterator[LocalServer]:
    """Everything started under `directory`; stopped (SIGTERM) on the way out."""
    pg = EmbeddedPostgres(directory / "pg")
    database_url = _new_database(pg.start())
    port = free_port()
    environ = {**os.environ, **logins(database_url), "PORT": str(port), **env}
    log_path = directory / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve"],
            cwd=ROOT,
            env=environ,
            stdout=log,
            stderr=log,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server)
        yield LocalServer(base, server.pid, database_url, issue_ingest_key(database_url), log_path)
    finally:
        server.terminate()
        server.wait(30)
        pg.stop()
