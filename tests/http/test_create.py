"""POST /api/v1/incidents: the ingest service's contract."""

from __future__ import annotations

import dataclasses
import re

from tests.conftest import app_client
from tests.incidents import INCIDENT_FIELDS, payload

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
CALYPSO_HEADERS = {
    "Accept": "application/json",
    "Content-Type": "application/json",
}


async def test_create_returns_201_with_location_and_links(client):
    result = await client.simulate_post(
        "/api/v1/incidents/", json=payload(), headers={**CALYPSO_HEADERS, **client.ingest}
    )
    assert result.status_code == 201
    body = result.json
    assert isinstance(body["id"], int)
    assert ISO.match(body["created_at"])
    url = f"/api/v1/incidents/{body['id']}"  # relative: the Host header is the client's
    assert result.headers["location"] == url
    assert body["links"] == {"self": {"_url": url}}


async def test_every_field_round_trips_exactly(client):
    sent = payload(
        dispatched_at="2026-11-22T05:04:15.123456Z",
        special_call=True,
        units=["E1", "Ladder 7", "ÉMS-3"],
        channel="TAC 2",
        incident_type="Gas Leak",
        address="1600 Pennsylvania Ave NW, Washington",
        text='Quotes "and" backslash \\ and emoji 🚒 and newline\nsecond line',
        parsed={"nested": {"a": [1, 2.5, None, True]}, "unicode": "ü"},
    )
    created = await client.simulate_post("/api/v1/incidents", json=sent, headers=client.ingest)
    assert created.status_code == 201
    got = (await client.simulate_get(f"/api/v1/incidents/{created.json['id']}")).json
    assert got == {
        "id": created.json["id"],
        "dispatched_at": "2026-11-22T05:04:15.123456Z",
        "special_call": True,
        "units": sent["units"],
        "channel": sent["channel"],
        "incident_type": sent["incident_type"],
        "address": sent["address"],
        "source_audio": sent["source_audio"],
        "original_text": sent["original_text"],
        "transcript": sent["transcript"],
        "parsed": sent["parsed"],
        "created_at": created.json["created_at"],
    }
    assert list(got) == INCIDENT_FIELDS


async def test_optional_fields_may_be_null_or_absent(client):
    sent = {
        "dispatched_at": "2026-11-22T05:04:15Z",
        "source_audio": "calls/1.m4a",
        "units": None,
        "parsed": None,
        "special_call": None,
        "unknown_key": 1,
    }
    created = await client.simulate_post("/api/v1/incidents", json=sent, headers=client.ingest)
    assert created.status_code == 201
    got = (await client.simulate_get(f"/api/v1/incidents/{created.json['id']}")).json
    assert got["units"] is None and got["parsed"] is None and got["special_call"] is False
    assert got["channel"] is None and got["original_text"] is None


async def test_empty_units_stay_empty(client):
    created = await client.simulate_post(
        "/api/v1/incidents", json=payload(units=[]), headers=client.ingest
    )
    got = (await client.simulate_get(f"/api/v1/incidents/{created.json['id']}")).json
    assert got["units"] == []


async def test_naive_time_is_read_in_utc_by_default(client):
    created = await client.simulate_post(
        "/api/v1/incidents",
        json=payload(dispatched_at="2026-11-22T05:04:15"),
        headers=client.ingest,
    )
    got = (await client.simulate_get(f"/api/v1/incidents/{created.json['id']}")).json
    assert got["dispatched_at"] == "2026-11-22T05:04:15.000000Z"


async def test_offsets_are_converted_to_utc(client):
    created = await client.simulate_post(
        "/api/v1/incidents",
        json=payload(dispatched_at="2026-11-22T05:04:15-05:00"),
        headers=client.ingest,
    )
    got = (await client.simulate_get(f"/api/v1/incidents/{created.json['id']}")).json
    assert got["dispatched_at"] == "2026-11-22T10:04:15.000000Z"


async def test_duplicate_answers_200_with_the_existing_id(client, db):
    sent = payload()
    first = await client.simulate_post("/api/v1/incidents", json=sent, headers=client.ingest)
    again = await client.simulate_post("/api/v1/incidents/", json=sent, headers=client.ingest)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json == first.json
    assert again.headers["location"] == first.headers["location"]
    assert db.execute("select count(*) from data.incidents").fetchone()[0] == 1


async def test_duplicate_with_null_text_is_caught(client, db):
    sent = payload(original_text=None, transcript=None)
    first = await client.simulate_post("/api/v1/incidents", json=sent, headers=client.ingest)
    again = await client.simulate_post("/api/v1/incidents", json=sent, headers=client.ingest)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json["id"] == first.json["id"]
    assert db.execute("select count(*) from data.incidents").fetchone()[0] == 1


async def test_one_recording_may_hold_several_incidents(client, db):
    audio = "https://audio.example/calls/shared.m4a"
    a = await client.simulate_post(
        "/api/v1/incidents", json=payload(source_audio=audio), headers=client.ingest
    )
    b = await client.simulate_post(
        "/api/v1/incidents", json=payload(source_audio=audio), headers=client.ingest
    )
    c = await client.simulate_post(
        "/api/v1/incidents",
        json=payload(source_audio=audio, original_text=None),
        headers=client.ingest,
    )
    assert [r.status_code for r in (a, b, c)] == [201, 201, 201]
    assert len({a.json["id"], b.json["id"], c.json["id"]}) == 3


async def test_long_texts_are_stored_and_deduplicated(client, db):
    text = "word " * 20000  # 100 kB: longer than a btree entry may be
    sent = payload(text=text)
    first = await client.simulate_post("/api/v1/incidents", json=sent, headers=client.ingest)
    again = await client.simulate_post("/api/v1/incidents", json=sent, headers=client.ingest)
    assert (first.status_code, again.status_code) == (201, 200)


async def test_naive_time_is_read_in_naive_timezone(settings, db):
    chicago = dataclasses.replace(settings, naive_timezone="America/Chicago")
    async with app_client(chicago) as client:
        naive = await client.simulate_post(
            "/api/v1/incidents",
            json=payload(dispatched_at="2026-11-22T05:04:15"),
            headers=client.ingest,
        )
        aware = await client.simulate_post(
            "/api/v1/incidents",
            json=payload(dispatched_at="2026-11-22T05:04:15Z"),
            headers=client.ingest,
        )
        got = [
            (await client.simulate_get(f"/api/v1/incidents/{r.json['id']}")).json
            for r in (naive, aware)
        ]
        listed = await client.simulate_get(
            "/api/v1/incidents", query_string="from_dispatched_at=2026-11-22T05:04:14"
        )
    assert got[0]["dispatched_at"] == "2026-11-22T11:04:15.000000Z"
    assert got[1]["dispatched_at"] == "2026-11-22T05:04:15.000000Z"
    assert [i["id"] for i in listed.json["items"]] == [naive.json["id"]]
