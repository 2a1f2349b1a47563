"""GET /metrics, scraped as Prometheus does: the counters move as requests and events
flow; labels stay bounded; the document is not part of the API description."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from tests import pg
from tests.http.test_stream import STREAM, hub_caught_up, post
from tests.sse import FrameParser, read_events


async def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one scrape, keyed by name and sorted labels."""
    result = await client.simulate_get("/metrics")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(result.text)
        for sample in family.samples
    }


def requests(samples, route: str, method: str, status: str) -> float:
    key = (
        "emberlog_http_requests_total",
        (("method", method), ("route", route), ("status", status)),
    )
    return samples.get(key, 0.0)


def latency_count(samples, route: str, method: str) -> float:
    key = ("emberlog_http_request_duration_seconds_count", (("method", method), ("route", route)))
    return samples.get(key, 0.0)


ITEM = "/api/v1/incidents/{id}"


async def test_requests_are_counted_by_route_template_method_and_status(client):
    created = await post(client)
    before = await scrape(client)
    for _ in range(3):
        assert (await client.simulate_get(f"/api/v1/incidents/{created}")).status_code == 200
    assert (await client.simulate_get("/api/v1/incidents/999999")).status_code == 404
    assert (await client.simulate_get("/no/such/path/123")).status_code == 404
    after = await scrape(client)
    assert requests(after, ITEM, "GET", "200") - requests(before, ITEM, "GET", "200") == 3
    assert requests(after, ITEM, "GET", "404") - requests(before, ITEM, "GET", "404") == 1
    # A path no route matched is one label value, never the path itself.
    assert (
        requests(after, "unmatched", "GET", "404") - requests(before, "unmatched", "GET", "404")
        == 1
    )
    assert not any("/no/such" in str(labels) for _, labels in after)
    assert latency_count(after, ITEM, "GET") - latency_count(before, ITEM, "GET") == 4
    assert requests(after, "/api/v1/incidents", "POST", "201") >= 1


async def test_pool_routes_and_process_are_reported(client):
    samples = await scrape(client)
    names = {name for name, _ in samples}
    requests_pool = (("pool", "requests"),)
    assert samples[("emberlog_pool_max_size", requests_pool)] == 4  # the test settings' pool
    assert samples[("emberlog_pool_size", requests_pool)] >= 1
    assert ("emberlog_pool_requests_waiting", requests_pool) in samples
    assert not any(
        name.startswith("emberlog_pool") for name, labels in samples if labels != requests_pool
    )
    assert samples[("emberlog_route_table_reloads_total", ())] >= 1
    assert samples[("emberlog_routes", ())] >= 4
    assert {"process_resident_memory_bytes", "process_open_fds", "python_info"} <= names


async def test_a_reload_is_counted(client, db):
    before = (await scrape(client))[("emberlog_route_table_reloads_total", ())]
    db.execute("notify emberlog_reload")
    async with asyncio.timeout(5):
        while (await scrape(client))[("emberlog_route_table_reloads_total", ())] == before:
            await asyncio.sleep(0.02)


async def test_stream_metrics_follow_clients_events_and_lag(client, db):
    async with client.simulate_get_stream(STREAM) as sr:
        await asyncio.sleep(0.05)
        await post(client)
        await read_events(sr.stream, FrameParser(), 1)
        samples = await scrape(client)
        assert samples[("emberlog_sse_clients", ())] == 1
    assert samples[("emberlog_sse_events_delivered_total", ())] == 1

    hub = await hub_caught_up(client, db)
    state = client.app_state
    await state.stream_metrics_once()
    stream = (("stream", STREAM),)
    samples = await scrape(client)
    head = pg.event_ids(db)[-1]
    assert samples[("emberlog_stream_head_event_id", stream)] == head
    assert samples[("emberlog_stream_lag_events", stream)] == 0
    hub.cursor -= 1  # as if this process had not fetched the newest event yet
    await state.stream_metrics_once()
    assert (await scrape(client))[("emberlog_stream_lag_events", stream)] == 1
    hub.cursor += 1


async def test_metrics_are_not_part_of_the_api_description(client):
    doc = (await client.simulate_get("/openapi.json")).json
    assert "/metrics" not in doc["paths"]
