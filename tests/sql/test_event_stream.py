"""The generic event stream (api.event_stream, served as GET /api/v1/sse): every
envelope once, in publication order (ingested ones and each incident's
dispatch.incident.created), filters in SQL, filtered-out events still move the position,
resume by event_id (api.event_position), late commits, retention."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg

from tests import pg
from tests.incidents import payload

STREAM = "select * from api.event_stream(%s, %s, %s, %s, %s, %s)"
CREATE = "select (api.create_incident(%s::jsonb)->>'id')::bigint"


def envelope(event_type="traffic.call.started", system="PRWC", site=None, **more) -> dict:
    body: dict[str, Any] = {"call_id": uuid.uuid4().hex}
    if site is not None:
        body["site"] = site
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "schema_version": "1.0.0",
        "timestamp": "2026-11-22T05:04:15Z",
        "source": {"module": "trunk-recorder", "instance": "tr-1", "system": system},
        "payload": body,
        **more,
    }


def ingest(conn, *events: dict) -> list[str]:
    conn.execute("select api.ingest_events(%s::jsonb)", (json.dumps({"events": list(events)}),))
    return [e["event_id"] for e in events]


def create(conn) -> int:
    return conn.execute(CREATE, (json.dumps(payload()),)).fetchone()[0]


def stream(conn, after, limit=100, domain=None, types=None, system=None, site=None):
    return conn.execute(STREAM, (after, limit, domain, types, system, site)).fetchall()


def shown(rows) -> list[str]:
    """The event_ids of the event rows (not markers, resets or position-only rows)."""
    return [r[2]["event_id"] for r in rows if r[1] not in (None, "reset")]


def test_ingested_envelopes_and_incidents_appear_once_in_order(db):
    first = ingest(db, envelope(), envelope("system.site.decode_rate.updated", site="S1"))
    incident = create(db)
    last = ingest(db, envelope())
    rows = stream(db, 0)
    assert [r[0] for r in rows] == sorted({r[0] for r in rows})  # ids ascending, unique
    ids = shown(rows)
    recorded = db.execute(
        "select event_id::text from data.event_envelopes where payload->>'incident_id' = %s",
        (str(incident),),
    ).fetchone()[0]
    assert ids == [*first, recorded, *last]
    assert [r[1] for r in rows] == [
        "traffic.call.started",
        "system.site.decode_rate.updated",
        "dispatch.incident.created",
        "traffic.call.started",
    ]
    listed = db.execute(
        "select api.event_json(e) from api.events as e where e.event_id = %s", (first[1],)
    ).fetchone()[0]
    assert rows[1][2] == listed
    assert rows[1][3:] == ("system", "system.site.decode_rate.updated", "PRWC", "S1")
    assert rows[2][3:5] == ("dispatch", "dispatch.incident.created")
    # The incident stream is unchanged: one event per incident.
    assert db.execute("select count(*) from api.incident_events(0)").fetchone() == (1,)
    # Paging one at a time gives the same, none twice.
    paged, position = [], 0
    while batch := stream(db, position, 1):
        paged += shown(batch)
        position = batch[-1][0]
    assert paged == ids
    assert stream(db, position) == []


def test_every_filter_and_their_combinations_on_replay(db):
    a = ingest(db, envelope("traffic.call.started", "PRWC", "S1"))[0]
    b = ingest(db, envelope("traffic.call.ended", "PRWC", "S2"))[0]
    c = ingest(db, envelope("system.site.decode_rate.updated", "AZWINS", "S1"))[0]
    d = ingest(db, envelope("traffic.call.started", "AZWINS", None))[0]
    cases = [
        ({}, [a, b, c, d]),
        ({"domain": "traffic"}, [a, b, d]),
        ({"domain": "system"}, [c]),
        ({"types": ["traffic.call.started"]}, [a, d]),
        ({"types": ["traffic.call.ended", "system.site.decode_rate.updated"]}, [b, c]),
        ({"types": []}, [a, b, c, d]),
        ({"system": "AZWINS"}, [c, d]),
        ({"site": "S1"}, [a, c]),
        ({"site": "S9"}, []),
        ({"domain": "traffic", "system": "AZWINS"}, [d]),
        ({"types": ["traffic.call.started", "traffic.call.ended"], "site": "S2"}, [b]),
        ({"domain": "traffic", "system": "PRWC", "site": "S1"}, [a]),
        ({"domain": "system", "types": ["traffic.call.started"]}, []),
    ]
    for filters, expected in cases:
        assert shown(stream(db, 0, **filters)) == expected, filters


def test_filtered_out_events_still_move_the_position(db):
    ingest(db, envelope(system="PRWC"), envelope(system="PRWC"))
    rows = stream(db, 0, system="AZWINS")
    head = db.execute("select max(id) from data.events").fetchone()[0]
    assert rows == [(head, None, None, None, None, None, None)]  # one position-only row
    wanted = ingest(db, envelope(system="AZWINS"))
    ingest(db, envelope(system="PRWC"))
    rows = stream(db, head, system="AZWINS")
    assert shown(rows) == wanted
    assert (
        rows[-1][1] is None
        and rows[-1][0] == db.execute("select max(id) from data.events").fetchone()[0]
    )
    assert stream(db, rows[-1][0], system="AZWINS") == []


def test_resume_from_an_event_id_gives_exactly_the_later_matching_events(db):
    seen = ingest(db, envelope(site="S1"), envelope(site="S2"))
    incident = create(db)
    later = ingest(db, envelope(site="S1"), envelope(site="S2"), envelope(site="S1"))
    stream(db, 0)  # published: a client has an event_id it was sent
    position = db.execute("select api.event_position(%s)", (seen[-1],)).fetchone()[0]
    assert position is not None
    assert shown(stream(db, position, site="S1")) == [later[0], later[2]]
    recorded = db.execute(
        "select event_id from data.event_envelopes where payload->>'incident_id' = %s",
        (str(incident),),
    ).fetchone()[0]
    from_incident = db.execute("select api.event_position(%s)", (recorded,)).fetchone()[0]
    assert shown(stream(db, from_incident)) == later
    assert db.execute("select api.event_position(%s)", (uuid.uuid4(),)).fetchone() == (None,)


def test_a_late_committing_writer_is_not_skipped(database_url, db):
    with psycopg.connect(database_url) as slow, psycopg.connect(database_url) as fast:
        late = ingest(slow, envelope())  # inserted first, transaction left open
        early = ingest(fast, envelope())
        fast.commit()
        seen = stream(db, 0)
        assert shown(seen) == early
        slow.commit()
    after = stream(db, seen[-1][0])
    assert shown(after) == late
    assert after[0][0] > seen[-1][0]


def test_a_pruned_position_gets_a_reset_and_its_event_id_no_position(db):
    old = ingest(db, envelope())
    stream(db, 0)  # published
    kept = ingest(db, envelope())
    db.execute("update data.events set created_at = now() - interval '8 days' where id = 1")
    db.execute(
        "update data.event_envelopes set received_at = now() - interval '8 days'"
        " where event_id = %s",
        (old[0],),
    )
    db.execute("select internal.prune_events()")
    assert db.execute("select api.event_position(%s)", (old[0],)).fetchone() == (None,)
    rows = stream(db, 0)
    assert rows[0][1] == "reset" and rows[0][2]["last_event_id"] == 0
    assert shown(rows) == []  # the client refetches; live events follow the reset
    assert shown(stream(db, 1)) == kept  # from the last pruned id itself: nothing lost


def test_no_position_gives_the_newest_id(db):
    ingest(db, envelope())
    create(db)
    ((position, event, data, *attributes),) = stream(db, None)
    assert event is None and data is None and attributes == [None] * 4
    assert position == db.execute("select max(id) from data.events").fetchone()[0]


def test_web_roles_read_the_stream_and_positions(database_url, db):
    event_id = ingest(db, envelope())[0]
    for role in ("emberlog_anon", "emberlog_reader"):
        with pg.connect_as(database_url, role) as conn:
            assert shown(stream(conn, 0)) == [event_id]
            assert conn.execute("select api.event_position(%s)", (event_id,)).fetchone()[0]
    with pg.connect_as(database_url, "emberlog_ingest") as conn:
        assert pg.denied(conn, "select api.event_position(gen_random_uuid())")
