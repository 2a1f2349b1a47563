"""Properties of token handling, over many generated tokens sent to the in-process app:
whatever a client puts in ``Authorization: Bearer`` or the token cookie (any text,
any header JSON, any bytes as a header, right signatures or wrong), the answer is
never a 5xx; a 401 is ``invalid_token`` in the one error shape, and its
WWW-Authenticate carries only characters RFC 6750 allows in error_description
(%x20-21 / %x23-5B / %x5D-7E), so nothing of the token reaches a header.

Hypothesis runs as in test_properties.py (see its docstring): async ``@given`` tests
on the ``client`` fixture's loop, derandomized, no example database, no deadline.

The app here accepts HS256 with SECRET and a JWKS with one EC key (kid "k1"), so both
ways of choosing a key (by ``alg``, and by ``kid``) meet the generated headers. The
generated signatures are HMACs with SECRET, right for any header: a header naming
HS256 and no kid gets past the signature, and then its claims decide.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
import string
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import event, example, given
from hypothesis import strategies as st

from app.auth.tokens import MAX_HEADER_CHARS
from tests.conftest import app_client
from tests.properties import through_the_app

SECRET = "s" * 40
LIST = "/api/v1/incidents"
PROPERTY = through_the_app(max_examples=80)
CHALLENGE = re.compile(
    r'Bearer error="invalid_token", error_description="[\x20\x21\x23-\x5b\x5d-\x7e]*"'
)
ERROR_FIELDS = {"code", "message", "details"}

# What an HTTP header value can carry to the app (Falcon decodes it as latin-1):
# printable ASCII and obs-text, no control characters.
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
)
BASE64URL = string.ascii_letters + string.digits + "-_"
SEGMENTS = st.lists(st.text(alphabet=BASE64URL + "=+/!", max_size=40), min_size=1, max_size=5)

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
ALGORITHMS = (
    st.sampled_from(["HS256", "HS384", "HS512", "RS256", "ES256", "PS256", "EdDSA", "none", ""])
    | st.text()
    | JSON_VALUES
)
KIDS = st.sampled_from(["k1", "k2", ""]) | st.text() | JSON_VALUES
HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "alg": ALGORITHMS,
        "kid": KIDS,
        "typ": JSON_VALUES,
        "crit": JSON_VALUES,
        "b64": JSON_VALUES,  # false: RFC 7797's unencoded payload
    },
)
CLAIMS = st.fixed_dictionaries(
    {},
    optional={
        "role": st.sampled_from(["emberlog_anon", "emberlog_ingest", "postgres"]) | JSON_VALUES,
        "exp": st.integers() | JSON_VALUES,
        "nbf": st.integers() | JSON_VALUES,
        "iat": st.integers() | JSON_VALUES,
        "aud": JSON_VALUES,
        "sub": JSON_VALUES,
    },
)


def b64(data: bytes) -> str:
    return jwt.utils.base64url_encode(data).decode()


def signed(header: bytes, claims: bytes) -> str:
    """header.claims.signature, the signature an HS256 HMAC with SECRET."""
    signing_input = f"{b64(header)}.{b64(claims)}"
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def encoded(value: object, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode()


@pytest.fixture
async def client(settings, db, tmp_path):
    """HS256 and a one-key JWKS, without rate limits (hundreds of requests a second)."""
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1"}]}))
    settings = dataclasses.replace(
        settings,
        jwt_secret=SECRET,
        jwt_audience=None,
        jwt_jwks_file=tmp_path / "jwks.json",
        rate_limit_per_address=0.0,
        rate_limit_per_key=0.0,
    )
    async with app_client(settings) as conductor:
        yield conductor


def assert_refusal_is_clean(result, token: str, named: object = None) -> None:
    """A 401 in the one shape, its challenge only of allowed characters, nothing of the
    token echoed but a plain algorithm name."""
    assert result.status_code == 401, (token, result.status_code, result.text)
    error = result.json["error"]
    assert set(error) == ERROR_FIELDS and error["code"] == "invalid_token", result.text
    assert "send" in error["message"], error  # says what to send instead
    assert CHALLENGE.fullmatch(result.headers["www-authenticate"]), result.headers
    if isinstance(named, str) and not named.isascii():
        assert named not in error["message"], error


@PROPERTY
@given(value=HEADER_TEXT)
@example(value="")
@example(value="a.b.c")
@example(value="\u00e9.\u00e9.\u00e9")
@example(value="..")
@example(value="e30.e30.")
async def test_any_text_as_a_bearer_token_is_a_clean_401(client, value):
    result = await client.simulate_get(LIST, headers={"Authorization": f"Bearer {value}"})
    assert_refusal_is_clean(result, value)


@PROPERTY
@given(segments=SEGMENTS)
async def test_any_base64ish_segments_are_a_clean_401(client, segments):
    value = ".".join(segments)
    result = await client.simulate_get(LIST, headers={"Authorization": f"Bearer {value}"})
    assert_refusal_is_clean(result, value)


@PROPERTY
@given(header=st.binary(max_size=64) | HEADER_TEXT.map(str.encode), claims=CLAIMS)
@example(header=b'["HS256"]', claims={})
@example(header=b'{"alg": "HS256", "alg": 1}', claims={})
@example(header=b"[" * 5000 + b"]" * 5000, claims={})
@example(header=b'{"alg": "HS256"}\xff', claims={})
async def test_any_bytes_as_the_header_are_a_clean_401(client, header, claims):
    value = signed(header, json.dumps(claims).encode())
    result = await client.simulate_get(LIST, headers={"Authorization": f"Bearer {value}"})
    assert_refusal_is_clean(result, value)


@PROPERTY
@given(header=HEADERS, claims=CLAIMS, ascii_only=st.booleans(), cookie=st.booleans())
@example(header={"alg": "HS256\u2603"}, claims={}, ascii_only=True, cookie=False)
@example(header={"alg": "HS256\u2603"}, claims={}, ascii_only=False, cookie=True)
@example(header={"alg": 'HS256"\r\n'}, claims={}, ascii_only=True, cookie=False)
@example(header={"alg": "ES256", "kid": "k1"}, claims={}, ascii_only=True, cookie=False)
@example(header={"alg": "HS256", "kid": "k1"}, claims={}, ascii_only=True, cookie=False)
@example(header={"alg": "HS256", "kid": ["k1"]}, claims={}, ascii_only=True, cookie=False)
@example(
    header={"alg": "HS256", "x": "y" * MAX_HEADER_CHARS}, claims={}, ascii_only=True, cookie=False
)
@example(header={"alg": "HS256"}, claims={"exp": 10**400}, ascii_only=True, cookie=False)
@example(header={"alg": "HS256"}, claims={"role": "postgres"}, ascii_only=True, cookie=False)
async def test_any_header_json_is_answered_never_a_5xx(client, header, claims, ascii_only, cookie):
    """A right signature over any header: only HS256 without a kid may get through (and
    then its claims decide); everything else is a clean 401."""
    value = signed(encoded(header, ascii_only), encoded(claims, ascii_only))
    if cookie:
        result = await client.simulate_get(LIST, headers={"Cookie": f"emberlog_token={value}"})
    else:
        result = await client.simulate_get(LIST, headers={"Authorization": f"Bearer {value}"})
    assert result.status_code < 500, (header, claims, result.text)
    event(f"status {result.status_code}")  # --hypothesis-show-statistics: the mix
    may_pass = (
        header.get("alg") == "HS256"
        and "kid" not in header
        and "crit" not in header
        and header.get("b64", True) is not False
    )
    if result.status_code != 401:
        assert may_pass, (header, claims, result.status_code, result.text)
        assert result.status_code in (200, 403), result.text
        return
    assert_refusal_is_clean(result, value, header.get("alg"))


async def test_a_valid_token_passes_the_same_way(client):
    """The generator's HS256 signature is a real one: the properties above do reach the
    claims, not only the header checks."""
    claims = {"role": "emberlog_anon", "exp": int(time.time()) + 60}
    value = signed(encoded({"alg": "HS256"}, True), encoded(claims, True))
    result = await client.simulate_get(LIST, headers={"Authorization": f"Bearer {value}"})
    assert result.status_code == 200, result.text
