"""Health and readiness across a database outage; killed connections; no 500s."""

from __future__ import annotations

import json
import subprocess
import threading

import httpx
import psycopg

from tests import pg
from tests.e2e.conftest import cli, logins
from tests.incidents import payload
from tests.waiting import wait_until


def test_readiness_follows_the_database_and_liveness_does_not(serve, fault_server):
    app = serve()
    assert app.http.get("/readyz").status_code == 200

    fault_server.stop()
    try:
        wait_until(lambda: app.http.get("/readyz").status_code == 503)
        assert app.http.get("/healthz").json() == {"status": "ok"}
        health = app.http.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "degraded"
        assert health.json()["checks"]["database"]["status"] == "unhealthy"
        down = app.http.get("/api/v1/incidents")
        assert down.status_code in (503, 504)
        assert set(down.json()["error"]) == {"code", "message", "details"}
        write = app.http.post("/api/v1/incidents", json=payload(), headers=app.ingest)
        assert write.status_code in (503, 504)
    finally:
        fault_server.restart_after_stop()

    wait_until(lambda: app.http.get("/readyz").status_code == 200)
    assert app.http.get("/api/v1/health").json()["status"] == "healthy"
    # reads retry once past the pool's dead connections: no error once the database is back
    for _ in range(5):
        assert app.http.get("/api/v1/incidents").status_code == 200

    def create() -> httpx.Response | None:
        response = app.http.post("/api/v1/incidents", json=payload(), headers=app.ingest)
        return response if response.status_code == 201 else None

    created = wait_until(create)
    assert app.http.get(f"/api/v1/incidents/{created.json()['id']}").status_code == 200


def test_killed_connections_heal_and_reload_still_works(serve, fault_database):
    app = serve()
    with psycopg.connect(fault_database, autocommit=True) as db:
        db.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where application_name = 'emberlog-api'"
        )
        wait_until(lambda: app.http.get("/api/v1/incidents").status_code == 200)
        # the listener reconnected: a route added now is served without a restart
        db.execute("""
            create or replace function api.ping() returns json language sql stable
            as $$ select '{"pong": true}'::json $$;
            comment on function api.ping() is E'@http GET /api/v1/ping\\nLiveness of SQL.';
            grant execute on function api.ping() to emberlog_anon;
        """)

        def reloaded() -> bool:
            db.execute("notify emberlog_reload")
            return app.http.get("/api/v1/ping").status_code == 200

        try:
            wait_until(reloaded)
            assert app.http.get("/api/v1/ping").json() == {"pong": True}
        finally:
            db.execute("drop function api.ping(); notify emberlog_reload")
    log = app.log_path.read_text()
    assert '"status": 500' not in log


def test_cli_lists_routes_and_rejects_a_bad_time_zone(fault_database):
    listed = cli("routes", **logins(fault_database))
    assert listed.returncode == 0, listed.stderr
    assert "GET    /api/v1/incidents/{id}" in listed.stdout
    assert "POST   /api/v1/incidents" in listed.stdout
    assert "SSE    /api/v1/sse/incidents" in listed.stdout
    bad = cli("serve", **logins(fault_database), NAIVE_TIMEZONE="Mars/Olympus", PORT="1")
    assert bad.returncode != 0 and "NAIVE_TIMEZONE" in bad.stderr


def test_a_deploy_reloads_running_servers(serve, fault_database, tmp_path):
    import shutil

    from app.database import deploy

    app = serve()
    sql_dir = tmp_path / "sql"
    shutil.copytree(deploy.SQL_DIR, sql_dir)
    (sql_dir / "30_api" / "version.sql").write_text("""
        create function api.schema_version() returns json language sql immutable
        as $$ select '{"version": 2}'::json $$;
        comment on function api.schema_version() is E'@http GET /api/v1/schema-version\\nv2.';
        grant execute on function api.schema_version() to emberlog_anon;
    """)
    assert app.http.get("/api/v1/schema-version").status_code == 404
    deploy.apply_sql(fault_database, "emberlog_reload", sql_dir)
    try:
        wait_until(lambda: app.http.get("/api/v1/schema-version").status_code == 200)
        assert app.http.get("/api/v1/incidents").status_code == 200  # drained pool still serves
    finally:
        deploy.apply_sql(fault_database, "emberlog_reload")
    wait_until(lambda: app.http.get("/api/v1/schema-version").status_code == 404)


def test_cli_prunes_the_event_log(fault_database):
    with psycopg.connect(fault_database, autocommit=True) as conn:
        conn.execute("select api.create_incident(%s::jsonb)", (json.dumps(payload()),))

    def prune(*args: str) -> subprocess.CompletedProcess:
        return cli("prune-events", *args, **logins(fault_database))  # as the owner

    assert prune().stdout == "events deleted: 0\n"  # nothing is 7 days old
    deleted = prune("--older-than", "0")
    assert deleted.returncode == 0 and deleted.stdout.startswith("events deleted: ")
    assert int(deleted.stdout.split(": ")[1]) >= 1
    bad = prune("--older-than", "fortnight")
    assert bad.returncode == 1 and "interval" in bad.stderr


def test_cli_creates_lists_and_revokes_api_keys(serve, fault_database):
    import os

    def keys(*args: str) -> subprocess.CompletedProcess:
        return cli("keys", *args, **logins(fault_database), API_KEY_CACHE_SECONDS="0")

    name = f"calypso-{os.getpid()}"
    created = keys("create", "--name", name, "--role", "emberlog_ingest")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("emb_") and "shown once" in created.stderr
    listed = keys("list")
    assert name in listed.stdout and key not in listed.stdout
    app = serve(API_KEY_CACHE_SECONDS="0")
    post = app.http.post("/api/v1/incidents", json=payload(), headers={"X-API-Key": key})
    assert post.status_code == 201
    assert keys("revoke", "--name", name).returncode == 0
    assert keys("revoke", "--name", name).returncode == 1
    refused = app.http.post("/api/v1/incidents", json=payload(), headers={"X-API-Key": key})
    assert refused.status_code == 401
    assert key not in app.log_path.read_text()
    bad = keys("create", "--name", "x", "--role", "postgres")
    assert bad.returncode == 1 and "superuser" in bad.stderr


def test_a_query_is_cancelled_when_its_client_leaves(serve, fault_database):
    app = serve()
    with psycopg.connect(fault_database, autocommit=True) as db:
        db.execute("""
            create or replace function api.slow(seconds float) returns json language sql stable
            as $$ select pg_sleep(seconds); select '{}'::json $$;
            comment on function api.slow(float) is '@http GET /api/v1/slow';
            grant execute on function api.slow(float) to emberlog_anon;
            notify emberlog_reload;
        """)
        try:
            wait_until(lambda: app.http.get("/api/v1/slow?seconds=0").status_code == 200)
            leaving = threading.Thread(target=leave_after, args=(app.base, 1.0))
            leaving.start()
            wait_until(lambda: pg.running(db, "slow") == 1)  # it runs...
            leaving.join()
            # ...and stops once the client has gone, long before its 4 seconds are up
            wait_until(lambda: pg.running(db, "slow") == 0, timeout=2.5)
            wait_until(lambda: '"status": 499' in app.log_path.read_text())
            assert app.http.get("/api/v1/slow?seconds=0").status_code == 200
        finally:
            db.execute("drop function api.slow(float); notify emberlog_reload")


def leave_after(base: str, seconds: float) -> None:
    """A client that gives up waiting (and closes its connection) after `seconds`."""
    with httpx.Client(base_url=base, timeout=seconds) as http:
        try:
            http.get("/api/v1/slow", params={"seconds": "4"})
        except httpx.TimeoutException:
            return
    raise AssertionError("the slow request answered before the client left")
