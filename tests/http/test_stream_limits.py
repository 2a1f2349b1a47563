"""Issue 13's stream attacks, in-process: many streams from one address (capped per
address, released however a stream ends) and resuming from id 0 to replay the whole
log (a reset beyond SSE_REPLAY_LIMIT)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json

from app.http.clients import parse_address, parse_networks
from app.streams.limits import OpenStreams
from tests import pg
from tests.conftest import app_client
from tests.incidents import payload
from tests.sse import FrameParser, read_events

STREAM = "/api/v1/sse/incidents"
CAP = 3
ADDRESS = "203.0.113.7"


def capped(settings, **changes):
    """An app allowing CAP streams per address (and a rate limit that never interferes)."""
    base = {"max_streams_per_address": CAP, "rate_limit_per_address": 0.0}
    return app_client(dataclasses.replace(settings, **{**base, **changes}))


async def open_stream(stack: contextlib.AsyncExitStack, client, **kwargs) -> FrameParser:
    """Open a stream that stays open until the stack closes; returns once subscribed
    (the retry hint has arrived)."""
    sr = await stack.enter_async_context(client.simulate_get_stream(STREAM, **kwargs))
    assert sr.status_code == 200
    parser = FrameParser()
    async with asyncio.timeout(10):
        while parser.retry is None:
            parser.feed(await sr.stream.read())
            await asyncio.sleep(0.005)
    return parser


async def refused(client, **kwargs):
    """A stream request expected to be refused: its status, headers and JSON body."""
    async with client.simulate_get_stream(STREAM, **kwargs) as sr:
        pass  # leaving waits for the request to end: a 429's body is complete
    return sr.status_code, sr.headers, json.loads(await sr.stream.read())


def assert_too_many_streams(status, headers, body) -> None:
    assert status == 429
    assert body["error"]["code"] == "too_many_streams"
    assert body["error"]["details"] == {"limit": CAP}
    assert "MAX_STREAMS_PER_ADDRESS" in body["error"]["message"]
    assert headers["retry-after"] == "5"


def open_count(client, address: str = ADDRESS) -> int:
    return client.app_state.streams.per_address.count(parse_address(address))


async def test_one_stream_over_the_cap_is_a_429_and_other_addresses_still_stream(settings, db):
    async with capped(settings) as client, contextlib.AsyncExitStack() as stack:
        for _ in range(CAP):
            await open_stream(stack, client, remote_addr=ADDRESS)
        assert_too_many_streams(*await refused(client, remote_addr=ADDRESS))
        await open_stream(stack, client, remote_addr="203.0.113.8")
        await open_stream(stack, client, remote_addr="2001:db8::1")
        for _ in range(CAP + 1):  # no known address (a Unix socket): not capped
            await open_stream(stack, client)
        hub = client.app_state.streams.hubs[STREAM]
        assert len(hub.subscribers) == CAP + 2 + CAP + 1  # the refused one never subscribed
        metrics = (await client.simulate_get("/metrics")).text
    assert "emberlog_sse_streams_refused_total 1.0" in metrics


async def test_closing_a_stream_lets_the_address_open_one_again(settings, db):
    async with capped(settings) as client, contextlib.AsyncExitStack() as stack:
        async with contextlib.AsyncExitStack() as first:
            await open_stream(first, client, remote_addr=ADDRESS)
            for _ in range(CAP - 1):
                await open_stream(stack, client, remote_addr=ADDRESS)
            assert open_count(client) == CAP
        assert open_count(client) == CAP - 1  # released as the client left
        await open_stream(stack, client, remote_addr=ADDRESS)
        assert_too_many_streams(*await refused(client, remote_addr=ADDRESS))
    assert len(client.app_state.streams.per_address) == 0  # every place given back


async def test_the_cap_counts_the_client_behind_a_trusted_proxy(settings, db):
    proxy = {"remote_addr": "10.0.0.1"}
    trusted = parse_networks("10.0.0.0/8")
    async with (
        capped(settings, trusted_proxies=trusted) as client,
        contextlib.AsyncExitStack() as stack,
    ):
        behind = {"X-Forwarded-For": "198.51.100.1"}
        for _ in range(CAP):
            await open_stream(stack, client, headers=behind, **proxy)
        assert_too_many_streams(*await refused(client, headers=behind, **proxy))
        other = {"X-Forwarded-For": "198.51.100.2"}
        await open_stream(stack, client, headers=other, **proxy)  # not the proxy's count


def create_in_sql(conn, count: int) -> list[int]:
    created = "select (api.create_incident(%s::jsonb)->>'id')::bigint"
    return [conn.execute(created, (json.dumps(payload()),)).fetchone()[0] for _ in range(count)]


async def test_a_client_the_hub_drops_as_too_slow_gives_its_place_back(settings, db):
    async with capped(settings, sse_client_buffer=2) as client:
        stack = contextlib.AsyncExitStack()
        async with stack:
            for _ in range(CAP):
                await open_stream(stack, client, remote_addr=ADDRESS)
            with db.transaction():  # one commit: the hub fetches more than its ring at once
                create_in_sql(db, 8)
            slow = client.app_state.metrics.sse_slow_disconnects
            async with asyncio.timeout(10):
                while open_count(client) > 0:
                    await asyncio.sleep(0.01)
            assert slow._value.get() == CAP
            for _ in range(CAP):
                await open_stream(stack, client, remote_addr=ADDRESS)


async def test_streams_the_server_ends_give_their_places_back(settings, db):
    async with capped(settings) as client, contextlib.AsyncExitStack() as stack:
        for _ in range(CAP):
            await open_stream(stack, client, remote_addr=ADDRESS)
        assert open_count(client) == CAP
        client.app_state.streams.shutdown()  # as on SIGTERM (a reload's close_all alike)
        assert len(client.app_state.streams.per_address) == 0


def test_open_streams_forget_an_address_at_zero_and_release_once():
    counts, address = OpenStreams(), parse_address("203.0.113.9")
    leases = [counts.lease(address, 2), counts.lease(address, 2)]
    assert counts.lease(address, 2) is None and counts.count(address) == 2
    leases[0].release()
    leases[0].release()  # a stream may end by several paths: counted back once
    assert counts.count(address) == 1
    leases[1].release()
    assert len(counts) == 0
    assert counts.lease(None, 2) is not None and counts.lease(address, 0) is not None
    assert len(counts) == 0  # an unknown address or a cap of 0 is not counted


REPLAY_LIMIT = 5


async def test_resuming_from_0_beyond_the_replay_limit_gets_a_reset_then_live(settings, db):
    """The attack: last_event_id=0 replayed the whole retained log to each connection."""
    create_in_sql(db, 20)
    head = pg.event_ids(db)[-1]
    settings = dataclasses.replace(settings, sse_replay_limit=REPLAY_LIMIT)
    async with app_client(settings) as client:  # its ring starts after these events
        params = {"last_event_id": "0"}
        async with client.simulate_get_stream(STREAM, params=params) as sr:
            parser = FrameParser()
            (reset,) = await read_events(sr.stream, parser, 1)
            (live_id,) = create_in_sql(db, 1)
            (live,) = await read_events(sr.stream, parser, 1)
        metrics = client.app_state.metrics
        assert metrics.sse_replays_refused._value.get() == 1
        assert metrics.sse_events_replayed._value.get() == 0
    assert reset.event == "reset" and reset.id == head
    assert reset.data == {
        "reason": "last_event_id is further behind than this server replays (SSE_REPLAY_LIMIT)",
        "last_event_id": 0,
        "resume_after": head,
    }
    assert live.event == "incident" and live.data["id"] == live_id
    assert live.id == pg.event_ids(db)[-1]


async def test_a_client_within_the_replay_limit_gets_its_exact_replay(settings, db):
    create_in_sql(db, 20)
    ids = pg.event_ids(db)
    settings = dataclasses.replace(settings, sse_replay_limit=REPLAY_LIMIT)
    async with app_client(settings) as client:
        one_more = {"last_event_id": str(ids[-REPLAY_LIMIT - 2])}  # one event too many
        async with client.simulate_get_stream(STREAM, params=one_more) as sr:
            (reset,) = await read_events(sr.stream, FrameParser(), 1)
        within = {"last_event_id": str(ids[-REPLAY_LIMIT - 1])}  # exactly the limit
        async with client.simulate_get_stream(STREAM, params=within) as sr:
            parser = FrameParser()
            replayed = await read_events(sr.stream, parser, REPLAY_LIMIT)
            (live_id,) = create_in_sql(db, 1)
            (live,) = await read_events(sr.stream, parser, 1)
            await asyncio.sleep(0.05)
            assert parser.feed(await sr.stream.read()) == []  # nothing twice
    assert reset.event == "reset" and reset.data["last_event_id"] == ids[-REPLAY_LIMIT - 2]
    assert [e.id for e in replayed] == ids[-REPLAY_LIMIT:]
    assert [e.event for e in replayed] == ["incident"] * REPLAY_LIMIT
    assert live.data["id"] == live_id and live.id == pg.event_ids(db)[-1]
