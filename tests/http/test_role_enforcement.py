"""PostgreSQL, not Python, holds each request to its role: the app logs in as the
authenticator (LOGIN NOINHERIT, no superuser), so SQL that tries to switch role on
its own gets nowhere. Before, the app logged in as the embedded superuser and a route
could `set_config('role', 'postgres', true)`."""

from __future__ import annotations

import pytest

from tests.incidents import payload

ESCALATE = """
create function api.test_escalate() returns json language sql volatile
as $$ select json_build_object('role', pg_catalog.set_config('role', 'postgres', true),
                               'user', current_user) $$;
comment on function api.test_escalate() is '@http POST /api/v1/test-escalate';
grant execute on function api.test_escalate() to emberlog_ingest;
"""
# Back to the login role ('none' = the session user), then read what only a privileged
# login could: the login itself must have nothing to give.
UNSWITCH = """
create function api.test_unswitch() returns json language sql volatile
as $$ select pg_catalog.set_config('role', 'none', true);
      select json_build_object('incidents', (select count(*) from data.incidents)) $$;
comment on function api.test_unswitch() is '@http POST /api/v1/test-unswitch';
grant execute on function api.test_unswitch() to emberlog_ingest;
"""
ROUTES = {"test_escalate": ESCALATE, "test_unswitch": UNSWITCH}
WHO = """
select session_user::text, current_user::text, r.rolsuper, r.rolinherit
  from pg_catalog.pg_roles r where r.rolname = session_user
"""


@pytest.fixture
async def routes(client, db):
    """Both route functions, created as the owner (as a DBA adds a route), loaded by the
    app; dropped afterwards."""
    for definition in ROUTES.values():
        db.execute(definition)
    await client.app_state.reload_routes()
    yield client
    for function in ROUTES:
        db.execute(f"drop function if exists api.{function}()")
    await client.app_state.reload_routes()


async def test_pooled_connections_log_in_as_the_authenticator(client):
    async with client.app_state.require_pool().connection() as conn:
        row = await (await conn.execute(WHO)).fetchone()
    assert row == ("emberlog_authenticator", "emberlog_authenticator", False, False)


@pytest.mark.parametrize("path", ["/api/v1/test-escalate", "/api/v1/test-unswitch"])
async def test_a_route_cannot_take_another_role(routes, db, path):
    client = routes
    before = db.execute("select count(*) from data.incidents").fetchone()[0]
    result = await client.simulate_post(path, json={}, headers=client.ingest)
    assert result.status_code == 403, result.text  # with credentials: denied, not escalated
    assert result.json["error"]["code"] == "forbidden"
    assert "permission denied" in result.json["error"]["message"]
    # The connection it ran on is the authenticator's again, and still works.
    async with client.app_state.require_pool().connection() as conn:
        row = await (await conn.execute(WHO)).fetchone()
    assert row[:2] == ("emberlog_authenticator", "emberlog_authenticator")
    created = await client.simulate_post("/api/v1/incidents", json=payload(), headers=client.ingest)
    assert created.status_code == 201
    assert db.execute("select count(*) from data.incidents").fetchone()[0] == before + 1
