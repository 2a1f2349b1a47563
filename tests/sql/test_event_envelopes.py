"""Canonical event envelopes (data.event_envelopes): what a valid envelope is, idempotent
batch ingest (also under racing batches), every incident recorded as a
dispatch.incident.created event, the filtered list, and retention."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import psycopg
import pytest

from tests.incidents import payload

INGEST = "select api.ingest_events(%s::jsonb)::jsonb, current_setting('response.status', true)"


def envelope(**overrides: Any) -> dict[str, Any]:
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": "traffic.call.started",
        "schema_version": "1.0.0",
        "timestamp": "2026-11-22T05:04:15Z",
        "correlation_id": None,
        "source": {"module": "trunk-recorder", "instance": "tr-1", "system": "PRWC"},
        "payload": {"call_id": "c1"},
    }
    event.update(overrides)
    return event


def incident_event(**payload_overrides: Any) -> dict[str, Any]:
    body = {
        "incident_id": "42",
        "dispatched_at": "2026-11-22T05:04:15Z",
        "audio": {"ref": "calls/42.m4a", "kind": "file"},
        **payload_overrides,
    }
    return envelope(event_type="dispatch.incident.created", payload=body)


def ingest(conn, events: list[Any]) -> tuple[dict, str]:
    with conn.transaction():
        report, status = conn.execute(INGEST, (json.dumps({"events": events}),)).fetchone()
    return report, status


def problem(conn, event: Any) -> dict | None:
    return conn.execute(
        "select internal.envelope_problem(%s::jsonb)", (json.dumps(event),)
    ).fetchone()[0]


def stored(conn) -> int:
    return conn.execute("select count(*) from data.event_envelopes").fetchone()[0]


def create_incident(conn, **overrides) -> dict:
    return conn.execute(
        "select api.create_incident(%s::jsonb)", (json.dumps(payload(**overrides)),)
    ).fetchone()[0]


def list_events(conn, **arguments: Any) -> dict:
    names = ", ".join(f'"{name}" => %s' for name in arguments)
    return conn.execute(f"select api.list_events({names})", tuple(arguments.values())).fetchone()[0]


# -- validation, rule by rule -------------------------------------------------------------


def test_a_valid_envelope_has_no_problem(db):
    assert problem(db, envelope()) is None
    assert problem(db, envelope(correlation_id="call-7")) is None
    assert problem(db, envelope(source={"module": "m", "instance": "i"})) is None
    assert problem(db, envelope(event_type="system.site.decode_rate.updated")) is None
    assert problem(db, envelope(timestamp="2026-11-22T05:04:15.123456789+02:00")) is None
    assert problem(db, envelope(schema_version="2.1.0-rc.1+build.5")) is None
    assert problem(db, incident_event()) is None


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ("not an object", None),
        ({**envelope(), "event_id": None}, "event_id"),
        (envelope(event_id="not-a-uuid"), "event_id"),
        (envelope(event_id=12), "event_id"),
        (envelope(event_type="traffic.call"), "event_type"),
        (envelope(event_type="Traffic.Call.Started"), "event_type"),
        (envelope(event_type="traffic..started"), "event_type"),
        (envelope(event_type="a.b." + "c" * 200), "event_type"),
        (envelope(schema_version="1.0"), "schema_version"),
        (envelope(schema_version=1), "schema_version"),
        ({k: v for k, v in envelope().items() if k != "schema_version"}, "schema_version"),
        (envelope(timestamp="now"), "timestamp"),
        (envelope(timestamp="2026-11-22T05:04:15"), "timestamp"),  # no offset
        (envelope(timestamp="2026-02-30T05:04:15Z"), "timestamp"),
        (envelope(timestamp=1700000000), "timestamp"),
        (envelope(correlation_id=""), "correlation_id"),
        (envelope(correlation_id=7), "correlation_id"),
        (envelope(source="tr-1"), "source"),
        (envelope(source={"instance": "i"}), "source.module"),
        (envelope(source={"module": "m", "instance": ""}), "source.instance"),
        (envelope(source={"module": "m", "instance": "i", "system": 3}), "source.system"),
        (envelope(payload=[1]), "payload"),
        (envelope(payload=None), "payload"),
        (incident_event(incident_id=None), "payload.incident_id"),
        (incident_event(dispatched_at="yesterday"), "payload.dispatched_at"),
        (incident_event(audio="calls/1.m4a"), "payload.audio"),
        (incident_event(audio={"kind": "file"}), "payload.audio.ref"),
        (incident_event(audio={"ref": "r", "kind": "tape"}), "payload.audio.kind"),
        (incident_event(units=[1]), "payload.units"),
        (incident_event(special_call="yes"), "payload.special_call"),
        (incident_event(channel=5), "payload.channel"),
        (incident_event(parsed=[]), "payload.parsed"),
    ],
)
def test_each_rule_names_its_field(db, event, field):
    found = problem(db, event)
    assert found is not None and found["field"] == field
    report, status = ingest(db, [event])
    assert status == "422" and report["rejected"] == 1 and stored(db) == 0
    assert report["results"][0]["error"]["details"] == {"field": field}
    assert report["error"]["code"] == "validation_failed"


def test_an_unknown_major_version_of_a_known_type_is_only_an_object(db):
    assert problem(db, dict(incident_event(incident_id=None), schema_version="2.0.0")) is None


def test_the_table_refuses_what_validation_would(db):
    """The constraints are the last word, whoever writes (a DBA's insert too)."""
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(
            "insert into data.event_envelopes (event_id, event_type, schema_version, occurred_at,"
            " source_module, source_instance, payload)"
            " values (gen_random_uuid(), 'no_dots', '1.0.0', now(), 'm', 'i', '{}')"
        )


def test_a_batch_that_is_not_one_is_a_400(db):
    for body in ([], {"event": []}, {"events": {}}, {"events": []}, {"events": [{}] * 501}):
        with pytest.raises(psycopg.Error) as raised:
            db.execute("select api.ingest_events(%s::jsonb)", (json.dumps(body),))
        assert raised.value.sqlstate == "PT400"


# -- idempotency ----------------------------------------------------------------------------


def test_accepted_then_duplicate_and_a_repeat_within_a_batch(db):
    a, b = envelope(), envelope()
    report, status = ingest(db, [a, b, a])
    assert status == "200"
    assert [r["status"] for r in report["results"]] == ["accepted", "accepted", "duplicate"]
    assert (report["accepted"], report["duplicates"], report["rejected"]) == (2, 1, 0)
    again, status = ingest(db, [dict(b, payload={"changed": True})])
    assert status == "200" and again["results"][0]["status"] == "duplicate"
    assert again["results"][0]["event"]["payload"] == {"call_id": "c1"}  # the stored one
    assert stored(db) == 2


def test_mixed_batch_is_207_and_stores_the_valid(db):
    report, status = ingest(db, [envelope(), envelope(timestamp="x"), envelope()])
    assert status == "207"
    assert [r["status"] for r in report["results"]] == ["accepted", "rejected", "accepted"]
    assert stored(db) == 2


def test_two_racing_batches_with_overlapping_ids_store_each_once(database_url, db):
    shared = [envelope() for _ in range(50)]
    batches = [shared + [envelope() for _ in range(10)], [envelope() for _ in range(10)] + shared]
    barrier = threading.Barrier(2)
    reports: list[dict] = []

    def send(events):
        with psycopg.connect(database_url, autocommit=True) as conn:
            barrier.wait()
            reports.append(ingest(conn, events)[0])

    def ingest_in(events):
        with psycopg.connect(database_url, autocommit=True) as conn:
            reports.append(ingest(conn, events)[0])

    # One batch holds the shared ids uncommitted while the other arrives: it waits, then
    # reports them as duplicates.
    with psycopg.connect(database_url) as first:
        first.execute(INGEST, (json.dumps({"events": batches[0]}),))
        second = threading.Thread(target=ingest_in, args=(batches[1],))
        second.start()
        second.join(0.5)
        assert second.is_alive()  # waiting for the first batch's shared ids
        first.commit()
        second.join(10)
    assert reports[0]["accepted"] == 10 and reports[0]["duplicates"] == 50

    # And both at once, from a barrier, many times over.
    for _ in range(5):
        reports.clear()
        shared = [envelope() for _ in range(100)]
        threads = [
            threading.Thread(target=send, args=([*shared[:70], envelope()],)),
            threading.Thread(target=send, args=([envelope(), *shared[30:]],)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert sum(r["accepted"] for r in reports) == 102
        assert sum(r["duplicates"] for r in reports) == 40
        ids = [str(e["event_id"]) for e in shared]
        counted = db.execute(
            "select count(*), count(distinct event_id) from data.event_envelopes"
            " where event_id = any(%s::uuid[])",
            (ids,),
        ).fetchone()
        assert counted == (100, 100)


# -- every incident is an event --------------------------------------------------------------


def test_creating_an_incident_in_sql_records_dispatch_incident_created(db):
    db.execute("insert into data.channel_systems values ('FIRE-DISP', 'PRWC')")
    try:
        created = create_incident(db, source_audio="calls/9.m4a", parsed={"box": "12"})
        rows = db.execute(
            "select api.event_json(e)::jsonb, e.received_at = i.created_at"
            " from api.events as e join api.incidents as i on i.id = %s",
            (created["id"],),
        ).fetchall()
    finally:
        db.execute("delete from data.channel_systems")
    assert len(rows) == 1
    event, same_time = rows[0]
    assert same_time
    assert event["event_type"] == "dispatch.incident.created"
    assert event["schema_version"] == "1.0.0"
    assert event["timestamp"] == "2026-11-22T05:04:15.000000Z"
    assert event["source"]["module"] == "emberlog-api" and event["source"]["system"] == "PRWC"
    body = event["payload"]
    assert body["incident_id"] == str(created["id"])
    assert body["audio"] == {"ref": "calls/9.m4a", "kind": "file"}
    assert body["parsed"] == {"box": "12"} and body["units"] == ["E1", "M2"]
    assert problem(db, event) is None  # our own events are valid envelopes


def test_audio_of_a_url_and_of_a_path_under_the_base_url(db):
    create_incident(db, source_audio="https://audio.example/a.m4a")
    db.execute("set emberlog.audio_base_url = 'https://cdn.example/audio/'")
    create_incident(db, source_audio="calls/b.m4a", channel="UNKNOWN")
    db.execute("reset emberlog.audio_base_url")
    rows = db.execute(
        "select payload -> 'audio', source_system from api.events order by position"
    ).fetchall()
    assert rows == [
        (
            {
                "ref": "https://audio.example/a.m4a",
                "kind": "object",
                "uri": "https://audio.example/a.m4a",
            },
            None,
        ),
        (
            {
                "ref": "calls/b.m4a",
                "kind": "file",
                "uri": "https://cdn.example/audio/calls/b.m4a",
            },
            None,
        ),
    ]


def test_a_duplicate_incident_records_no_second_event(db):
    body = payload()
    first = db.execute("select api.create_incident(%s::jsonb)", (json.dumps(body),)).fetchone()
    again = db.execute("select api.create_incident(%s::jsonb)", (json.dumps(body),)).fetchone()
    assert first[0]["id"] == again[0]["id"]
    assert stored(db) == 1


def test_a_rolled_back_incident_records_no_event(db):
    with pytest.raises(psycopg.Error), db.transaction():
        create_incident(db)
        db.execute("select internal.invalid_field('x', 'fails')")
    assert stored(db) == 0


def test_the_incident_stream_is_unchanged(db):
    created = create_incident(db)
    rows = db.execute("select id, event, data from api.incident_events(0, 10)").fetchall()
    assert [(r[1], r[2]["id"]) for r in rows] == [("incident", created["id"])]


def test_iso8601_formats_agree(db):
    assert db.execute(
        "select api.iso8601(t) = internal.iso8601(t) from (values (now()),"
        " ('2026-01-02 03:04:05.6+07'::timestamptz)) as v (t)"
    ).fetchall() == [(True,), (True,)]


# -- the list ---------------------------------------------------------------------------


@pytest.fixture
def seeded(db):
    events = [
        envelope(event_type="traffic.call.started", timestamp="2026-01-01T00:00:01Z"),
        envelope(event_type="traffic.call.ended", timestamp="2026-01-01T00:00:02Z"),
        envelope(
            event_type="system.site.decode_rate.updated",
            timestamp="2026-01-01T00:00:03Z",
            source={"module": "m", "instance": "i", "system": "AZWINS"},
        ),
        envelope(event_type="traffic.call.started", timestamp="2026-01-01T00:00:04Z"),
        envelope(
            event_type="traffic.call.started",
            timestamp="2026-01-01T00:00:04Z",  # the same time: position breaks the tie
            source={"module": "m", "instance": "i"},
        ),
    ]
    assert ingest(db, events)[1] == "200"
    return [e["event_id"] for e in events]


def ids(listed: dict) -> list[str]:
    return [e["event_id"] for e in listed["data"]]


def test_list_newest_first_with_total(db, seeded):
    listed = list_events(db)
    assert ids(listed) == [seeded[4], seeded[3], seeded[2], seeded[1], seeded[0]]
    assert listed["pagination"] == {"limit": 50, "offset": 0, "total": 5, "total_exact": True}


def test_list_filters_combine_with_and_types_with_or(db, seeded):
    assert ids(list_events(db, domain="system")) == [seeded[2]]
    assert ids(
        list_events(db, event_type=["traffic.call.ended", "system.site.decode_rate.updated"])
    ) == [
        seeded[2],
        seeded[1],
    ]
    assert ids(list_events(db, system="PRWC")) == [seeded[3], seeded[1], seeded[0]]
    assert ids(
        list_events(db, domain="traffic", system="PRWC", event_type=["traffic.call.started"])
    ) == [
        seeded[3],
        seeded[0],
    ]
    window = list_events(db, **{"from": "2026-01-01T00:00:02Z", "to": "2026-01-01T00:00:03Z"})
    assert ids(window) == [seeded[2], seeded[1]]  # both ends included
    assert ids(list_events(db, domain="nothing")) == []


def test_list_pages(db, seeded):
    page = list_events(db, limit=2, offset=1)
    assert ids(page) == [seeded[3], seeded[2]]
    assert page["pagination"] == {"limit": 2, "offset": 1, "total": 5, "total_exact": True}
    typed = list_events(db, event_type=["traffic.call.started"], limit=1, offset=1)
    assert ids(typed) == [seeded[3]] and typed["pagination"]["total"] == 3
    past = list_events(db, offset=10)
    assert past["data"] == [] and past["pagination"]["total"] == 5


@pytest.mark.parametrize(
    ("arguments", "field"),
    [({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"offset": -1}, "offset")],
)
def test_list_bounds(db, arguments, field):
    with pytest.raises(psycopg.Error) as raised:
        list_events(db, **arguments)
    assert raised.value.sqlstate == "PT400" and field in str(raised.value)


def test_list_uses_the_indexes(db):
    db.execute(
        "insert into data.event_envelopes (event_id, event_type, schema_version, occurred_at,"
        " source_module, source_instance, source_system, payload)"
        " select gen_random_uuid(), (array['traffic.call.started', 'traffic.call.ended',"
        " 'system.site.online', 'dispatch.incident.created'])[1 + n % 4], '1.0.0',"
        " now() - n * interval '1 minute', 'm', 'i', 'S' || n % 40, '{}'"
        " from generate_series(1, 5000) as n"
    )
    db.execute("analyze data.event_envelopes")
    for where in (
        "",
        "where e.event_type = 'system.site.online'",
        "where e.source_system = 'S7'",
        "where e.occurred_at between now() - interval '2 hours' and now()",
    ):
        plan = "\n".join(
            r[0]
            for r in db.execute(
                f"explain select * from api.events as e {where}"
                " order by e.occurred_at desc, e.position desc limit 50"
            ).fetchall()
        )
        # An index of the table serves each (a few matching rows may be sorted), never a
        # scan of the whole log.
        assert "using event_envelopes_" in plan or " on event_envelopes_" in plan, plan
        assert "Seq Scan" not in plan, plan


# -- retention -------------------------------------------------------------------------


def test_retention_prunes_envelopes_as_a_prefix_with_the_event_log(db):
    old, new = envelope(), envelope()
    ingest(db, [old, new])
    db.execute(
        "update data.event_envelopes set received_at = now() - interval '8 days'"
        " where event_id = %s",
        (old["event_id"],),
    )
    db.execute("select internal.prune_events()")
    left = db.execute("select event_id::text from data.event_envelopes").fetchall()
    assert left == [(new["event_id"],)]
    through = db.execute("select envelopes_pruned_through from data.event_log_state").fetchone()
    assert through == (1,)
    db.execute("set emberlog.event_retention = '0'")
    db.execute("select internal.prune_events()")
    db.execute("reset emberlog.event_retention")
    assert stored(db) == 0
    assert db.execute("select envelopes_pruned_through from data.event_log_state").fetchone() == (
        2,
    )
