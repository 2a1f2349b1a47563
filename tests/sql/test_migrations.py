"""Migrations roll back and apply again on a database that holds data, losing none."""

from __future__ import annotations

import json
from collections.abc import Iterator

import psycopg
import pytest

from app.database import deploy
from tests import pg
from tests.incidents import payload

CREATE = "select (api.create_incident(%s::jsonb)->>'id')::bigint"


@pytest.fixture
def own_database(server_url) -> Iterator[str]:
    """A database of this test's own: rolling back drops what other tests use."""
    url = pg.create_database(server_url)
    yield url
    pg.drop_database(server_url, url)


def test_rolling_back_the_event_queue_publishes_what_is_queued(own_database):
    with psycopg.connect(own_database, autocommit=True) as conn:
        queued = conn.execute(CREATE, (json.dumps(payload()),)).fetchone()[0]
        assert pg.roll_back_to(own_database, "0006.incident_counts") == [
            "0011.incident_versions",
            "0010.alerts",
            "0009.traffic",
            "0008.event_envelopes",
            "0007.event_queue",
        ]
        rows = conn.execute("select ref_id from data.events order by id").fetchall()
        assert rows == [(queued,)]  # published on the way down, not lost
        # 0003's trigger numbers events at commit again.
        conn.execute("insert into data.incidents (dispatched_at, source_audio) values (now(), 'b')")
        assert conn.execute("select count(*) from data.events").fetchone() == (2,)

        deploy.migrate(own_database, "emberlog_reload")
        again = conn.execute(CREATE, (json.dumps(payload()),)).fetchone()[0]
        assert pg.event_ids(conn) == [1, 2, 3]
        last = conn.execute("select ref_id from data.events where id = 3").fetchone()
        assert last == (again,)
