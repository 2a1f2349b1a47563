"""X-API-Key over HTTP: the key's role decides; bad keys are a 401; no key is anonymous."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest

from tests import pg
from tests.conftest import app_client
from tests.incidents import payload


@pytest.fixture
def keys(db):
    db.execute("truncate auth.api_keys restart identity")
    return db


@pytest.fixture
async def client(settings, keys):
    async with app_client(dataclasses.replace(settings, api_key_cache_seconds=0)) as conductor:
        yield conductor


def issue(keys, name: str = "calypso", role: str = "emberlog_ingest", expires=None) -> str:
    return pg.issue_key(keys, name, role, expires)


async def test_an_ingest_key_creates_and_may_not_read(client, keys):
    headers = {"X-API-Key": issue(keys)}
    created = await client.simulate_post("/api/v1/incidents", json=payload(), headers=headers)
    assert created.status_code == 201
    listed = await client.simulate_get("/api/v1/incidents", headers=headers)
    assert listed.status_code == 403
    assert listed.json["error"]["code"] == "forbidden"


async def test_claims_name_the_key(client, keys, database_url):
    key = issue(keys, name="reader-bot", role="emberlog_anon")
    keys.execute(
        """create function api.whoami() returns json language sql stable
        as $$ select current_setting('request.jwt.claims', true)::json $$"""
    )
    keys.execute("comment on function api.whoami() is '@http GET /api/v1/whoami'")
    keys.execute("grant execute on function api.whoami() to emberlog_anon")
    await client.app_state.reload_routes()
    answer = await client.simulate_get("/api/v1/whoami", headers={"X-API-Key": key})
    assert answer.json == {"role": "emberlog_anon", "api_key": "reader-bot"}
    keys.execute("drop function api.whoami()")


@pytest.mark.parametrize("case", ["unknown", "revoked", "expired"])
async def test_unknown_revoked_and_expired_keys_are_a_401(client, keys, case):
    key = {
        "unknown": lambda: "emb_" + "0" * 64,
        "revoked": lambda: issue(keys),
        "expired": lambda: issue(keys, expires="2020-01-01Z"),
    }[case]()
    if case == "revoked":
        ok = await client.simulate_post(
            "/api/v1/incidents", json=payload(), headers={"X-API-Key": key}
        )
        assert ok.status_code == 201
        keys.execute("select auth.revoke_api_key('calypso')")
    before = keys.execute("select count(*) from data.incidents").fetchone()[0]
    for method in ("GET", "POST"):
        result = await client.simulate_request(
            method, "/api/v1/incidents", json=payload(), headers={"X-API-Key": key}
        )
        assert result.status_code == 401
        assert result.json["error"]["code"] == "invalid_api_key"
        assert result.json["error"]["message"].endswith(": send a current key in X-API-Key")
        assert result.headers["www-authenticate"].startswith("ApiKey")
    assert keys.execute("select count(*) from data.incidents").fetchone()[0] == before


@pytest.mark.parametrize("role", ["emberlog_reader", "pg_read_all_data", "no_such_role"])
async def test_a_key_whose_role_was_changed_by_hand_is_refused(client, keys, caplog, role):
    """auth.create_api_key refuses these roles, but a row can be changed by hand (or a
    key issued before a membership was revoked): the authenticator may not switch to
    the role, so the key proves nothing, and the DBA is told which key it is."""
    key = issue(keys, name="changed-by-hand", role="emberlog_anon")
    created = await client.simulate_post("/api/v1/incidents", json=payload(), headers=client.ingest)
    assert created.status_code == 201
    listed = await client.simulate_get("/api/v1/incidents", headers={"X-API-Key": key})
    assert listed.status_code == 200 and listed.json["total"] == 1
    keys.execute("update auth.api_keys set role = %s where name = 'changed-by-hand'", (role,))
    caplog.set_level(logging.WARNING, logger="app.auth.authenticator")
    for method in ("GET", "POST"):
        result = await client.simulate_request(
            method, "/api/v1/incidents", json=payload(), headers={"X-API-Key": key}
        )
        assert result.status_code == 401, result.text
        assert result.json["error"]["code"] == "invalid_api_key"
        assert "items" not in result.json  # nothing read
    assert keys.execute("select count(*) from data.incidents").fetchone()[0] == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'changed-by-hand'" in w and role in w for w in warnings), warnings
    assert key not in caplog.text


async def test_a_cached_key_is_refused_once_its_role_may_not_be_switched_to(settings, keys):
    key = issue(keys)
    async with app_client(dataclasses.replace(settings, api_key_cache_seconds=60)) as client:
        headers = {"X-API-Key": key}
        ok = await client.simulate_post("/api/v1/incidents", json=payload(), headers=headers)
        assert ok.status_code == 201
        # As the next route reload sees it after `revoke emberlog_ingest from
        # emberlog_authenticator`: the cached lookup no longer decides.
        auth = client.app_state.auth
        auth.roles = auth.roles - {"emberlog_ingest"}
        refused = await client.simulate_post("/api/v1/incidents", json=payload(), headers=headers)
        assert refused.status_code == 401
        assert refused.json["error"]["code"] == "invalid_api_key"


async def test_an_empty_key_is_anonymous(client):
    for value in ("", "   "):
        result = await client.simulate_get("/api/v1/incidents", headers={"X-API-Key": value})
        assert result.status_code == 200


async def test_use_is_recorded_every_touch_interval_off_the_request_path(settings, keys):
    key = issue(keys)
    used = "select last_used_at from auth.api_keys where name = 'calypso'"
    touching = dataclasses.replace(settings, api_key_touch_seconds=0.2)
    async with app_client(touching) as client:
        headers = {"X-API-Key": key}
        result = await client.simulate_post("/api/v1/incidents", json=payload(), headers=headers)
        assert result.status_code == 201
        async with asyncio.timeout(20):  # the app's own recorder, no call of ours
            while keys.execute(used).fetchone()[0] is None:
                await asyncio.sleep(0.05)
        assert keys.execute(used).fetchone()[0] <= keys.execute("select now()").fetchone()[0]


async def test_a_revoked_key_is_refused_within_the_cache_time(settings, keys):
    key = issue(keys)
    async with app_client(dataclasses.replace(settings, api_key_cache_seconds=60)) as client:
        headers = {"X-API-Key": key}
        ok = await client.simulate_post("/api/v1/incidents", json=payload(), headers=headers)
        assert ok.status_code == 201
        keys.execute("select auth.revoke_api_key('calypso')")
        cached = await client.simulate_post("/api/v1/incidents", json=payload(), headers=headers)
        assert cached.status_code == 201  # within API_KEY_CACHE_SECONDS
        client.app_state.auth._keys.clear()  # as when the cache time has passed
        refused = await client.simulate_post("/api/v1/incidents", json=payload(), headers=headers)
        assert refused.status_code == 401


async def test_keys_never_reach_logs_or_error_bodies(client, keys, caplog):
    key = issue(keys)
    caplog.set_level(logging.DEBUG)
    bad = "emb_" + "f" * 64
    result = await client.simulate_post(
        "/api/v1/incidents", json={"broken": True}, headers={"X-API-Key": key}
    )
    refused = await client.simulate_get("/api/v1/incidents", headers={"X-API-Key": bad})
    assert key not in result.text and bad not in refused.text
    assert key not in caplog.text and bad not in caplog.text
