"""Trunk Recorder's status applied in SQL (api.ingest_trunk_recorder): each message type,
the call start/end diff across snapshots (also across sessions: the state lives in the
database), out-of-order and redelivered messages, malformed ones, and the roles."""

from __future__ import annotations

import datetime
import json
import threading
import time

import psycopg
import pytest

from tests import pg
from tests.traffic import (
    CALL_TYPES,
    DECODE_TYPE,
    call,
    events,
    ingest,
    message,
    newest_position,
    rate,
    session,
    traffic_state,
)


def test_rates_keep_each_sites_latest_decode_rate_and_record_one_event_per_site(db):
    report, status = ingest(
        db,
        message("rates", 1771215501, [rate(1, "PRWC-J", 39.0), rate(3, "MCSO-WT", 26.0)]),
    )
    assert (status, report) == (
        None,
        {"type": "rates", "instance_id": "trunk-recorder", "status": "applied", "events": 2},
    )
    sites = db.execute(
        "select sys_name, site_group, decode_rate_pct, status, control_channel_mhz, updated_at"
        " from api.traffic_sites order by sys_num"
    ).fetchall()
    assert [s[:5] for s in sites] == [
        ("PRWC-J", "PRWC", 97.5, "ok", 769.11875),
        ("MCSO-WT", "MCSO", 65.0, "bad", 769.11875),
    ]
    sent = events(db, DECODE_TYPE)
    # One per site, by group then name; the payload is the site the summary lists.
    assert [e["source"] for e in sent] == [
        {"module": "emberlog-api", "instance": "trunk-recorder", "system": "MCSO-WT"},
        {"module": "emberlog-api", "instance": "trunk-recorder", "system": "PRWC-J"},
    ]
    assert sent[1]["payload"] == {
        "group": "PRWC",
        "sys_num": 1,
        "sys_name": "PRWC-J",
        "decode_rate_pct": 97.5,
        "control_channel_mhz": 769.11875,
        "interval_s": 3.0,
        "updated_at": "2026-02-16T04:18:21.000000Z",
        "status": "ok",
    }
    assert sent[1]["timestamp"] == "2026-02-16T04:18:21.000000Z"
    summary = db.execute("select api.get_traffic_summary('trunk-recorder')::jsonb").fetchone()[0]
    assert summary["payload"]["decode_sites"] == [e["payload"] for e in sent]


@pytest.mark.parametrize(
    ("max_rate", "decoderate", "pct", "status"),
    [
        ("40", 28.0, 70.0, "warn"),
        ("50", 45.0, 90.0, "ok"),
        ("40", 27.99, 69.98, "bad"),
    ],
)
def test_decode_rate_percent_is_of_the_max_decoderate_setting(
    db, max_rate, decoderate, pct, status
):
    db.execute("select set_config('emberlog.max_decoderate', %s, false)", (max_rate,))
    ingest(db, message("rates", 100, [rate(1, "PRWC-J", decoderate)]))
    row = db.execute("select decode_rate_pct, status from api.traffic_sites").fetchone()
    assert row == (pct, status)


def test_recorders_are_counted_by_state(db):
    states = ["RECORDING", "IDLE", "IDLE", "AVAILABLE", "AVAILABLE", "AVAILABLE", "STOPPED"]
    recorders = [
        {"id": f"0_{n}", "src_num": 0, "rec_num": n, "rec_state_type": state}
        for n, state in enumerate(states)
    ]
    report, _ = ingest(db, message("recorders", 200, recorders))
    assert report["events"] == 0
    row = db.execute(
        "select total, recording, idle, available, updated_at, jsonb_array_length(recorders)"
        " from api.traffic_recorders"
    ).fetchone()
    assert row[:4] == (7, 1, 2, 3)
    assert row[5] == 7
    assert events(db) == []  # recorders record no event


def test_calls_that_appear_start_and_calls_that_disappear_end(db):
    first = message("calls_active", 1771215827, [call("1_4499_1771215827")])
    ingest(db, first)
    second = message(
        "calls_active",
        1771215831,
        [
            call("1_4499_1771215827", elapsed=8),
            call("3_6600_1771215830", sys_num=3, sys_name="MCSO-WT", talkgroup=6600),
        ],
    )
    ingest(db, second)
    ingest(
        db,
        message(
            "calls_active", 1771215835, [call("3_6600_1771215830", sys_num=3, sys_name="MCSO-WT")]
        ),
    )
    sent = [(e["event_type"], e["payload"]["call_id"]) for e in events(db, *CALL_TYPES)]
    assert sent == [
        ("traffic.call.started", "1_4499_1771215827"),
        ("traffic.call.started", "3_6600_1771215830"),
        ("traffic.call.ended", "1_4499_1771215827"),
    ]
    started, _, ended = events(db, *CALL_TYPES)
    assert started["payload"] == {
        "system": "PRWC-J",
        "site": "1",
        "call_id": "1_4499_1771215827",
        "trunkgroup_id": "4499",
        "trunkgroup_label": "Avondale PD A01",
        "frequency": 770118750.0,
        "encrypted": False,
        "emergency": False,
    }
    assert started["timestamp"] == "2026-02-16T04:23:47.000000Z"  # the call's start_time
    assert started["source"] == {
        "module": "emberlog-api",
        "instance": "trunk-recorder",
        "system": "PRWC-J",
    }
    assert ended["payload"]["duration_seconds"] == 8  # its last elapsed
    assert ended["timestamp"] == "2026-02-16T04:23:55.000000Z"  # the snapshot that lacks it
    live = db.execute("select id, sys_name from api.traffic_live_calls").fetchall()
    assert live == [("3_6600_1771215830", "MCSO-WT")]


def test_a_call_without_sys_num_is_on_site_default(db):
    ingest(db, message("calls_active", 10, [call("c1", sys_num=None)]))
    assert events(db, "traffic.call.started")[0]["payload"]["site"] == "default"


def test_the_diff_is_against_the_stored_snapshot_whichever_session_wrote_it(database_url, db):
    """A bridge that restarts (a new session, nothing in memory) neither repeats nor loses
    a call event: the previous snapshot is the database's."""
    with psycopg.connect(database_url, autocommit=True) as before_restart:
        ingest(before_restart, message("calls_active", 20, [call("a"), call("b")]))
    with psycopg.connect(database_url, autocommit=True) as after_restart:
        ingest(after_restart, message("calls_active", 21, [call("b"), call("c")]))
    sent = [(e["event_type"], e["payload"]["call_id"]) for e in events(db, *CALL_TYPES)]
    assert sent == [
        ("traffic.call.started", "a"),
        ("traffic.call.started", "b"),
        ("traffic.call.started", "c"),
        ("traffic.call.ended", "a"),
    ]


def test_an_older_message_changes_nothing_and_records_nothing(db):
    ingest(db, message("calls_active", 50, [call("a")]))
    ingest(db, message("rates", 50, [rate(1, "PRWC-J", 30.0)]))
    before = traffic_state(db)
    for older in (message("calls_active", 49, []), message("rates", 48, [rate(1, "PRWC-J", 10.0)])):
        report, _ = ingest(db, older)
        assert (report["status"], report["events"]) == ("ignored", 0)
    assert traffic_state(db) == before


def test_a_redelivered_message_is_recognised_even_after_another_of_the_same_second(db):
    a = message("calls_active", 60, [call("a")])
    b = message("calls_active", 60, [call("a"), call("b")])  # the same second: applied
    assert ingest(db, a)[0]["status"] == "applied"
    assert ingest(db, b)[0]["status"] == "applied"
    before = traffic_state(db)
    assert ingest(db, a)[0]["status"] == "ignored"  # redelivered: would end b and restart it
    assert ingest(db, b)[0]["status"] == "ignored"
    assert traffic_state(db) == before
    sent = [(e["event_type"], e["payload"]["call_id"]) for e in events(db, *CALL_TYPES)]
    assert sent == [("traffic.call.started", "a"), ("traffic.call.started", "b")]


def test_each_feed_has_its_own_clock(db):
    """Instances and message types are separate feeds: one's newer clock ignores nothing of
    another's."""
    ingest(db, message("rates", 100, [rate(1, "PRWC-J", 30.0)]))
    assert ingest(db, message("calls_active", 90, [call("a")]))[0]["status"] == "applied"
    other = message("rates", 80, [rate(1, "PRWC-J", 20.0)], instance="east-antenna")
    assert ingest(db, other)[0]["status"] == "applied"
    assert db.execute("select count(*) from api.traffic_sites").fetchone() == (2,)


MALFORMED = [
    ({"type": "rates"}, "instance_id"),
    ({"type": "weather", "instance_id": "tr", "timestamp": 1}, "type"),
    ({"type": "rates", "instance_id": "tr", "rates": []}, "timestamp"),
    ({"type": "rates", "instance_id": "tr", "timestamp": "soon", "rates": []}, "timestamp"),
    ({"type": "rates", "instance_id": "tr", "timestamp": 1e30, "rates": []}, "timestamp"),
    ({"type": "rates", "instance_id": 7, "timestamp": 1, "rates": []}, "instance_id"),
    ({"type": "rates", "instance_id": "tr", "timestamp": 1, "rates": {}}, "rates"),
    (
        message("rates", 1, [rate(1, "A", 30.0), {"sys_num": 2, "sys_name": "B"}]),
        "rates[1].decoderate",
    ),
    (message("rates", 1, [rate(1.5, "A", 30.0)]), "rates[0].sys_num"),
    (message("rates", 1, [rate(12345678901234567890.5, "A", 30.0)]), "rates[0].sys_num"),
    (message("calls_active", 1, [call("a", tdma_slot=-(2**70) - 0.5)]), "calls[0].tdma_slot"),
    (message("rates", 1, [rate(2**40, "A", 30.0)]), "rates[0].sys_num"),
    (message("rates", 1, [rate(1, "", 30.0)]), "rates[0].sys_name"),
    (message("rates", 1, [rate(1, "A", 1e20)]), "rates[0].decoderate"),
    (message("rates", 1, ["PRWC"]), "rates[0]"),
    (message("calls_active", 1, [call("a"), {"sys_name": "A"}]), "calls[1].id"),
    (message("calls_active", 1, [call("a", encrypted="maybe")]), "calls[0].encrypted"),
    (message("calls_active", 1, [call("a", start_time=-5)]), "calls[0].start_time"),
    (
        message("calls_active", 1, [call("a", talkgroup_alpha_tag={"x": 1})]),
        "calls[0].talkgroup_alpha_tag",
    ),
    (message("calls_active", 1, [call("a", sys_name=None)]), "calls[0].sys_name"),
    (message("recorders", 1, [{"rec_state_type": ["IDLE"]}]), "recorders[0].rec_state_type"),
    (message("calls_active", 1, [call(str(n)) for n in range(2001)]), "calls"),
]


@pytest.mark.parametrize(("bad", "field"), MALFORMED)
def test_a_malformed_message_is_refused_naming_its_field_and_writes_nothing(db, bad, field):
    ingest(db, message("calls_active", 0, [call("before")]))
    before = traffic_state(db)
    with pytest.raises(psycopg.Error) as refused:
        ingest(db, bad)
    assert refused.value.sqlstate == "PT422"
    assert json.loads(refused.value.diag.message_detail) == {"field": field}
    assert refused.value.diag.message_primary.startswith(field + " ")
    assert traffic_state(db) == before


def test_a_body_that_is_neither_a_message_nor_a_batch_is_a_400(db):
    for body in ("rates", 5, None, [], [{}] * 1001):
        with pytest.raises(psycopg.Error) as refused:
            ingest(db, body)
        assert refused.value.sqlstate == "PT400"


def test_a_batch_applies_in_order_and_reports_each_message(db):
    batch = [
        message("calls_active", 1, [call("a")]),
        message("calls_active", 2, [call("a"), call("b")]),
        {"type": "calls_active", "instance_id": "trunk-recorder"},
        message("calls_active", 1, []),
        message("calls_active", 3, [call("b")]),
    ]
    report, status = ingest(db, batch)
    assert status == "207"
    assert [r["status"] for r in report["results"]] == [
        "applied",
        "applied",
        "rejected",
        "ignored",
        "applied",
    ]
    assert report["results"][2]["error"]["details"] == {"field": "timestamp"}
    assert (report["applied"], report["ignored"], report["rejected"], report["events"]) == (
        3,
        1,
        1,
        3,
    )
    _, all_rejected = ingest(db, [{"type": "x"}, "y"])
    assert all_rejected == "422"


def test_older_plugins_string_values_are_read_as_what_they_say(db):
    """Plugin versions before 2024 send every value as a string: "false" is false (upstream
    reads it as true), numbers in strings are numbers."""
    stringly = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in call("s").items()}
    stringly["phase2"] = stringly.pop("phase2_tdma")
    ingest(db, message("calls_active", "1771215831", [stringly]))
    row = db.execute(
        "select encrypted, emergency, phase2_tdma, talkgroup_id, freq_mhz, started_at is not null"
        " from api.traffic_live_calls"
    ).fetchone()
    assert row == (False, False, True, 4499, 770.11875, True)


def test_decode_history_keeps_a_bounded_window(db):
    db.execute("select set_config('emberlog.decode_history_retention', '10 seconds', false)")
    for ts in range(1000, 1031, 3):
        ingest(db, message("rates", ts, [rate(1, "PRWC-J", 30.0 + ts % 7)]))
    kept = db.execute(
        "select min(reported_at), max(reported_at), count(*) from api.traffic_decode_history"
    ).fetchone()
    assert (kept[1] - kept[0]).total_seconds() <= 10
    assert kept[2] == 4  # 1021, 1024, 1027, 1030
    history = db.execute("select api.get_decode_history('trunk-recorder', '6s')::jsonb").fetchone()[
        0
    ]
    assert history["window_s"] == 6 and history["retention_s"] == 10
    points = history["sites"][0]["points"]
    assert len(points) == 2 and points[-1]["at"] == history["to"]
    longer = db.execute("select api.get_decode_history('trunk-recorder', '1h')::jsonb").fetchone()[
        0
    ]
    assert longer["window_s"] == 10 and len(longer["sites"][0]["points"]) == 4  # all that is kept
    for window in ("15", "0m", "1d", "m"):
        with pytest.raises(psycopg.Error) as refused:
            db.execute("select api.get_decode_history('trunk-recorder', %s)", (window,))
        assert refused.value.sqlstate == "PT400"


def test_the_recorded_session_yields_each_call_once_and_a_decode_event_per_site_and_rates(db):
    for _, body in session():
        assert ingest(db, body)[0]["status"] == "applied"
    started = [e["payload"]["call_id"] for e in events(db, "traffic.call.started")]
    ended = [e["payload"]["call_id"] for e in events(db, "traffic.call.ended")]
    assert len(started) == 7 and sorted(started) == sorted(ended)
    assert len(events(db, DECODE_TYPE)) == 8 * 3
    assert db.execute("select count(*) from api.traffic_live_calls").fetchone() == (0,)
    # Replaying the whole session (a bridge that re-reads everything) changes nothing.
    position = newest_position(db)
    for _, body in session():
        assert ingest(db, body)[0]["status"] == "ignored"
    assert newest_position(db) == position


def test_live_calls_filters_and_order(db):
    calls = [
        call("1_4499_1771215827", start_time=1771215827),
        call(
            "2_5500_1771215800",
            start_time=1771215800,
            encrypted=True,
            talkgroup_alpha_tag="Encrypted",
            talkgroup_description="Dispatch",
            src_num=1,
            rec_num=1,
        ),
        call(
            "3_6600_1771215900",
            start_time=1771215900,
            sys_num=2,
            sys_name="MCSO-WT",
            talkgroup_alpha_tag="Other",
            talkgroup_description="Ops",
        ),
        call(
            "4_1_0",
            start_time=None,
            elapsed=30,
            talkgroup_alpha_tag="No start",
            talkgroup_description="Tac",
        ),
    ]
    ingest(db, message("calls_active", 1771215931, calls))

    def ids(**params) -> list[str]:
        body = db.execute(
            "select api.list_live_calls(%(instance_id)s, %(sys_name)s, %(q)s, %(hide)s)::jsonb",
            {"instance_id": "trunk-recorder", "sys_name": None, "q": None, "hide": False} | params,
        ).fetchone()[0]
        return [c["id"] for c in body["calls"]]

    assert ids() == ["3_6600_1771215900", "1_4499_1771215827", "2_5500_1771215800", "4_1_0"]
    assert ids(hide=True, q="DISPATCH", sys_name=["PRWC-J"]) == ["1_4499_1771215827"]
    assert ids(sys_name=["MCSO-WT, nope", " "]) == ["3_6600_1771215900"]
    assert ids(sys_name=["prwc-j"]) == []  # exact names
    assert ids(q="%") == []  # q is text, not a pattern
    body = db.execute(
        "select api.list_live_calls('trunk-recorder', null, 'a01', true)::jsonb"
    ).fetchone()[0]
    assert body["updated_at"] == "2026-02-16T04:25:31.000000Z"
    assert body["calls"] == [
        {
            "id": "1_4499_1771215827",
            "started_at": "2026-02-16T04:23:47.000000Z",
            "elapsed_s": 4,
            "sys_num": 1,
            "sys_name": "PRWC-J",
            "group": "PRWC",
            "talkgroup_id": 4499,
            "talkgroup": "Avondale PD A01",
            "description": "A01 Dispatch",
            "category": "Avondale Police",
            "tag": "Law Dispatch",
            "freq_mhz": 770.11875,
            "encrypted": False,
            "emergency": False,
            "phase2_tdma": True,
            "tdma_slot": 0,
            "unit": 707004,
            "src_num": 0,
            "rec_num": 0,
            "recorder_id": "0_0",
        }
    ]


def test_an_instance_never_heard_from_reads_as_empty(db):
    summary = db.execute("select api.get_traffic_summary('nobody')::jsonb").fetchone()[0]
    assert summary["event_type"] == "system.decode_sites.snapshot"
    assert summary["source"] == {"module": "emberlog-api", "instance": "nobody"}
    assert summary["payload"] == {
        "decode_sites": [],
        "recorders": {"total": 0, "recording": 0, "idle": 0, "available": 0, "updated_at": None},
        "feed": {"last_seen_at": None, "age_s": None, "status": "stale"},
    }
    live = db.execute("select api.list_live_calls('nobody')::jsonb").fetchone()[0]
    assert live == {"instance_id": "nobody", "updated_at": None, "calls": []}


def test_feed_status_follows_when_it_was_last_seen(db):
    ingest(db, message("rates", 1, [rate(1, "PRWC-J", 30.0)]))
    for age, status in ((5, "healthy"), (20, "degraded"), (31, "stale")):
        db.execute(
            "update data.traffic_feeds set received_at = now() - make_interval(secs => %s)", (age,)
        )
        feed = db.execute(
            "select api.get_traffic_summary()::jsonb -> 'payload' -> 'feed'"
        ).fetchone()[0]
        assert feed["status"] == status


def test_readers_read_the_traffic_views_and_only_ingest_writes(database_url, db):
    ingest(db, message("calls_active", 5, [call("a")]))
    with pg.connect_as(database_url, "emberlog_reader") as reader:
        for view in (
            "traffic_sites",
            "traffic_recorders",
            "traffic_feeds",
            "traffic_live_calls",
            "traffic_decode_history",
            "traffic_call_events",
        ):
            reader.execute(f"select * from api.{view}").fetchall()
        assert reader.execute("select call_id from api.traffic_call_events").fetchall() == [("a",)]
        assert pg.denied(reader, "select api.ingest_trunk_recorder('{}')")
        assert pg.denied(reader, "select * from data.traffic_calls")
    with pg.connect_as(database_url, "emberlog_anon") as anon:
        assert pg.denied(anon, "select api.ingest_trunk_recorder('{}')")
        anon.execute("select api.get_traffic_summary()").fetchone()
    with pg.connect_as(database_url, "emberlog_ingest") as service:
        assert ingest(service, message("calls_active", 6, []))[0]["events"] == 1


def test_the_largest_values_a_message_may_hold_are_read_back(db):
    """Whatever passes the checks can be shown: no read fails on a stored value."""
    now = int(time.time())
    big = 1e14
    ingest(
        db,
        message(
            "rates",
            now,
            [rate(2147483647, "X" * 200, big, control_channel=big, decoderate_interval=big)],
        ),
    )
    entry = call(
        "c" * 200,
        elapsed=big,
        freq=big,
        talkgroup=-big,
        unit=big,
        start_time=32503680000,
        stop_time=0,
        tdma_slot=-2147483648,
        src_num=2147483647,
        rec_num=-1,
        length=big,
    )
    ingest(db, message("calls_active", now, [entry]))
    live = db.execute("select api.list_live_calls()::jsonb").fetchone()[0]
    assert live["calls"][0]["elapsed_s"] == big and live["calls"][0]["talkgroup_id"] == -big
    summary = db.execute("select api.get_traffic_summary()::jsonb").fetchone()[0]
    assert summary["payload"]["decode_sites"][0]["sys_num"] == 2147483647
    db.execute("select api.get_decode_history('trunk-recorder', '1h')").fetchone()
    db.execute("select * from api.traffic_call_events").fetchall()


def test_a_timestamp_far_ahead_of_the_databases_clock_is_refused(db):
    """Else that one message would freeze its feed: only newer messages go in."""
    ahead = int(time.time()) + 3600
    with pytest.raises(psycopg.Error) as refused:
        ingest(db, message("calls_active", ahead, [call("a")]))
    assert refused.value.sqlstate == "PT409"  # at odds with the clock, not malformed
    assert refused.value.diag.message_hint == "clock_ahead"
    assert json.loads(refused.value.diag.message_detail) == {"field": "timestamp"}
    assert "ahead of the database's clock" in refused.value.diag.message_primary
    assert ingest(db, message("calls_active", int(time.time()) + 60, []))[0]["status"] == "applied"


def test_a_clock_set_back_far_resets_the_feed_instead_of_freezing_it(db):
    ingest(db, message("rates", 100_000, [rate(1, "PRWC-J", 30.0)]))
    assert ingest(db, message("rates", 99_990, [rate(1, "PRWC-J", 31.0)]))[0]["status"] == "ignored"
    # More than emberlog.traffic_clock_reset (10 minutes) behind: the clock was set back.
    assert ingest(db, message("rates", 1_000, [rate(1, "PRWC-J", 32.0)]))[0]["status"] == "applied"
    assert ingest(db, message("rates", 1_003, [rate(1, "PRWC-J", 33.0)]))[0]["status"] == "applied"
    history = db.execute(
        "select extract(epoch from reported_at)::int from api.traffic_decode_history"
    )
    assert sorted(r[0] for r in history.fetchall()) == [1_000, 1_003]  # not the old clock's


def test_a_wrong_setting_is_a_503_naming_it_and_writes_nothing(db):
    db.execute("select set_config('emberlog.max_decoderate', 'forty', false)")
    with pytest.raises(psycopg.Error) as refused:
        ingest(db, message("rates", 1, [rate(1, "PRWC-J", 30.0)]))
    assert refused.value.sqlstate == "PT503"
    assert "emberlog.max_decoderate" in refused.value.diag.message_primary
    assert traffic_state(db)[1] == []  # no site


def test_concurrent_batches_over_the_same_feeds_take_turns_without_deadlock(database_url, db):
    """Two writers (a second bridge, the route) sending one instance's feeds in opposite
    orders: the feeds are locked in one order, so neither is aborted."""
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(order: int) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            start.wait()
            for ts in range(10, 40):
                pair = [
                    message("rates", ts, [rate(1, "PRWC-J", 30.0)]),
                    message("calls_active", ts, [call(f"c{ts}")]),
                ]
                try:
                    ingest(conn, pair[::order])
                except psycopg.Error as exc:
                    failures.append(exc)

    threads = [threading.Thread(target=writer, args=(o,)) for o in (1, -1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    started = [e["payload"]["call_id"] for e in events(db, "traffic.call.started")]
    assert sorted(started) == sorted(set(started)) and len(started) == 30  # each once


def test_each_setting_is_checked_as_its_own_type_in_one_session(database_url):
    """A number setting and an interval setting read in turn, in a fresh session: each
    is checked as what it is (pg_input_is_valid keeps the first type it was given at a
    call site, which once let '1 hour' be checked as a number)."""
    read = (
        "select internal.number_setting('emberlog.max_decoderate', '40'),"
        " internal.interval_setting('emberlog.decode_history_retention', '1 hour')"
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert conn.execute(read).fetchone() == (40.0, datetime.timedelta(hours=1))
        for name, wrong in (
            ("emberlog.max_decoderate", "1 hour"),
            ("emberlog.decode_history_retention", "40x"),
        ):
            conn.execute("select set_config(%s, %s, false)", (name, wrong))
            with pytest.raises(psycopg.Error) as refused:
                conn.execute(read)
            assert refused.value.sqlstate == "PT503" and name in str(refused.value)
            conn.execute("select set_config(%s, '', false)", (name,))
