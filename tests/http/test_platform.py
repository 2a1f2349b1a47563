"""Routes added by SQL alone, CORS, health, request ids."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from app.environment import from_env
from app.settings import SettingsError
from tests.conftest import app_client

CUSTOM_ROUTE = """
create function api.echo_units(unit_list text[], times integer default 1, id bigint default 0)
returns json language sql stable
as $$ select json_build_object('units', unit_list, 'times', times, 'id', id) $$;
comment on function api.echo_units(text[], integer, bigint) is
    E'@http GET /api/v1/echo/{id}\\nEchoes its arguments.';
grant execute on function api.echo_units(text[], integer, bigint) to emberlog_anon;
create function api.teapot() returns json language plpgsql volatile
as $$ begin
    perform set_config('response.status', '418', true);
    perform set_config('response.headers', '[{"X-Brew": "earl grey"}]', true);
    return '{"short": "stout"}'::json;
end $$;
comment on function api.teapot() is E'@http POST /api/v1/teapot\\nSets status and headers.';
grant execute on function api.teapot() to emberlog_anon;
notify emberlog_reload;
"""


async def wait_for_route(client, method: str, path: str, present: bool = True) -> None:
    """Until the route table has (or, present=False, no longer has) the route: reloads are
    coalesced and, on a busy machine, slow; 30 s is generous."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if bool(client.app_state.routes.match(method, path)) == present:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{method} {path} never {'appeared' if present else 'went'}")


@pytest.fixture
def custom_routes(db):
    db.execute(CUSTOM_ROUTE)
    yield
    db.execute(
        "drop function api.echo_units(text[], integer, bigint); drop function api.teapot();"
        " notify emberlog_reload"
    )


async def test_a_route_added_with_sql_only(client, custom_routes):
    await wait_for_route(client, "GET", "/api/v1/echo/7")
    result = await client.simulate_get("/api/v1/echo/7", query_string="unit_list=a&unit_list=b")
    assert result.status_code == 200
    assert result.json == {"units": ["a", "b"], "times": 1, "id": 7}
    result = await client.simulate_get("/api/v1/echo/7/", query_string="unit_list=a&times=3")
    assert result.json == {"units": ["a"], "times": 3, "id": 7}
    missing = await client.simulate_get("/api/v1/echo/7")
    assert missing.status_code == 400 and "unit_list" in missing.json["error"]["message"]


async def test_functions_set_status_and_headers(client, custom_routes):
    await wait_for_route(client, "POST", "/api/v1/teapot")
    result = await client.simulate_post("/api/v1/teapot")
    assert result.status_code == 418
    assert result.headers["x-brew"] == "earl grey"
    assert result.json == {"short": "stout"}


async def test_a_dropped_route_disappears(client, custom_routes, db):
    await wait_for_route(client, "POST", "/api/v1/teapot")
    db.execute("drop function api.teapot(); notify emberlog_reload")
    db.execute("create function api.teapot() returns json language sql as $$ select null::json $$")
    await wait_for_route(client, "POST", "/api/v1/teapot", present=False)
    assert (await client.simulate_post("/api/v1/teapot")).status_code == 404


async def test_cors_preflight_for_post(client):
    result = await client.simulate_options(
        "/api/v1/incidents/",
        headers={
            "Origin": "https://web.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-api-key",
        },
    )
    assert result.status_code in (200, 204)
    assert result.headers["access-control-allow-origin"] == "*"
    assert "POST" in result.headers["access-control-allow-methods"]
    allowed = result.headers["access-control-allow-headers"].lower()
    assert "content-type" in allowed and "x-api-key" in allowed


async def test_cors_on_a_plain_get(client):
    result = await client.simulate_get(
        "/api/v1/incidents", headers={"Origin": "https://web.example"}
    )
    assert result.status_code == 200
    assert result.headers["access-control-allow-origin"] == "*"


async def test_cors_origins_are_configurable(settings, db):
    web_only = dataclasses.replace(settings, cors_origins=("https://web.example",))
    async with app_client(web_only) as client:
        ok = await client.simulate_get(
            "/api/v1/incidents", headers={"Origin": "https://web.example"}
        )
        other = await client.simulate_get(
            "/api/v1/incidents", headers={"Origin": "https://evil.example"}
        )
    assert ok.headers["access-control-allow-origin"] == "https://web.example"
    assert "access-control-allow-origin" not in other.headers


async def test_health_endpoints(client):
    assert (await client.simulate_get("/healthz")).json == {"status": "ok"}
    deadline = time.monotonic() + 30  # the streams find where live starts after start-up
    while time.monotonic() < deadline:
        ready = await client.simulate_get("/readyz")
        if ready.status_code == 200:
            break
        await asyncio.sleep(0.05)
    assert ready.status_code == 200 and ready.json["status"] == "ready"
    for path in ("/health", "/api/v1/health"):
        result = await client.simulate_get(path)
        assert result.status_code == 200
        body = result.json
        assert body["status"] == "healthy" and body["service"] == "emberlog-api"
        assert body["checks"]["database"]["status"] == "healthy"
        assert isinstance(body["checks"]["database"]["response_time_ms"], float)
        assert body["timestamp"].endswith("Z") and body["version"]


async def test_request_id_is_honoured_or_generated(client):
    given = await client.simulate_get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await client.simulate_get("/api/v1/incidents")
    assert len(made.headers["x-request-id"]) == 32
    hostile = await client.simulate_get("/healthz", headers={"X-Request-ID": "a b\u00e9"})
    assert hostile.headers["x-request-id"] != "a b\u00e9"


async def test_one_json_log_line_per_request(settings, db, caplog):
    caplog.set_level("INFO", logger="emberlog.request")
    async with app_client(dataclasses.replace(settings, access_log="all")) as client:
        await client.simulate_get("/api/v1/incidents/", headers={"X-Request-ID": "log-me"})
    records = [r for r in caplog.records if r.name == "emberlog.request"]
    assert len(records) == 1
    record = records[0]
    assert (record.method, record.path, record.status) == ("GET", "/api/v1/incidents", 200)
    assert record.request_id == "log-me" and record.duration_ms >= 0
    assert record.route == "/api/v1/incidents"


@pytest.mark.parametrize(
    ("mode", "slow_ms", "logged"),
    [
        ("errors", 1000.0, [404]),  # the default: failures only...
        ("errors", 0.0, [200, 404]),  # ...and anything slower than ACCESS_LOG_SLOW_MS
        ("off", 0.0, []),
    ],
)
async def test_access_log_modes(settings, db, caplog, mode, slow_ms, logged):
    caplog.set_level("INFO", logger="emberlog.request")
    chosen = dataclasses.replace(settings, access_log=mode, access_log_slow_ms=slow_ms)
    async with app_client(chosen) as client:
        assert (await client.simulate_get("/api/v1/incidents")).status_code == 200
        assert (await client.simulate_get("/api/v1/nothing")).status_code == 404
    records = [r for r in caplog.records if r.name == "emberlog.request"]
    assert [r.status for r in records] == logged


def test_access_log_setting():
    assert from_env({}).access_log == "errors"
    assert from_env({"ACCESS_LOG": "ALL"}).access_log == "all"
    with pytest.raises(SettingsError):
        from_env({"ACCESS_LOG": "verbose"})


async def test_get_routes_run_read_only(client, db):
    db.execute("""
        create function api.sneaky_write() returns json language sql volatile
        security definer set search_path = pg_catalog, pg_temp
        as $$ insert into data.incidents (dispatched_at, source_audio) values (now(), 'x')
              returning '{}'::json $$;
        comment on function api.sneaky_write() is E'@http GET /api/v1/sneaky\\nWrites on GET.';
        grant execute on function api.sneaky_write() to emberlog_anon;
        notify emberlog_reload;
    """)
    try:
        await wait_for_route(client, "GET", "/api/v1/sneaky")
        result = await client.simulate_get("/api/v1/sneaky")
        assert result.status_code == 405  # 25006: a write in a read-only transaction
        assert db.execute("select count(*) from data.incidents").fetchone()[0] == 0
    finally:
        db.execute("drop function api.sneaky_write(); notify emberlog_reload")
