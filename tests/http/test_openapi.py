"""GET /openapi.json: generated from the routes declared in SQL, their signatures,
comments and grants; valid OpenAPI 3.1. (`make fuzz` checks it against behaviour.)"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import schemathesis

from tests.conftest import app_client

INCIDENTS = "/api/v1/incidents"


async def document(client, headers: dict | None = None) -> dict:
    result = await client.simulate_get("/openapi.json", headers=headers)
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("application/json")
    return result.json


async def test_the_document_is_valid_openapi_and_describes_the_sql_routes(client):
    doc = await document(client)
    schemathesis.openapi.from_dict(doc).validate()
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {
        INCIDENTS,
        f"{INCIDENTS}/{{id}}",
        "/api/v1/sse/incidents",
        "/api/v1/sse",
        "/api/v1/events",
        "/api/v1/ingest/events",
        "/api/v1/ingest/trunk-recorder",
        "/api/v1/traffic/summary",
        "/api/v1/traffic/live-calls",
        "/api/v1/traffic/decode-history",
        "/api/v1/alert-channels",
        "/api/v1/alert-channels/{id}",
        "/api/v1/alert-channels/{id}/test",
        "/api/v1/alert-rules",
        "/api/v1/alert-rules/{id}",
        "/api/v1/alert-deliveries",
        "/api/v1/alert-deliveries/{id}",
        "/api/v1/alert-deliveries/{id}/retry",
    }
    listing = doc["paths"][INCIDENTS]["get"]
    assert listing["operationId"] == "list_incidents"
    assert listing["x-sql-function"] == "api.list_incidents"
    assert listing["summary"].startswith("Incidents newest first")
    assert "@param" not in listing["description"]
    params = {p["name"]: p for p in listing["parameters"]}
    assert list(params) == [
        "from_dispatched_at",
        "to_dispatched_at",
        "incident_type",
        "channel",
        "units",
        "address_search",
        "q",
        "page",
        "page_size",
        "If-None-Match",  # @etag: conditional requests
    ]
    assert set(listing["responses"]) >= {"200", "304"}
    assert "ETag" in listing["responses"]["304"]["headers"]
    page_size = params["page_size"]["schema"]["anyOf"][0]
    assert (page_size["minimum"], page_size["maximum"]) == (1, 200)  # from @param
    assert params["units"]["schema"]["type"] == "array" and params["units"]["explode"]
    assert params["from_dispatched_at"]["schema"]["anyOf"][0]["format"] == "date-time"
    item = doc["paths"][f"{INCIDENTS}/{{id}}"]["get"]
    id_param, conditional = item["parameters"]
    assert conditional["name"] == "If-None-Match" and conditional["in"] == "header"
    assert id_param["in"] == "path" and id_param["required"]
    assert id_param["schema"]["format"] == "int64"
    assert "404" in item["responses"]


async def test_errors_security_and_the_body_come_from_the_declarations(client):
    doc = await document(client)
    create = doc["paths"][INCIDENTS]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["dispatched_at", "source_audio"]  # from @body
    assert body["properties"]["parsed"]["additionalProperties"] == {
        "$ref": "#/components/schemas/JsonValue"
    }
    assert {"200", "201", "401", "409", "413", "415", "422", "429"} <= set(create["responses"])
    assert create["security"] == [{"ApiKey": []}]  # the anonymous role may not write
    assert {} in doc["paths"][INCIDENTS]["get"]["security"]  # it may read
    error = doc["components"]["responses"]["401"]
    assert error["headers"]["WWW-Authenticate"]["required"] is True
    shape = doc["components"]["schemas"]["Error"]
    assert shape["properties"]["error"]["required"] == ["code", "message", "details"]
    stream = doc["paths"]["/api/v1/sse/incidents"]["get"]
    assert stream["tags"] == ["stream"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]


async def test_settings_shape_the_security_described(settings, db):
    closed = dataclasses.replace(settings, anonymous_reads=False, jwt_secret="k" * 40)
    async with app_client(closed) as client:
        doc = await document(client, client.ingest)  # closed: the document needs a key too
    assert set(doc["components"]["securitySchemes"]) == {"ApiKey", "Bearer", "Cookie"}
    listing = doc["paths"][INCIDENTS]["get"]["security"]
    assert listing == [{"ApiKey": []}, {"Bearer": []}, {"Cookie": []}]
    assert {"Cookie": []} not in doc["paths"][INCIDENTS]["post"]["security"]  # never writes


async def test_a_route_added_in_sql_appears_after_the_reload(client, db):
    db.execute(
        """create function api.count_units(unit text, since timestamptz default null)
        returns json language sql stable as $$ select json_build_object('n', 0) $$"""
    )
    db.execute(
        "comment on function api.count_units(text, timestamptz) is"
        ' E\'@http GET /api/v1/units/{unit}/count\\n@param unit {"maxLength": 20}\\n'
        "How often a unit was dispatched.'"
    )
    try:
        db.execute("notify emberlog_reload")
        deadline = time.monotonic() + 30  # reloads are coalesced; a busy machine is slow
        while time.monotonic() < deadline:
            doc = await document(client)
            if "/api/v1/units/{unit}/count" in doc["paths"]:
                break
            await asyncio.sleep(0.05)
        op = doc["paths"]["/api/v1/units/{unit}/count"]["get"]
        assert op["summary"] == "How often a unit was dispatched."
        unit = next(p for p in op["parameters"] if p["name"] == "unit")
        assert unit["schema"]["maxLength"] == 20 and unit["in"] == "path"
        assert op["security"] == [{"ApiKey": []}]  # not granted to the anonymous role
    finally:
        db.execute("drop function api.count_units(text, timestamptz); notify emberlog_reload")


async def test_a_bad_annotation_leaves_the_route_out_and_says_why(client, db, caplog):
    db.execute("create function api.oops() returns json language sql as $$ select null::json $$")
    db.execute(
        "comment on function api.oops() is E'@http GET /api/v1/oops\\n@param nope {\"a\": 1}'"
    )
    try:
        await client.app_state.reload_routes()
        assert "@param nope is not an argument" in caplog.text
        assert "/api/v1/oops" not in (await document(client))["paths"]
    finally:
        db.execute("drop function api.oops()")
