"""Signed tokens (JWT, with pyjwt), the PostgREST way: the token names a role, the
role must be one the authenticator may switch to, and every claim reaches SQL as
request.jwt.claims.

Keys: JWT_SECRET (HS256), JWT_PUBLIC_KEY_FILE (a PEM public key: RS256 for RSA,
ES256 for EC) and/or JWT_JWKS_FILE (a JSON Web Key Set, chosen by ``kid``). A token
signed with any other algorithm (``none`` included) is refused.

Which key verifies a token (so that a key rotated out of the JWKS stops working):

- a token that names a ``kid``, when a JWKS is configured, is verified only against
  the JWKS key with that kid, and its ``alg`` must be that key's algorithm. A kid not
  in the JWKS is refused ("the token's key is not known (kid)"), even when JWT_SECRET
  or JWT_PUBLIC_KEY_FILE holds the key that signed it: the JWKS is the list of
  current keys, and rotating a key out of it retires every token naming it;
- a token without a ``kid`` is verified with JWT_SECRET (HS256) or
  JWT_PUBLIC_KEY_FILE (RS256/ES256), by its ``alg``; never with a JWKS key. So
  retiring the file's key means changing the file, not only the JWKS;
- without a JWKS, a ``kid`` means nothing and the token is verified as one without.

A token is text from anyone: anything malformed about it (not ASCII, not three
base64url segments, a header that is not a JSON object or is longer than
MAX_HEADER_CHARS, an ``alg`` or ``kid`` that is not a string) is an InvalidToken,
never another exception. InvalidToken's ``description`` is one of this module's fixed
texts, the only text fit for a response header; its message adds what to send
instead and names the token's algorithm only when that is a short plain name.

A little over ~200 lines: the checks a malformed token must fail before pyjwt reads
it are listed here, beside the key choice they protect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ..settings import Settings, SettingsError

MAX_TOKEN_CHARS = 16_384  # MAX_HEADER_BYTES' default: no longer token reaches us anyway
MAX_HEADER_CHARS = 4_096  # base64url of a JOSE header: alg, typ, kid (x5c chains fit too)
# An algorithm name the message may repeat: "HS256", "ES256K", "RSA-OAEP"; never
# whatever else a token's header holds (quotes, control characters, any script).
PLAIN_ALGORITHM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+.-]{0,15}")

# What a 401 tells the client to send instead.
SEND_TOKEN = "send a signed JWT in Authorization: Bearer <token>"
SEND_KEY_INSTEAD = "send an API key in X-API-Key instead"

# The fixed reasons (InvalidToken.description): the only texts a header carries.
NOT_CONFIGURED = "this server accepts no tokens (JWT is not configured)"
UNREADABLE = "the token cannot be read"
EXPIRED = "the token has expired"
NOT_YET_VALID = "the token is not valid yet"
OTHER_AUDIENCE = "the token is for another audience"
BAD_SIGNATURE = "the token's signature does not match"
ALGORITHM_REFUSED = "the token's algorithm is not accepted"
NO_KID = "the token names no key (kid)"
UNKNOWN_KID = "the token's key is not known (kid)"
KID_ALGORITHM = "the token's algorithm is not its key's (kid)"


class InvalidToken(Exception):
    """A token that proves nothing. ``description`` is a fixed reason (one of this
    module's constants, safe in a header); the message (``str()``) is the reason, or
    a more precise one, with what to send instead: safe to show the client, since
    nothing of the token is in it but a plain algorithm name."""

    def __init__(self, description: str, advice: str, reason: str | None = None) -> None:
        super().__init__(f"{reason or description}: {advice}")
        self.description = description


@dataclass
class TokenVerifier:
    """The keys this server accepts tokens from, by algorithm."""

    audience: str | None
    leeway: float
    keys: dict[str, Any] = field(default_factory=dict)  # algorithm -> key
    jwks: jwt.PyJWKSet | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        verifier = cls(settings.jwt_audience, settings.jwt_leeway)
        if settings.jwt_secret:
            verifier.keys["HS256"] = settings.jwt_secret
        if settings.jwt_public_key_file:
            verifier.keys.update(_public_key(settings.jwt_public_key_file.read_bytes()))
        if settings.jwt_jwks_file:
            try:
                verifier.jwks = jwt.PyJWKSet.from_json(settings.jwt_jwks_file.read_text())
            except jwt.PyJWKSetError as exc:
                raise SettingsError(f"JWT_JWKS_FILE: {exc}") from exc
        return verifier

    @property
    def configured(self) -> bool:
        return bool(self.keys) or self.jwks is not None

    def decode(self, token: str) -> dict[str, Any]:
        """The token's claims, once its signature and times check out."""
        if not self.configured:
            raise InvalidToken(NOT_CONFIGURED, SEND_KEY_INSTEAD)
        algorithm, kid = _header(token)
        key = self._key(algorithm, kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                leeway=self.leeway,
                options={"verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            advice = "send a fresh one in Authorization: Bearer <token>"
            raise InvalidToken(EXPIRED, advice) from exc
        except jwt.ImmatureSignatureError as exc:
            advice = "send one whose nbf and iat are not in the future (is a clock off?)"
            raise InvalidToken(NOT_YET_VALID, advice) from exc
        except jwt.InvalidAudienceError as exc:
            advice = "send a token issued for this API (its aud claim)"
            raise InvalidToken(OTHER_AUDIENCE, advice) from exc
        except jwt.InvalidSignatureError as exc:
            advice = "send a token signed by a key this API accepts"
            raise InvalidToken(BAD_SIGNATURE, advice) from exc
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError) as exc:
            raise InvalidToken(UNREADABLE, SEND_TOKEN) from exc
        if not isinstance(claims, dict):
            raise InvalidToken(UNREADABLE, SEND_TOKEN, "the token's claims are not an object")
        return claims

    def _key(self, algorithm: str, kid: str | None) -> Any:
        """The one key that may have signed this token (see the module docstring)."""
        if kid is not None and self.jwks is not None:
            return self._jwks_key(algorithm, kid)
        if algorithm in self.keys:
            return self.keys[algorithm]
        if self.jwks is not None and not self.keys:
            raise InvalidToken(NO_KID, "send a token that names its JWKS key in kid")
        named = algorithm if PLAIN_ALGORITHM.fullmatch(algorithm) else "an unsupported algorithm"
        reason = f"tokens signed with {named} are not accepted"
        raise InvalidToken(ALGORITHM_REFUSED, self._accepted(), reason)

    def _jwks_key(self, algorithm: str, kid: str) -> Any:
        """The JWKS key named kid, if the token's algorithm is that key's."""
        assert self.jwks is not None
        named = [jwk for jwk in self.jwks.keys if jwk.key_id == kid]
        if not named:
            advice = "send a token signed with a current key of the JWKS"
            raise InvalidToken(UNKNOWN_KID, advice)
        for jwk in named:
            if jwk.algorithm_name == algorithm:
                return jwk.key
        advice = "send a token signed with the algorithm of the JWKS key it names"
        raise InvalidToken(KID_ALGORITHM, advice)

    def _accepted(self) -> str:
        """What to send instead of a token with an algorithm no key is for."""
        choices = sorted(self.keys)
        if self.jwks is not None:
            choices.append("a JWKS key named in kid")
        return "send a token signed with " + " or ".join(choices)


def _header(token: str) -> tuple[str, str | None]:
    """The token's ``alg`` and ``kid``, read before anything is verified: a malformed
    token of any kind is InvalidToken(UNREADABLE), never another exception."""
    if len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise InvalidToken(UNREADABLE, SEND_TOKEN)
    if len(token.partition(".")[0]) > MAX_HEADER_CHARS:
        raise InvalidToken(UNREADABLE, SEND_TOKEN, "the token's header is too long")
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError) as exc:
        raise InvalidToken(UNREADABLE, SEND_TOKEN) from exc
    algorithm, kid = header.get("alg"), header.get("kid")
    if not isinstance(algorithm, str) or not (kid is None or isinstance(kid, str)):
        raise InvalidToken(UNREADABLE, SEND_TOKEN, "the token's alg or kid is not a string")
    return algorithm, kid


def _public_key(pem: bytes) -> dict[str, Any]:
    try:
        key = load_pem_public_key(pem)
    except ValueError as exc:
        raise SettingsError(f"JWT_PUBLIC_KEY_FILE is not a PEM public key: {exc}") from exc
    if isinstance(key, rsa.RSAPublicKey):
        return {"RS256": key}
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"ES256": key}
    raise SettingsError("JWT_PUBLIC_KEY_FILE must hold an RSA or EC public key")


def role_claim(claims: dict[str, Any], path: str) -> object:
    """The claim at a dotted path (``role``, ``app.role``), or None."""
    value: object = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
