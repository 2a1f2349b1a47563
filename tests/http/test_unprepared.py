"""PREPARED_STATEMENTS=false, for a pooler in transaction mode: every statement goes
inline, nothing is prepared on the connection, and every answer is the one a prepared
call gives (tests/e2e/test_pooler.py runs it through a real PgBouncer)."""

from __future__ import annotations

import dataclasses
import json

import psycopg
import pytest

from app.http import errors
from app.http.prepared import PREPARED
from app.http.statements import Statement
from tests.conftest import app_client
from tests.http.test_stream import STREAM
from tests.incidents import payload
from tests.sse import FrameParser, read_events

# Values that would break a statement spliced together carelessly: quotes, %, $1.
AWKWARD = '50% o\'clock "quoted" $1 $$ %(values)s \\ end'

READS = [
    "/api/v1/incidents",
    "/api/v1/incidents?page_size=2&page=2",
    "/api/v1/incidents?q=o'clock",
    "/api/v1/incidents?q=50%25",
    "/api/v1/incidents?channel=FIRE-DISP&special_call=true",
    "/api/v1/incidents?since=2026-11-22T05:00:00",
    "/api/v1/incidents?page=abc",
    "/api/v1/incidents?since=yesterday",
    "/api/v1/incidents/999999999",
]


@pytest.fixture
def unprepared(settings):
    return dataclasses.replace(settings, prepared_statements=False, pool_max_size=1)


async def test_answers_match_the_prepared_ones_and_nothing_is_prepared(settings, unprepared, db):
    async with app_client(unprepared) as inline, app_client(settings) as prepared:
        created = []
        for overrides in ({}, {"text": AWKWARD, "special_call": True}, {"address": AWKWARD}):
            result = await inline.simulate_post(
                "/api/v1/incidents", json=payload(**overrides), headers=inline.ingest
            )
            assert result.status_code == 201, result.text
            created.append(result.json["id"])
        bad = await inline.simulate_post(
            "/api/v1/incidents", json=payload(units="E1"), headers=inline.ingest
        )
        assert bad.status_code == 422, bad.text
        for path in [*READS, *(f"/api/v1/incidents/{n}" for n in created)]:
            mine, theirs = await inline.simulate_get(path), await prepared.simulate_get(path)
            assert (mine.status_code, mine.json) == (theirs.status_code, theirs.json), path
        assert (await inline.simulate_get("/api/v1/incidents?q=o'clock")).json[
            "total"
        ] == 2  # text and address
        async with inline.app_state.require_pool().connection() as conn:
            cur = await conn.execute("select count(*) from pg_catalog.pg_prepared_statements")
            assert (await cur.fetchone())[0] == 0
            assert conn.prepare_threshold is None  # psycopg prepares nothing either
            assert conn not in PREPARED
    assert db.execute("select count(*) from data.incidents").fetchone()[0] == 3


async def test_the_stream_replays_and_goes_live_without_prepared_statements(unprepared, db):
    async with app_client(unprepared) as client:
        first = await client.simulate_post(
            "/api/v1/incidents", json=payload(), headers=client.ingest
        )
        async with client.simulate_get_stream(STREAM, params={"last_event_id": "0"}) as sr:
            parser = FrameParser()
            (replayed,) = await read_events(sr.stream, parser, 1)
            second = await client.simulate_post(
                "/api/v1/incidents", json=payload(text=AWKWARD), headers=client.ingest
            )
            (live,) = await read_events(sr.stream, parser, 1)
        item = await client.simulate_get(f"/api/v1/incidents/{second.json['id']}")
    assert replayed.data["id"] == first.json["id"]
    assert live.data == item.json and live.data["transcript"] == AWKWARD


def test_inline_keeps_quoted_text_and_casts_each_value(db):
    """$n inside quoted names and strings is text, not a parameter; % is escaped for
    psycopg's binding; each value arrives as a literal of its declared type."""
    db.execute(
        'create function pg_temp."odd$1%name"(a jsonb, b integer) returns text'
        " language sql as $$ select a::text || ' ' || b $$"
    )
    statement = Statement.of(
        "odd", "select pg_temp.\"odd$1%name\"($1, $2) || ' $1%'", {"a": "jsonb", "b": "integer"}
    )
    assert statement.inline.count("%(a)s") == 1 and "' $1%%'" in statement.inline
    value = json.dumps({"x": AWKWARD})
    cursor = psycopg.ClientCursor(db)
    cursor.execute(statement.inline, {"a": value, "b": -7})
    assert cursor.fetchone()[0] == f"{value} -7 $1%"


@pytest.mark.parametrize(
    "symptom",
    [psycopg.errors.InvalidSqlStatementName, psycopg.errors.DuplicatePreparedStatement],
)
def test_prepared_statements_behind_a_transaction_pooler_are_named_in_the_log(symptom, caplog):
    """What PgBouncer in transaction mode does to prepared statements (statements missing
    in the next transaction, or already there) is a 500 whose log names the setting."""
    error = errors.from_database(symptom("prepared statement ... does not exist"))
    assert error.status == 500 and error.message == "internal server error"
    assert "set PREPARED_STATEMENTS=false" in caplog.text
