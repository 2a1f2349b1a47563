"""Real uvicorn processes against a PostgreSQL these tests may stop and restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from ops.local import free_port
from tests import pg
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    """`emberlog-api ARGS` as an operator runs it, with these variables on top of ours
    (an empty one counts as unset, as in the app); output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def logins(owner_url: str) -> dict[str, str]:
    """The variables of a production server: DATABASE_URL logs in as the authenticator
    (PostgreSQL enforces the roles), MIGRATE_DATABASE_URL as the owner (migrations)."""
    return {"DATABASE_URL": pg.as_authenticator(owner_url), "MIGRATE_DATABASE_URL": owner_url}


class ServerProcess:
    """`emberlog-api serve` in a subprocess, as production starts it: logged in as the
    authenticator, migrating (MIGRATE_ON_START) as the owner of `database_url`."""

    def __init__(self, database_url: str, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        environ = {
            **os.environ,
            **logins(database_url),
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "POOL_TIMEOUT": "2",
            **env,
        }
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve"],
            cwd=ROOT,
            env=environ,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.http = httpx.Client(base_url=self.base, timeout=10)
        with psycopg.connect(database_url, autocommit=True) as conn:  # keys: the owner's
            self.ingest = {"X-API-Key": pg.issue_key(conn)}  # as Calypso sends it
        wait_until(lambda: self.http.get("/readyz").status_code == 200)

    def stop(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


@pytest.fixture(scope="module")
def fault_server(tmp_path_factory) -> Iterator[pg.EmbeddedPostgres]:
    """An embedded PostgreSQL of this module's own, so it may be stopped."""
    server = pg.start_embedded(tmp_path_factory.mktemp("faults") / "data")
    yield server
    server.stop_if_running()


@pytest.fixture(scope="module")
def fault_database(fault_server) -> str:
    return pg.create_database(fault_server.uri)


@pytest.fixture
def serve(tmp_path, fault_database) -> Iterator:
    started: list[ServerProcess] = []

    def start(**env: str) -> ServerProcess:
        process = ServerProcess(fault_database, tmp_path / f"server{len(started)}.log", **env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
