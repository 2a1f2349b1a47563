"""Signed tokens (JWT, with pyjwt), the PostgREST way: the token names a role, the
role must be one the authenticator may switch to, and every claim reaches SQL as
request.jwt.claims.

Keys: JWT_SECRET (HS256), JWT_PUBLIC_KEY_FILE (a PEM public key: RS256 for RSA,
ES256 for EC) and/or JWT_JWKS_FILE (a JSON Web Key Set, chosen by ``kid``). A token
signed with any other algorithm (``none`` included) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from .settings import Settings, SettingsError


class InvalidToken(Exception):
    """A token that proves nothing: its message says why (safe to show the client)."""


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
            raise InvalidToken("this server accepts no tokens (JWT is not configured)")
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            key = self._key(algorithm, header.get("kid"))
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                leeway=self.leeway,
                options={"verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("the token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise InvalidToken("the token is not valid yet") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken("the token is for another audience") from exc
        except jwt.InvalidSignatureError as exc:
            raise InvalidToken("the token's signature does not match") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken("the token cannot be read") from exc
        if not isinstance(claims, dict):
            raise InvalidToken("the token's claims are not an object")
        return claims

    def _key(self, algorithm: object, kid: object) -> Any:
        if isinstance(algorithm, str) and algorithm in self.keys:
            return self.keys[algorithm]
        if self.jwks is not None and isinstance(kid, str):
            for jwk in self.jwks.keys:
                if jwk.key_id == kid and jwk.algorithm_name == algorithm:
                    return jwk.key
        raise InvalidToken(f"tokens signed with {algorithm!r} are not accepted")


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
