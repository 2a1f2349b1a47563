"""POST /api/v1/ingest/events and GET /api/v1/events: canonical event envelopes over
HTTP (upstream API_CONTRACT v0.1 §3.2, §5), one envelope shape in both."""

from __future__ import annotations

import re
import uuid
from typing import Any

from tests.incidents import payload

INGEST = "/api/v1/ingest/events"
EVENTS = "/api/v1/events"
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
ENVELOPE_KEYS = [
    "event_id",
    "event_type",
    "schema_version",
    "timestamp",
    "received_at",
    "correlation_id",
    "source",
    "payload",
]


def envelope(**overrides: Any) -> dict[str, Any]:
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": "traffic.call.started",
        "schema_version": "1.0.0",
        "timestamp": "2026-11-22T05:04:15Z",
        "source": {"module": "trunk-recorder", "instance": "tr-1", "system": "PRWC"},
        "payload": {"call_id": "c1"},
    }
    event.update(overrides)
    return event


async def post(client, events: list[Any] | Any, headers: dict | None = None):
    body = {"events": events} if isinstance(events, list) else events
    return await client.simulate_post(
        INGEST, json=body, headers=client.ingest if headers is None else headers
    )


def assert_envelope(event: dict) -> None:
    assert list(event) == ENVELOPE_KEYS
    assert ISO.match(event["timestamp"]) and ISO.match(event["received_at"])
    assert list(event["source"]) == ["module", "instance", "system"]
    assert isinstance(event["payload"], dict)


async def test_all_accepted_is_200_and_reports_the_stored_envelopes(client):
    sent = [envelope(), envelope(correlation_id="call-9")]
    result = await post(client, sent)
    assert result.status_code == 200
    body = result.json
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 0, 0)
    assert [r["event_id"] for r in body["results"]] == [e["event_id"] for e in sent]
    assert [r["status"] for r in body["results"]] == ["accepted", "accepted"]
    for result_, event in zip(body["results"], sent, strict=True):
        assert_envelope(result_["event"])
        assert result_["event"]["timestamp"] == "2026-11-22T05:04:15.000000Z"
        assert result_["event"]["source"] == event["source"]
    assert body["results"][1]["event"]["correlation_id"] == "call-9"


async def test_a_resent_batch_is_all_duplicates_and_stored_once(client, db):
    sent = [envelope(), envelope()]
    assert (await post(client, sent)).status_code == 200
    again = await post(client, sent)
    assert again.status_code == 200
    assert [r["status"] for r in again.json["results"]] == ["duplicate", "duplicate"]
    assert again.json["duplicates"] == 2
    assert db.execute("select count(*) from data.event_envelopes").fetchone() == (2,)


async def test_mixed_with_rejected_is_207(client, db):
    good = envelope()
    result = await post(client, [good, envelope(event_type="nope"), {"event_id": 1}])
    assert result.status_code == 207
    body = result.json
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "rejected"]
    rejected = body["results"][1]
    assert rejected["error"]["code"] == "validation_failed"
    assert rejected["error"]["details"] == {"field": "event_type"}
    assert body["results"][2]["event_id"] is None  # not a string: not echoed
    assert db.execute("select count(*) from data.event_envelopes").fetchone() == (1,)


async def test_all_rejected_is_422_with_the_error_shape_and_the_report(client, db):
    result = await post(client, [envelope(timestamp="2026-11-22"), envelope(payload=[])])
    assert result.status_code == 422
    body = result.json
    assert body["error"]["code"] == "validation_failed"
    assert body["rejected"] == 2 and body["accepted"] == 0
    fields = [r["error"]["details"]["field"] for r in body["results"]]
    assert fields == ["timestamp", "payload"]
    assert db.execute("select count(*) from data.event_envelopes").fetchone() == (0,)


async def test_a_body_that_is_not_a_batch_is_400(client):
    for body in ([], {"events": {}}, {"events": []}, {"other": 1}, {"events": [{}] * 501}):
        result = await post(client, body)
        assert result.status_code == 400, body
        assert "error" in result.json


async def test_ingest_needs_a_key(client):
    result = await post(client, [envelope()], headers={})
    assert result.status_code == 401
    assert "error" in result.json


async def test_anonymous_list_with_filters_and_pagination(client):
    sent = [
        envelope(timestamp="2026-01-01T00:00:01Z"),
        envelope(event_type="traffic.call.ended", timestamp="2026-01-01T00:00:02Z"),
        envelope(
            event_type="system.site.decode_rate.updated",
            timestamp="2026-01-01T00:00:03Z",
            source={"module": "m", "instance": "i", "system": "AZWINS"},
            payload={"decode_rate": 0.98},
        ),
    ]
    assert (await post(client, sent)).status_code == 200
    ids = [e["event_id"] for e in sent]

    listed = await client.simulate_get(EVENTS)
    assert listed.status_code == 200
    assert [e["event_id"] for e in listed.json["data"]] == ids[::-1]
    assert listed.json["pagination"] == {
        "limit": 50,
        "offset": 0,
        "total": 3,
        "total_exact": True,
    }

    async def got(query: str) -> list[str]:
        result = await client.simulate_get(EVENTS, query_string=query)
        assert result.status_code == 200, result.text
        return [e["event_id"] for e in result.json["data"]]

    assert await got("domain=traffic") == [ids[1], ids[0]]
    assert await got(
        "event_type=traffic.call.started&event_type=system.site.decode_rate.updated"
    ) == [
        ids[2],
        ids[0],
    ]
    assert await got("system=AZWINS") == [ids[2]]
    assert await got("domain=traffic&system=AZWINS") == []
    assert await got("from=2026-01-01T00:00:02Z&to=2026-01-01T00:00:03Z") == [ids[2], ids[1]]
    page = await client.simulate_get(EVENTS, query_string="limit=1&offset=1")
    assert [e["event_id"] for e in page.json["data"]] == [ids[1]]
    assert page.json["pagination"]["total"] == 3

    for bad in ("limit=0", "limit=501", "offset=-1", "from=not-a-date"):
        result = await client.simulate_get(EVENTS, query_string=bad)
        assert result.status_code == 400, bad
        assert "error" in result.json


async def test_list_and_ingest_send_the_same_envelope(client):
    sent = envelope(correlation_id="c-1")
    ingested = (await post(client, [sent])).json["results"][0]["event"]
    listed = (await client.simulate_get(EVENTS)).json["data"]
    assert listed == [ingested]
    assert_envelope(ingested)


async def test_an_incident_posted_over_http_is_listed_as_an_event(client):
    created = await client.simulate_post("/api/v1/incidents", json=payload(), headers=client.ingest)
    assert created.status_code == 201
    listed = await client.simulate_get(EVENTS, query_string="domain=dispatch")
    (event,) = listed.json["data"]
    assert_envelope(event)
    assert event["event_type"] == "dispatch.incident.created"
    assert event["payload"]["incident_id"] == str(created.json["id"])
    # and it is a valid envelope to ingest elsewhere (here: a duplicate of itself)
    again = await post(client, [{k: v for k, v in event.items() if k != "received_at"}])
    assert again.status_code == 200 and again.json["results"][0]["status"] == "duplicate"


async def test_openapi_lists_both_routes(client):
    doc = (await client.simulate_get("/openapi.json", headers=client.ingest)).json
    assert "post" in doc["paths"][INGEST]
    assert "get" in doc["paths"][EVENTS]
    params = {p["name"] for p in doc["paths"][EVENTS]["get"]["parameters"]}
    assert params == {"domain", "event_type", "system", "from", "to", "limit", "offset"}
