"""Each web role runs under its own statement_timeout (set on the role, applied per
request by the app); a query past it is a 504 and frees its connection."""

from __future__ import annotations

import contextlib

from tests.conftest import only_connection_held


@contextlib.contextmanager
def anon_timeout(db, value: str):
    """emberlog_anon's statement_timeout for a while (roles are cluster-wide)."""
    db.execute(f"alter role emberlog_anon set statement_timeout = '{value}'")
    try:
        yield
    finally:
        db.execute("alter role emberlog_anon set statement_timeout = '5s'")


def test_the_migration_gives_each_web_role_a_timeout(db):
    rows = dict(
        db.execute(
            "select rolname, rolconfig from pg_roles where rolname in"
            " ('emberlog_anon', 'emberlog_ingest', 'emberlog_reader')"
        ).fetchall()
    )
    assert "statement_timeout=5s" in rows["emberlog_anon"]
    assert "statement_timeout=5s" in rows["emberlog_ingest"]
    assert "statement_timeout=60s" in rows["emberlog_reader"]


async def test_a_query_past_its_role_timeout_is_a_504(client, db, slow_route, caplog):
    with anon_timeout(db, "200ms"):
        await client.app_state.reload_routes()  # role settings are read with the routes
        assert client.app_state.auth.timeouts["emberlog_anon"] == "200ms"
        slow = await client.simulate_get("/api/v1/slow", params={"seconds": "2"})
        assert slow.status_code == 504
        assert slow.json["error"]["code"] == "statement_timeout"
        logged = [r.getMessage() for r in caplog.records if r.name == "app.http.errors"]
        assert any(m.startswith("statement timeout") for m in logged)  # not an outage
        assert not any("unavailable" in m for m in logged)
        quick = await client.simulate_get("/api/v1/slow", params={"seconds": "0"})
        assert quick.status_code == 200  # the connection is fine afterwards
    await client.app_state.reload_routes()
    within = await client.simulate_get("/api/v1/slow", params={"seconds": "0.3"})
    assert within.status_code == 200  # 5 s again


async def test_waiting_too_long_for_a_connection_is_a_504(settings, db, slow_route):
    async with only_connection_held(settings, db, 1.5, pool_timeout=0.3) as (client, busy):
        waiting = await client.simulate_get("/api/v1/incidents")
        assert waiting.status_code == 504
        assert waiting.json["error"]["message"] == "timed out waiting for a database connection"
        assert (await busy).status_code == 200
        assert (await client.simulate_get("/api/v1/incidents")).status_code == 200
