"""The generic event stream GET /api/v1/sse in-process (issue 15 items 5-6): filters on
live events and replays, 400 for bad filters, resume by position or by event_id, reset
for an unknown one, the OpenAPI operation, and the route checks at load."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import pytest

from app.database import routes
from app.streams import filters
from tests.conftest import app_client
from tests.http.test_events import envelope
from tests.incidents import payload
from tests.sse import FrameParser, read_events

SSE = "/api/v1/sse"
INGEST = "/api/v1/ingest/events"
FILTERED = "event_type=a.b.c&event_type=x.y.z&system=S"


def event(event_type: str, system: str | None = "S", **payload_: Any) -> dict[str, Any]:
    source = {"module": "test", "instance": "t1", "system": system}
    return envelope(event_type=event_type, source=source, payload={"n": 1, **payload_})


async def ingest(client, *events: dict) -> list[str]:
    result = await client.simulate_post(
        INGEST, json={"events": list(events)}, headers=client.ingest
    )
    assert result.status_code == 200, result.text
    return [e["event_id"] for e in events]


async def incident(client, channel: str) -> int:
    result = await client.simulate_post(
        "/api/v1/incidents", json=payload(channel=channel), headers=client.ingest
    )
    assert result.status_code == 201, result.text
    return result.json["id"]


def mapped_channel(db, system: str) -> str:
    """A channel whose incidents carry source.system = system."""
    channel = f"CH-{uuid.uuid4().hex[:8]}"
    db.execute(
        "insert into data.channel_systems (channel, system) values (%s, %s)", (channel, system)
    )
    return channel


async def hub_caught_up(client, db) -> None:
    hub = client.app_state.streams.hubs[SSE]
    db.execute("select internal.publish_events()")
    (newest,) = db.execute("select coalesce(max(id), 0) from data.events").fetchone()
    async with asyncio.timeout(5):
        while hub.cursor < newest:
            await asyncio.sleep(0.01)


async def mixed_batch(client, db) -> tuple[list[str], str]:
    """Posts matching and non-matching events for FILTERED; returns the matching ids,
    in order, and the id of a last matching sentinel (also in that list)."""
    wanted = await ingest(client, event("a.b.c"))
    await ingest(
        client,
        event("a.b.c", system="T"),  # wrong system
        event("q.r.s"),  # wrong type
        event("x.y.z", system=None),  # no system: never matches a given one
    )
    wanted += (await ingest(client, event("x.y.z"), event("q.r.s", system="T")))[:1]
    await incident(client, mapped_channel(db, "S"))  # dispatch.incident.created: not asked
    wanted += await ingest(client, event("a.b.c", n=2))
    return wanted, wanted[-1]


async def test_a_filtered_client_gets_exactly_the_matching_live_events(client, db):
    incidents_ = "domain=dispatch&system=S&site="  # a blank value counts as absent
    async with (
        client.simulate_get_stream(SSE, query_string=FILTERED) as sr,
        client.simulate_get_stream(SSE, query_string=incidents_) as dispatch,
        client.simulate_get_stream(SSE) as everything,
    ):
        await asyncio.sleep(0.05)
        wanted, _ = await mixed_batch(client, db)
        unmapped = await incident(client, "NOWHERE")  # system null: not for system=S
        mapped = await incident(client, mapped_channel(db, "S"))
        events = await read_events(sr.stream, FrameParser(), len(wanted))
        got = await read_events(dispatch.stream, FrameParser(), 2)
        all_events = await read_events(everything.stream, FrameParser(), 10)
    assert [e.data["event_id"] for e in events] == wanted
    assert [e.event for e in events] == ["a.b.c", "x.y.z", "a.b.c"]
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert [e.event for e in got] == ["dispatch.incident.created"] * 2
    incident_ids = [int(e.data["payload"]["incident_id"]) for e in got]
    assert unmapped not in incident_ids and mapped == incident_ids[-1]
    assert all(e.data["source"]["system"] == "S" for e in got)
    assert len(all_events) == 10  # no filter: every envelope


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("&".join(f"event_type=a.b.c{i}" for i in range(21)), "event_type"),
        ("domain=" + "d" * 201, "domain"),
        ("system=a%00b", "system"),
        ("system=a&system=b", "system"),
    ],
)
async def test_a_bad_filter_is_a_400_before_the_stream(client, query, parameter):
    result = await client.simulate_get(SSE, query_string=query)
    assert result.status_code == 400
    assert result.headers["content-type"].startswith("application/json")
    assert result.json["error"]["details"]["parameter"] == parameter


@pytest.mark.parametrize("prepared", [True, False])
async def test_resume_by_event_id_and_by_position_gets_exactly_the_missed_matching_events(
    client, db, settings, prepared
):
    first = await ingest(client, event("a.b.c"))
    await hub_caught_up(client, db)
    (position,) = db.execute("select api.event_position(%s)", (first[0],)).fetchone()
    missed, _ = await mixed_batch(client, db)
    await hub_caught_up(client, db)
    resumes = [
        {"query_string": f"{FILTERED}&last_event_id={first[0]}"},
        {"query_string": FILTERED, "headers": {"Last-Event-ID": str(position)}},
    ]
    for kwargs in resumes:  # from the ring of this process
        async with client.simulate_get_stream(SSE, **kwargs) as sr:
            events = await read_events(sr.stream, FrameParser(), len(missed))
            await asyncio.sleep(0.1)
            assert FrameParser().feed(await sr.stream.read()) == []  # none twice, no more
        assert [e.data["event_id"] for e in events] == missed
    fresh_settings = dataclasses.replace(settings, prepared_statements=prepared)
    async with app_client(fresh_settings) as fresh:  # its ring starts after: a replay
        for kwargs in resumes:
            async with fresh.simulate_get_stream(SSE, **kwargs) as sr:
                events = await read_events(sr.stream, FrameParser(), len(missed))
                await asyncio.sleep(0.1)
                assert FrameParser().feed(await sr.stream.read()) == []
            assert [e.data["event_id"] for e in events] == missed
        replayed = fresh.app_state.metrics.sse_events_replayed._value.get()
        assert replayed == 2 * len(missed)


@pytest.mark.parametrize("token", [str(uuid.uuid4()), "not-a-uuid"])
async def test_an_unknown_event_id_gets_a_reset_then_live_events(client, db, token):
    await ingest(client, event("a.b.c"))
    await hub_caught_up(client, db)
    query = f"{FILTERED}&last_event_id={token}"
    async with client.simulate_get_stream(SSE, query_string=query) as sr:
        parser = FrameParser()
        (reset,) = await read_events(sr.stream, parser, 1)
        await ingest(client, event("q.r.s"))
        (live,) = await ingest(client, event("x.y.z"))
        (after,) = await read_events(sr.stream, parser, 1)
    assert reset.event == "reset"
    assert reset.data["reason"] == "last_event_id is unknown"
    assert reset.data["last_event_id"] == token
    assert after.data["event_id"] == live


async def test_a_bad_last_event_id_is_still_a_400_on_a_stream_without_position(client):
    result = await client.simulate_get("/api/v1/sse/incidents", params={"last_event_id": "x"})
    assert result.status_code == 400


async def test_the_openapi_operation_lists_the_filters(client):
    doc = (await client.simulate_get("/openapi.json")).json
    operation = doc["paths"][SSE]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert list(params) == [
        "domain",
        "event_type",
        "system",
        "site",
        "Last-Event-ID",
        "last_event_id",
    ]
    assert params["event_type"]["schema"]["maxItems"] == 20
    assert params["event_type"]["explode"] is True
    assert params["domain"]["in"] == "query"
    assert "pattern" not in params["last_event_id"]["schema"]  # an event_id is a token too
    assert "400" in operation["responses"]
    assert operation["x-sql-function"] == "api.event_stream"


def catalog_row(args: list[tuple[str, str]], defaults: int, columns: list[str]) -> tuple:
    comment = "@sse /s channel=c position=api.pos"
    names, types = [a for a, _ in args], [t for _, t in args]
    return ("s", comment, "v", True, names, types, defaults, columns)


def test_a_stream_filter_without_default_or_match_column_is_refused_at_load():
    args = [("after_id", "bigint"), ("max_events", "integer"), ("kind", "text")]
    (route,) = routes.parse_routes(
        "api", catalog_row(args, 2, ["id", "event", "data", "match_kind"])
    )
    assert route.position == "api.pos" and [a.name for a in route.stream_params] == ["kind"]
    with pytest.raises(routes.RouteError, match="need a default"):
        routes.parse_routes("api", catalog_row(args, 0, ["id", "event", "data", "match_kind"]))
    with pytest.raises(routes.RouteError, match="match_kind"):
        routes.parse_routes("api", catalog_row(args, 2, ["id", "event", "data"]))


def test_live_matching_is_equal_or_any_of_and_across_filters_and_null_never_matches():
    args = [("after_id", "bigint"), ("max_events", "integer"), ("kind", "text[]"), ("at", "text")]
    columns = ["id", "event", "data", "match_kind", "match_at"]
    (route,) = routes.parse_routes("api", catalog_row(args, 3, columns))
    assert filters.wants(route, {}) is None  # no filter: everything (no matcher at all)
    both = filters.wants(route, {"kind": ["a", "b"], "at": "x"})
    assert both is not None
    assert both(("a", "x")) and both(("b", "x"))
    assert not both(("c", "x")) and not both(("a", "y")) and not both((None, "x"))
    only_at = filters.wants(route, {"at": "x"})
    assert only_at is not None and only_at((None, "x")) and not only_at(("a", None))
    assert not only_at(None)  # a frame without match values (never a filtered stream's)


async def test_a_filtered_client_gets_heartbeats_while_only_other_events_flow(db, settings):
    settings = dataclasses.replace(settings, sse_heartbeat=0.2)
    async with app_client(settings) as client:

        async def others() -> None:
            while True:
                await ingest(client, event("q.r.s"))
                await asyncio.sleep(0.03)

        query = "event_type=none.such.type"
        async with client.simulate_get_stream(SSE, query_string=query) as sr:
            writing = asyncio.create_task(others())
            parser = FrameParser()
            try:
                async with asyncio.timeout(5):
                    while parser.comments < 2:
                        assert parser.feed(await sr.stream.read()) == []
                        await asyncio.sleep(0.01)
            finally:
                writing.cancel()
    assert parser.comments >= 2
