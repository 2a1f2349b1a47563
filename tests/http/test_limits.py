"""Rate limits per address and per credential, header limits, and the security headers
every response carries."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import jwt
import pytest

from app.environment import from_env
from app.http.clients import parse_networks
from app.http.limits import TokenBuckets, retry_after
from app.settings import SettingsError
from tests import pg
from tests.conftest import app_client
from tests.incidents import payload

LIST = "/api/v1/incidents"
STREAM = "/api/v1/sse/incidents"
SECRET = "s" * 40
SLOW = 0.001  # tokens a second: nothing refills while a test runs
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}


def limited(settings, **changes):
    """An app with only the limits a test names (both off unless given)."""
    base = {"rate_limit_per_address": 0.0, "rate_limit_per_key": 0.0}
    return app_client(dataclasses.replace(settings, **{**base, **changes}))


async def statuses(client, count: int, path: str = LIST, **kwargs) -> list[int]:
    return [(await client.simulate_get(path, **kwargs)).status_code for _ in range(count)]


def assert_rate_limited(result, limit: str) -> None:
    assert result.status_code == 429
    assert result.json["error"]["code"] == "rate_limited"
    assert result.json["error"]["details"]["limit"] == limit
    assert int(result.headers["retry-after"]) >= 1
    assert result.headers["x-request-id"]


async def test_over_the_burst_is_a_429_with_retry_after(settings, db):
    async with limited(settings, rate_limit_per_address=SLOW, rate_limit_burst=3) as client:
        assert await statuses(client, 3, remote_addr="203.0.113.7") == [200, 200, 200]
        origin = {"Origin": "https://web.example"}
        refused = await client.simulate_get(LIST, remote_addr="203.0.113.7", headers=origin)
    assert_rate_limited(refused, "address")
    assert refused.headers["access-control-allow-origin"] == "*"  # a browser may read it
    assert "Retry-After" in refused.headers["access-control-expose-headers"]
    assert int(refused.headers["retry-after"]) > 100  # one token takes 1000 s at this rate


async def test_each_address_has_its_own_bucket(settings, db):
    async with limited(settings, rate_limit_per_address=SLOW, rate_limit_burst=2) as client:
        assert await statuses(client, 3, remote_addr="203.0.113.1") == [200, 200, 429]
        assert await statuses(client, 2, remote_addr="203.0.113.2") == [200, 200]
        assert await statuses(client, 1, remote_addr="2001:db8::1") == [200]
        # No known address (no socket peer): not limited per address.
        assert await statuses(client, 5) == [200] * 5


async def test_x_forwarded_for_counts_only_from_trusted_proxies(settings, db):
    async with limited(settings, rate_limit_per_address=SLOW, rate_limit_burst=2) as client:
        forged = [{"X-Forwarded-For": f"198.51.100.{n}"} for n in range(3)]
        results = [
            await client.simulate_get(LIST, remote_addr="203.0.113.9", headers=h) for h in forged
        ]
        assert [r.status_code for r in results] == [200, 200, 429]  # the peer's bucket
    trusted = parse_networks("10.0.0.0/8")
    async with limited(
        settings, rate_limit_per_address=SLOW, rate_limit_burst=2, trusted_proxies=trusted
    ) as client:

        async def via_proxy(client_ip: str) -> int:
            headers = {"X-Forwarded-For": f"{client_ip}, 10.0.0.2"}
            result = await client.simulate_get(LIST, remote_addr="10.0.0.1", headers=headers)
            return result.status_code

        assert [await via_proxy("198.51.100.1") for _ in range(3)] == [200, 200, 429]
        assert [await via_proxy("198.51.100.2") for _ in range(2)] == [200, 200]


async def test_a_key_is_limited_whatever_its_address(settings, db):
    other = {"X-API-Key": pg.issue_key(db)}
    async with limited(settings, rate_limit_per_key=SLOW, rate_limit_key_burst=2) as client:

        async def post(headers, n: int):
            addr = f"203.0.113.{n}"
            return await client.simulate_post(
                LIST, json=payload(), headers=headers, remote_addr=addr
            )

        assert [(await post(client.ingest, n)).status_code for n in range(2)] == [201, 201]
        refused = await post(client.ingest, 3)
        assert_rate_limited(refused, "credential")
        assert (await post(other, 4)).status_code == 201  # another key, its own bucket
        assert await statuses(client, 4) == [200] * 4  # anonymous: the address limit's job
    assert db.execute("select count(*) from data.incidents").fetchone()[0] == 3


async def test_tokens_of_one_subject_share_a_bucket(settings, db):
    def bearer(**claims) -> dict[str, str]:
        body = {"exp": int(time.time()) + 60, "role": "emberlog_anon", **claims}
        return {"Authorization": f"Bearer {jwt.encode(body, SECRET, algorithm='HS256')}"}

    changes = {"rate_limit_per_key": SLOW, "rate_limit_key_burst": 2, "jwt_secret": SECRET}
    async with limited(settings, **changes) as client:
        first, second = bearer(sub="ann", n=1), bearer(sub="ann", n=2)
        assert await statuses(client, 2, headers=first) == [200, 200]
        assert_rate_limited(await client.simulate_get(LIST, headers=second), "credential")
        assert await statuses(client, 2, headers=bearer(sub="bob")) == [200, 200]


async def test_probes_metrics_and_preflights_are_never_limited(settings, db):
    address = {"remote_addr": "203.0.113.5"}
    async with limited(settings, rate_limit_per_address=SLOW, rate_limit_burst=1) as client:
        assert await statuses(client, 2, LIST, **address) == [200, 429]
        for path in ("/healthz", "/readyz", "/health", "/api/v1/health", "/metrics"):
            assert await statuses(client, 3, path, **address) == [200] * 3, path
        preflight = {"Origin": "https://x.example", "Access-Control-Request-Method": "POST"}
        for _ in range(3):
            result = await client.simulate_options(LIST, headers=preflight, **address)
            assert result.status_code < 400


async def test_the_bucket_refills(settings, db):
    rate = 5.0  # one token every 0.2 s
    async with limited(settings, rate_limit_per_address=rate, rate_limit_burst=1) as client:
        got = await statuses(client, 50, "/nowhere", remote_addr="203.0.113.8")
        assert got[0] == 404 and 429 in got  # the first refusal comes well within 0.2 s
        await asyncio.sleep(1.5 / rate)  # a refused request takes nothing: one token is back
        assert await statuses(client, 1, "/nowhere", remote_addr="203.0.113.8") == [404]


async def test_a_stream_counts_once_at_connect(settings, db):
    async with limited(settings, rate_limit_per_address=SLOW, rate_limit_burst=2) as client:
        stream = client.simulate_get_stream(STREAM, remote_addr="203.0.113.6")
        async with stream as sr:
            assert sr.status_code == 200
            await asyncio.sleep(0.05)
            assert await statuses(client, 2, remote_addr="203.0.113.6") == [200, 429]


async def test_security_headers_on_every_kind_of_response(settings, db):
    async with limited(settings, rate_limit_per_address=SLOW, rate_limit_burst=1) as client:
        results = {
            "200": await client.simulate_get(LIST),
            "201": await client.simulate_post(LIST, json=payload(), headers=client.ingest),
            "401": await client.simulate_post(LIST, json=payload()),
            "404": await client.simulate_get("/nowhere"),
            "405": await client.simulate_delete(LIST, headers=client.ingest),
            "healthz": await client.simulate_get("/healthz"),
            "metrics": await client.simulate_get("/metrics"),
            "options": await client.simulate_options(LIST),
            "431": await client.simulate_get(LIST, headers={"X-Big": "x" * 20_000}),
        }
        await client.simulate_get("/nowhere", remote_addr="203.0.113.4")
        results["429"] = await client.simulate_get("/nowhere", remote_addr="203.0.113.4")
        async with client.simulate_get_stream(STREAM) as sr:
            stream_headers = sr.headers
            assert sr.status_code == 200
            assert sr.headers["content-type"] == "text/event-stream"
    for name, result in {**results, "stream": stream_headers}.items():
        headers = result if name == "stream" else result.headers
        for header, value in SECURITY_HEADERS.items():
            assert headers.get(header) == value, (name, header)
        assert "server" not in headers, name
    assert {name: result.status_code for name, result in results.items()} == {
        "200": 200,
        "201": 201,
        "401": 401,
        "404": 404,
        "405": 405,
        "healthz": 200,
        "metrics": 200,
        "options": 204,
        "431": 431,
        "429": 429,
    }


@pytest.mark.parametrize(
    "headers",
    [{"X-Big": "x" * 17_000}, {f"X-H{n}": "1" for n in range(101)}],
    ids=["too-large", "too-many"],
)
async def test_oversized_headers_are_a_431(client, headers):
    result = await client.simulate_get("/healthz", headers=headers)
    assert result.status_code == 431
    assert result.json["error"]["code"] == "headers_too_large"
    assert result.json["error"]["details"] == {"max_headers": 100, "max_header_bytes": 16384}


async def test_headers_within_the_limits_pass(client):
    headers = {f"X-H{n}": "y" * 100 for n in range(90)}
    assert (await client.simulate_get(LIST, headers=headers)).status_code == 200


def test_buckets_refill_and_stay_bounded():
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=2, max_buckets=100, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(2)] == [0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    now[0] += 0.5
    assert buckets.take("a") == 0.0
    for n in range(1000):  # many clients, one request each, 1 ms apart
        now[0] += 0.001
        buckets.take(n)
    assert len(buckets) <= 100
    now[0] += 10  # all full again: a new client finds nothing left to keep
    buckets.take("new")
    assert len(buckets) == 1


def test_retry_after_is_whole_seconds_at_least_one():
    assert [retry_after(w) for w in (0.001, 1.0, 1.2, 59.9)] == ["1", "1", "2", "60"]


def test_settings_from_env():
    defaults = from_env({})
    assert (defaults.rate_limit_per_address, defaults.rate_limit_burst) == (50.0, 100)
    assert (defaults.rate_limit_per_key, defaults.rate_limit_key_burst) == (100.0, 200)
    assert (defaults.max_header_bytes, defaults.max_headers) == (16384, 100)
    given = from_env(
        {
            "RATE_LIMIT_PER_ADDRESS": "0",
            "RATE_LIMIT_BURST": "5",
            "RATE_LIMIT_PER_KEY": "2.5",
            "RATE_LIMIT_KEY_BURST": "7",
            "MAX_HEADER_BYTES": "8192",
            "MAX_HEADERS": "50",
        }
    )
    assert (given.rate_limit_per_address, given.rate_limit_burst) == (0.0, 5)
    assert (given.rate_limit_per_key, given.rate_limit_key_burst) == (2.5, 7)
    assert (given.max_header_bytes, given.max_headers) == (8192, 50)


@pytest.mark.parametrize(
    "env",
    [
        {"RATE_LIMIT_PER_ADDRESS": "-1"},
        {"RATE_LIMIT_PER_KEY": "lots"},
        {"RATE_LIMIT_PER_KEY": "inf"},
        {"RATE_LIMIT_PER_ADDRESS": "nan"},
        {"RATE_LIMIT_BURST": "0"},
        {"RATE_LIMIT_KEY_BURST": "1.5"},
        {"MAX_HEADER_BYTES": "100"},
        {"MAX_HEADERS": "0"},
    ],
)
def test_bad_limit_settings_are_refused(env):
    with pytest.raises(SettingsError):
        from_env(env)
