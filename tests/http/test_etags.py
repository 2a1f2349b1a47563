"""Conditional GETs (issue 18): routes declaring @etag answer with an ETag made from the
database's version of what they read; If-None-Match naming the current one is a 304
without a body, and never after a write, whoever wrote it."""

from __future__ import annotations

import asyncio
import json
import re
import threading

import psycopg
import pytest

from tests import pg
from tests.incidents import payload

ETAG = re.compile(r'^"v(\d+)-[0-9a-f]{16}"$')


def create(db, n: int = 1) -> list[int]:
    return [
        db.execute(
            "select (api.create_incident(%s::jsonb) ->> 'id')::bigint", (json.dumps(payload()),)
        ).fetchone()[0]
        for _ in range(n)
    ]


async def test_an_unchanged_incident_is_a_304_without_a_body(client, db):
    [first] = create(db)
    fresh = await client.simulate_get(f"/api/v1/incidents/{first}")
    assert fresh.status_code == 200
    tag = fresh.headers["etag"]
    assert ETAG.match(tag) and fresh.headers["cache-control"] == "no-cache"
    again = await client.simulate_get(f"/api/v1/incidents/{first}", headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == tag
    # weak comparison, and a list of tags, as HTTP allows
    weak = await client.simulate_get(
        f"/api/v1/incidents/{first}", headers={"If-None-Match": f'"x", W/{tag}'}
    )
    assert weak.status_code == 304


@pytest.mark.parametrize(
    "write",
    [
        "insert into data.incidents (dispatched_at, source_audio) values (now(), 'psql.mp3')",
        "update data.incidents set address = 'moved'"
        " where id = (select min(id) from data.incidents)",
        "delete from data.incidents where id = (select max(id) from data.incidents)",
        "truncate data.incidents cascade",
    ],
)
async def test_any_write_from_psql_makes_the_tag_stale(client, db, write):
    create(db, 2)
    listed = await client.simulate_get("/api/v1/incidents")
    tag = listed.headers["etag"]
    db.execute(write)
    after = await client.simulate_get("/api/v1/incidents", headers={"If-None-Match": tag})
    assert after.status_code == 200 and after.headers["etag"] != tag


async def test_a_write_that_changes_nothing_keeps_the_tag(client, db):
    create(db)
    tag = (await client.simulate_get("/api/v1/incidents")).headers["etag"]
    db.execute("update data.incidents set address = 'x' where false")
    duplicate = payload()
    for _ in range(2):  # the second is a duplicate: nothing written
        db.execute("select api.create_incident(%s::jsonb)", (json.dumps(duplicate),))
    tag = (await client.simulate_get("/api/v1/incidents")).headers["etag"]
    db.execute("select api.create_incident(%s::jsonb)", (json.dumps(duplicate),))
    same = await client.simulate_get("/api/v1/incidents", headers={"If-None-Match": tag})
    assert same.status_code == 304


async def test_a_tag_names_its_request_and_its_caller(client, db):
    create(db, 3)
    page1 = await client.simulate_get("/api/v1/incidents", params={"page_size": 1})
    page2 = await client.simulate_get("/api/v1/incidents", params={"page_size": 1, "page": 2})
    assert page1.headers["etag"] != page2.headers["etag"]
    # page 1's tag is not page 2's: the whole answer comes
    other = await client.simulate_get(
        "/api/v1/incidents",
        params={"page_size": 1, "page": 2},
        headers={"If-None-Match": page1.headers["etag"]},
    )
    assert other.status_code == 200 and other.json["items"]
    # nor another caller's (a route may answer each caller differently)
    keyed = {"X-API-Key": pg.issue_key(db, role="emberlog_user")}
    mine = await client.simulate_get(
        "/api/v1/incidents",
        params={"page_size": 1},
        headers={**keyed, "If-None-Match": page1.headers["etag"]},
    )
    assert mine.status_code == 200 and mine.headers["etag"] != page1.headers["etag"]


async def test_odd_if_none_match_headers_are_ignored(client, db):
    [first] = create(db)
    for value in ("*", '"v1-zzzz"', "garbage", '"v99999999999999999999999-0123456789abcdef"', ""):
        answer = await client.simulate_get(
            f"/api/v1/incidents/{first}", headers={"If-None-Match": value}
        )
        assert answer.status_code == 200, value
    missing = await client.simulate_get("/api/v1/incidents/999999")
    assert missing.status_code == 404 and "etag" not in missing.headers


async def test_no_stale_304_while_writers_write(client, db, database_url):
    """Writers of every kind (psql updates, ingest by SQL, the HTTP route) commit all
    along; after each write this test commits, the tag held from before it must not be
    answered 304."""
    create(db, 3)
    key = {"X-API-Key": pg.issue_key(db)}
    stop = threading.Event()

    def background() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("update data.incidents set address = md5(random()::text)"
                             " where id = (select min(id) from data.incidents)")  # fmt: skip

    noise = threading.Thread(target=background, daemon=True)
    noise.start()
    try:
        for n in range(30):
            tag = (await client.simulate_get("/api/v1/incidents")).headers["etag"]
            if n % 3 == 0:
                db.execute("update data.incidents set transcript = %s where id = 1", (str(n),))
            elif n % 3 == 1:
                created = await client.simulate_post(
                    "/api/v1/incidents", json=payload(), headers=key
                )
                assert created.status_code == 201
            else:
                with pg.connect_as(database_url, "emberlog_ingest") as ingest:
                    ingest.execute(
                        "select api.create_incident(%s::jsonb)", (json.dumps(payload()),)
                    )
            after = await client.simulate_get("/api/v1/incidents", headers={"If-None-Match": tag})
            assert after.status_code == 200, n
            await asyncio.sleep(0)
    finally:
        stop.set()
        noise.join(10)


def test_the_version_counts_statements_that_changed_rows(db):
    def version() -> int:
        return db.execute("select api.incidents_version()").fetchone()[0]

    start = version()
    create(db, 2)
    assert version() == start + 2
    db.execute("update data.incidents set address = 'a'")  # one statement, two rows
    assert version() == start + 3
    db.execute("delete from data.incidents where false")
    assert version() == start + 3
    db.execute("truncate data.incidents cascade")
    assert version() == start + 4
