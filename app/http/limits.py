"""Rate limits: token buckets per client address and per credential, in this process.

Each worker process keeps its own buckets (no shared store, no locks: one event loop),
so with WORKERS=n the limit a client meets is up to n times the configured one.
Memory stays bounded: buckets are kept in least-recently-used order, a bucket that has
refilled is forgotten (it is the same as a new one), and past MAX_BUCKETS the least
recently used is forgotten anyway, which only ever errs on the lenient side.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from ..auth.authenticator import Identity
from ..settings import Settings
from .clients import Address
from .errors import ApiError

MAX_BUCKETS = 20_000  # per limit; about 200 bytes each


class TokenBuckets:
    """``rate`` tokens a second, up to ``burst``; one request takes one token."""

    def __init__(
        self,
        rate: float,
        burst: int,
        max_buckets: int = MAX_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_buckets = max_buckets
        self.clock = clock
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: Hashable) -> float:
        """0 when the request may go ahead, else the seconds until a token is back."""
        now = self.clock()
        buckets = self._buckets
        entry = buckets.get(key)
        if entry is None:
            tokens = self.burst
            self._evict(now)
        else:
            tokens = min(self.burst, entry[0] + (now - entry[1]) * self.rate)
            buckets.move_to_end(key)
        if tokens >= 1:
            buckets[key] = (tokens - 1, now)
            return 0.0
        buckets[key] = (tokens, now)  # a refused request takes nothing
        return (1 - tokens) / self.rate

    def _evict(self, now: float) -> None:
        """Before a new bucket: drop full ones from the idle end, and keep under the cap.
        Each bucket is dropped at most once, so this costs O(1) per request over time."""
        buckets = self._buckets
        while buckets:
            tokens, stamp = next(iter(buckets.values()))
            full = tokens + (now - stamp) * self.rate >= self.burst
            if not full and len(buckets) < self.max_buckets:
                return
            buckets.popitem(last=False)


def retry_after(wait: float) -> str:
    """Retry-After in whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(wait)))


def rate_limited(wait: float, limit: str) -> ApiError:
    return ApiError(
        429,
        f"too many requests (per {limit}); retry after the time in Retry-After",
        "rate_limited",
        details={"limit": limit, "retry_after": round(wait, 3)},
        headers={"Retry-After": retry_after(wait)},
    )


def credential(identity: Identity) -> Hashable | None:
    """Whose bucket a request with credentials takes from: the API key, else the token's
    issuer and subject, else (no ``sub``) a digest of its claims. None when anonymous:
    the address limit covers those."""
    if identity.key_id is not None:
        return ("key", identity.key_id)
    if not identity.authenticated:
        return None
    claims = identity.claims
    if claims.get("sub") is not None:
        return ("sub", str(claims.get("iss")), str(claims["sub"]))
    text = json.dumps(claims, sort_keys=True, default=str)
    return ("claims", hashlib.sha256(text.encode()).digest())


@dataclass
class RateLimits:
    """Both limits of one process; a limit whose rate is 0 is off (None)."""

    per_address: TokenBuckets | None = None
    per_key: TokenBuckets | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        address, key = settings.rate_limit_per_address, settings.rate_limit_per_key
        return cls(
            TokenBuckets(address, settings.rate_limit_burst) if address > 0 else None,
            TokenBuckets(key, settings.rate_limit_key_burst) if key > 0 else None,
        )

    def check_address(self, address: Address | None) -> None:
        """Raise 429 when this address is over its limit. An unknown address (no socket
        peer, e.g. a Unix socket) is not limited here: one shared bucket would throttle
        every such client together."""
        if self.per_address is None or address is None:
            return
        wait = self.per_address.take(address.packed)
        if wait:
            raise rate_limited(wait, "address")

    def check_identity(self, identity: Identity) -> None:
        """Raise 429 when this credential is over its limit, whatever the address."""
        if self.per_key is None:
            return
        key = credential(identity)
        if key is None:
            return
        wait = self.per_key.take(key)
        if wait:
            raise rate_limited(wait, "credential")
