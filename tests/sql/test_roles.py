"""Each role can do exactly what it should, and nothing more."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import sql

from tests import pg
from tests.incidents import payload

CREATE = "select api.create_incident(%s::jsonb)"
INSERT_TABLE = "insert into data.incidents (dispatched_at, source_audio) values (now(), 'x')"
INSERT_VIEW = "insert into api.incidents (dispatched_at, source_audio) values (now(), 'x')"


@pytest.fixture
def conn(db):
    yield db
    db.execute("reset role")


def test_ingest_may_only_call_the_write_function(conn):
    pg.as_role(conn, "emberlog_ingest")
    created = conn.execute(CREATE, (json.dumps(payload()),)).fetchone()[0]
    assert isinstance(created["id"], int)
    assert pg.denied(conn, INSERT_TABLE)
    assert pg.denied(conn, INSERT_VIEW)
    assert pg.denied(conn, "select * from data.incidents")
    assert pg.denied(conn, "select * from api.incidents")
    assert pg.denied(conn, "update data.incidents set address = 'x'")
    assert pg.denied(conn, "select api.list_incidents()")
    assert pg.denied(conn, "select internal.payload_text('{}', 'x')")


def test_reader_reads_views_and_cannot_write(conn):
    conn.execute(CREATE, (json.dumps(payload()),))
    pg.as_role(conn, "emberlog_reader")
    assert conn.execute("select count(*) from api.incidents").fetchone()[0] == 1
    assert conn.execute("select count(*) from api.recent_incidents").fetchone()[0] == 0
    assert pg.denied(conn, CREATE, (json.dumps(payload()),))
    assert pg.denied(conn, INSERT_VIEW)
    assert pg.denied(conn, "delete from api.incidents")
    assert pg.denied(conn, "update api.incidents set address = 'x'")
    assert pg.denied(conn, "select * from data.incidents")
    assert pg.denied(conn, "truncate data.incidents")


def test_anon_reads_and_may_not_write(conn):
    pg.as_role(conn, "emberlog_anon")
    assert pg.denied(conn, CREATE, (json.dumps(payload()),))
    assert conn.execute("select (api.list_incidents())->>'total'").fetchone()[0] == "0"
    assert pg.denied(conn, INSERT_TABLE)
    assert pg.denied(conn, "delete from api.incidents")
    assert pg.denied(conn, "select * from data.incidents")


def test_authenticator_has_no_privileges_of_its_own(database_url):
    with psycopg.connect(
        pg.with_user(database_url, "emberlog_authenticator"), autocommit=True
    ) as conn:
        assert pg.denied(conn, "select * from api.incidents")
        assert pg.denied(conn, CREATE, (json.dumps(payload()),))
        # ...but may switch to the web roles, and only to them
        for role in ("emberlog_anon", "emberlog_ingest"):
            pg.as_role(conn, role)
            conn.execute("reset role")
        for role in ("emberlog_reader", "postgres"):
            assert pg.denied(conn, sql.SQL("set role {}").format(sql.Identifier(role)))


def test_role_attributes(conn):
    rows = dict(
        conn.execute(
            "select rolname, (rolcanlogin, rolinherit, rolsuper)::text from pg_roles"
            " where rolname like 'emberlog\\_%'"
        ).fetchall()
    )
    assert rows["emberlog_authenticator"] == "(t,f,f)"
    for role in ("emberlog_anon", "emberlog_ingest", "emberlog_reader"):
        assert rows[role] == "(f,t,f)"


def test_public_has_no_execute_on_api_or_internal(conn):
    leaked = conn.execute("""
        select p.oid::regprocedure::text from pg_proc p
        where p.pronamespace in ('api'::regnamespace, 'internal'::regnamespace)
          and has_function_privilege('public', p.oid, 'execute')
    """).fetchall()
    assert leaked == []


def test_security_definer_functions_pin_search_path(conn):
    unpinned = conn.execute("""
        select p.oid::regprocedure::text from pg_proc p
        where p.prosecdef and p.pronamespace in ('api'::regnamespace, 'internal'::regnamespace)
          and not coalesce(p.proconfig, '{}') @> array['search_path=pg_catalog, pg_temp']
    """).fetchall()
    assert unpinned == []
