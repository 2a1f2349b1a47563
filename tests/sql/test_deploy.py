"""Every behaviour re-creatable from sql/: migrations hold tables, indexes, roles and data
moves; every function, view and trigger is (re-)created by deploy.apply_sql, so a fresh
database, an upgraded one and one whose behaviour was dropped by hand end identical.
Constants (the publisher's lock, the event channel, a route's path) are written once."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from app.database import deploy, routes
from tests import pg
from tests.incidents import payload

CREATE = "select api.create_incident(%s::jsonb)"
RELOAD = "emberlog_reload"
SQL_TEXT = {path: path.read_text() for path in deploy.sql_files()}
TRIGGERS = [  # data.incidents' triggers, in firing order (name order), and their functions
    ("_100_count_deletes", "internal.tg_incidents__count"),
    ("_100_count_inserts", "internal.tg_incidents__count"),
    ("_100_count_truncates", "internal.tg_incidents__count"),
    ("_100_count_updates", "internal.tg_incidents__count"),
    ("_500_record_event", "internal.tg_incidents__record_event"),
    ("_600_queue_alerts", "internal.tg_incidents__queue_alerts"),
    ("_900_queue_event", "internal.tg_incidents__queue_event"),
]
ENVELOPE_TRIGGERS = [  # data.event_envelopes' triggers, in firing order, and their functions
    ("_900_queue_event", "internal.tg_event_envelopes__queue_event"),
]


@pytest.fixture
def fresh(server_url) -> Iterator[str]:
    """A database of this test's own, migrated and deployed (deploys re-create api)."""
    url = pg.create_database(server_url)
    yield url
    pg.drop_database(server_url, url)


@pytest.fixture
def reference(fresh) -> dict:
    """The behaviour of a fresh database: migrations, then sql/."""
    with psycopg.connect(fresh) as conn:
        return pg.behaviour(conn)


def create(conn, n: int = 1) -> list[int]:
    return [conn.execute(CREATE, (json.dumps(payload()),)).fetchone()[0]["id"] for _ in range(n)]


def consistent(conn) -> tuple[int, int, int]:
    """(rows, what the counter says, events published): equal when nothing was lost."""
    events = len(pg.event_ids(conn))
    row = conn.execute(
        "select (select count(*) from data.incidents), (select incidents from api.incident_count)"
    ).fetchone()
    return row[0], row[1], events


def test_every_function_view_and_trigger_is_recreated_from_sql(fresh, reference):
    """Drop all behaviour (api, every function of internal and auth, every trigger and
    policy): apply_sql alone brings all of it back, as it was. Nothing lives only in a
    migration."""
    with psycopg.connect(fresh, autocommit=True) as conn:
        create(conn, 3)
        for name, table in conn.execute(
            "select tgname, tgrelid::regclass::text from pg_trigger"
            " where tgrelid::regclass::text like 'data.%' and not tgisinternal"
        ).fetchall():
            conn.execute(f'drop trigger "{name}" on {table}')
        for name, table in conn.execute(
            "select policyname, schemaname || '.' || tablename from pg_policies"
        ).fetchall():
            conn.execute(f'drop policy "{name}" on {table}')
        conn.execute("drop schema api cascade")
        for (function,) in conn.execute(
            "select oid::regprocedure::text from pg_proc"
            " where pronamespace in ('internal'::regnamespace, 'auth'::regnamespace)"
        ).fetchall():
            conn.execute(f"drop function {function}")
        gone = pg.behaviour(conn)
        assert gone["function"] == {} and gone["trigger"] == {}

        deploy.apply_sql(fresh, RELOAD)
        assert pg.behaviour(conn) == reference
        create(conn, 2)
        assert consistent(conn) == (5, 5, 5)


def test_a_trigger_and_an_internal_function_dropped_by_hand_come_back(fresh, reference):
    with psycopg.connect(fresh, autocommit=True) as conn:
        conn.execute("drop trigger _900_queue_event on data.incidents")
        conn.execute("drop function internal.read_events(text, bigint, integer)")
        deploy.apply_sql(fresh, RELOAD)
        assert pg.behaviour(conn) == reference
        create(conn, 2)
        assert consistent(conn) == (2, 2, 2)
        deploy.apply_sql(fresh, RELOAD)  # and again: nothing changes
        assert pg.behaviour(conn) == reference


def test_an_upgraded_database_ends_as_a_fresh_one(server_url, reference):
    """A database as it was before sql/ held the triggers (migrations 0006 and 0007 made
    them, pointing at internal.tg_count_incidents and internal.tg_queue_event), written to
    in that state, then deployed: the same behaviour as a fresh one, nothing lost."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        name = f"emberlog_test_{uuid.uuid4().hex[:10]}"
        conn.execute(f"create database {name}")
    url = pg.with_database(server_url, name)
    try:
        deploy.apply_migrations(url)
        with psycopg.connect(url, autocommit=True) as conn:
            old = conn.execute(
                "select distinct tgfoid::regproc::text from pg_trigger where not tgisinternal"
            ).fetchall()
            assert sorted(old) == [("internal.tg_count_incidents",), ("internal.tg_queue_event",)]
            conn.execute(
                "insert into data.incidents (dispatched_at, source_audio)"
                " select now(), 'old-' || n from generate_series(1, 4) as n"
            )
            deploy.apply_sql(url, RELOAD)
            assert pg.behaviour(conn) == reference
            create(conn, 2)
            assert consistent(conn) == (6, 6, 6)
    finally:
        pg.drop_database(server_url, url)


def test_rolling_back_the_counts_and_the_queue_and_migrating_again(fresh, reference):
    """The rollbacks of 0006 and 0007 remove the triggers sql/ made; migrating again
    (migrations re-create the old functions, sql/ replaces them) ends as a fresh one."""
    with psycopg.connect(fresh, autocommit=True) as conn:
        create(conn, 3)
        assert pg.roll_back_to(fresh, "0005.role_timeouts") == [
            "0011.incident_versions",
            "0010.alerts",
            "0009.traffic",
            "0008.event_envelopes",
            "0007.event_queue",
            "0006.incident_counts",
        ]
        names = {name.rsplit(".", 1)[1] for name in pg.behaviour(conn)["trigger"]}
        assert names == {"_900_log_event"}  # 0003's, as it was
        deploy.migrate(fresh, RELOAD)
        assert pg.behaviour(conn) == reference
        create(conn, 1)
        assert consistent(conn) == (4, 4, 4)


def test_triggers_are_named_for_their_order_and_call_tg_table_task_functions(db):
    rows = db.execute(
        "select t.tgname::text, t.tgfoid::regproc::text from pg_trigger as t"
        " where t.tgrelid = 'data.incidents'::regclass and not t.tgisinternal order by t.tgname"
    ).fetchall()
    assert rows == TRIGGERS
    rows = db.execute(
        "select t.tgname::text, t.tgfoid::regproc::text from pg_trigger as t"
        " where t.tgrelid = 'data.event_envelopes'::regclass and not t.tgisinternal"
        " order by t.tgname"
    ).fetchall()
    assert rows == ENVELOPE_TRIGGERS
    functions = db.execute(
        "select p.proname::text, p.provolatile::text, p.prosecdef, p.proconfig,"
        " obj_description(p.oid, 'pg_proc') is not null"
        " from pg_proc as p where p.pronamespace = 'internal'::regnamespace"
        " and p.prorettype = 'trigger'::regtype order by 1"
    ).fetchall()
    assert functions == [
        (name, "v", True, ["search_path=pg_catalog, pg_temp"], True)
        for name in (
            "tg_alert_channels__unverify",
            "tg_alert_rules__match_columns",
            "tg_alert_tables__limit",
            "tg_event_envelopes__queue_event",
            "tg_incidents__count",
            "tg_incidents__queue_alerts",
            "tg_incidents__queue_event",
            "tg_incidents__record_event",
        )
    ]
    comments = db.execute(
        "select count(*) from pg_trigger where not tgisinternal"
        " and obj_description(oid, 'pg_trigger') is null"
    ).fetchone()
    assert comments == (0,)


def test_every_function_states_its_volatility_and_has_a_comment(db):
    """In the text of sql/ (the catalog always has a volatility, stated or not)."""
    statement = re.compile(
        r"create (?:or replace )?function\s+([\w.]+)\((.*?)(?:\bas \$|\breturn\b)", re.S
    )
    unstated = [
        f"{path.name}: {match.group(1)}"
        for path, text in SQL_TEXT.items()
        for match in statement.finditer(text)
        if not re.search(r"^\s*(immutable|stable|volatile)\b", match.group(2), re.M)
    ]
    assert unstated == []
    uncommented = db.execute(
        "select p.oid::regprocedure::text from pg_proc as p"
        " where p.pronamespace::regnamespace::text in ('api', 'internal', 'auth')"
        " and obj_description(p.oid, 'pg_proc') is null"
        " union all select c.oid::regclass::text from pg_class as c"
        " where c.relkind = 'v' and c.relnamespace = 'api'::regnamespace"
        " and obj_description(c.oid, 'pg_class') is null"
    ).fetchall()
    assert uncommented == []


def test_iso8601_is_stable_and_parallel_safe(db):
    row = db.execute(
        "select provolatile::text, proparallel::text from pg_proc"
        " where oid = 'api.iso8601(timestamptz)'::regprocedure"
    ).fetchone()
    assert row == ("s", "s")


def test_the_publishers_lock_key_is_one_function(db):
    """The number is written once in sql/, and publish_events takes the lock it names."""
    assert sum(text.count("1702260340") for text in SQL_TEXT.values()) == 1
    key = db.execute("select internal.publisher_lock_key()").fetchone()[0]
    create(db)
    with db.transaction():
        db.execute("select internal.publish_events()")
        held = db.execute(
            "select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()"
            " and ((classid::bigint << 32) | objid::bigint) = %s",
            (key,),
        ).fetchone()
    assert held == (1,)


def test_the_stream_channel_is_the_one_the_trigger_rings(database_url, db):
    """internal.events_channel() is the one place: the @sse tag is built from it, and the
    trigger NOTIFYs on it."""
    assert sum(text.count("emberlog_events") for text in SQL_TEXT.values()) == 1
    (channel,) = db.execute("select internal.events_channel()").fetchone()
    streams = [r for r in routes.load_sync(db, "api").routes if r.is_stream]
    assert [(r.function, r.channel) for r in streams] == [
        ("event_stream", channel),
        ("incident_events", channel),
    ]
    with pg.connect_as(database_url, "emberlog_ingest") as ingest:
        db.execute(f"listen {channel}")
        create(ingest)
        notify = next(db.notifies(timeout=5, stop_after=1))
    assert (notify.channel, notify.payload) == (channel, "incidents")


def test_location_is_where_the_get_route_serves_the_incident(db):
    """The path is declared once per route (@http tags); create_incident derives its
    Location from api.get_incident's tag, and the collection routes share its prefix."""
    table = {(r.method, r.function): r.template for r in routes.load_sync(db, "api").routes}
    item = table["GET", "get_incident"]
    assert item.endswith("/{id}")
    collection = item.removesuffix("/{id}")
    assert table["GET", "list_incidents"] == table["POST", "create_incident"] == collection
    with db.transaction():
        db.execute("select set_config('request.base_url', 'https://emberlog.example', true)")
        created = db.execute(CREATE, (json.dumps(payload()),)).fetchone()[0]
        headers = db.execute("select current_setting('response.headers')").fetchone()[0]
    url = "https://emberlog.example" + item.replace("{id}", str(created["id"]))
    assert json.loads(headers) == {"Location": url}
    assert created["links"]["self"]["_url"] == url
    # The literal path appears only in route tags (and the prose of comments).
    code = [
        line
        for text in SQL_TEXT.values()
        for line in text.splitlines()
        if "/api/v1/incidents" in line and "@http" not in line and "@sse" not in line
    ]
    assert code == []


def test_a_function_without_a_route_has_no_path(db):
    with pytest.raises(psycopg.errors.RaiseException, match="declares no @http route"):
        db.execute("select internal.route_path('api.iso8601(timestamptz)')")


def test_a_deploy_behind_a_long_transaction_gives_up_and_holds_no_request(fresh):
    """A deploy waits at most lock_timeout for each lock (requests queue behind its
    request meanwhile), undoes itself and tries again; in the end it fails whole."""
    with psycopg.connect(fresh) as long, psycopg.connect(fresh, autocommit=True) as conn:
        before = conn.execute("select 'api.incidents'::regclass::oid").fetchone()
        long.execute("select count(*) from api.incidents")  # holds it, transaction open
        elapsed: list[float] = []

        def read() -> None:  # a request arriving while the deploy waits
            with psycopg.connect(fresh, autocommit=True) as reader:
                time.sleep(0.1)
                began = time.monotonic()
                reader.execute("select count(*) from api.incidents")
                elapsed.append(time.monotonic() - began)

        reading = threading.Thread(target=read)
        reading.start()
        with pytest.raises(deploy.DeployError, match=r"00_api_schema\.sql: a lock was not free"):
            deploy.apply_sql(fresh, RELOAD, lock_timeout=0.3, attempts=3)
        reading.join()
        assert elapsed and elapsed[0] < 0.3 + 0.2  # waited for one attempt at most
        assert conn.execute("select 'api.incidents'::regclass::oid").fetchone() == before
        long.rollback()
        assert deploy.apply_sql(fresh, RELOAD, lock_timeout=0.3, attempts=1) > 0


def test_a_deploy_tries_again_until_a_short_transaction_ends(fresh, reference):
    with psycopg.connect(fresh) as writer:
        writer.execute(CREATE, (json.dumps(payload()),))  # holds data.incidents, open
        threading.Timer(0.5, writer.commit).start()
        deploy.apply_sql(fresh, RELOAD, lock_timeout=0.2, attempts=10)
    with psycopg.connect(fresh) as conn:
        assert pg.behaviour(conn) == reference
        assert consistent(conn) == (1, 1, 1)
