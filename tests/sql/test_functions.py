"""The SQL contract psql users and the ingest service meet directly."""

from __future__ import annotations

import json
import threading

import psycopg
import pytest

from tests.incidents import INCIDENT_FIELDS, payload

CREATE = "select api.create_incident(%s::jsonb)"


def create(db, **overrides):
    return db.execute(CREATE, (json.dumps(payload(**overrides)),)).fetchone()[0]


def test_create_returns_id_created_at_and_relative_link_in_sql(db):
    created = create(db)
    assert set(created) == {"id", "created_at", "links"}
    assert created["links"]["self"]["_url"] == f"/api/v1/incidents/{created['id']}"


def test_create_sets_response_status_for_http(db):
    with db.transaction():
        create(db, text="same")
        assert db.execute("select current_setting('response.status')").fetchone()[0] == "201"
    with db.transaction():
        create(db, text="same", source_audio=payload()["source_audio"])
        assert db.execute("select current_setting('response.status')").fetchone()[0] == "201"


def test_naive_times_follow_the_session_time_zone(db):
    db.execute("set timezone = 'America/New_York'")
    created = create(db, dispatched_at="2026-11-22T05:04:15")
    db.execute("reset timezone")
    row = db.execute(
        "select api.iso8601(dispatched_at) from api.incidents where id = %s", (created["id"],)
    ).fetchone()
    assert row[0] == "2026-11-22T10:04:15.000000Z"


def test_validation_names_the_field(db):
    with pytest.raises(psycopg.Error) as raised:
        create(db, units="E1")
    assert raised.value.sqlstate == "PT422"
    assert raised.value.diag.message_primary.startswith("units ")
    assert json.loads(raised.value.diag.message_detail) == {"field": "units"}


def test_recent_incidents_are_the_last_30_minutes(db):
    create(db, dispatched_at="2020-01-01T00:00:00Z")
    fresh = create(
        db,
        dispatched_at=db.execute(
            "select to_char(now() - interval '29 minutes', 'YYYY-MM-DD\"T\"HH24:MI:SSOF')"
        ).fetchone()[0],
    )
    ids = [r[0] for r in db.execute("select id from api.recent_incidents").fetchall()]
    assert ids == [fresh["id"]]


def test_incidents_view_has_every_field(db):
    columns = [
        r[0]
        for r in db.execute(
            "select column_name from information_schema.columns"
            " where table_schema = 'api' and table_name = 'incidents' order by ordinal_position"
        ).fetchall()
    ]
    assert columns == [*INCIDENT_FIELDS, "search_vector"]


def test_every_api_object_is_documented(db):
    undocumented = db.execute("""
        select c.relname from pg_class c
        where c.relnamespace = 'api'::regnamespace and obj_description(c.oid, 'pg_class') is null
        union all
        select p.proname from pg_proc p
        where p.pronamespace = 'api'::regnamespace and obj_description(p.oid, 'pg_proc') is null
    """).fetchall()
    assert undocumented == []


def test_concurrent_duplicates_store_one_row(database_url, db):
    body = json.dumps(payload(text="raced"))
    results: list[int] = []
    barrier = threading.Barrier(8)

    def post() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            barrier.wait()
            results.append(conn.execute(CREATE, (body,)).fetchone()[0]["id"])

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert db.execute("select count(*) from data.incidents").fetchone()[0] == 1


def test_deploy_is_repeatable_and_keeps_data(database_url, db):
    from app.database import deploy

    create(db)
    deploy.migrate(database_url, "emberlog_reload")
    deploy.migrate(database_url, "emberlog_reload")
    assert db.execute("select count(*) from api.incidents").fetchone()[0] == 1
