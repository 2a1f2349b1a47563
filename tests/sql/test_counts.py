"""The incident count behind list totals: trigger-maintained, sharded, rebuildable; and
the total strategy of api.list_incidents (counter, exact below a limit, estimate above)."""

from __future__ import annotations

import json
import threading

import psycopg

from tests import pg
from tests.incidents import payload

CREATE = "select api.create_incident(%s::jsonb)"
LIST = "select api.list_incidents(incident_type => %s, page_size => %s)"


def counted(db) -> tuple[int, int]:
    """(what the counter says, what count(*) says)."""
    row = db.execute(
        "select (select incidents from api.incident_count), (select count(*) from data.incidents)"
    ).fetchone()
    return row[0], row[1]


def create(db, n: int, **overrides) -> None:
    for _ in range(n):
        db.execute(CREATE, (json.dumps(payload(**overrides)),))


def listed(url: str, incident_type: str | None, page_size: int, limit: int | None = None):
    """api.list_incidents as the anonymous web role, with emberlog.exact_count_limit set."""
    with pg.connect_as(url, "emberlog_anon") as conn, conn.transaction():
        if limit is not None:
            conn.execute("select set_config('emberlog.exact_count_limit', %s, true)", (str(limit),))
        return conn.execute(LIST, (incident_type, page_size)).fetchone()[0]


def test_inserts_deletes_and_truncate_keep_the_count(db):
    assert counted(db) == (0, 0)
    create(db, 5)
    assert counted(db) == (5, 5)
    db.execute("delete from data.incidents where id in (select id from data.incidents limit 2)")
    assert counted(db) == (3, 3)
    db.execute("truncate data.incidents")
    assert counted(db) == (0, 0)


def test_a_rolled_back_insert_counts_nothing(db):
    create(db, 2)
    with db.transaction(force_rollback=True):
        create(db, 3)
    assert counted(db) == (2, 2)


def test_concurrent_writers_each_count_on_their_shard(database_url, db):
    """Eight sessions insert at once; the shards add up to the rows."""

    def writer() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            create(conn, 10)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counted(db) == (80, 80)
    shards = db.execute("select count(*) from data.incident_counts where incidents <> 0")
    assert shards.fetchone()[0] >= 1


def test_recount_after_a_load_with_triggers_off(db):
    create(db, 3)
    with db.transaction():
        db.execute("set local session_replication_role = replica")
        create(db, 4)
    assert counted(db) == (3, 7)  # the bulk load skipped the triggers...
    assert db.execute("select internal.recount_incidents()").fetchone()[0] == 7
    assert counted(db) == (7, 7)  # ...and the recount puts it right


def test_web_roles_read_the_count_but_cannot_change_it(database_url, db):
    with pg.connect_as(database_url, "emberlog_anon") as anon:
        assert anon.execute("select incidents from api.incident_count").fetchone() == (0,)
        assert pg.denied(anon, "select * from data.incident_counts")
        assert pg.denied(anon, "select internal.recount_incidents()")


def test_unfiltered_total_is_the_counter_not_a_count(database_url, db):
    create(db, 6)
    db.execute("update data.incident_counts set incidents = incidents + 1000 where shard = 0")
    body = listed(database_url, None, 2)
    assert (body["total"], body["total_exact"]) == (1006, True)  # read, not counted
    db.execute("select internal.recount_incidents()")
    assert listed(database_url, None, 2)["total"] == 6


def test_a_last_page_needs_no_count(database_url, db):
    create(db, 6)
    body = listed(database_url, "Structure Fire", 50, limit=3)
    assert (body["total"], body["total_exact"], len(body["items"])) == (6, True, 6)


def test_filtered_totals_are_exact_up_to_the_limit(database_url, db):
    create(db, 6)
    create(db, 2, incident_type="Medical")
    # The planner's estimate decides whether to count: statistics left by earlier tests
    # (autovacuum analyzed a fuller table) would make it an estimate, as it should be.
    db.execute("analyze data.incidents")
    body = listed(database_url, "Structure Fire", 2, limit=100)
    assert (body["total"], body["total_exact"]) == (6, True)


def test_filtered_totals_above_the_limit_are_estimates(database_url, db):
    create(db, 6)
    db.execute("analyze data.incidents")
    body = listed(database_url, "Structure Fire", 2, limit=3)
    assert body["total_exact"] is False
    assert body["total"] > 3  # never fewer than the limit it exceeded
    assert len(body["items"]) == 2
