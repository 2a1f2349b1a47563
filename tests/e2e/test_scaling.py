"""Past one machine: several app processes on one database, as replicas behind a
Service. Writes on any reach the streams on all; a replica killed outright loses no
event for a client that resumes on another; the listener may use its own URL."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import psycopg

from tests.e2e.test_stream import create_in_sql, newest_event
from tests.incidents import payload
from tests.sse import SseClient


async def post(http: httpx.AsyncClient, server) -> int:
    result = await http.post(
        f"{server.base}/api/v1/incidents", json=payload(), headers=server.ingest
    )
    assert result.status_code == 201, result.text
    return result.json()["id"]


def ids(client: SseClient) -> list[int]:
    return [e.data["id"] for e in client.events]


async def test_three_replicas_share_every_write_and_a_killed_one_loses_nothing(
    serve, fault_database
):
    replicas = [serve() for _ in range(3)]
    clients = [SseClient(r.base) for r in replicas]
    async with httpx.AsyncClient(timeout=30) as http:
        async with contextlib.AsyncExitStack() as stack:
            for client in clients:
                await stack.enter_async_context(client.connect(http))
            written = [await post(http, replica) for replica in replicas]
            written += await asyncio.to_thread(create_in_sql, fault_database, 2)
            newest = newest_event(fault_database)
            for client in clients:
                await client.receive(until=newest)
        for client in clients:
            assert ids(client) == written  # every write, on every replica, in order

        # Replica 0 dies (SIGKILL: no goodbye) while its client reads and writes go on.
        doomed, watcher = replicas[0], clients[0]
        with contextlib.suppress(httpx.HTTPError, StopAsyncIteration):
            async with watcher.connect(http):
                written += [await post(http, replicas[1])]
                await watcher.receive(until=newest_event(fault_database))
                doomed.process.kill()
                doomed.process.wait(10)
                written += [await post(http, replicas[2]) for _ in range(3)]
                while True:  # reads until the dead connection fails
                    await watcher._read()
        written += await asyncio.to_thread(create_in_sql, fault_database, 2)

        # EventSource reconnects through the Service: it lands on another replica.
        watcher.url = watcher.url.replace(doomed.base, replicas[2].base)
        async with watcher.connect(http):  # sends Last-Event-ID
            await watcher.receive(until=newest_event(fault_database))
    assert ids(watcher) == written  # nothing lost, nothing twice
    event_ids = [e.id for e in watcher.events]
    assert event_ids == sorted(set(event_ids))


async def test_the_listener_connects_with_its_own_url(serve, fault_database):
    """LISTEN_DATABASE_URL: requests may go through a pooler while LISTEN goes direct."""
    with psycopg.connect(fault_database, autocommit=True) as conn:
        conn.execute(
            "do $$ begin if not exists (select from pg_roles"
            " where rolname = 'emberlog_listen_test')"
            " then create role emberlog_listen_test login; end if; end $$"
        )
        conn.execute("grant emberlog_authenticator to emberlog_listen_test")
    listen_url = psycopg.conninfo.make_conninfo(fault_database, user="emberlog_listen_test")
    replica = serve(LISTEN_DATABASE_URL=listen_url)
    with psycopg.connect(fault_database, autocommit=True) as conn:
        rows = conn.execute(
            "select usename, application_name from pg_stat_activity"
            " where application_name like 'emberlog-api%%' and datname = current_database()"
        ).fetchall()
    assert ("emberlog_listen_test", "emberlog-api listener") in rows
    assert all(user != "emberlog_listen_test" for user, app in rows if app == "emberlog-api")
    client = SseClient(replica.base)
    async with httpx.AsyncClient(timeout=30) as http, client.connect(http):
        written = [await post(http, replica)]
        await client.receive(until=newest_event(fault_database))
    assert ids(client) == written
