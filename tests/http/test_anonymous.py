"""Requests without credentials: anonymous reads, no anonymous writes, the opt-in
internal-only model (TRUSTED_NETWORKS, X-Forwarded-For only from
TRUSTED_PROXIES), and ANONYMOUS_READS=false."""

from __future__ import annotations

import dataclasses

import pytest

from app.environment import from_env
from app.http.clients import parse_networks
from app.settings import SettingsError
from tests.conftest import app_client
from tests.incidents import payload

CALYPSO = {"Content-Type": "application/json", "X-API-Key": ""}  # what it sends today
INCIDENTS = "/api/v1/incidents"


def stored(db) -> int:
    return db.execute("select count(*) from data.incidents").fetchone()[0]


async def test_anonymous_reads_are_allowed_and_writes_are_a_401(client, db):
    assert (await client.simulate_get(INCIDENTS)).status_code == 200
    for headers in ({}, CALYPSO, {"X-API-Key": "   "}):
        refused = await client.simulate_post(INCIDENTS, json=payload(), headers=headers)
        assert refused.status_code == 401
        assert refused.json["error"]["code"] == "credentials_required"
        assert "X-API-Key" in refused.json["error"]["message"]  # what to send, not a grant
        assert "sqlstate" not in refused.json["error"]["details"]
        assert refused.headers["www-authenticate"] == 'ApiKey realm="emberlog"'
    assert stored(db) == 0


@pytest.fixture
async def internal(settings, db):
    """The internal-only model: 10.0.0.0/8 may write without a key; 192.0.2.1 is a proxy."""
    trusting = dataclasses.replace(
        settings,
        trusted_networks=parse_networks("10.0.0.0/8, fd00::/8"),
        trusted_proxies=parse_networks("192.0.2.1"),
    )
    async with app_client(trusting) as conductor:
        yield conductor


async def post_from(client, address: str, forwarded_for: str | None = None):
    headers = dict(CALYPSO)
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return await client.simulate_post(
        INCIDENTS, json=payload(), headers=headers, remote_addr=address
    )


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "status"),
    [
        ("10.1.2.3", None, 201),
        ("::ffff:10.1.2.3", None, 201),  # IPv4-mapped
        ("fd00::7", None, 201),
        ("203.0.113.9", None, 401),
        ("203.0.113.9", "10.1.2.3", 401),  # not from a trusted proxy: ignored
        ("10.1.2.3", "203.0.113.9", 201),  # nor from a trusted network that is no proxy
        ("192.0.2.1", "10.1.2.3", 201),  # a trusted proxy saw the client
        ("192.0.2.1", "203.0.113.9", 401),
        ("192.0.2.1", "10.9.9.9, 203.0.113.9", 401),  # a client's own header is not believed
        ("192.0.2.1", "203.0.113.9, 10.1.2.3", 201),
        ("192.0.2.1", "10.1.2.3, 192.0.2.1", 201),  # proxies in the chain are skipped
        ("192.0.2.1", "not-an-address", 401),  # unreadable: the client is unknown
        ("192.0.2.1", "", 401),  # the proxy's own address is not in the networks
    ],
)
async def test_trusted_networks_write_without_a_key(internal, db, peer, forwarded_for, status):
    result = await post_from(internal, peer, forwarded_for)
    assert result.status_code == status, result.text
    assert stored(db) == (1 if status == 201 else 0)


async def test_a_trusted_network_reads_as_everyone_does(internal, db):
    created = await post_from(internal, "10.1.2.3")
    assert created.status_code == 201
    read = await internal.simulate_get(INCIDENTS, remote_addr="10.1.2.3")
    assert read.status_code == 200  # anonymous: the ingest role itself may not read
    assert [i["id"] for i in read.json["items"]] == [created.json["id"]]


async def test_a_bad_key_from_a_trusted_network_is_still_a_401(internal, db):
    result = await internal.simulate_post(
        INCIDENTS, json=payload(), headers={"X-API-Key": "emb_nope"}, remote_addr="10.1.2.3"
    )
    assert result.status_code == 401 and result.json["error"]["code"] == "invalid_api_key"
    assert stored(db) == 0


async def test_without_anonymous_reads_every_route_needs_credentials(settings, db):
    closed = dataclasses.replace(settings, anonymous_reads=False)
    async with app_client(closed) as client:
        for path in (INCIDENTS, f"{INCIDENTS}/1", "/api/v1/sse/incidents", "/metrics"):
            refused = await client.simulate_get(path)
            assert refused.status_code == 401, path
            assert refused.json["error"]["code"] == "credentials_required"
            assert refused.headers["www-authenticate"].startswith("ApiKey")
        reader_key = {"X-API-Key": client.ingest["X-API-Key"]}
        created = await client.simulate_post(INCIDENTS, json=payload(), headers=reader_key)
        assert created.status_code == 201
        for path in ("/healthz", "/readyz"):  # probes stay open
            assert (await client.simulate_get(path)).status_code == 200, path


def test_network_settings_are_checked_at_start():
    parsed = from_env({"TRUSTED_NETWORKS": "10.0.0.0/8, 192.168.1.7", "TRUSTED_PROXIES": ""})
    assert [str(n) for n in parsed.trusted_networks] == ["10.0.0.0/8", "192.168.1.7/32"]
    assert parsed.trusted_proxies == () and parsed.anonymous_reads is True
    assert from_env({"ANONYMOUS_READS": "false"}).anonymous_reads is False
    for env in (
        {"TRUSTED_NETWORKS": "10.0.0.1/8"},  # host bits set: a typo, not a network
        {"TRUSTED_PROXIES": "proxy.internal"},
        {"ANONYMOUS_READS": "maybe"},
    ):
        with pytest.raises(SettingsError):
            from_env(env)
