"""API keys in SQL: issued once, stored as a digest, revocable, expiring; the
authenticator may look a key up and nothing more."""

from __future__ import annotations

import hashlib

import psycopg
import pytest

from tests import pg

CREATE = "select auth.create_api_key(%s, %s, %s::timestamptz)"
LOOKUP = "select key_name, role from auth.key_role(%s)"


@pytest.fixture
def keys(db):
    db.execute("truncate auth.api_keys restart identity")
    return db


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def test_a_key_is_shown_once_and_stored_only_as_a_digest(keys):
    key = keys.execute(CREATE, ("calypso", "emberlog_ingest", None)).fetchone()[0]
    assert key.startswith("emb_") and len(key) == 68
    stored = keys.execute("select * from auth.api_keys").fetchone()
    assert not any(key in str(value) for value in stored)
    assert keys.execute(LOOKUP, (digest(key),)).fetchall() == [("calypso", "emberlog_ingest")]
    other = keys.execute(CREATE, ("other", "emberlog_ingest", None)).fetchone()[0]
    assert other != key


def test_revoked_and_expired_keys_are_not_found(keys):
    revoked = keys.execute(CREATE, ("old", "emberlog_ingest", None)).fetchone()[0]
    expired = keys.execute(CREATE, ("gone", "emberlog_ingest", "2020-01-01Z")).fetchone()[0]
    assert keys.execute("select auth.revoke_api_key('old')").fetchone()[0] is True
    assert keys.execute("select auth.revoke_api_key('old')").fetchone()[0] is None
    for key in (revoked, expired, "emb_unknown"):
        assert keys.execute(LOOKUP, (digest(key),)).fetchall() == []


@pytest.mark.parametrize(
    "role",
    [
        "postgres",  # a superuser
        "emberlog_authenticator",  # a login role
        "no_such_role",
        "pg_read_all_data",  # predefined roles: the authenticator is no member of them...
        "pg_write_all_data",
        "pg_execute_server_program",
        "pg_read_server_files",
        "pg_monitor",
        "pg_signal_backend",
        "emberlog_reader",  # ...nor of the psql users' role
    ],
)
def test_a_key_runs_only_as_a_role_the_authenticator_may_switch_to(keys, role):
    with pytest.raises(psycopg.Error) as raised:
        keys.execute(CREATE, ("bad", role, None))
    assert raised.value.sqlstate == "PT422"
    assert raised.value.diag.message_detail == '{"field": "role"}'
    assert raised.value.diag.message_hint == "validation_failed"
    message = raised.value.diag.message_primary or ""
    _refusal, _, allowed = message.partition("; an API key may run as: ")
    assert {"emberlog_anon", "emberlog_ingest"} <= set(allowed.split(", ")), message
    assert role not in allowed.split(", ")
    assert keys.execute("select count(*) from auth.api_keys").fetchone()[0] == 0


def test_a_pg_role_is_refused_even_when_the_authenticator_is_a_member(keys):
    """Membership alone is not enough: a predefined role reads or runs far more than any
    route grants (pg_read_all_data reads every table)."""
    keys.execute("grant pg_read_all_data to emberlog_authenticator")
    try:
        with pytest.raises(psycopg.Error) as raised:
            keys.execute(CREATE, ("bad", "pg_read_all_data", None))
        assert raised.value.sqlstate == "PT422"
        assert "pg_" in (raised.value.diag.message_primary or "")
    finally:
        keys.execute("revoke pg_read_all_data from emberlog_authenticator")


@pytest.mark.parametrize("role", ["emberlog_anon", "emberlog_ingest"])
def test_the_web_roles_may_run_a_key(keys, role):
    key = keys.execute(CREATE, ("web", role, None)).fetchone()[0]
    assert keys.execute(LOOKUP, (digest(key),)).fetchall() == [("web", role)]


USED = "select last_used_at from auth.api_keys where id = 1"


def test_the_authenticator_cannot_date_a_use_in_the_future(database_url, keys):
    keys.execute(CREATE, ("calypso", "emberlog_ingest", None))
    login = pg.with_user(database_url, "emberlog_authenticator")
    with psycopg.connect(login, autocommit=True) as conn:
        conn.execute("select auth.touch_api_keys(array[1], array[now() + interval '100 years'])")
    used, now = keys.execute(f"select ({USED}), now()").fetchone()
    assert used is not None and used <= now  # recorded as the time of the call


def test_last_used_at_never_moves_back_and_a_null_time_is_no_use(keys):
    keys.execute(CREATE, ("calypso", "emberlog_ingest", None))
    keys.execute("select auth.touch_api_keys(array[1], array[null]::timestamptz[])")
    assert keys.execute(USED).fetchone()[0] is None
    keys.execute("select auth.touch_api_keys(array[1], array[now() - interval '1 minute'])")
    latest = keys.execute(USED).fetchone()[0]
    keys.execute("select auth.touch_api_keys(array[1], array[now() - interval '1 hour'])")
    assert keys.execute(USED).fetchone()[0] == latest  # a late batch: older, ignored
    keys.execute("select auth.touch_api_keys(array[1], array[now() + interval '1 day'])")
    used, now = keys.execute(f"select ({USED}), now()").fetchone()
    assert latest < used <= now  # moved on, but only to now


def test_names_are_unique(keys):
    keys.execute(CREATE, ("calypso", "emberlog_ingest", None))
    with pytest.raises(psycopg.errors.UniqueViolation):
        keys.execute(CREATE, ("calypso", "emberlog_ingest", None))


def test_the_authenticator_may_look_up_and_touch_keys_and_nothing_else(database_url, keys):
    key = keys.execute(CREATE, ("calypso", "emberlog_ingest", None)).fetchone()[0]
    login = pg.with_user(database_url, "emberlog_authenticator")
    with psycopg.connect(login, autocommit=True) as conn:
        assert conn.execute(LOOKUP, (digest(key),)).fetchall() == [("calypso", "emberlog_ingest")]
        conn.execute("select auth.touch_api_keys(array[1], array[now()])")
        statements = (
            "select * from auth.api_keys",
            "select auth.create_api_key('x', 'emberlog_ingest')",
            "select auth.revoke_api_key('calypso')",
        )
        assert [s for s in statements if not pg.denied(conn, s)] == []
    assert keys.execute("select last_used_at is not null from auth.api_keys").fetchone()[0]
    for role in ("emberlog_anon", "emberlog_ingest", "emberlog_reader"):
        with pg.connect_as(database_url, role) as conn:
            assert pg.denied(conn, LOOKUP, (digest(key),))
