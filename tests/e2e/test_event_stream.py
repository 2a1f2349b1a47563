"""The generic event stream GET /api/v1/sse with real server processes (issue 15 items
5-6): two processes on one database, filtered clients on each get exactly the matching
events written through either (ingest and incidents), and resume after a disconnect by
event_id and by position with exactly the missed matching events, in order, once."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg

from tests.incidents import payload
from tests.sse import Event, SseClient

SSE = "/api/v1/sse"
FILTERS = {"event_type": ["a.b.c", "x.y.z", "dispatch.incident.created"], "system": "S"}


def envelope(event_type: str, system: str | None = "S") -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "schema_version": "1.0.0",
        "timestamp": "2026-11-22T05:04:15Z",
        "source": {"module": "e2e", "instance": "e1", "system": system},
        "payload": {"n": 1},
    }


def key(event: Event) -> str:
    """An ingested envelope by its event_id; an incident's by its incident id."""
    if event.event == "dispatch.incident.created":
        return f"incident {event.data['payload']['incident_id']}"
    return event.data["event_id"]


async def ingest(http: httpx.AsyncClient, server, *events: dict) -> list[str]:
    result = await http.post(
        f"{server.base}/api/v1/ingest/events", json={"events": list(events)}, headers=server.ingest
    )
    assert result.status_code == 200, result.text
    return [e["event_id"] for e in events]


async def incident(http: httpx.AsyncClient, server, channel: str) -> str:
    result = await http.post(
        f"{server.base}/api/v1/incidents", json=payload(channel=channel), headers=server.ingest
    )
    assert result.status_code == 201, result.text
    return f"incident {result.json()['id']}"


async def write_mixed(http, servers, channel: str) -> tuple[list[str], str]:
    """Matching and other events through both servers; (the matching keys in order, the
    event_id of the last one, a matching sentinel)."""
    wanted: list[str] = []
    for server in servers:
        wanted += await ingest(http, server, envelope("a.b.c"))
        await ingest(
            http, server, envelope("a.b.c", "T"), envelope("q.r.s"), envelope("x.y.z", None)
        )
        wanted.append(await incident(http, server, channel))
        await incident(http, server, "NOWHERE")  # no system: not for system=S
        wanted += await ingest(http, server, envelope("x.y.z"))
    sentinel = await ingest(http, servers[0], envelope("a.b.c"))
    return wanted + sentinel, sentinel[0]


def position(url: str, event_id: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select internal.publish_events()")
        return conn.execute("select api.event_position(%s)", (event_id,)).fetchone()[0]


async def test_filtered_clients_on_two_processes_get_exactly_the_matching_events_and_resume(
    serve, fault_database
):
    servers = [serve(), serve()]
    channel = f"CH-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(fault_database, autocommit=True) as conn:
        conn.execute("insert into data.channel_systems values (%s, 'S')", (channel,))
    clients = [SseClient(server.base, SSE) for server in servers]
    async with httpx.AsyncClient(timeout=30) as http:
        async with clients[0].connect(http, **FILTERS), clients[1].connect(http, **FILTERS):
            wanted, sentinel = await write_mixed(http, servers, channel)
            until = position(fault_database, sentinel)
            for client in clients:
                await client.receive(until=until)
        for client in clients:
            assert [key(e) for e in client.events] == wanted
            assert [e.id for e in client.events] == sorted({e.id for e in client.events})
        last_uuid = clients[0].events[-1].data["event_id"]
        last_position = clients[1].last_id

        missed, sentinel = await write_mixed(http, servers, channel)
        until = position(fault_database, sentinel)
        by_uuid = SseClient(servers[0].base, SSE)  # a first connect with ?last_event_id=<uuid>
        by_position = clients[1]  # reconnects with Last-Event-ID: <position>
        async with (
            by_uuid.connect(http, last_event_id=last_uuid, **FILTERS),
            by_position.connect(http, **FILTERS),
        ):
            for client in (by_uuid, by_position):
                await client.receive(until=until)
        assert [key(e) for e in by_uuid.events] == missed
        assert [key(e) for e in by_position.events] == wanted + missed
        assert last_position is not None and by_position.events[len(wanted)].id > last_position
