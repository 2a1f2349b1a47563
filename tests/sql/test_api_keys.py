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


@pytest.mark.parametrize("role", ["postgres", "emberlog_authenticator", "no_such_role"])
def test_a_key_cannot_run_as_a_superuser_a_login_role_or_nobody(keys, role):
    with pytest.raises(psycopg.Error) as raised:
        keys.execute(CREATE, ("bad", role, None))
    assert raised.value.sqlstate == "PT422"


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
