"""Conditional GETs (issue 18): ETag and If-None-Match for the routes that declare
``@etag schema.function``, a version of what they read (app/database/routes.py).

The ETag is ``"v<version>-<digest>"``. The version comes from the database, read in the
same statement and snapshot as the route's call (app/http/statements.py): it changes
with every committed change, from any writer, so a response can never be called
unchanged after a write it does not show. The digest names everything else the body
depends on: the route and its arguments, who asks (role and token sub: a route may
answer each caller differently), the API schema's generation (a deploy may reshape the
JSON) and the settings SQL reads. A request whose If-None-Match holds a tag with this
digest sends its version along; when the database still has that version, the function
is not called at all and the answer is a 304 with no body.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..database.route_table import Route
from ..settings import Settings

TAG = re.compile(r'^(?:W/)?"v(\d{1,20})-([0-9a-f]{16})"$')
# One encoder for every tag (json.dumps with options builds a new one per call).
ENCODER = json.JSONEncoder(sort_keys=True, default=str, separators=(",", ":"))


@functools.lru_cache(maxsize=16)
def _key(fingerprint: str | None, public_url: str | None, db_settings: object, zone: str) -> bytes:
    """What every tag of this process depends on until the next reload, hashed once: the
    API schema's generation and the settings SQL reads (the digest's key)."""
    text = ENCODER.encode([fingerprint, public_url, db_settings, zone])
    return hashlib.blake2b(text.encode()).digest()


@dataclass(frozen=True)
class Tag:
    """The ETag of one request's answer, but for the version."""

    digest: str

    @classmethod
    def of(
        cls,
        route: Route,
        values: Mapping[str, Any],
        claims: Mapping[str, Any],
        fingerprint: str | None,
        settings: Settings,
    ) -> Tag:
        named = [route.method, route.template, values, claims.get("role"), claims.get("sub")]
        key = _key(fingerprint, settings.public_url, settings.db_settings, settings.naive_timezone)
        digest = hashlib.blake2b(ENCODER.encode(named).encode(), digest_size=8, key=key)
        return cls(digest.hexdigest())

    def held(self, if_none_match: str | None) -> str | None:
        """The version of the client's copy, when its If-None-Match names one of ours."""
        for entry in (if_none_match or "").split(","):
            found = TAG.match(entry.strip())
            if found and found.group(2) == self.digest:
                return found.group(1)
        return None

    def header(self, version: str) -> str:
        return f'"v{version}-{self.digest}"'
