"""Fixtures: a real PostgreSQL (embedded unless TEST_DATABASE_URL is set), a migrated
database per test session, an in-process app per test."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator

import falcon.testing
import psycopg
import pytest

from app.app import create_app
from app.settings import Settings
from tests import pg


@pytest.fixture(scope="session")
def server_url(tmp_path_factory):
    override = os.environ.get("TEST_DATABASE_URL")
    if override:
        yield override
        return
    server = pg.start_embedded(tmp_path_factory.mktemp("pg") / "data")
    yield server.uri
    server.stop()


@pytest.fixture(scope="session")
def database_url(server_url):
    url = pg.create_database(server_url)
    yield url
    pg.drop_database(server_url, url)


@pytest.fixture(scope="session")
def app_database_url(database_url) -> str:
    """The migrated database as the app logs in: the authenticator, never a superuser."""
    return pg.as_authenticator(database_url)


@pytest.fixture
def db(database_url):
    """An autocommit connection as the migrating (owner) role, on emptied tables."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        pg.empty_tables(conn)
        yield conn


@pytest.fixture
def settings(database_url, app_database_url) -> Settings:
    """The in-process app logs in as the authenticator (PostgreSQL enforces its roles);
    the owner's login is MIGRATE_DATABASE_URL's, as in production."""
    # Falcon's simulate_request says http.disconnect as soon as the body is read (its
    # client "leaves" at once), so the in-process app must not cancel on disconnect;
    # tests/e2e cover that with real clients.
    return Settings(
        database_url=app_database_url,
        migrate_database_url=database_url,
        pool_min_size=1,
        pool_max_size=4,
        cancel_on_disconnect=False,
    )


async def streams_ready(state) -> None:
    """Wait as a load balancer does for /readyz: every stream knows where live starts,
    so events written from here on are in the rings (not only in the log)."""
    while state.streams is None or not state.streams.ready():
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[falcon.testing.ASGIConductor]:
    """An in-process app for these settings, started, with its routes loaded; its
    ``ingest`` headers carry a fresh ingest key, as Calypso sends them."""
    assert settings.owner_url
    with psycopg.connect(settings.owner_url, autocommit=True) as conn:  # keys: the owner's
        ingest = {"X-API-Key": pg.issue_key(conn)}
    app = create_app(settings)
    async with falcon.testing.ASGIConductor(app) as conductor:
        await asyncio.wait_for(app.state.routes_loaded.wait(), 10)
        await asyncio.wait_for(streams_ready(app.state), 10)
        conductor.app_state = app.state
        conductor.ingest = ingest
        yield conductor


@pytest.fixture
async def client(settings, db):
    async with app_client(settings) as conductor:
        yield conductor


@pytest.fixture
def slow_route(db):
    """api.slow(seconds): an anonymous read that takes as long as it is told to."""
    db.execute("""
        create function api.slow(seconds double precision default 2) returns json
        language sql stable as $$ select pg_sleep(seconds); select '{}'::json $$;
        comment on function api.slow(double precision) is '@http GET /api/v1/slow';
        grant execute on function api.slow(double precision) to emberlog_anon;
    """)
    yield
    db.execute("drop function api.slow(double precision)")


@contextlib.asynccontextmanager
async def only_connection_held(
    settings: Settings, db, seconds: float, **changes
) -> AsyncIterator[tuple[falcon.testing.ASGIConductor, asyncio.Task]]:
    """An app whose pool has one connection, held by a call of api.slow (the slow_route
    fixture) for `seconds` once this yields; yields the app and that call's task."""
    one = dataclasses.replace(settings, pool_min_size=1, pool_max_size=1, **changes)
    async with app_client(one) as client:
        params = {"seconds": str(seconds)}
        busy = asyncio.create_task(client.simulate_get("/api/v1/slow", params=params))
        while not pg.running(db, "slow"):  # the only connection is now taken
            await asyncio.sleep(0.02)
        yield client, busy
