"""Who is asking. Python proves an identity and picks the role; PostgreSQL's grants
decide what that role may do.

In order: ``Authorization: Bearer <JWT>``; ``X-API-Key`` (a key issued in SQL with
auth.create_api_key: the request runs as the key's role); for GET and HEAD only, the
JWT in the JWT_COOKIE cookie (EventSource cannot send headers; a cookie never
authenticates a write, so a cross-site form cannot use it). Nothing (or an empty
key) is the anonymous role, refused with a 401 when ANONYMOUS_READS is off, except
that a write from TRUSTED_NETWORKS (the internal-only model, off by default)
runs as the ingest role; reads from there stay anonymous, as everyone's do.

Keys are looked up by their SHA-256 digest and cached for API_KEY_CACHE_SECONDS, so a
revoked key is refused within that time; use is recorded in batches, off the
request path. A key runs only as a role the authenticator may switch to now (the
roles loaded with the routes): auth.create_api_key checks that when the key is
issued, but a role can change afterwards (or a row be written by hand), and such a
key is refused like an unknown one, with a warning naming it.

Every 401 says what to send instead. WWW-Authenticate's error_description carries
only our own fixed texts (InvalidToken.description), never anything of the token.

A little over ~200 lines: each kind of credential is a few lines, and the order in
which they are tried is only readable in one place.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from falcon.asgi import Request
from psycopg_pool import AsyncConnectionPool

from ..http.clients import of_request, within
from ..http.errors import CREDENTIALS_NEEDED, ApiError
from ..settings import Settings
from .tokens import InvalidToken, TokenVerifier, role_claim

log = logging.getLogger(__name__)

KEY_LOOKUP = "select key_id, key_name, role, expires_at from auth.key_role(%s)"
TOUCH_KEYS = "select auth.touch_api_keys(%s, %s)"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CACHE_LIMIT = 10_000  # entries (valid and invalid keys) before the cache starts over
INVALID_KEY = (
    "the API key is not valid (unknown, revoked, expired, or for a role this API may"
    " not act as): send a current key in X-API-Key"
)
BEARER_ONLY = "only Bearer tokens are accepted in Authorization"
ROLE_REFUSED = "the token's role is not one this API may act as"
# Characters RFC 6750 allows in error_description (%x20-21 / %x23-5B / %x5D-7E).
NOT_DESCRIPTION = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


@dataclass(frozen=True)
class Identity:
    """The role a request runs as, and the claims SQL sees as request.jwt.claims."""

    role: str
    claims: dict[str, Any]
    key_id: int | None = None
    authenticated: bool = False  # credentials were given (a denial is then 403, not 401)

    @functools.cached_property
    def claims_json(self) -> str:
        """The claims as SQL sees them: written once per identity (the anonymous one and
        each cached key's are reused across requests)."""
        return json.dumps(self.claims)


@dataclass(frozen=True)
class _Key:
    identity: Identity | None  # None: unknown, revoked or expired
    expires_at: datetime | None
    checked_at: float


@dataclass
class Authenticator:
    """Turns a request's credentials into an Identity (or a 401)."""

    settings: Settings
    roles: frozenset[str] = frozenset()  # roles the authenticator may switch to
    timeouts: dict[str, str] = field(default_factory=dict)  # role -> its statement_timeout
    tokens: TokenVerifier = field(init=False)
    _keys: dict[bytes, _Key] = field(default_factory=dict)
    _used: dict[int, datetime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tokens = TokenVerifier.from_settings(self.settings)

    @functools.cached_property
    def anonymous(self) -> Identity:
        role = self.settings.anon_role
        return Identity(role, {"role": role})

    async def identify(self, req: Request, pool: AsyncConnectionPool) -> Identity:
        token = self._token(req)
        if token is not None:
            return self._token_identity(token)
        key = (req.get_header("X-API-Key") or "").strip()
        if not key:
            return self._without_credentials(req)
        identity = await self._key_identity(hashlib.sha256(key.encode()).digest(), pool)
        if identity is None:
            raise ApiError(
                401,
                INVALID_KEY,
                "invalid_api_key",
                headers={"WWW-Authenticate": 'ApiKey realm="emberlog"'},
            )
        assert identity.key_id is not None
        self._used[identity.key_id] = datetime.now(UTC)
        return identity

    def _without_credentials(self, req: Request) -> Identity:
        settings = self.settings
        if req.method not in SAFE_METHODS and settings.trusted_networks:
            address = of_request(req, settings.trusted_proxies)
            if address is not None and within(address, settings.trusted_networks):
                role = settings.trusted_network_role
                claims = {"role": role, "client_address": str(address)}
                return Identity(role, claims, authenticated=True)
        if not settings.anonymous_reads:
            raise ApiError(401, CREDENTIALS_NEEDED, "credentials_required")
        return self.anonymous

    def _token(self, req: Request) -> str | None:
        authorization = req.get_header("Authorization")
        if authorization:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                advice = "send Authorization: Bearer <token>, or an API key in X-API-Key"
                raise _invalid_token(BEARER_ONLY, f"{BEARER_ONLY}: {advice}")
            return token.strip()
        if req.method in ("GET", "HEAD"):
            cookies = req.get_cookie_values(self.settings.jwt_cookie)
            if cookies:
                return cookies[0]
        return None

    def _token_identity(self, token: str) -> Identity:
        try:
            claims = self.tokens.decode(token)
        except InvalidToken as exc:
            raise _invalid_token(exc.description, str(exc)) from None
        claim = self.settings.jwt_role_claim
        role = role_claim(claims, claim)
        if role is None:
            role = self.settings.jwt_default_role or self.settings.anon_role
        if not isinstance(role, str) or role not in self.roles | {self.settings.anon_role}:
            advice = f"send a token whose {claim} claim names a role this API may act as"
            raise _invalid_token(ROLE_REFUSED, f"{ROLE_REFUSED}: {advice}")
        return Identity(role, {**claims, "role": role}, authenticated=True)

    async def _key_identity(self, digest: bytes, pool: AsyncConnectionPool) -> Identity | None:
        now = time.monotonic()
        cached = self._keys.get(digest)
        fresh = cached is None or now - cached.checked_at > self.settings.api_key_cache_seconds
        if fresh:
            cached = await self._lookup(digest, pool, now)
        if cached.expires_at is not None and cached.expires_at <= datetime.now(UTC):
            return None
        identity = cached.identity
        if identity is not None and identity.role not in self.roles:
            # Checked on every use, since the roles change at route reload; said once
            # per lookup, so a busy key does not flood the log between lookups.
            if fresh:
                self._warn_role(identity)
            return None
        return identity

    def _warn_role(self, identity: Identity) -> None:
        """A key issued for a role the authenticator may no longer switch to (or written
        into auth.api_keys by hand): the DBA should re-issue or revoke it. Names the
        key by its name, never the key."""
        log.warning(
            "API key %r runs as role %r, which the authenticator may not switch to:"
            " refused (revoke it, or re-issue it for an allowed role)",
            identity.claims.get("api_key"),
            identity.role,
        )

    async def _lookup(self, digest: bytes, pool: AsyncConnectionPool, now: float) -> _Key:
        async with pool.connection() as conn:
            row = await (await conn.execute(KEY_LOOKUP, (digest,))).fetchone()
        if row is None:
            entry = _Key(None, None, now)
        else:
            key_id, name, role, expires_at = row
            identity = Identity(role, {"role": role, "api_key": name}, key_id, authenticated=True)
            entry = _Key(identity, expires_at, now)
        if len(self._keys) >= CACHE_LIMIT:
            self._keys.clear()
        self._keys[digest] = entry
        return entry

    async def record_use(self, pool: AsyncConnectionPool) -> None:
        """Write last-used times gathered since the previous call (one statement)."""
        if not self._used:
            return
        used, self._used = self._used, {}
        try:
            async with pool.connection() as conn:
                await conn.execute(TOUCH_KEYS, (list(used), list(used.values())))
        except Exception as exc:  # best effort: the next round carries newer times
            log.warning("could not record API key use (%s)", exc)


def _invalid_token(description: str, message: str) -> ApiError:
    """A 401 for a bad token. description must be one of our fixed texts (it goes into
    a header); anything outside RFC 6750's error_description characters is dropped all
    the same, so a header can never carry a quote, a control or a non-ASCII character."""
    safe = NOT_DESCRIPTION.sub("", description)
    challenge = f'Bearer error="invalid_token", error_description="{safe}"'
    return ApiError(401, message, "invalid_token", headers={"WWW-Authenticate": challenge})
