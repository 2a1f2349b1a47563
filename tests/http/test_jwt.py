"""JWT the PostgREST way: the token's role decides, every claim reaches SQL, and every
kind of bad token is a 401 with WWW-Authenticate."""

from __future__ import annotations

import dataclasses
import json
import logging
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import app_client
from tests.incidents import payload

SECRET = "s" * 40
WHOAMI = """create function api.whoami() returns json language sql stable
    as $$ select current_setting('request.jwt.claims', true)::json $$"""


def token(claims=None, key=SECRET, algorithm="HS256", **headers) -> str:
    body = {"exp": int(time.time()) + 60, **(claims or {})}
    return jwt.encode(body, key, algorithm=algorithm, headers=headers or None)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def whoami(db):
    db.execute(WHOAMI)
    db.execute("comment on function api.whoami() is '@http GET /api/v1/whoami'")
    db.execute("grant execute on function api.whoami() to emberlog_anon, emberlog_ingest")
    yield
    db.execute("drop function api.whoami()")


@pytest.fixture
async def client(settings, db, whoami):
    settings = dataclasses.replace(settings, jwt_secret=SECRET, jwt_audience=None)
    async with app_client(settings) as conductor:
        yield conductor


async def test_each_role_acts_as_itself_with_its_claims_in_sql(client):
    ingest = bearer(token({"role": "emberlog_ingest", "sub": "calypso", "team": "dispatch"}))
    created = await client.simulate_post("/api/v1/incidents", json=payload(), headers=ingest)
    assert created.status_code == 201
    claims = (await client.simulate_get("/api/v1/whoami", headers=ingest)).json
    assert claims["role"] == "emberlog_ingest" and claims["team"] == "dispatch"
    denied = await client.simulate_get("/api/v1/incidents", headers=ingest)
    assert denied.status_code == 403  # authenticated: forbidden, not unauthorized
    anon = bearer(token({"role": "emberlog_anon"}))
    assert (await client.simulate_get("/api/v1/incidents", headers=anon)).status_code == 200
    no_role = bearer(token({"sub": "someone"}))
    claims = (await client.simulate_get("/api/v1/whoami", headers=no_role)).json
    assert claims["role"] == "emberlog_anon" and claims["sub"] == "someone"


def bad_tokens() -> dict[str, str]:
    good = token({"role": "emberlog_ingest"})
    header, _body, signature = good.split(".")
    tampered_body = jwt.utils.base64url_encode(
        json.dumps({"role": "emberlog_ingest", "exp": 9999999999, "admin": True}).encode()
    ).decode()
    return {
        "expired": token({"role": "emberlog_ingest", "exp": int(time.time()) - 3600}),
        "not yet valid": token({"role": "emberlog_ingest", "nbf": int(time.time()) + 3600}),
        "issued in the future": token({"role": "emberlog_ingest", "iat": int(time.time()) + 3600}),
        "wrong secret": token({"role": "emberlog_ingest"}, key="x" * 40),
        "alg none": jwt.encode({"role": "emberlog_ingest"}, None, algorithm="none"),
        "wrong algorithm": token({"role": "emberlog_ingest"}, key=SECRET * 2, algorithm="HS512"),
        "tampered": f"{header}.{tampered_body}.{signature}",
        "garbage": "not.a.token",
        "unknown role": token({"role": "postgres"}),
        "the authenticator itself": token({"role": "emberlog_authenticator"}),
        "role not a string": token({"role": ["emberlog_ingest"]}),
    }


@pytest.mark.parametrize("case", list(bad_tokens()))
async def test_bad_tokens_are_a_401_and_write_nothing(client, db, case):
    value = bad_tokens()[case]
    before = db.execute("select count(*) from data.incidents").fetchone()[0]
    for method in ("GET", "POST"):
        result = await client.simulate_request(
            method, "/api/v1/incidents", json=payload(), headers=bearer(value)
        )
        assert result.status_code == 401, (case, result.text)
        assert result.json["error"]["code"] == "invalid_token"
        assert result.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
        assert value not in result.text
    assert db.execute("select count(*) from data.incidents").fetchone()[0] == before


async def test_other_authorization_schemes_are_refused(client):
    result = await client.simulate_get("/api/v1/incidents", headers={"Authorization": "Basic eDp5"})
    assert result.status_code == 401


async def test_the_audience_is_checked_when_configured(settings, db, whoami):
    settings = dataclasses.replace(settings, jwt_secret=SECRET, jwt_audience="emberlog")
    async with app_client(settings) as client:
        right = bearer(token({"aud": "emberlog"}))
        wrong = bearer(token({"aud": "elsewhere"}))
        missing = bearer(token())
        assert (await client.simulate_get("/api/v1/whoami", headers=right)).status_code == 200
        for headers in (wrong, missing):
            refused = await client.simulate_get("/api/v1/whoami", headers=headers)
            assert refused.status_code == 401


def pem(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize("kind", ["RS256", "ES256"])
async def test_public_key_tokens(settings, db, whoami, tmp_path, kind):
    private = (
        rsa.generate_private_key(65537, 2048)
        if kind == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    path = tmp_path / "key.pem"
    path.write_bytes(pem(private.public_key()))
    settings = dataclasses.replace(settings, jwt_public_key_file=path)
    async with app_client(settings) as client:
        good = bearer(token({"role": "emberlog_ingest"}, key=private, algorithm=kind))
        claims = (await client.simulate_get("/api/v1/whoami", headers=good)).json
        assert claims["role"] == "emberlog_ingest"
        other = (
            rsa.generate_private_key(65537, 2048)
            if kind == "RS256"
            else ec.generate_private_key(ec.SECP256R1())
        )
        forged = bearer(token({"role": "emberlog_ingest"}, key=other, algorithm=kind))
        assert (await client.simulate_get("/api/v1/whoami", headers=forged)).status_code == 401
        hs = bearer(token({"role": "emberlog_ingest"}))  # HS256 is not configured here
        assert (await client.simulate_get("/api/v1/whoami", headers=hs)).status_code == 401


async def test_jwks_tokens_are_chosen_by_kid(settings, db, whoami, tmp_path):
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    (tmp_path / "jwks.json").write_text(
        json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "ES256"}]})
    )
    settings = dataclasses.replace(settings, jwt_jwks_file=tmp_path / "jwks.json")
    async with app_client(settings) as client:
        good = bearer(token({"role": "emberlog_ingest"}, key=private, algorithm="ES256", kid="k1"))
        assert (await client.simulate_get("/api/v1/whoami", headers=good)).json["role"] == (
            "emberlog_ingest"
        )
        unknown = bearer(token({}, key=private, algorithm="ES256", kid="k2"))
        assert (await client.simulate_get("/api/v1/whoami", headers=unknown)).status_code == 401


async def test_a_cookie_token_authenticates_reads_and_streams_never_writes(client, db):
    value = token({"role": "emberlog_ingest"})
    cookie = {"Cookie": f"emberlog_token={value}"}
    read = await client.simulate_get("/api/v1/whoami", headers=cookie)
    assert read.json["role"] == "emberlog_ingest"
    write = await client.simulate_post("/api/v1/incidents", json=payload(), headers=cookie)
    assert write.status_code == 401  # the cookie is ignored: an anonymous write
    assert db.execute("select count(*) from data.incidents").fetchone()[0] == 0
    bad = {"Cookie": "emberlog_token=forged.token.value"}
    async with client.simulate_get_stream("/api/v1/sse/incidents", headers=bad) as sr:
        assert sr.status_code == 401
    reader = {"Cookie": f"emberlog_token={token({'role': 'emberlog_anon'})}"}
    async with client.simulate_get_stream("/api/v1/sse/incidents", headers=reader) as sr:
        await sr.stream.read()
        assert sr.status_code == 200
    # The ingest role may not read the stream function: told so, not an empty stream.
    async with client.simulate_get_stream("/api/v1/sse/incidents", headers=cookie) as sr:
        await sr.stream.read()
        assert sr.status_code == 403


async def test_tokens_are_refused_when_jwt_is_not_configured(settings, db):
    async with app_client(settings) as client:
        result = await client.simulate_get("/api/v1/incidents", headers=bearer(token()))
        assert result.status_code == 401
        assert "not configured" in result.json["error"]["message"]


async def test_tokens_and_cookies_never_reach_logs_or_error_bodies(client, caplog):
    caplog.set_level(logging.DEBUG)
    good = token({"role": "emberlog_anon", "sub": "someone"})
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    answers = [
        await client.simulate_get("/api/v1/whoami", headers=bearer(good)),
        await client.simulate_get("/api/v1/whoami", headers=bearer(forged)),
        await client.simulate_get("/api/v1/whoami", headers={"Cookie": f"emberlog_token={forged}"}),
        await client.simulate_post("/api/v1/incidents", json={}, headers=bearer(forged)),
    ]
    assert [a.status_code for a in answers] == [200, 401, 401, 401]
    for secret in (good, forged, good.split(".")[2], forged.split(".")[2]):
        assert secret not in caplog.text
        assert all(secret not in a.text for a in answers)
