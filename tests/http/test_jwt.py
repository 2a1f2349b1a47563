"""JWT the PostgREST way: the token's role decides, every claim reaches SQL, and every
kind of bad token is a 401 with WWW-Authenticate."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import re
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


def b64(data: bytes) -> str:
    return jwt.utils.base64url_encode(data).decode()


def forged(header: dict | bytes, claims=None) -> str:
    """A token with any header at all (JSON or raw bytes), HS256-signed with SECRET: the
    signature is right, whatever the header says."""
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    body = json.dumps({"role": "emberlog_ingest", "exp": int(time.time()) + 60, **(claims or {})})
    signing_input = f"{b64(head)}.{b64(body.encode())}"
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


# RFC 6750: error_description is %x20-21 / %x23-5B / %x5D-7E, quoted.
CHALLENGE = re.compile(
    r'Bearer error="invalid_token", error_description="[\x20\x21\x23-\x5b\x5d-\x7e]*"'
)


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
        # Malformed: each a 401, never a 500, and nothing of it echoed into a header.
        "non-ASCII alg": forged({"alg": "HS256\u2603", "typ": "JWT"}),
        "latin-1 alg": forged({"alg": "HS256\u00e9"}),
        "alg with a quote and a line break": forged({"alg": 'HS256"\r\nSet-Cookie: a=b'}),
        "alg not a string": forged({"alg": ["HS256"]}),
        "no alg": forged({"typ": "JWT"}),
        "kid not a string": forged({"alg": "HS256", "kid": 7}),
        "header not an object": forged(b'["HS256"]'),
        "header not JSON": forged(b"\xff\xfe{"),
        "header not UTF-8 JSON": forged('{"alg": "HS256\u00e9"}'.encode("latin-1")),
        "huge header": forged({"alg": "HS256", "pad": "x" * 6000}),
        "bad base64": "e30!.e30.c2ln",
        "non-ASCII token": token({"role": "emberlog_ingest"}) + "\u00e9",
        "one segment": "abc",
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
        assert CHALLENGE.fullmatch(result.headers["www-authenticate"]), result.headers
        assert value not in result.text
        assert "send" in result.json["error"]["message"]  # what to send instead
    assert db.execute("select count(*) from data.incidents").fetchone()[0] == before


@pytest.mark.parametrize(
    ("alg", "named"),
    [
        ("HS512", "tokens signed with HS512 are not accepted"),
        ("none", "tokens signed with none are not accepted"),
        ("HS256\u2603", "tokens signed with an unsupported algorithm are not accepted"),
        ('x"y', "tokens signed with an unsupported algorithm are not accepted"),
        ("A" * 40, "tokens signed with an unsupported algorithm are not accepted"),
    ],
)
async def test_the_message_names_only_a_plain_algorithm_and_the_header_none(client, alg, named):
    result = await client.simulate_get("/api/v1/incidents", headers=bearer(forged({"alg": alg})))
    assert result.status_code == 401
    message = result.json["error"]["message"]
    assert message == f"{named}: send a token signed with HS256", message
    challenge = result.headers["www-authenticate"]
    assert challenge == (
        'Bearer error="invalid_token", error_description="the token\'s algorithm is not accepted"'
    )


async def test_other_authorization_schemes_are_refused(client):
    result = await client.simulate_get("/api/v1/incidents", headers={"Authorization": "Basic eDp5"})
    assert result.status_code == 401
    assert result.json["error"]["message"] == (
        "only Bearer tokens are accepted in Authorization:"
        " send Authorization: Bearer <token>, or an API key in X-API-Key"
    )


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        (
            {"exp": int(time.time()) - 3600},
            "the token has expired: send a fresh one in Authorization: Bearer <token>",
        ),
        (
            {"role": "postgres"},
            "the token's role is not one this API may act as:"
            " send a token whose role claim names a role this API may act as",
        ),
    ],
)
async def test_a_401_says_what_to_send_instead(client, claims, message):
    result = await client.simulate_get("/api/v1/incidents", headers=bearer(token(claims)))
    assert result.status_code == 401
    assert result.json["error"]["message"] == message


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


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def jwks(*entries: tuple[str, object]) -> str:
    """A JWKS of (kid, private key) pairs: their public halves, RS256."""
    keys = [
        {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(k.public_key())), "kid": kid}
        for kid, k in entries
    ]
    return json.dumps({"keys": keys})


async def test_a_key_rotated_out_of_the_jwks_is_refused_though_still_the_file_key(
    settings, db, whoami, tmp_path
):
    """The review's case: JWT_PUBLIC_KEY_FILE still holds the old key (nobody changed
    it), the JWKS lists only the new one. A token naming the old key's kid used to be
    verified with the file key and accepted; the kid binds it to the JWKS now."""
    old, new = rsa_key(), rsa_key()
    (tmp_path / "old.pem").write_bytes(pem(old.public_key()))
    (tmp_path / "jwks.json").write_text(jwks(("2026-07", new)))  # "2026-01" rotated out
    settings = dataclasses.replace(
        settings,
        jwt_secret=SECRET,
        jwt_audience=None,
        jwt_public_key_file=tmp_path / "old.pem",
        jwt_jwks_file=tmp_path / "jwks.json",
    )
    ingest = {"role": "emberlog_ingest"}
    async with app_client(settings) as client:

        async def whoami_as(value: str):
            return await client.simulate_get("/api/v1/whoami", headers=bearer(value))

        rotated_out = await whoami_as(token(ingest, old, "RS256", kid="2026-01"))
        assert rotated_out.status_code == 401
        assert rotated_out.json["error"]["message"] == (
            "the token's key is not known (kid): send a token signed with a current key of the JWKS"
        )
        assert (
            'error_description="the token\'s key is not known (kid)"'
            in (rotated_out.headers["www-authenticate"])
        )
        current = await whoami_as(token(ingest, new, "RS256", kid="2026-07"))
        assert current.status_code == 200 and current.json["role"] == "emberlog_ingest"
        without_kid = await whoami_as(token(ingest, old, "RS256"))  # the file key's
        assert without_kid.status_code == 200 and without_kid.json["role"] == "emberlog_ingest"
        hs256 = await whoami_as(token(ingest))  # JWT_SECRET, no kid
        assert hs256.status_code == 200
        refused = {
            # The JWKS key is used only when named: without a kid, the file key decides.
            "new key, no kid": token(ingest, new, "RS256"),
            "old key, new kid": token(ingest, old, "RS256", kid="2026-07"),
            # A kid's key decides the algorithm: no HS256 with the JWKS's RSA key's kid
            # (signed with JWT_SECRET, which would pass were the kid ignored).
            "HS256 naming an RSA kid": token(ingest, kid="2026-07"),
            "RS512 naming an RS256 kid": token(ingest, new, "RS512", kid="2026-07"),
        }
        for case, value in refused.items():
            result = await whoami_as(value)
            assert result.status_code == 401, case
            assert result.json["error"]["code"] == "invalid_token", case


async def test_with_only_a_jwks_a_token_must_name_its_key(settings, db, whoami, tmp_path):
    key = rsa_key()
    (tmp_path / "jwks.json").write_text(jwks(("k1", key)))
    settings = dataclasses.replace(settings, jwt_jwks_file=tmp_path / "jwks.json")
    async with app_client(settings) as client:
        value = token({"role": "emberlog_ingest"}, key, "RS256")
        result = await client.simulate_get("/api/v1/whoami", headers=bearer(value))
        assert result.status_code == 401
        assert result.json["error"]["message"] == (
            "the token names no key (kid): send a token that names its JWKS key in kid"
        )


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
