"""Alert routes over HTTP (issue 17): channels, rules and deliveries per user (two users'
tokens), validation errors in the error shape, the secret shown once, credentials."""

from __future__ import annotations

import dataclasses
import time

import jwt
import pytest

from tests.alerts import incident
from tests.conftest import app_client

SECRET = "a" * 40
FIRE = {"incident_type": "Structure Fire", "units": ["E12"], "transcript": "smoke showing"}


@pytest.fixture
async def client(settings, db):
    settings = dataclasses.replace(
        settings, jwt_secret=SECRET, jwt_audience=None, jwt_default_role="emberlog_user"
    )
    async with app_client(settings) as conductor:
        yield conductor


def token(sub: str | None, **claims) -> dict[str, str]:
    body = {"exp": int(time.time()) + 300, **claims}
    if sub is not None:
        body["sub"] = sub
    return {"Authorization": f"Bearer {jwt.encode(body, SECRET, algorithm='HS256')}"}


ALICE, BOB = token("alice"), token("bob")


async def make_channel(client, headers, url="https://hooks.example/alice", name="pager"):
    made = await client.simulate_post(
        "/api/v1/alert-channels", json={"name": name, "url": url}, headers=headers
    )
    assert made.status_code == 201, made.json
    return made


async def test_channels_crud_with_the_secret_shown_once(client):
    made = await make_channel(client, ALICE)
    channel = made.json
    assert channel["secret"].startswith("whsec_") and len(channel["secret"]) > 40
    assert made.headers["location"].endswith(f"/api/v1/alert-channels/{channel['id']}")
    assert channel["verified"] is False and channel["kind"] == "webhook"
    path = f"/api/v1/alert-channels/{channel['id']}"

    shown = await client.simulate_get(path, headers=ALICE)
    assert shown.status_code == 200 and "secret" not in shown.json
    listed = await client.simulate_get("/api/v1/alert-channels", headers=ALICE)
    assert [c["id"] for c in listed.json["data"]] == [channel["id"]]
    assert all("secret" not in c for c in listed.json["data"])

    patched = await client.simulate_patch(path, json={"name": "phone"}, headers=ALICE)
    assert patched.status_code == 200 and patched.json["name"] == "phone"
    assert "secret" not in patched.json

    deleted = await client.simulate_delete(path, headers=ALICE)
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await client.simulate_get(path, headers=ALICE)).status_code == 404


async def test_rules_crud(client):
    hook = (await make_channel(client, ALICE)).json["id"]
    body = {
        "name": "E12 fires",
        "throttle_sec": 60,
        "filters": {"incident_types": ["Structure Fire"], "units": ["E12"], "keywords": "smoke"},
        "alert_channel_ids": [hook],
    }
    made = await client.simulate_post("/api/v1/alert-rules", json=body, headers=ALICE)
    assert made.status_code == 201, made.json
    rule = made.json
    assert rule["filters"] == {
        "incident_types": ["Structure Fire"], "units": ["E12"], "channels": [],
        "keywords": "smoke", "address": None,
    }  # fmt: skip
    assert (rule["enabled"], rule["throttle_sec"], rule["alert_channel_ids"]) == (True, 60, [hook])
    path = made.headers["location"].split("http://falconframework.org")[-1]
    assert path == f"/api/v1/alert-rules/{rule['id']}"

    patched = await client.simulate_patch(path, json={"enabled": False}, headers=ALICE)
    assert patched.status_code == 200 and patched.json["enabled"] is False
    assert patched.json["filters"] == rule["filters"]
    listed = await client.simulate_get("/api/v1/alert-rules", headers=ALICE)
    assert [r["name"] for r in listed.json["data"]] == ["E12 fires"]

    in_use = await client.simulate_delete(f"/api/v1/alert-channels/{hook}", headers=ALICE)
    assert in_use.status_code == 409
    assert in_use.json["error"]["code"] == "channel_in_use"
    assert (await client.simulate_delete(path, headers=ALICE)).status_code == 204
    assert (await client.simulate_get(path, headers=ALICE)).status_code == 404


async def test_two_users_see_only_their_own(client, db):
    alice_hook = (await make_channel(client, ALICE)).json["id"]
    rule = await client.simulate_post(
        "/api/v1/alert-rules",
        json={"name": "all", "alert_channel_ids": [alice_hook]},
        headers=ALICE,
    )
    rule_id = rule.json["id"]
    new = incident(db, **FIRE)

    for path in ("/api/v1/alert-channels", "/api/v1/alert-rules", "/api/v1/alert-deliveries"):
        theirs = await client.simulate_get(path, headers=BOB)
        assert theirs.status_code == 200 and theirs.json["data"] == [], path
    for method, path in [
        ("GET", f"/api/v1/alert-channels/{alice_hook}"),
        ("PATCH", f"/api/v1/alert-channels/{alice_hook}"),
        ("DELETE", f"/api/v1/alert-channels/{alice_hook}"),
        ("POST", f"/api/v1/alert-channels/{alice_hook}/test"),
        ("GET", f"/api/v1/alert-rules/{rule_id}"),
        ("PATCH", f"/api/v1/alert-rules/{rule_id}"),
        ("DELETE", f"/api/v1/alert-rules/{rule_id}"),
    ]:
        body = {"name": "bob's now"} if method == "PATCH" else None
        answer = await client.simulate_request(method, path, json=body, headers=BOB)
        assert answer.status_code == 404, (method, path)
        assert answer.json["error"]["code"] == "not_found"
    stolen = await client.simulate_post(
        "/api/v1/alert-rules", json={"name": "x", "alert_channel_ids": [alice_hook]}, headers=BOB
    )
    assert stolen.status_code == 422
    assert stolen.json["error"]["details"] == {"field": "alert_channel_ids"}

    mine = await client.simulate_get("/api/v1/alert-deliveries", headers=ALICE)
    [delivery] = mine.json["data"]
    assert (delivery["incident_id"], delivery["status"]) == (new, "queued")
    assert delivery["rule"] == {"id": rule_id, "name": "all"}
    one = f"/api/v1/alert-deliveries/{delivery['id']}"
    assert (await client.simulate_get(one, headers=BOB)).status_code == 404
    assert (await client.simulate_get(one, headers=ALICE)).json == delivery
    not_dead = await client.simulate_post(f"{one}/retry", headers=ALICE)
    assert not_dead.status_code == 409 and not_dead.json["error"]["code"] == "not_dead"
    rows = db.execute("select name from data.alert_channels").fetchall()
    assert rows == [("pager",)]  # nothing of bob's changes reached alice's rows


async def test_a_test_delivery_is_queued(client, db):
    hook = (await make_channel(client, ALICE)).json["id"]
    queued = await client.simulate_post(f"/api/v1/alert-channels/{hook}/test", headers=ALICE)
    assert queued.status_code == 202
    assert (queued.json["kind"], queued.json["status"]) == ("test", "queued")
    filtered = await client.simulate_get(
        "/api/v1/alert-deliveries", params={"status": "queued"}, headers=ALICE
    )
    assert [d["id"] for d in filtered.json["data"]] == [queued.json["id"]]


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/api/v1/alert-channels", {"name": "x"}, 422, "url"),
        ("/api/v1/alert-channels", {"name": "x", "url": "javascript:alert(1)"}, 422, "url"),
        ("/api/v1/alert-channels", {"name": "x", "url": "https://a.example", "id": 9}, 422, "id"),
        ("/api/v1/alert-channels", [], 400, None),
        ("/api/v1/alert-rules", {"name": "x", "alert_channel_ids": [999]}, 422,
         "alert_channel_ids"),
        ("/api/v1/alert-rules", {"name": "x", "alert_channel_ids": [1], "throttle_sec": "5"},
         422, "throttle_sec"),
        ("/api/v1/alert-rules",
         {"name": "x", "alert_channel_ids": [1], "filters": {"keywords": "a" * 201}}, 422,
         "filters.keywords"),
    ],
)  # fmt: skip
async def test_bad_bodies_are_4xx_in_the_error_shape_and_write_nothing(
    client, db, path, body, status, field
):
    answer = await client.simulate_post(path, json=body, headers=ALICE)
    assert answer.status_code == status, answer.json
    error = answer.json["error"]
    assert error["code"] and error["message"]
    if field:
        assert error["details"] == {"field": field}
    assert db.execute("select count(*) from data.alert_channels").fetchone() == (0,)
    assert db.execute("select count(*) from data.alert_rules").fetchone() == (0,)


async def test_bad_path_and_query_values_are_400(client):
    for path in ("/api/v1/alert-rules/x", "/api/v1/alert-deliveries/not-a-uuid"):
        answer = await client.simulate_get(path, headers=ALICE)
        assert answer.status_code == 400, path
    wrong = await client.simulate_get(
        "/api/v1/alert-deliveries", params={"status": "lost"}, headers=ALICE
    )
    assert wrong.status_code == 400


async def test_alerts_need_a_signed_in_user(client):
    anonymous = await client.simulate_get("/api/v1/alert-rules")
    assert anonymous.status_code == 401
    assert anonymous.json["error"]["code"] == "credentials_required"
    no_sub = await client.simulate_get("/api/v1/alert-rules", headers=token(None))
    assert no_sub.status_code == 403
    assert no_sub.json["error"]["code"] == "subject_required"
    # A signed-in user reads what anonymous callers read.
    assert (await client.simulate_get("/api/v1/incidents", headers=ALICE)).status_code == 200


async def test_odd_but_valid_values_are_taken_and_odd_tokens_refused(client):
    hook = (await make_channel(client, ALICE)).json["id"]
    made = await client.simulate_post(
        "/api/v1/alert-rules",
        json={"name": "r", "alert_channel_ids": [hook], "throttle_sec": 10.0},
        headers=ALICE,
    )
    assert made.status_code == 201 and made.json["throttle_sec"] == 10
    long_sub = await client.simulate_post(
        "/api/v1/alert-channels",
        json={"name": "n", "url": "https://hooks.example/"},
        headers=token("s" * 501),
    )
    assert long_sub.status_code == 403
    assert long_sub.json["error"]["code"] == "subject_too_long"
    assert "Failing row" not in long_sub.text
    port = await client.simulate_post(
        "/api/v1/alert-channels",
        json={"name": "n", "url": "https://hooks.example:99999/"},
        headers=ALICE,
    )
    assert port.status_code == 422 and port.json["error"]["details"] == {"field": "url"}
