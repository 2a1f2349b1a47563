"""The traffic monitor over HTTP: POST /api/v1/ingest/trunk-recorder (one message, a
batch, or neither; the ingest role only) and the anonymous reads GET
/api/v1/traffic/summary, /live-calls and /decode-history (query binding, bounds checked
before the database, 400s in the one error shape), their OpenAPI operations, and the
call events a live client of GET /api/v1/sse receives. What the SQL stores and emits is
tests/sql/test_traffic.py's; here is what an HTTP client meets. Last, a property: nothing
a hostile client posts to the ingest route is a 5xx."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from tests import pg
from tests.conftest import app_client, only_connection_held
from tests.properties import JSON_VALUES, through_the_app
from tests.sse import FrameParser, read_events
from tests.traffic import INSTANCE, call, message, rate, session, traffic_state

INGEST = "/api/v1/ingest/trunk-recorder"
SUMMARY = "/api/v1/traffic/summary"
LIVE = "/api/v1/traffic/live-calls"
HISTORY = "/api/v1/traffic/decode-history"
SSE = "/api/v1/sse"
JSON = {"Content-Type": "application/json"}
CALL_EVENTS = "event_type=traffic.call.started&event_type=traffic.call.ended"


async def post(client, body: Any, headers: dict | None = None):
    return await client.simulate_post(
        INGEST, json=body, headers=client.ingest if headers is None else headers
    )


async def post_raw(client, raw: str):
    """A body as written: JSON numbers Python would not write (1e-400), or not JSON."""
    return await client.simulate_post(INGEST, body=raw.encode(), headers=JSON | client.ingest)


async def live_ids(client, query: str = "") -> list[str]:
    result = await client.simulate_get(LIVE, query_string=query)
    assert result.status_code == 200, (query, result.text)
    return [c["id"] for c in result.json["calls"]]


def assert_error(body: dict, code: str) -> dict:
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, body
    assert error["code"] == code and isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    return error


# -- POST /api/v1/ingest/trunk-recorder --------------------------------------------------


async def test_one_message_is_applied_and_the_same_message_again_is_ignored(client):
    sent = message("rates", 1771215501, [rate(1, "PRWC-J", 39.0), rate(3, "MCSO-WT", 26.0)])
    first = await post(client, sent)
    assert first.status_code == 200
    assert first.json == {
        "type": "rates",
        "instance_id": INSTANCE,
        "status": "applied",
        "events": 2,
    }
    again = await post(client, sent)
    assert again.status_code == 200
    assert (again.json["status"], again.json["events"]) == ("ignored", 0)
    assert again.json["reason"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "weather", "instance_id": "tr", "timestamp": 1}, "type"),
        ({"type": "rates", "instance_id": "tr", "rates": []}, "timestamp"),
        (message("calls_active", 5, [call("a", encrypted="maybe")]), "calls[0].encrypted"),
        (message("rates", 5, [rate(1, "A", 30.0), {"sys_num": 2}]), "rates[1].sys_name"),
    ],
)
async def test_a_malformed_message_is_a_422_naming_its_field_and_writes_nothing(
    client, db, body, field
):
    await post(client, message("calls_active", 1, [call("before")]))
    before = traffic_state(db)
    result = await post(client, body)
    assert result.status_code == 422
    assert set(result.json) == {"error"}
    error = assert_error(result.json, "validation_failed")
    assert error["details"] == {"field": field}
    assert error["message"].startswith(field + " ")
    assert traffic_state(db) == before


async def test_a_batch_is_200_207_or_422_with_a_report_of_each_message(client, db):
    good = [message("calls_active", 1, [call("a")]), message("calls_active", 2, [call("b")])]
    all_applied = await post(client, good)
    assert all_applied.status_code == 200
    assert all_applied.json["applied"] == 2 and all_applied.json["events"] == 3

    some = [message("calls_active", 3, []), {"type": "calls_active"}, good[0]]
    mixed = await post(client, some)
    assert mixed.status_code == 207
    body = mixed.json
    assert [r["status"] for r in body["results"]] == ["applied", "rejected", "ignored"]
    assert (body["applied"], body["ignored"], body["rejected"], body["events"]) == (1, 1, 1, 1)
    assert_error(body["results"][1], "validation_failed")
    assert body["results"][1]["error"]["details"] == {"field": "instance_id"}

    before = traffic_state(db)
    refused = await post(client, [{"type": "x"}, "y"])
    assert refused.status_code == 422
    assert_error(refused.json, "validation_failed")
    assert refused.json["rejected"] == 2 and len(refused.json["results"]) == 2
    assert traffic_state(db) == before


@pytest.mark.parametrize("raw", ['"rates"', "5", "true", "null", "[]", json.dumps([{}] * 1001)])
async def test_a_body_that_is_neither_a_message_nor_a_batch_is_a_400(client, raw):
    result = await post_raw(client, raw)
    assert result.status_code == 400
    assert_error(result.json, "invalid_body")


@pytest.mark.parametrize(("raw", "code"), [("", "invalid_body"), ("{", "invalid_json")])
async def test_no_body_or_not_json_is_a_400_in_the_error_shape(client, raw, code):
    result = await post_raw(client, raw)
    assert result.status_code == 400
    assert_error(result.json, code)


async def test_the_recorded_session_posted_as_one_batch_is_applied_in_order(client, db):
    result = await post(client, [body for _, body in session()])
    assert result.status_code == 200
    assert result.json["rejected"] == 0 and result.json["ignored"] == 0
    assert await live_ids(client) == []  # every call of the session ended
    (started,) = db.execute(
        "select count(*) from api.traffic_call_events where event_type = 'traffic.call.started'"
    ).fetchone()
    assert started == 7


async def test_ingest_without_credentials_is_a_401_and_writes_nothing(client, db):
    before = traffic_state(db)
    result = await post(client, message("calls_active", 1, [call("a")]), headers={})
    assert result.status_code == 401
    assert_error(result.json, "credentials_required")
    assert "WWW-Authenticate" in result.headers
    assert traffic_state(db) == before


# -- The reads ----------------------------------------------------------------------------


async def test_the_reads_are_anonymous_and_show_what_was_posted(client):
    await post(client, message("rates", 100, [rate(1, "PRWC-J", 30.0), rate(3, "MCSO-WT", 26.0)]))
    recorders = [
        {"id": "0_0", "rec_state_type": "RECORDING"},
        {"id": "0_1", "rec_state_type": "IDLE"},
    ]
    await post(client, message("recorders", 100, recorders))
    await post(client, message("calls_active", 100, [call("1_4499_1771215827")]))

    summary = await client.simulate_get(SUMMARY)
    assert summary.status_code == 200
    payload = summary.json["payload"]
    sites = [(s["sys_name"], s["status"]) for s in payload["decode_sites"]]
    assert sites == [("MCSO-WT", "bad"), ("PRWC-J", "warn")]  # by group, then name
    assert (payload["recorders"]["total"], payload["recorders"]["recording"]) == (2, 1)
    assert payload["feed"]["status"] == "healthy"

    assert await live_ids(client) == ["1_4499_1771215827"]

    history = await client.simulate_get(HISTORY)
    assert history.status_code == 200
    assert history.json["window_s"] == 900
    assert [len(s["points"]) for s in history.json["sites"]] == [1, 1]


async def test_instance_id_selects_the_instance_and_an_unknown_one_reads_as_empty(client):
    await post(client, message("calls_active", 1, [call("east-call")], instance="east"))
    assert await live_ids(client) == []  # the default instance: trunk-recorder
    assert await live_ids(client, "instance_id=east") == ["east-call"]
    summary = await client.simulate_get(SUMMARY, query_string="instance_id=nobody")
    assert summary.status_code == 200
    assert summary.json["source"]["instance"] == "nobody"
    assert summary.json["payload"]["decode_sites"] == []
    assert summary.json["payload"]["feed"]["status"] == "stale"


@pytest.fixture
async def three_systems(client) -> None:
    calls = [
        call("p1", sys_name="PRWC-J", talkgroup_alpha_tag="Avondale PD A01", start_time=30),
        call("m1", sys_num=3, sys_name="MCSO-WT", encrypted=True, start_time=20,
             talkgroup_alpha_tag="MCSO Tac", talkgroup_description="Sheriff DISPATCH"),
        call("g1", sys_num=4, sys_name="GLN", talkgroup_alpha_tag="Glendale Fire",
             talkgroup_description="Fire Ops", start_time=10),
    ]  # fmt: skip
    assert (await post(client, message("calls_active", 40, calls))).status_code == 200


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        ("sys_name=PRWC-J", ["p1"]),
        ("sys_name=PRWC-J&sys_name=GLN", ["p1", "g1"]),  # repeated
        ("sys_name=MCSO-WT,GLN", ["m1", "g1"]),  # comma-separated
        ("sys_name=GLN,%20PRWC-J&sys_name=nope", ["p1", "g1"]),  # both, names trimmed
        ("sys_name=", ["p1", "m1", "g1"]),  # blank: absent
        ("sys_name=prwc-j", []),  # exact names
        ("q=dispatch", ["p1", "m1"]),  # alpha tag or description, any case
        ("q=%25", []),  # text, not a pattern
        ("hide_encrypted=true", ["p1", "g1"]),
        ("hide_encrypted=1", ["p1", "g1"]),
        ("hide_encrypted=false", ["p1", "m1", "g1"]),
        ("hide_encrypted=", ["p1", "m1", "g1"]),
        ("hide_encrypted=on&q=Dispatch&sys_name=PRWC-J,MCSO-WT", ["p1"]),
    ],
)
async def test_live_calls_filters_bind_from_the_query(client, three_systems, query, ids):
    assert await live_ids(client, query) == ids


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("hide_encrypted=maybe", "hide_encrypted"),  # PostgreSQL's cast, named
        ("q=a&q=b", "q"),  # not an array: given once
        ("instance_id=a&instance_id=b", "instance_id"),
    ],
)
async def test_a_bad_live_calls_parameter_is_a_400_naming_it(client, query, parameter):
    result = await client.simulate_get(LIVE, query_string=query)
    assert result.status_code == 400
    error = assert_error(result.json, "invalid_parameter")
    assert error["details"]["parameter"] == parameter


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        (LIVE, {"q": "x" * 201}, "q"),
        (LIVE, {"sys_name": [f"S{n}" for n in range(51)]}, "sys_name"),
        (LIVE, {"sys_name": ["s" * 201]}, "sys_name"),
        (LIVE, {"instance_id": "i" * 201}, "instance_id"),
        (SUMMARY, {"instance_id": "i" * 201}, "instance_id"),
        (HISTORY, {"window": "123456789"}, "window"),
    ],
)
async def test_oversized_parameters_are_a_400_naming_them(client, path, params, parameter):
    result = await client.simulate_get(path, params=params)
    assert result.status_code == 400
    error = assert_error(result.json, "invalid_parameter")
    assert error["details"]["parameter"] == parameter


async def test_within_the_bounds_the_reads_answer(client, three_systems):
    assert await live_ids(client, "q=" + "x" * 200) == []
    names = "&".join(f"sys_name=S{n}" for n in range(49)) + "&sys_name=GLN"
    assert await live_ids(client, names) == ["g1"]


async def test_the_bounds_are_checked_without_a_database_connection(settings, db, slow_route):
    async with only_connection_held(settings, db, 1, pool_timeout=2) as (client, busy):
        refused = await client.simulate_get(LIVE, params={"q": "x" * 201})
        assert refused.status_code == 400  # not a 504 after waiting for the pool
        assert pg.running(db, "slow") == 1  # answered while the connection was still busy
        assert (await busy).status_code == 200


@pytest.mark.parametrize("window", ["15", "0m", "1d", "m", "90 s"])
async def test_a_bad_decode_history_window_is_a_400_naming_it(client, window):
    result = await client.simulate_get(HISTORY, params={"window": window})
    assert result.status_code == 400, window
    error = assert_error(result.json, "invalid_parameter")
    assert error["details"] == {"field": "window"}


@pytest.mark.parametrize(
    ("window", "seconds"), [("90s", 90), ("15m", 900), ("1h", 3600), ("2h", 3600)]
)
async def test_a_decode_history_window_is_seconds_minutes_or_hours(client, window, seconds):
    """A window longer than the history kept (1 hour) is all of it."""
    for ts in (1000, 1060, 1200):
        await post(client, message("rates", ts, [rate(1, "PRWC-J", 36.0)]))
    result = await client.simulate_get(HISTORY, params={"window": window})
    assert result.status_code == 200
    assert result.json["window_s"] == seconds
    (site,) = result.json["sites"]
    assert len(site["points"]) == {90: 1, 900: 3, 3600: 3}[seconds]


# -- OpenAPI ------------------------------------------------------------------------------


async def test_openapi_lists_the_four_routes_with_their_parameters(client):
    doc = (await client.simulate_get("/openapi.json")).json
    ingest = doc["paths"][INGEST]["post"]
    assert ingest["x-sql-function"] == "api.ingest_trunk_recorder"
    assert ingest["parameters"] == []
    body = ingest["requestBody"]["content"]["application/json"]["schema"]
    # One message, exactly as the checks have it (built from the same field table).
    assert body["required"] == ["type", "instance_id", "timestamp"]
    calls = next(
        c["then"] for c in body["allOf"] if c["if"]["properties"]["type"]["const"] == "calls_active"
    )
    entry = calls["properties"]["calls"]["items"]
    assert entry["required"] == ["id", "sys_name"]
    assert {"type": "string", "pattern": "^ *[+-]?[0-9]{1,9}(\\.0{0,20})? *$"} in entry[
        "properties"
    ]["tdma_slot"]["anyOf"]
    assert "422" in ingest["responses"] and "401" in ingest["responses"]

    def parameters(path: str) -> dict[str, dict]:
        operation = doc["paths"][path]["get"]
        assert set(doc["paths"][path]) == {"get"}
        return {p["name"]: p for p in operation["parameters"]}

    assert list(parameters(SUMMARY)) == ["instance_id"]
    live = parameters(LIVE)
    assert list(live) == ["instance_id", "sys_name", "q", "hide_encrypted"]
    assert live["sys_name"]["schema"]["type"] == "array" and live["sys_name"]["explode"]
    assert live["sys_name"]["schema"]["maxItems"] == 50
    assert live["q"]["schema"]["anyOf"][0]["maxLength"] == 200
    assert live["hide_encrypted"]["schema"]["anyOf"][0]["type"] == "boolean"
    history = parameters(HISTORY)
    assert list(history) == ["instance_id", "window"]
    assert history["window"]["schema"]["anyOf"][0]["pattern"] == "^[1-9][0-9]{0,5}[smh]$"
    assert all(p["in"] == "query" and not p["required"] for p in {**live, **history}.values())


# -- Events on GET /api/v1/sse ----------------------------------------------------------


async def subscribed(stream) -> FrameParser:
    """A parser for this stream, once the server has subscribed it (the retry hint)."""
    parser = FrameParser()
    async with asyncio.timeout(10):
        while parser.retry is None:
            assert parser.feed(await stream.read()) == []
            await asyncio.sleep(0.005)
    return parser


async def test_a_live_client_on_the_call_event_types_gets_exactly_the_call_events(client):
    queries = [CALL_EVENTS, "domain=traffic&system=MCSO-WT", f"{CALL_EVENTS}&site=1"]
    async with (
        client.simulate_get_stream(SSE, query_string=queries[0]) as calls,
        client.simulate_get_stream(SSE, query_string=queries[1]) as mcso,
        client.simulate_get_stream(SSE, query_string=queries[2]) as site_1,
    ):
        parsers = [await subscribed(s.stream) for s in (calls, mcso, site_1)]
        mcso_call = call("m", sys_num=3, sys_name="MCSO-WT")
        for body in (
            message("rates", 10, [rate(1, "PRWC-J", 39.0), rate(3, "MCSO-WT", 26.0)]),
            message("calls_active", 10, [call("p"), mcso_call]),
            message("rates", 11, [rate(1, "PRWC-J", 38.0)]),  # decode events between
            message("calls_active", 12, [mcso_call]),
            message("recorders", 12, []),
            message("calls_active", 13, []),
        ):
            assert (await post(client, body)).status_code == 200
        got = [
            await read_events(s.stream, p, n)
            for s, p, n in zip((calls, mcso, site_1), parsers, (4, 2, 2), strict=True)
        ]
        await asyncio.sleep(0.2)
        extra = [
            p.feed(await s.stream.read())
            for s, p in zip((calls, mcso, site_1), parsers, strict=True)
        ]
    started, ended = "traffic.call.started", "traffic.call.ended"
    assert [(e.event, e.data["payload"]["call_id"]) for e in got[0]] == [
        (started, "m"),  # a snapshot's starts in call id order, then its ends
        (started, "p"),
        (ended, "p"),
        (ended, "m"),
    ]
    assert [(e.event, e.data["payload"]["call_id"]) for e in got[1]] == [
        (started, "m"),
        (ended, "m"),
    ]
    assert [(e.event, e.data["payload"]["call_id"]) for e in got[2]] == [
        (started, "p"),
        (ended, "p"),
    ]
    assert extra == [[], [], []]  # no decode, recorder or other event after them
    first = got[0][0]
    assert first.data["event_type"] == started and first.data["source"]["instance"] == INSTANCE
    assert [e.id for e in got[0]] == sorted(e.id for e in got[0])


# -- Values the checks let through are stored and read back ------------------------------

# An integer written 1.0 or "1.00", a number below double precision's range: valid, so
# applied (typed as an integer, rounded to nine decimals), never a cast error.
VALID_BUT_UNCASTABLE = [
    pytest.param(json.dumps(message("rates", 1, [rate(1.0, "A", 30.0)])), id="sys_num 1.0"),
    pytest.param(json.dumps(message("rates", 1, [rate("1.00", "A", 30.0)])), id="sys_num '1.00'"),
    pytest.param(
        json.dumps(message("calls_active", 1, [call("a", sys_num=1.0)])), id="call sys_num 1.0"
    ),
    pytest.param(
        json.dumps(message("rates", 1, [rate(1, "A", 0.5)])).replace("0.5", "1e-400"),
        id="decoderate 1e-400",
    ),
    pytest.param(
        json.dumps(message("rates", 7, [])).replace(": 7", ": 1e-400"), id="timestamp 1e-400"
    ),
]


@pytest.mark.parametrize("raw", VALID_BUT_UNCASTABLE)
async def test_a_message_that_passes_validation_is_applied_or_refused_naming_a_field(client, raw):
    result = await post_raw(client, raw)
    assert result.status_code in (200, 422), result.text
    if result.status_code == 422:
        assert assert_error(result.json, "validation_failed")["details"]["field"]


# A call the ingest accepts never makes GET /api/v1/traffic/live-calls fail (a stored
# value the view could not cast would blank the Traffic Monitor for every reader).
@pytest.mark.parametrize(
    ("field", "raw_value"),
    [
        ("tdma_slot", "1.0"),
        ("rec_num", '"2.0"'),
        ("freq", "1e-400"),
        ("elapsed", "1e10"),
        ("elapsed", "999999999999999"),
        ("unit", "-999999999999999"),
    ],
)
async def test_a_call_the_ingest_accepts_never_breaks_the_live_calls_read(client, field, raw_value):
    sent = json.dumps(message("calls_active", 1, [call("a", **{field: "@"})]))
    posted = await post_raw(client, sent.replace('"@"', raw_value))
    assert posted.status_code in (200, 422), posted.text
    if posted.status_code == 200:  # accepted: then readable
        assert await live_ids(client) == ["a"]


# -- Property: no hostile body is a 5xx ---------------------------------------------------

# What older plugin versions send (every value a string), and the flags' spellings.
TEXT_VALUES = st.from_regex(r"\A ?[+-]?[0-9]{1,22}(\.[0-9]{0,22})? ?\Z") | st.sampled_from(
    ["true", "false", "TRUE", "", "1", "0", "1.0", "-0", "1e5", "NaN", "Infinity"]
)
FIELD_VALUES = JSON_VALUES | TEXT_VALUES | st.integers(-(2**40), 2**40)
ENTRY_FIELDS = {
    "rates": ["sys_num", "sys_name", "decoderate", "decoderate_interval", "control_channel"],
    "recorders": [
        "id", "src_num", "rec_num", "type", "freq", "duration", "count", "rec_state",
        "rec_state_type", "squelched",
    ],
    "calls_active": [
        "id", "call_num", "sys_num", "sys_name", "freq", "unit", "talkgroup",
        "talkgroup_alpha_tag", "elapsed", "phase2_tdma", "phase2", "tdma_slot", "encrypted",
        "emergency", "rec_num", "src_num", "start_time", "stop_time",
    ],
}  # fmt: skip
VALID_ENTRY = {
    "rates": rate(1, "PRWC-J", 30.0),
    "recorders": {"id": "0_0", "src_num": 0, "rec_num": 0, "rec_state_type": "IDLE"},
    "calls_active": call("c1"),
}
LIST_KEY = {"rates": "rates", "recorders": "recorders", "calls_active": "calls"}
TIMESTAMPS = st.integers(-5, 2**35) | st.floats(-1.0, 4e10) | TEXT_VALUES


def shaped(kind: str) -> st.SearchStrategy[dict]:
    """A message of this kind whose entries and top-level fields take arbitrary values."""
    entry = st.dictionaries(st.sampled_from(ENTRY_FIELDS[kind]), FIELD_VALUES, max_size=4).map(
        lambda fields: {**VALID_ENTRY[kind], **fields}
    )
    top = st.dictionaries(
        st.sampled_from(["type", "instance_id", LIST_KEY[kind]]), FIELD_VALUES, max_size=1
    )
    return st.builds(
        lambda timestamp, entries, overrides: {**message(kind, timestamp, entries), **overrides},
        TIMESTAMPS,
        st.lists(entry | JSON_VALUES, max_size=3),
        top,
    )


MESSAGES = st.sampled_from(list(ENTRY_FIELDS)).flatmap(shaped)
BODIES = st.one_of(
    JSON_VALUES,  # anything at all
    MESSAGES,
    st.lists(MESSAGES | JSON_VALUES, min_size=1, max_size=4),  # a batch
)


@pytest.fixture
async def unlimited(settings, db):
    """The app without rate limits: a property sends hundreds of requests a second."""
    unlimited = dataclasses.replace(settings, rate_limit_per_address=0.0, rate_limit_per_key=0.0)
    async with app_client(unlimited) as conductor:
        yield conductor


@through_the_app(max_examples=60)
@given(body=BODIES)
@example(body=message("calls_active", 1, [call("a")]))
@example(body=[message("rates", 1, [rate(1.0, "A", 30.0)]), {}])
@example(body={"type": "rates", "instance_id": "\x00", "timestamp": 1, "rates": []})
@example(body=[{}] * 1001)
async def test_any_json_body_is_answered_in_json_never_a_5xx(unlimited, db, body):
    before = traffic_state(db)
    raw = json.dumps(body, ensure_ascii=False).encode()
    result = await unlimited.simulate_post(INGEST, body=raw, headers=JSON | unlimited.ingest)
    status = result.status_code
    event(f"status {status}")  # --hypothesis-show-statistics: the mix of outcomes
    assert status in (200, 207, 400, 409, 422), (body, result.text)
    assert result.headers["content-type"].startswith("application/json")
    answer = json.loads(result.text)
    assert isinstance(answer, dict), result.text
    if status >= 400:
        assert_error(answer, answer["error"]["code"])
        assert traffic_state(db) == before, (body, result.text)  # a refusal writes nothing
    else:
        assert "status" in answer or "results" in answer, result.text
