"""Bad input: a clear 4xx in the one error shape, and nothing written."""

from __future__ import annotations

import dataclasses
import json

import pytest

from app.http import prepared
from tests.conftest import app_client
from tests.incidents import payload

JSON = {"Content-Type": "application/json"}


def assert_error(result, status: int, *words: str) -> dict:
    assert result.status_code == status, result.text
    error = result.json["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["details"], dict)
    for word in words:
        assert word in error["message"]
    return error


def without(key: str) -> dict:
    body = payload()
    del body[key]
    return body


BAD_BODIES = [
    pytest.param(b"{not json", 400, "JSON", id="malformed"),
    pytest.param(
        json.dumps(payload(dispatched_at="2026-11-22T10:05:34+20:05")).encode(),
        422,
        "dispatched_at",
        id="offset-beyond-15:59",
    ),
    pytest.param(b"[1, 2]", 400, "object", id="array"),
    pytest.param(b'"text"', 400, "object", id="string"),
    pytest.param(b"null", 400, "object", id="null"),
    pytest.param(b"NaN", 400, "JSON", id="nan"),
    pytest.param(b"\xff\xfe", 400, "UTF-8", id="not-utf8"),
    pytest.param(
        json.dumps(without("dispatched_at")).encode(),
        422,
        "dispatched_at",
        id="missing-dispatched_at",
    ),
    pytest.param(
        json.dumps(without("source_audio")).encode(), 422, "source_audio", id="missing-source_audio"
    ),
    pytest.param(
        json.dumps(payload(source_audio="")).encode(), 422, "source_audio", id="empty-source_audio"
    ),
    pytest.param(
        json.dumps(payload(dispatched_at="yesterday")).encode(),
        422,
        "dispatched_at",
        id="word-date",
    ),
    pytest.param(json.dumps(payload(dispatched_at="now")).encode(), 422, "dispatched_at", id="now"),
    pytest.param(
        json.dumps(payload(dispatched_at="2026-13-45T00:00:00")).encode(),
        422,
        "dispatched_at",
        id="impossible-date",
    ),
    pytest.param(
        json.dumps(payload(dispatched_at=1732251855)).encode(),
        422,
        "dispatched_at",
        id="number-date",
    ),
    pytest.param(json.dumps(payload(units="E1")).encode(), 422, "units", id="units-string"),
    pytest.param(json.dumps(payload(units=["E1", 2])).encode(), 422, "units", id="units-number"),
    pytest.param(json.dumps(payload(units=[None])).encode(), 422, "units", id="units-null"),
    pytest.param(
        json.dumps(payload(special_call="yes")).encode(),
        422,
        "special_call",
        id="special_call-string",
    ),
    pytest.param(json.dumps(payload(channel=5)).encode(), 422, "channel", id="channel-number"),
    pytest.param(
        json.dumps(payload(address={"a": 1})).encode(), 422, "address", id="address-object"
    ),
    pytest.param(json.dumps(payload(parsed=[1])).encode(), 422, "parsed", id="parsed-array"),
    pytest.param(json.dumps(payload(parsed="x")).encode(), 422, "parsed", id="parsed-string"),
    pytest.param(
        json.dumps(payload(transcript="nul \u0000 char")).encode(), 400, "", id="nul-char"
    ),
    pytest.param(b'{"source_audio": "\\ud800"}', 400, "", id="lone-surrogate"),
    pytest.param(b"", 400, "body", id="empty"),
]


@pytest.mark.parametrize(("body", "status", "word"), BAD_BODIES)
async def test_bad_bodies_are_rejected_and_write_nothing(client, db, body, status, word):
    result = await client.simulate_post(
        "/api/v1/incidents", body=body, headers=JSON | client.ingest
    )
    assert_error(result, status, word)
    assert db.execute("select count(*) from data.incidents").fetchone()[0] == 0


async def test_body_over_the_limit_is_413(client, db):
    body = json.dumps(payload(transcript="x" * (1024 * 1024))).encode()
    result = await client.simulate_post(
        "/api/v1/incidents", body=body, headers=JSON | client.ingest
    )
    assert_error(result, 413, "larger")
    assert db.execute("select count(*) from data.incidents").fetchone()[0] == 0


async def test_non_json_content_type_is_415(client, db):
    result = await client.simulate_post(
        "/api/v1/incidents", body=b"a=1", headers={"Content-Type": "text/plain"} | client.ingest
    )
    assert_error(result, 415, "application/json")


@pytest.mark.parametrize(
    ("query", "status", "word"),
    [
        ("page=0", 400, "page"),
        ("page=-1", 400, "page"),
        ("page=abc", 400, "page"),
        ("page=99999999999", 400, "page"),
        ("page_size=0", 400, "page_size"),
        ("page_size=201", 400, "page_size"),
        ("page_size=100000", 400, "page_size"),
        ("page_size=1.5", 400, "page_size"),
        ("from_dispatched_at=not-a-date", 400, "from_dispatched_at"),
        ("to_dispatched_at=2026-02-30T00:00:00", 400, "to_dispatched_at"),
        ("page=1&page=2", 400, "page"),
    ],
)
async def test_bad_list_parameters_are_400(client, query, status, word):
    result = await client.simulate_get("/api/v1/incidents", query_string=query)
    error = assert_error(result, status, word)
    assert word in json.dumps(error["details"]) or word in error["message"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/incidents/abc", 400),
        ("/api/v1/incidents/1.5", 400),
        ("/api/v1/incidents/99999999999999999999999", 400),
        ("/api/v1/incidents/-1", 404),
        ("/api/v1/incidents/0", 404),
        ("/api/v1/incidents/123456", 404),
        ("/api/v1/nothing-here", 404),
    ],
)
async def test_bad_ids_and_paths(client, path, status):
    assert_error(await client.simulate_get(path), status)


async def test_wrong_method_is_405_with_allow(client):
    result = await client.simulate_delete("/api/v1/incidents")
    assert_error(result, 405)
    assert "GET" in result.headers["allow"] and "POST" in result.headers["allow"]


async def test_get_on_a_write_function_is_not_a_write(client, db):
    result = await client.simulate_put("/api/v1/incidents/1", json=payload())
    assert_error(result, 405)


@pytest.mark.parametrize(
    "body",
    [b"[" * 100000, b'{"a":' * 50000, b'{"dispatched_at": ' + b"[" * 5000 + b"]" * 5000 + b"}"],
    ids=["deep-array", "deep-object", "deep-field"],
)
async def test_deeply_nested_json_is_a_4xx(client, db, body):
    result = await client.simulate_post(
        "/api/v1/incidents", body=body, headers=JSON | client.ingest
    )
    assert 400 <= result.status_code < 500
    assert db.execute("select count(*) from data.incidents").fetchone()[0] == 0


@pytest.mark.parametrize(
    "query",
    [
        "q=%00",
        "address_search=%00",
        "incident_type=%ff%fe",
        "units=%00&units=x",
        "q=" + "x" * 5000,
        "address_search=\\",
        "q=!!!(&|",
        "from_dispatched_at=infinity",
        "page=%20",
        "page_size=1e3",
    ],
)
async def test_hostile_query_values_never_500(client, query):
    result = await client.simulate_get("/api/v1/incidents", query_string=query)
    assert result.status_code < 500, result.text
    if result.status_code >= 400:
        assert set(result.json["error"]) == {"code", "message", "details"}


@pytest.mark.parametrize("segment", ["%00", "%ff", "1%2F2", "9" * 400, "1e5", " 1"])
async def test_hostile_ids_never_500(client, segment):
    result = await client.simulate_get(f"/api/v1/incidents/{segment}")
    assert 400 <= result.status_code < 500, result.text


async def test_failing_calls_never_break_the_connection_they_ran_on(settings, db):
    """A call that fails leaves its connection fit for the next one (found by `make fuzz`
    with the earlier pipelined calls: after 4 failures on a connection, every later
    call on it was a 500)."""
    one = dataclasses.replace(settings, pool_min_size=1, pool_max_size=1)
    async with app_client(one) as client:
        for _ in range(8):
            bad = await client.simulate_post(
                "/api/v1/incidents", json={"units": 1}, headers=client.ingest
            )
            assert bad.status_code == 422
        for _ in range(8):
            good = await client.simulate_post(
                "/api/v1/incidents", json=payload(), headers=client.ingest
            )
            assert good.status_code == 201, good.text
            listed = await client.simulate_get("/api/v1/incidents", params={"page": "0"})
            assert listed.status_code == 400


async def test_statements_deallocated_behind_the_apps_back_are_prepared_again(settings, db):
    """The app prepares each route's statement once per connection; if they vanish
    (DEALLOCATE ALL, DISCARD ALL by a pooler or a DBA), the next call prepares them
    again, and a write still happens exactly once."""
    one = dataclasses.replace(settings, pool_min_size=1, pool_max_size=1)
    async with app_client(one) as client:
        first = await client.simulate_post(
            "/api/v1/incidents", json=payload(), headers=client.ingest
        )
        assert first.status_code == 201
        async with client.app.state.require_pool().connection() as conn:
            await conn.execute("deallocate all")
        again = await client.simulate_post(
            "/api/v1/incidents", json=payload(), headers=client.ingest
        )
        assert again.status_code == 201, again.text
        assert (await client.simulate_get("/api/v1/incidents")).json["total"] == 2
    assert db.execute("select count(*) from data.incidents").fetchone()[0] == 2


async def test_a_connection_past_its_statement_limit_starts_again(settings, db, monkeypatch):
    """Past PREPARED_LIMIT statements a connection deallocates them all and prepares
    afresh what the request needs: every call still answers."""
    monkeypatch.setattr(prepared, "PREPARED_LIMIT", 3)
    one = dataclasses.replace(settings, pool_min_size=1, pool_max_size=1)
    async with app_client(one) as client:
        for query in ("", "page=1", "page_size=5", "q=fire", "channel=x", ""):
            listed = await client.simulate_get("/api/v1/incidents", query_string=query)
            assert listed.status_code == 200, (query, listed.text)
        async with client.app.state.require_pool().connection() as conn:
            assert len(prepared.PREPARED[conn]) <= 3
