"""The event log: one event per committed incident, queued by writers without a lock and
numbered by the reader that publishes them, ids visible in order, resume and reset,
retention, and how source_audio is presented."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests import pg
from tests.incidents import payload

CREATE = "select (api.create_incident(%s::jsonb)->>'id')::bigint"
EVENTS = "select id, event, data from api.incident_events(%s, %s)"


def create(conn, **overrides) -> int:
    return conn.execute(CREATE, (json.dumps(payload(**overrides)),)).fetchone()[0]


def events(conn, after: int | None, limit: int = 100) -> list[tuple]:
    return conn.execute(EVENTS, (after, limit)).fetchall()


def head(conn) -> int:
    ((position, event, data),) = events(conn, None)
    assert event is None and data is None
    return position


def test_each_new_incident_is_one_event_with_the_item_json(db):
    first, second = create(db), create(db)
    create(db, text="dup", source_audio="a.m4a")
    create(db, text="dup", source_audio="a.m4a")  # a duplicate is not a new incident
    rows = events(db, 0)
    assert [r[1] for r in rows] == ["incident"] * 3
    assert [r[2]["id"] for r in rows[:2]] == [first, second]
    item = db.execute("select api.get_incident(%s)", (first,)).fetchone()[0]
    assert rows[0][2] == item
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert head(db) == rows[-1][0]


def test_a_rolled_back_incident_leaves_no_event(db):
    with pytest.raises(psycopg.errors.RaiseException), db.transaction():
        create(db)
        db.execute("do $$ begin raise exception 'abort'; end $$")
    assert events(db, 0) == []


def test_the_notify_carries_only_the_stream_name(database_url, db):
    with pg.connect_as(database_url, "emberlog_ingest") as ingest:
        db.execute("listen emberlog_events")
        create(ingest, transcript="x" * 20_000)
        notify = next(db.notifies(timeout=5, stop_after=1))
    assert notify.payload == "incidents"  # listeners fetch what is new
    ((_, _, data),) = events(db, 0)
    assert len(data["transcript"]) == 20_000


def test_a_writer_commits_while_a_publisher_holds_the_lock(database_url, db):
    """Writers only queue: no commit of an incident waits for another transaction."""
    with psycopg.connect(database_url) as publisher:
        publisher.execute("select internal.publish_events()")
        publisher.execute("select pg_advisory_xact_lock(internal.publisher_lock_key())")  # held
        with psycopg.connect(database_url, autocommit=True) as writer:
            writer.execute("set lock_timeout = '2s'")
            created = create(writer)
        assert db.execute("select ref_id from data.event_queue").fetchall() == [(created,)]
        publisher.rollback()
    assert [r[2]["id"] for r in events(db, 0)] == [created]
    assert db.execute("select count(*) from data.event_queue").fetchone() == (0,)


def test_a_read_only_reader_reads_what_is_published_and_publishes_nothing(db):
    first = create(db)
    assert [r[2]["id"] for r in events(db, 0)] == [first]  # writable: publishes
    second = create(db)
    with db.transaction():
        db.execute("set transaction read only")
        assert events(db, 0)[1:] == []
        assert db.execute("select internal.publish_events()").fetchone() == (0,)
    assert [r[2]["id"] for r in events(db, 0)] == [first, second]


def test_an_event_that_commits_late_gets_the_later_id(database_url, db):
    """Ids are handed out at publication: a reader that has seen id N never misses one
    below N, and an incident that commits late is published later, with a later id."""
    with psycopg.connect(database_url) as slow, psycopg.connect(database_url) as fast:
        slow_incident = create(slow)  # inserted first, transaction left open
        fast_incident = create(fast)
        fast.commit()
        seen = events(db, 0)
        assert [r[2]["id"] for r in seen] == [fast_incident]
        slow.commit()
    later = events(db, seen[-1][0])
    assert [r[2]["id"] for r in later] == [slow_incident]
    assert later[0][0] > seen[-1][0]


def test_paging_through_the_log_in_order(db):
    created = [create(db) for _ in range(7)]
    received: list[int] = []
    position = 0
    while batch := events(db, position, 3):
        received += [r[2]["id"] for r in batch]
        position = batch[-1][0]
    assert received == created


def test_prune_deletes_old_events_and_a_stale_position_gets_a_reset(db):
    create(db)
    old = events(db, 0)
    second = create(db)
    db.execute(
        "update data.events set created_at = now() - interval '8 days' where id = %s", (old[0][0],)
    )
    assert db.execute("select internal.prune_events()").fetchone()[0] == 1
    assert db.execute("select internal.prune_events()").fetchone()[0] == 0
    rows = events(db, 0)
    reset = rows[0]
    assert reset[1] == "reset"
    assert reset[0] == head(db)
    assert reset[2]["last_event_id"] == 0
    assert rows[1:] == []  # the client refetches the list; live events follow the reset
    # Resuming from the last pruned id itself loses nothing: no reset.
    assert [(r[1], r[2]["id"]) for r in events(db, old[0][0])] == [("incident", second)]


def test_retention_comes_from_the_argument_or_the_setting(db):
    create(db)
    db.execute("select pg_sleep(0.01)")
    assert db.execute("select internal.prune_events(interval '1 hour')").fetchone()[0] == 0
    db.execute("set emberlog.event_retention = '0'")
    assert db.execute("select internal.prune_events()").fetchone()[0] == 1
    assert db.execute("select pruned_through from data.event_log_state").fetchone()[0] == 1


@pytest.mark.parametrize("setting", ["emberlog.event_retention", "emberlog.alert_retention"])
def test_a_retention_setting_that_is_no_interval_is_named_and_prunes_nothing(db, setting):
    create(db)
    assert len(events(db, 0)) == 1  # published, numbered
    db.execute("update data.events set created_at = now() - interval '8 days'")
    db.execute(f"set {setting} = '7 dayz'")
    with pytest.raises(psycopg.Error) as refused, db.transaction():
        db.execute("select internal.prune_events()")
    assert refused.value.sqlstate == "PT503"
    assert f"{setting} is '7 dayz', not a valid value" in str(refused.value)
    assert db.execute("select count(*) from data.events").fetchone()[0] == 1
    if setting == "emberlog.event_retention":  # an explicit retention needs no setting
        assert db.execute("select internal.prune_events(interval '1 day')").fetchone()[0] == 1


def test_an_unknown_future_position_gets_a_reset(db):
    create(db)
    ((position, event, data),) = events(db, 10_000)
    assert event == "reset" and position == head(db)
    assert data["reason"] == "last_event_id is unknown"


def test_relative_audio_is_presented_under_the_base_url(db):
    relative = create(db, source_audio="calls/2026/1.m4a")
    absolute = create(db, source_audio="https://cdn.example/2.m4a")
    item = "select api.get_incident(%s)->>'source_audio'"
    assert db.execute(item, (relative,)).fetchone()[0] == "calls/2026/1.m4a"
    db.execute("set emberlog.audio_base_url = 'https://audio.example/rec/'")
    assert (
        db.execute(item, (relative,)).fetchone()[0] == "https://audio.example/rec/calls/2026/1.m4a"
    )
    assert db.execute(item, (absolute,)).fetchone()[0] == "https://cdn.example/2.m4a"
    assert events(db, 0)[0][2]["source_audio"] == "https://audio.example/rec/calls/2026/1.m4a"
    stored = "select source_audio from data.incidents where id = %s"
    assert db.execute(stored, (relative,)).fetchone()[0] == "calls/2026/1.m4a"


def test_web_roles_read_the_stream_but_not_the_log(database_url, db):
    create(db)
    for role in ("emberlog_anon", "emberlog_reader"):
        with pg.connect_as(database_url, role) as conn:
            assert len(events(conn, 0)) == 1
            statements = (
                "select 1 from data.events",
                "select internal.prune_events()",
                "select * from internal.read_events('incidents', 0, 10)",
            )
            assert [s for s in statements if not pg.denied(conn, s)] == []
