"""The live stream in-process: protocol, resume, reset, audio links, release on disconnect."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest

from app.streams.frames import encode
from tests import pg
from tests.conftest import app_client
from tests.incidents import payload
from tests.sse import FrameParser, read_events

STREAM = "/api/v1/sse/incidents"


async def post(client, **overrides) -> int:
    result = await client.simulate_post(
        "/api/v1/incidents", json=payload(**overrides), headers=client.ingest
    )
    assert result.status_code == 201, result.text
    return result.json["id"]


async def hub_caught_up(client, db):
    """The process's hub has fetched every event in the log; returns the hub."""
    hub = client.app_state.streams.hubs[STREAM]
    async with asyncio.timeout(5):
        while hub.cursor < pg.event_ids(db)[-1]:
            await asyncio.sleep(0.01)
    return hub


async def test_the_stream_answers_event_stream_with_its_headers(client, db):
    await post(client)
    await hub_caught_up(client, db)
    headers = {"Origin": "https://web.example"}
    for path in (STREAM, STREAM + "/"):
        async with client.simulate_get_stream(path, headers=headers) as sr:
            parser = FrameParser()
            async with asyncio.timeout(5):
                while parser.retry is None:
                    parser.feed(await sr.stream.read())
            assert sr.status_code == 200
            assert sr.headers["content-type"] == "text/event-stream"
            assert sr.headers["cache-control"] == "no-cache"
            assert sr.headers["x-accel-buffering"] == "no"
            assert sr.headers["access-control-allow-origin"] == "*"
            assert parser.retry == 2000
            assert parser.last_id == pg.event_ids(db)[-1]  # where this client is: resumable


async def test_a_new_incident_arrives_as_the_item_json(client):
    async with client.simulate_get_stream(STREAM) as sr:
        parser = FrameParser()
        await asyncio.sleep(0.05)
        created = await post(client, transcript="T" * 9000)  # over NOTIFY's 8000-byte cap
        (event,) = await read_events(sr.stream, parser, 1)
    item = await client.simulate_get(f"/api/v1/incidents/{created}")
    assert event.event == "incident"
    assert event.data == item.json
    assert len(event.data["transcript"]) == 9000


async def test_resume_sends_exactly_the_missed_events_in_order(client, db):
    first = [await post(client) for _ in range(3)]
    ids = pg.event_ids(db)
    missed = [await post(client) for _ in range(4)]
    for kwargs in (
        {"headers": {"Last-Event-ID": str(ids[-1])}},
        {"params": {"last_event_id": str(ids[-1])}},
        # A reconnecting EventSource keeps its first URL: the header wins.
        {"headers": {"Last-Event-ID": str(ids[-1])}, "params": {"last_event_id": "0"}},
    ):
        async with client.simulate_get_stream(STREAM, **kwargs) as sr:
            events = await read_events(sr.stream, FrameParser(), 4)
            await asyncio.sleep(0.05)
            assert FrameParser().feed(await sr.stream.read()) == []
        assert [e.data["id"] for e in events] == missed
        assert [e.id for e in events] == pg.event_ids(db)[3:]
    assert first[0] < missed[0]


async def test_resume_from_before_the_process_started_replays_from_the_log(db, settings):
    async with app_client(settings) as first:
        created = [await post(first) for _ in range(5)]
    async with app_client(settings) as client:  # its ring starts after these events
        async with client.simulate_get_stream(STREAM, params={"last_event_id": "0"}) as sr:
            events = await read_events(sr.stream, FrameParser(), 5)
        assert [e.data["id"] for e in events] == created
        assert client.app_state.metrics.sse_events_replayed._value.get() == 5


def create_in_sql(db) -> int:
    created = db.execute("select api.create_incident(%s::jsonb)", (json.dumps(payload()),))
    return created.fetchone()[0]["id"]


async def test_an_id_older_than_retention_gets_a_reset_then_live_events(db, settings):
    create_in_sql(db)
    (old,) = pg.event_ids(db)
    create_in_sql(db)
    db.execute("select internal.prune_events(interval '0')")
    async with app_client(settings) as client:
        params = {"last_event_id": str(old - 1)}
        async with client.simulate_get_stream(STREAM, params=params) as sr:
            parser = FrameParser()
            (reset,) = await read_events(sr.stream, parser, 1)
            live = await post(client)
            (event,) = await read_events(sr.stream, parser, 1)
    assert reset.event == "reset"
    assert reset.data["reason"] == "last_event_id is older than the retained event log"
    assert reset.id == pg.event_ids(db)[-1] - 1
    assert event.data["id"] == live


async def test_events_still_in_memory_need_no_reset(client, db):
    """The ring still holds events the log has pruned: they are sent, not a reset."""
    created = [await post(client) for _ in range(2)]
    await hub_caught_up(client, db)
    db.execute("select internal.prune_events(interval '0')")
    async with client.simulate_get_stream(STREAM, params={"last_event_id": "0"}) as sr:
        events = await read_events(sr.stream, FrameParser(), 2)
    assert [e.data["id"] for e in events] == created


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", "9" * 40, "1 2"])
async def test_a_bad_last_event_id_is_a_400(client, bad):
    result = await client.simulate_get(STREAM, headers={"Last-Event-ID": bad})
    assert result.status_code == 400
    assert result.json["error"]["details"] == {"parameter": "last_event_id"}


async def test_relative_audio_paths_are_presented_under_audio_base_url(db, settings):
    settings = dataclasses.replace(
        settings, db_settings=(("emberlog.audio_base_url", "https://audio.example/rec"),)
    )
    async with app_client(settings) as client:
        async with client.simulate_get_stream(STREAM) as sr:
            await asyncio.sleep(0.05)
            relative = await post(client, source_audio="2026/11/22/call.m4a")
            absolute = await post(client, source_audio="https://cdn.example/a.m4a")
            events = await read_events(sr.stream, FrameParser(), 2)
        item = (await client.simulate_get(f"/api/v1/incidents/{relative}")).json
        listed = (await client.simulate_get("/api/v1/incidents")).json["items"]
    expected = "https://audio.example/rec/2026/11/22/call.m4a"
    assert [e.data["source_audio"] for e in events] == [expected, "https://cdn.example/a.m4a"]
    assert item["source_audio"] == expected
    assert {i["id"]: i["source_audio"] for i in listed}[relative] == expected
    stored = "select source_audio from data.incidents where id = %s"
    assert db.execute(stored, (relative,)).fetchone()[0] == "2026/11/22/call.m4a"
    assert absolute > relative


async def test_a_disconnected_client_is_released_at_once(client):
    hub = client.app_state.streams.hubs[STREAM]
    gauge = client.app_state.metrics.sse_clients
    async with client.simulate_get_stream(STREAM) as sr:
        await sr.stream.read()
        assert len(hub.subscribers) == 1 and gauge._value.get() == 1
    assert len(hub.subscribers) == 0 and gauge._value.get() == 0


async def test_polling_mode_delivers_without_listen(db, settings):
    settings = dataclasses.replace(settings, stream_mode="poll", stream_poll_interval=0.05)
    async with app_client(settings) as client:
        assert "emberlog_events" not in client.app_state.listener.handlers
        async with client.simulate_get_stream(STREAM) as sr:
            await asyncio.sleep(0.1)
            created = await post(client)
            (event,) = await read_events(sr.stream, FrameParser(), 1)
    assert event.data["id"] == created


async def test_the_listener_probe_finds_that_notifications_arrive(client):
    listener = client.app_state.listener
    await asyncio.wait_for(listener.connected.wait(), 5)
    assert listener.delivers is True


async def test_stream_routes_are_listed_and_answer_options_and_head(client):
    options = await client.simulate_options(STREAM)
    assert options.status_code == 204 and options.headers["allow"] == "GET, OPTIONS"
    head = await client.simulate_head(STREAM)
    assert head.status_code == 200 and head.headers["content-type"] == "text/event-stream"
    post_result = await client.simulate_post(STREAM, json={})
    assert post_result.status_code == 405


async def test_metrics_count_clients_and_deliveries(client):
    async with client.simulate_get_stream(STREAM) as sr:
        await asyncio.sleep(0.05)
        await post(client)
        await read_events(sr.stream, FrameParser(), 1)
        text = (await client.simulate_get("/metrics")).text
    assert "emberlog_sse_clients 1.0" in text
    assert "emberlog_sse_events_delivered_total 1.0" in text


async def test_an_idle_stream_gets_heartbeat_comments(db, settings):
    settings = dataclasses.replace(settings, sse_heartbeat=0.2)
    async with app_client(settings) as client, client.simulate_get_stream(STREAM) as sr:
        parser = FrameParser()
        async with asyncio.timeout(5):
            while parser.comments < 2:
                parser.feed(await sr.stream.read())
                await asyncio.sleep(0.01)
    assert parser.comments >= 2


def test_a_line_separator_in_a_transcript_stays_inside_one_data_line():
    frame = encode(7, "incident", '{"transcript": "a\u2028b\u0085c"}').data.decode()
    assert frame.count("data: ") == 1
    assert FrameParser().feed(frame.encode())[0].data == {"transcript": "a\u2028b\u0085c"}


async def test_while_shutting_down_a_stream_only_says_when_to_come_back(client):
    client.app_state.streams.shutdown()
    async with client.simulate_get_stream(STREAM) as sr:
        await asyncio.sleep(0.05)
        body = await sr.stream.read()
    assert sr.status_code == 200  # an EventSource gives up for good on any other status
    assert body == b"retry: 2000\n\n"
    ready = await client.simulate_get("/readyz")
    assert ready.status_code == 503 and "shutting down" in ready.json["error"]["message"]


async def test_a_log_that_restarts_below_the_process_position_resets_its_clients(client, db):
    """E.g. a database restored from a backup under a running server."""
    for _ in range(3):
        await post(client)
    old = (await hub_caught_up(client, db)).cursor
    async with client.simulate_get_stream(STREAM) as sr:
        await sr.stream.read()
        pg.empty_tables(db)  # the log starts again from id 1
        await post(client)
        async with asyncio.timeout(20):  # a fetch that failed is retried at the heartbeat
            while not sr._task.done():  # the process starts over and closes its clients
                await asyncio.sleep(0.01)
    params = {"last_event_id": str(old)}
    async with client.simulate_get_stream(STREAM, params=params) as sr:
        parser = FrameParser()
        (reset,) = await read_events(sr.stream, parser, 1)
        live = await post(client)
        (event,) = await read_events(sr.stream, parser, 1)
    assert reset.event == "reset" and reset.data["reason"] == "last_event_id is unknown"
    assert event.data["id"] == live
