"""What an operator sees of a real server process: its log lines, its start-up summary,
metrics on their own port, and the settings a container sets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ops.local import free_port
from tests import pg
from tests.e2e.conftest import ROOT, cli, logins
from tests.waiting import wait_until


def log_lines(server) -> list[str]:
    return [line for line in server.log_path.read_text().splitlines() if line.strip()]


def test_logs_are_json_lines_with_a_start_up_summary_and_request_fields(serve):
    server = serve(ACCESS_LOG="all", MIGRATE_ON_START="false")
    assert server.http.get("/api/v1/incidents", headers={"X-Request-ID": "abc-123"}).is_success
    assert server.http.post("/api/v1/incidents", json={}, headers=server.ingest).status_code == 422
    entries = wait_until(
        lambda: [json.loads(x) for x in log_lines(server)] if len(log_lines(server)) >= 4 else None
    )  # every line parses as JSON, uvicorn's and psycopg's included
    (start,) = [e for e in entries if e["msg"] == "starting"]
    assert start["level"] == "info" and start["logger"] == "emberlog.cli"
    assert start["migrations_applied"] == "skipped (MIGRATE_ON_START=false)"
    assert start["migrations_pending"] == []
    assert start["routes"] >= 4 and start["version"] and start["postgres"]
    assert start["database"].startswith("emberlog_authenticator@")
    assert start["login"] == "emberlog_authenticator" and "password" not in json.dumps(start)
    assert start["trusted_networks"] == "off" and start["naive_timezone"] == "UTC"
    requests = wait_until(
        lambda: [e for e in map(json.loads, log_lines(server)) if e["msg"] == "request"]
    )
    read = next(e for e in requests if e["request_id"] == "abc-123")
    assert read["route"] == "/api/v1/incidents" and read["status"] == 200
    assert read["role"] == "emberlog_anon" and read["duration_ms"] >= 0
    write = next(e for e in requests if e["method"] == "POST")
    assert write["status"] == 422 and write["role"] == "emberlog_ingest"
    assert all(server.ingest["X-API-Key"] not in line for line in log_lines(server))


def test_console_logs_are_one_readable_line_each(serve):
    server = serve(LOG_FORMAT="console", ACCESS_LOG="all", LOG_LEVEL="debug")
    assert server.http.get("/healthz").status_code == 200
    lines = wait_until(lambda: [x for x in log_lines(server) if "path=/healthz" in x])
    assert " INFO " in lines[0] and "route=/healthz" in lines[0] and "status=200" in lines[0]
    assert not log_lines(server)[0].startswith("{")


def test_metrics_on_their_own_port_only(serve):
    port = free_port()
    server = serve(METRICS_PORT=str(port))
    assert server.http.get("/healthz").status_code == 200
    assert server.http.get("/metrics").status_code == 404  # not on the public port
    scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert scraped.status_code == 200
    names = {f.name for f in text_string_to_metric_families(scraped.text)}
    assert {"emberlog_http_requests", "emberlog_pool_size", "process_cpu_seconds"} <= names


def test_settings_that_cannot_work_together_are_refused_at_start():
    result = cli("serve", METRICS_PORT="9090", WORKERS="2", DATABASE_URL="")
    assert result.returncode == 2
    assert "METRICS_PORT needs WORKERS=1" in result.stderr


def test_a_pod_logs_in_as_the_authenticator_and_does_not_migrate(serve):
    """The Kubernetes setup: DATABASE_URL is the authenticator, a Job migrates, and the
    pod has no owner's login at all (MIGRATE_DATABASE_URL unset)."""
    server = serve(
        MIGRATE_ON_START="false",
        MIGRATE_DATABASE_URL="",
        TRUSTED_INGEST_NETWORKS="10.0.0.0/8",  # the old name: still read, with a warning
        NAIVE_TIMEZONE="America/Chicago",
    )
    assert server.http.get("/api/v1/incidents").status_code == 200
    start = next(e for e in map(json.loads, log_lines(server)) if e["msg"] == "starting")
    assert start["database"].startswith("emberlog_authenticator@")
    assert start["login"] == "emberlog_authenticator"
    assert start["routes"] >= 4
    assert start["migrations_applied"] == "skipped (MIGRATE_ON_START=false)"
    assert start["trusted_networks"] == ["10.0.0.0/8"]
    assert start["naive_timezone"] == "America/Chicago"
    notes = [e["msg"] for e in map(json.loads, log_lines(server)) if e["level"] == "warning"]
    assert "TRUSTED_INGEST_NETWORKS is deprecated: set TRUSTED_NETWORKS instead" in notes


def test_serve_refuses_a_superuser_login(fault_database):
    """A superuser may `set role` to anyone: PostgreSQL could not enforce the API's roles,
    so serve does not start on one (the owner's login belongs in MIGRATE_DATABASE_URL)."""
    refused = cli("serve", DATABASE_URL=fault_database, MIGRATE_ON_START="false", PORT="1")
    assert refused.returncode == 2, refused.stderr
    assert "DATABASE_URL logs in as superuser postgres" in refused.stderr
    assert "emberlog_authenticator" in refused.stderr and "MIGRATE_DATABASE_URL" in refused.stderr
    behind = cli("serve", **logins(fault_database), READ_DATABASE_URL=fault_database, PORT="1")
    assert behind.returncode == 2 and "READ_DATABASE_URL logs in as superuser" in behind.stderr


def test_psql_passes_every_argument_after_it_to_psql(fault_database):
    """`emberlog-api psql -c "..."`: the -c is psql's, not emberlog-api's."""
    result = cli("psql", "-At", "-c", "select 40 + 2", **logins(fault_database))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"


def test_serve_stopped_by_sigterm_stops_the_embedded_server_it_started(tmp_path):
    """As a service manager stops `make run`: the embedded PostgreSQL goes too."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": "", "MIGRATE_DATABASE_URL": "", "DATA_DIR": str(tmp_path),
           "PORT": str(port), "HOST": "127.0.0.1"}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200, 120)
        pid_file = tmp_path / "postgres" / "postmaster.pid"
        assert pid_file.exists()
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        wait_until(lambda: not pid_file.exists(), 30)  # PostgreSQL shut down cleanly
    finally:
        if process.poll() is None:
            process.kill()
        pg.EmbeddedPostgres(tmp_path / "postgres").stop_if_running()
