"""Issue 13's attacks, in process: each reproduces what the adversarial review did and
shows what the API now answers (and that nothing was written or held)."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest

from app.http.clients import parse_networks
from app.observability.probes import database_checks
from app.state import AppState
from tests import pg
from tests.conftest import app_client, only_connection_held
from tests.incidents import payload

INCIDENTS = "/api/v1/incidents"
JSON = {"Content-Type": "application/json"}
LAN = "10.1.2.3"  # inside TRUSTED_NETWORKS below
NEGATED = " ".join(f"-x{n}" for n in range(2000))  # the review's full-text query


def stored(db) -> int:
    return db.execute("select count(*) from data.incidents").fetchone()[0]


# --- 1. search inputs are bounded before a connection is taken ---------------------


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"q": NEGATED}, "q"),
        ({"q": " ".join(["fire"] * 17)}, "q"),  # 17 terms, well under 200 characters
        ({"q": "x" * 201}, "q"),
        ({"address_search": "Main " * 1000}, "address_search"),
        ({"incident_type": "t" * 201}, "incident_type"),
        ({"units": [f"U{n}" for n in range(51)]}, "units"),
        ({"units": ["u" * 101]}, "units"),
    ],
)
async def test_oversized_search_inputs_are_400_naming_the_parameter(client, params, parameter):
    result = await client.simulate_get(INCIDENTS, params=params)
    assert result.status_code == 400
    error = result.json["error"]
    assert error["code"] == "invalid_parameter" and error["details"]["parameter"] == parameter


async def test_searches_within_the_bounds_still_work(client, db):
    await client.simulate_post(INCIDENTS, json=payload(), headers=JSON | client.ingest)
    for params in (
        {"q": " ".join(["-x"] * 15 + ["fire"])},  # 16 terms
        {"q": "f" * 200},
        {"address_search": "Main"},
        {"units": ["E1"] * 50},
    ):
        assert (await client.simulate_get(INCIDENTS, params=params)).status_code == 200


async def test_bounds_are_checked_without_a_database_connection(settings, db, slow_route):
    async with only_connection_held(settings, db, 1, pool_timeout=2) as (client, busy):
        refused = await client.simulate_get(INCIDENTS, params={"q": NEGATED})
        assert refused.status_code == 400  # not a 504 after waiting for the pool
        assert pg.running(db, "slow") == 1  # answered while the connection was still busy
        assert (await busy).status_code == 200


async def test_the_bounds_are_published_in_openapi(client):
    doc = (await client.simulate_get("/openapi.json")).json
    params = {
        p["name"]: p["schema"].get("anyOf", [p["schema"]])[0]  # [schema, blank] when optional
        for p in doc["paths"][INCIDENTS]["get"]["parameters"]
    }
    assert params["q"]["maxLength"] == 200 and params["q"]["x-max-terms"] == 16
    assert params["address_search"]["maxLength"] == 200
    assert params["units"]["maxItems"] == 50


# --- pages past the end -------------------------------------------------------------


async def test_a_page_past_the_end_does_not_invent_a_total(client, db):
    for n in range(3):
        await client.simulate_post(
            INCIDENTS, json=payload(text=f"engine {n}"), headers=JSON | client.ingest
        )
    far = await client.simulate_get(INCIDENTS, params={"q": "engine", "page": "2147483647"})
    assert far.status_code == 200
    assert far.json["items"] == [] and far.json["total"] == 3


# --- 2. cross-site writes -----------------------------------------------------------


@pytest.fixture
async def trusting(settings, db):
    """The internal-only model: 10.0.0.0/8 may write without a key."""
    lan = dataclasses.replace(settings, trusted_networks=parse_networks("10.0.0.0/8"))
    async with app_client(lan) as client:
        yield client


# What Chromium sends for fetch(url, {method: 'POST', mode: 'no-cors', body: new Blob([json])})
# from a page of another site: no Content-Type, an Origin, Sec-Fetch-Site: cross-site.
BROWSER_CROSS_SITE = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}


async def test_a_write_without_content_type_is_415_and_writes_nothing(trusting, db):
    body = json.dumps(payload()).encode()
    result = await trusting.simulate_post(INCIDENTS, body=body, remote_addr=LAN)
    assert result.status_code == 415
    assert "application/json" in result.json["error"]["message"]
    assert stored(db) == 0


@pytest.mark.parametrize(
    "headers",
    [
        BROWSER_CROSS_SITE,
        {"Origin": "http://evil.example"},  # an older browser: no Sec-Fetch-*
        {"Sec-Fetch-Site": "same-site"},  # another host of the same site
        {"Origin": "null"},  # a sandboxed frame
    ],
)
async def test_cross_site_writes_without_credentials_are_refused(trusting, db, headers):
    result = await trusting.simulate_post(
        INCIDENTS, json=payload(), headers=headers, remote_addr=LAN
    )
    assert result.status_code == 403
    assert result.json["error"]["code"] == "cross_site_write"
    assert stored(db) == 0


async def test_servers_and_keyed_clients_are_not_affected(trusting, db):
    # A server on the trusted network sends no browser headers: still written.
    plain = await trusting.simulate_post(INCIDENTS, json=payload(), remote_addr=LAN)
    assert plain.status_code == 201
    # A page that sends a key (a CORS request the browser preflights) is the key's.
    keyed = await trusting.simulate_post(
        INCIDENTS, json=payload(), headers=BROWSER_CROSS_SITE | trusting.ingest
    )
    assert keyed.status_code == 201
    same_origin = await trusting.simulate_post(
        INCIDENTS, json=payload(), headers={"Sec-Fetch-Site": "same-origin"}, remote_addr=LAN
    )
    assert same_origin.status_code == 201
    assert stored(db) == 3


async def test_an_origin_named_in_cors_origins_may_write_from_the_trusted_network(settings, db):
    named = dataclasses.replace(
        settings,
        trusted_networks=parse_networks("10.0.0.0/8"),
        cors_origins=("https://console.example",),
    )
    async with app_client(named) as client:
        result = await client.simulate_post(
            INCIDENTS,
            json=payload(),
            headers={"Origin": "https://console.example", "Sec-Fetch-Site": "cross-site"},
            remote_addr=LAN,
        )
        assert result.status_code == 201


# --- 6. the Host header is not reflected --------------------------------------------


async def test_a_hostile_host_header_is_not_reflected(client):
    result = await client.simulate_post(
        INCIDENTS, json=payload(), headers=JSON | client.ingest | {"Host": "evil.example"}
    )
    assert result.status_code == 201
    assert "evil" not in result.headers["location"]
    assert result.headers["location"] == result.json["links"]["self"]["_url"]
    assert result.headers["location"].startswith("/api/v1/incidents/")


async def test_public_url_makes_links_absolute(settings, db):
    public = dataclasses.replace(settings, public_url="https://emberlog.example/base")
    async with app_client(public) as client:
        result = await client.simulate_post(
            INCIDENTS, json=payload(), headers=JSON | client.ingest | {"Host": "evil.example"}
        )
        url = f"https://emberlog.example/base/api/v1/incidents/{result.json['id']}"
        assert result.headers["location"] == url == result.json["links"]["self"]["_url"]


# --- work limits: one client, one route -------------------------------------------


async def test_one_address_holds_at_most_its_share_of_requests(settings, db, slow_route):
    two = dataclasses.replace(settings, concurrency_per_address=2)
    async with app_client(two) as client:
        slow = [
            asyncio.create_task(
                client.simulate_get("/api/v1/slow", params={"seconds": "1"}, remote_addr=LAN)
            )
            for _ in range(2)
        ]
        while pg.running(db, "slow") < 2:
            await asyncio.sleep(0.02)
        third = await client.simulate_get(INCIDENTS, remote_addr=LAN)
        assert third.status_code == 429
        assert third.json["error"]["code"] == "too_many_in_flight"
        assert third.headers["retry-after"] == "1"
        other = await client.simulate_get(INCIDENTS, remote_addr="10.9.9.9")
        assert other.status_code == 200  # another client is not held up
        keyed = await client.simulate_get(INCIDENTS, remote_addr=LAN, headers=client.ingest)
        assert keyed.status_code in (200, 403)  # counted by its key, not the address
        assert [(await s).status_code for s in slow] == [200, 200]
        assert client.app_state.in_flight.counts == {}  # released, nothing kept
        assert (await client.simulate_get(INCIDENTS, remote_addr=LAN)).status_code == 200


async def test_one_slow_route_cannot_take_the_whole_pool(settings, db, slow_route):
    pool = dataclasses.replace(settings, pool_max_size=4, route_pool_share=0.5, pool_timeout=0.5)
    async with app_client(pool) as client:
        slow = [
            asyncio.create_task(
                client.simulate_get(
                    "/api/v1/slow", params={"seconds": "2"}, remote_addr=f"10.0.0.{n}"
                )
            )
            for n in range(1, 4)
        ]
        while pg.running(db, "slow") < 2:
            await asyncio.sleep(0.02)
        # Two calls hold the route's share; other routes still get connections.
        assert (await client.simulate_get(INCIDENTS)).status_code == 200
        results = [await s for s in slow]
        statuses = sorted(r.status_code for r in results)
        assert statuses == [200, 200, 503]  # the third waited POOL_TIMEOUT for a slot
        busy = next(r for r in results if r.status_code == 503)
        assert busy.json["error"]["code"] == "route_busy" and busy.headers["retry-after"]


# --- 7. reload NOTIFYs are coalesced; pools drain only when the schema changed ------


async def wait_for(condition, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


def connections_made(client) -> int:
    return client.app_state.require_pool().get_stats().get("connections_num", 0)


async def test_a_flood_of_reload_notifies_is_one_or_two_reloads_and_no_drain(client, db):
    state = client.app_state
    before, made = state.reloads, connections_made(client)
    # Any login may NOTIFY the channel: 300 at once, delivered together at commit.
    db.execute("select pg_notify('emberlog_reload', n::text) from generate_series(1, 300) as n")
    await wait_for(lambda: state.reloads > before)
    await asyncio.sleep(2.5)  # past RELOAD_EVERY: a coalesced second reload has run
    assert state.reloads - before <= 2
    assert (await client.simulate_get(INCIDENTS)).status_code == 200
    assert connections_made(client) == made  # the schema did not change: nothing drained


async def test_a_deploy_still_reloads_and_drains(client, database_url):
    from app.database import deploy

    state = client.app_state
    before, fingerprint, made = state.reloads, state.fingerprint, connections_made(client)
    deploy.apply_sql(database_url, "emberlog_reload")  # api re-created: new oids
    await wait_for(lambda: state.reloads > before and state.fingerprint != fingerprint)
    assert (await client.simulate_get(INCIDENTS)).status_code == 200
    assert connections_made(client) > made  # old connections were drained


# --- health never waits behind request traffic ----------------------------------------


async def test_readiness_answers_while_requests_hold_the_whole_pool(settings, db, slow_route):
    async with only_connection_held(settings, db, 1, pool_timeout=2) as (client, busy):
        ready = await client.simulate_get("/readyz")
        health = await client.simulate_get("/health")
        assert pg.running(db, "slow") == 1  # both answered while the pool was still busy
        assert ready.status_code == 200
        assert health.json["checks"]["database"]["status"] == "healthy"
        assert (await busy).status_code == 200


async def test_a_flood_of_probes_is_answered_from_one_check(client):
    first = (await client.simulate_get("/health")).json["checks"]["database"]
    for _ in range(50):  # probes are exempt from rate limits: they must not cost a query each
        again = (await client.simulate_get("/health")).json["checks"]["database"]
        if again != first:
            break  # a second passed: a new check, once
    probe = client.app_state.probes["database"]
    assert probe.answer is not None and probe.answer[1]["status"] == "healthy"
    assert again == first or again["response_time_ms"] != first["response_time_ms"]


async def test_a_slow_database_is_told_from_an_unreachable_one(settings, db):
    hurried = dataclasses.replace(settings, health_timeout=1e-6)  # no answer is that fast
    async with app_client(hurried) as client:
        client.app_state.probes.clear()
        slow = await client.simulate_get("/readyz")
        assert slow.status_code == 503
        assert "database not answering in time" in slow.json["error"]["message"]
        health = await client.simulate_get("/health")
        assert health.json["checks"]["database"]["error"] == "timeout"
    away = dataclasses.replace(
        settings, database_url="postgresql://emberlog_authenticator@127.0.0.1:1/none"
    )
    checks = await database_checks(AppState(away))  # nothing listens on port 1
    assert checks["database"] == {**checks["database"], "error": "unreachable"}


# --- the platform's documents with ANONYMOUS_READS=false ------------------------------


async def test_metrics_and_openapi_need_credentials_when_reads_do(settings, db):
    closed = dataclasses.replace(settings, anonymous_reads=False)
    async with app_client(closed) as client:
        for path in ("/metrics", "/openapi.json"):
            refused = await client.simulate_get(path)
            assert refused.status_code == 401, path
            assert refused.json["error"]["code"] == "credentials_required"
            assert (await client.simulate_get(path, headers=client.ingest)).status_code == 200
        assert (await client.simulate_get("/readyz")).status_code == 200  # probes stay open
