"""Each role can do exactly what it should, and nothing more."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import sql

from app.database import connections as db
from app.settings import Settings, SettingsError
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


def test_a_request_as_the_authenticator_cannot_take_another_role(app_database_url):
    """What PostgreSQL enforces once the app logs in as the authenticator: inside a
    request's transaction, SQL may not switch to a superuser or the owner, and going
    back to the login role ('none') gives nothing."""
    with psycopg.connect(app_database_url, autocommit=True) as conn, conn.transaction():
        conn.execute("select pg_catalog.set_config('role', 'emberlog_ingest', true)")
        owner = conn.execute(
            "select nspowner::regrole::text from pg_namespace where nspname = 'data'"
        ).fetchone()[0]
        for role in ("postgres", owner, "emberlog_reader"):
            assert pg.denied(conn, "select pg_catalog.set_config('role', %s, true)", (role,))
        conn.execute("select pg_catalog.set_config('role', 'none', true)")
        assert conn.execute("select current_user::text").fetchone()[0] == "emberlog_authenticator"
        assert pg.denied(conn, "select count(*) from data.incidents")
        assert pg.denied(conn, "select count(*) from api.incidents")


def test_serve_refuses_a_superuser_login_and_warns_of_a_loose_one(
    database_url, app_database_url, caplog
):
    settings = Settings()
    assert db.check_login(app_database_url, settings) == "emberlog_authenticator"
    warned = [r for r in caplog.records if r.name == "app.database.connections"]
    assert not warned  # nothing to warn of
    with psycopg.connect(database_url, autocommit=True) as conn:
        superuser = conn.execute(
            "select rolsuper from pg_roles where rolname = session_user"
        ).fetchone()[0]
        conn.execute(
            "do $$ begin if not exists (select from pg_roles where rolname = 'emberlog_test_loose')"
            " then create role emberlog_test_loose login; end if; end $$"
        )
    try:
        loose = pg.with_user(database_url, "emberlog_test_loose")
        assert db.check_login(loose, settings, "LISTEN_DATABASE_URL") == "emberlog_test_loose"
        warned = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
        assert "not the authenticator" in warned and "not NOINHERIT" in warned
        assert "may not become emberlog_anon" in warned
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("drop role emberlog_test_loose")
    if not superuser:
        pytest.skip("TEST_DATABASE_URL logs in as no superuser: nothing to refuse")
    with pytest.raises(SettingsError) as refused:
        db.check_login(database_url, settings)
    assert str(refused.value).startswith("DATABASE_URL logs in as superuser ")
    assert "Log in as the authenticator (emberlog_authenticator)" in str(refused.value)
    assert "MIGRATE_DATABASE_URL" in str(refused.value)
    with pytest.raises(SettingsError, match=r"^READ_DATABASE_URL logs in as superuser "):
        db.check_login(database_url, settings, "READ_DATABASE_URL")


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
