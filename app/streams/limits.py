"""How many live streams one client address may hold open in this process.

A stream is cheap per event but holds a connection, a subscriber and a share of every
fan-out for as long as it is open, and the rate limit does not bound that: one token
opens a stream for hours. So each process counts the streams open per client address
(as ``of_request`` works it out) and refuses one more than MAX_STREAMS_PER_ADDRESS
with 429 before subscribing. An EventSource gives up on a non-200, which is right here:
a client that already holds that many streams is misbehaving.

The count is given back when the stream's subscriber ends, however it ends (see
``Hub.unsubscribe``), and an address whose count is back to 0 is forgotten, so memory
is bounded by the streams open. Like the rate limits, each worker process counts its
own streams: with WORKERS=n an address may hold up to n times the limit.
"""

from __future__ import annotations

from ..http.clients import Address
from ..http.errors import ApiError
from ..http.limits import retry_after

RETRY_AFTER = 5.0  # seconds: long enough not to hammer, short enough to notice a release


class Lease:
    """One counted stream. ``release()`` gives its place back, once however often it is
    called, so every way a stream ends may call it."""

    __slots__ = ("_counts", "_key")

    def __init__(self, counts: OpenStreams | None, key: Address | None) -> None:
        self._counts = counts
        self._key = key

    def release(self) -> None:
        counts, self._counts = self._counts, None
        if counts is not None and self._key is not None:
            counts._release(self._key)


UNCOUNTED = Lease(None, None)  # a stream no cap applies to (no address, or the cap is off)


class OpenStreams:
    """Streams open per client address in this process (one event loop: no locks)."""

    def __init__(self) -> None:
        self._open: dict[Address, int] = {}

    def __len__(self) -> int:
        """Addresses with at least one stream open."""
        return len(self._open)

    def count(self, address: Address) -> int:
        return self._open.get(address, 0)

    def lease(self, address: Address | None, limit: int) -> Lease | None:
        """Count one more stream from ``address``; None (nothing counted) when it already
        has ``limit`` open. An unknown address (a Unix socket) is not capped: one shared
        count would refuse every such client together. A limit of 0 turns the cap off."""
        if address is None or limit <= 0:
            return UNCOUNTED
        held = self._open.get(address, 0)
        if held >= limit:
            return None
        self._open[address] = held + 1
        return Lease(self, address)

    def _release(self, address: Address) -> None:
        held = self._open.get(address, 0) - 1
        if held > 0:
            self._open[address] = held
        else:
            self._open.pop(address, None)  # back to 0: forget the address


def too_many_streams(limit: int) -> ApiError:
    """429 for one stream more than the cap, with the JSON error shape and Retry-After."""
    return ApiError(
        429,
        f"this address already has {limit} streams open (MAX_STREAMS_PER_ADDRESS);"
        " close one, or retry after the time in Retry-After",
        "too_many_streams",
        details={"limit": limit},
        headers={"Retry-After": retry_after(RETRY_AFTER)},
    )
