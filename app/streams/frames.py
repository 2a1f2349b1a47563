"""The SSE wire format: how an event, a heartbeat and the opening frame are written.

Each event is encoded once (by the hub) and the same bytes go to every client; nothing
here knows about hubs, clients or the database.
"""

from __future__ import annotations

import re


class Frame:
    """One encoded SSE frame. Falcon writes what ``serialize()`` returns."""

    __slots__ = ("data", "event_id", "matches")

    def __init__(self, event_id: int, data: bytes, matches: tuple | None = None) -> None:
        self.event_id = event_id
        self.data = data
        self.matches = matches  # a filtered stream's match_<filter> values (filters.py)

    def serialize(self, handler: object = None) -> bytes:
        return self.data


def encode(event_id: int, event: str, data: str | None, matches: tuple | None = None) -> Frame:
    """``id:``, ``event:``, then ``data:`` lines (one line for JSON from PostgreSQL)."""
    lines = LINE_BREAK.split(data if data is not None else "null")
    body = "".join(f"data: {line}\n" for line in lines)
    name = " ".join(event.split())
    return Frame(event_id, f"id: {event_id}\nevent: {name}\n{body}\n".encode(), matches)


LINE_BREAK = re.compile(r"\r\n|\r|\n")  # SSE's line ends only (not U+2028 and the like)
PING = Frame(0, b": ping\n\n")


def hello(retry_ms: int, last_id: int | None = None) -> Frame:
    """The first frame: the reconnect delay, and the position the client is at (if any)."""
    position = "" if last_id is None else f"id: {last_id}\n"
    return Frame(last_id or 0, f"retry: {retry_ms}\n{position}\n".encode())
