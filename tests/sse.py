"""Reading Server-Sent Events in tests: a frame parser, an in-process reader and an
HTTP client for real servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Event:
    """One SSE frame with an id (comments and the retry hint are not events)."""

    id: int
    event: str
    data: Any


class FrameParser:
    """Feeds bytes in, gives complete frames out; keeps the retry hint and comments seen."""

    def __init__(self) -> None:
        self.buffer = b""
        self.retry: int | None = None
        self.comments = 0
        self.last_id: int | None = None  # as EventSource keeps it: from any id field

    def feed(self, chunk: bytes) -> list[Event]:
        self.buffer += chunk
        events: list[Event] = []
        while b"\n\n" in self.buffer:
            raw, self.buffer = self.buffer.split(b"\n\n", 1)
            event = self._frame(raw.decode())
            if event is not None:
                events.append(event)
        return events

    def _frame(self, raw: str) -> Event | None:
        fields: dict[str, list[str]] = {}
        for line in raw.split("\n"):
            if line.startswith(":"):
                self.comments += 1
                continue
            name, _, value = line.partition(": ")
            fields.setdefault(name, []).append(value)
        if "retry" in fields:
            self.retry = int(fields["retry"][0])
        if "id" in fields:
            self.last_id = int(fields["id"][0])
        if "data" not in fields:
            return None  # a hint or a position only
        data = json.loads("\n".join(fields["data"]))
        return Event(int(fields["id"][0]), fields["event"][0], data)


async def read_events(stream: Any, parser: FrameParser, count: int, timeout: float = 10) -> list:
    """In-process: read a Falcon StreamedResult until `count` events have arrived."""
    events: list[Event] = []
    async with asyncio.timeout(timeout):
        while len(events) < count:
            events += parser.feed(await stream.read())
            await asyncio.sleep(0.005)
    return events


class SseClient:
    """A real HTTP client on a stream that remembers the last id, like EventSource."""

    def __init__(self, base: str, path: str = "/api/v1/sse/incidents") -> None:
        self.url = base + path
        self.last_id: int | None = None
        self.events: list[Event] = []
        self.parser = FrameParser()
        self._chunks: AsyncIterator[bytes] | None = None

    @contextlib.asynccontextmanager
    async def connect(self, http: httpx.AsyncClient, **params: Any) -> AsyncIterator[None]:
        """Open the stream (resuming after last_id) and wait until the server has
        subscribed this client (the retry hint has arrived)."""
        headers = {} if self.last_id is None else {"Last-Event-ID": str(self.last_id)}
        self.parser = FrameParser()
        async with http.stream("GET", self.url, headers=headers, params=params) as response:
            assert response.status_code == 200, response.status_code
            self._chunks = response.aiter_raw()
            async with asyncio.timeout(10):
                while self.parser.retry is None:
                    await self._read()
            yield

    async def receive(self, until: int, timeout: float = 30) -> None:
        """Read frames until an event with id >= until has arrived."""
        async with asyncio.timeout(timeout):
            while self.last_id is None or self.last_id < until:
                await self._read()

    async def _read(self) -> None:
        assert self._chunks is not None
        self.events += self.parser.feed(await anext(self._chunks))
        if self.parser.last_id is not None:
            self.last_id = self.parser.last_id
