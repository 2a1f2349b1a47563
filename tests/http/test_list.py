"""GET /api/v1/incidents: filters, paging, totals, order."""

from __future__ import annotations

import pytest

from tests.incidents import payload

ROWS = [
    # (dispatched_at, type, channel, units, address, transcript)
    (
        "2026-11-01T10:00:00Z",
        "Structure Fire",
        "FIRE-DISP",
        ["E1", "L7"],
        "12 Main Street",
        "smoke showing from the second floor",
    ),
    (
        "2026-11-02T10:00:00Z",
        "Medical",
        "EMS-1",
        ["M2"],
        "40 Oak Avenue",
        "unconscious person breathing",
    ),
    (
        "2026-11-03T10:00:00Z",
        "Structure Fire",
        "FIRE-DISP",
        ["E3"],
        "7 Elm Street Apt 100%",
        "kitchen fire extinguished",
    ),
    (
        "2026-11-04T10:00:00Z",
        "Traffic Accident",
        "FIRE-DISP",
        ["E1", "M2"],
        "I-95 mile 12",
        "two vehicles, one trapped",
    ),
    ("2026-11-05T10:00:00Z", "Medical", "EMS-2", None, "99 Main_Street", "fall victim"),
    (
        "2026-11-05T10:00:00Z",
        "Gas Leak",
        "FIRE-DISP",
        [],
        "5 main street",
        "odor of gas in basement",
    ),
]


@pytest.fixture
async def seeded(client):
    ids = []
    for when, kind, channel, units, address, text in ROWS:
        result = await client.simulate_post(
            "/api/v1/incidents",
            json=payload(
                dispatched_at=when,
                incident_type=kind,
                channel=channel,
                units=units,
                address=address,
                text=text,
            ),
            headers=client.ingest,
        )
        assert result.status_code == 201
        ids.append(result.json["id"])
    return ids


async def listing(client, query: str = "") -> dict:
    result = await client.simulate_get("/api/v1/incidents", query_string=query)
    assert result.status_code == 200, result.text
    body = result.json
    assert set(body) == {"items", "total", "total_exact", "page", "page_size"}
    assert body["total_exact"] is True  # a handful of rows: always counted
    return body


def ids_of(body: dict) -> list[int]:
    return [item["id"] for item in body["items"]]


async def test_empty_list(client):
    assert await listing(client) == {
        "items": [],
        "total": 0,
        "total_exact": True,
        "page": 1,
        "page_size": 50,
    }


async def test_newest_first_ties_by_id_descending(client, seeded):
    body = await listing(client)
    assert ids_of(body) == [seeded[5], seeded[4], seeded[3], seeded[2], seeded[1], seeded[0]]
    assert body["total"] == 6


async def test_trailing_slash_is_the_same_route(client, seeded):
    result = await client.simulate_get("/api/v1/incidents/")
    assert result.status_code == 200
    assert ids_of(result.json) == ids_of(await listing(client))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("incident_type=Medical", [4, 1]),
        ("incident_type=medical", []),
        ("channel=FIRE-DISP", [5, 3, 2, 0]),
        ("units=M2", [3, 1]),
        ("units=L7&units=E3", [2, 0]),
        ("units=nobody", []),
        ("address_search=main street", [5, 0]),
        ("address_search=MAIN", [5, 4, 0]),
        ("address_search=100%", [2]),
        ("address_search=%", [2]),
        ("address_search=_", [4]),
        ("address_search=Main_", [4]),
        ("q=fire", [2, 0]),
        ("q=gas", [5]),
        ("q=trapped vehicles", [3]),
        ("q=basement OR unconscious", [5, 1]),
        ("from_dispatched_at=2026-11-04T10:00:00Z", [5, 4, 3]),
        ("to_dispatched_at=2026-11-02T10:00:00Z", [1, 0]),
        ("from_dispatched_at=2026-11-02T00:00:00&to_dispatched_at=2026-11-03T10:00:00", [2, 1]),
        ("incident_type=Structure Fire&units=E1", [0]),
        ("channel=FIRE-DISP&q=fire&address_search=street", [2, 0]),
        ("incident_type=Medical&from_dispatched_at=2026-11-03T00:00:00Z", [4]),
        ("incident_type=&channel=&units=&q=", [5, 4, 3, 2, 1, 0]),
        ("unknown=1", [5, 4, 3, 2, 1, 0]),
    ],
)
async def test_filters(client, seeded, query, expected):
    body = await listing(client, query)
    assert ids_of(body) == [seeded[i] for i in expected]
    assert body["total"] == len(expected)


async def test_paging_boundaries_and_totals(client, seeded):
    newest_first = ids_of(await listing(client))
    first = await listing(client, "page_size=4")
    second = await listing(client, "page_size=4&page=2")
    beyond = await listing(client, "page_size=4&page=3")
    assert ids_of(first) == newest_first[:4] and ids_of(second) == newest_first[4:]
    assert ids_of(beyond) == []
    assert first["total"] == second["total"] == beyond["total"] == 6
    assert (second["page"], second["page_size"]) == (2, 4)
    assert ids_of(await listing(client, "page_size=1&page=6")) == newest_first[5:]
    assert len((await listing(client, "page_size=200"))["items"]) == 6
    assert (await listing(client, "page_size=1"))["total"] == 6
    filtered = await listing(client, "channel=FIRE-DISP&page_size=3&page=2")
    assert filtered["total"] == 4 and len(filtered["items"]) == 1


async def test_items_have_the_incident_shape(client, seeded):
    item = (await listing(client, "page_size=1"))["items"][0]
    single = (await client.simulate_get(f"/api/v1/incidents/{item['id']}")).json
    assert item == single
