"""Alerts in SQL (issue 17): matching per filter kind in the incident's transaction,
throttling, idempotent queuing, row-level security for web users and psql logins, the
worker's claim and finish."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from psycopg import sql

from tests import pg
from tests.alerts import as_user, call, channel, deliveries, incident, rule, switched

FIRE = {
    "incident_type": "Structure Fire",
    "units": ["E12", "L4"],
    "channel": "Fire Dispatch",
    "address": "100 N Main St",
    "transcript": "Engine 12 respond to a working structure fire with smoke showing",
}


@pytest.fixture
def alice(db):
    with as_user(db, "alice") as conn:
        yield conn


def matched(db, filters: dict, **incident_fields) -> bool:
    """Whether an incident with these fields queues a delivery for a rule with these filters."""
    with as_user(db, f"user-{uuid.uuid4().hex[:8]}") as conn:
        hook = channel(conn)["id"]
        made = rule(conn, [hook], filters=filters)["id"]
    new = incident(db, **incident_fields)
    rows = db.execute(
        "select status from data.alert_deliveries where rule_id = %s and incident_id = %s",
        (made, new),
    ).fetchall()
    return rows == [("queued",)]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, True),  # no filters: every incident
        ({"incident_types": ["structure fire"]}, True),  # case-insensitive
        ({"incident_types": ["Hazmat", "Structure Fire"]}, True),  # any of them
        ({"incident_types": ["Hazmat"]}, False),
        ({"units": ["e12"]}, True),
        ({"units": ["M7", "L4"]}, True),
        ({"units": ["M7"]}, False),
        ({"channels": ["fire dispatch"]}, True),
        ({"channels": ["B"]}, False),
        ({"keywords": "smoke"}, True),
        ({"keywords": "smoking"}, True),  # stemmed, as full-text search does
        ({"keywords": '"working structure fire"'}, True),  # a phrase
        ({"keywords": '"structure working"'}, False),
        ({"keywords": "smoke -hazmat"}, True),
        ({"keywords": "smoke -engine"}, False),
        ({"keywords": "hazmat or collapse"}, False),
        ({"keywords": "main"}, False),  # the transcript only, not the address
        ({"address": "n main"}, True),
        ({"address": "Elm"}, False),
        # every filter must match
        ({"incident_types": ["Structure Fire"], "units": ["E12"], "keywords": "smoke"}, True),
        ({"incident_types": ["Structure Fire"], "units": ["M7"], "keywords": "smoke"}, False),
    ],
)
def test_matching_per_filter_kind(db, filters, expected):
    assert matched(db, filters, **FIRE) is expected


def test_an_incident_without_the_filtered_field_does_not_match(db):
    assert matched(db, {"incident_types": ["Structure Fire"]}) is False
    assert matched(db, {"units": ["E12"]}) is False
    assert matched(db, {"keywords": "fire"}) is False
    assert matched(db, {"address": "main"}) is False


def test_one_delivery_per_channel_and_a_disabled_rule_queues_nothing(db, alice):
    a, b = channel(alice)["id"], channel(alice)["id"]
    both = rule(alice, [a, b])["id"]
    off = rule(alice, [a], enabled=False)["id"]
    new = incident(db, **FIRE)
    assert deliveries(db) == [(new, both, a, "queued"), (new, both, b, "queued")]
    assert off not in {row[1] for row in deliveries(db)}


def test_queuing_is_idempotent_per_incident_rule_and_channel(db, alice):
    hook = channel(alice)["id"]
    made = rule(alice, [hook])["id"]
    new = incident(db, **FIRE)
    # Matching the same incident again (a replayed trigger, a second writer) adds nothing.
    with switched(db, None):
        db.execute(
            "insert into data.alert_deliveries (kind, user_id, message_id, incident_id,"
            " rule_id, channel_id, status, next_attempt_at)"
            " select kind, user_id, message_id, incident_id, rule_id, channel_id, status, now()"
            " from data.alert_deliveries on conflict do nothing"
        )
    # A duplicate incident (the same recording sent again) is no new incident: no delivery.
    assert incident(db, source_audio="same.mp3") == incident(db, source_audio="same.mp3")
    rows = deliveries(db)
    assert rows[0] == (new, made, hook, "queued")
    assert len(rows) == 2  # this incident's, and the duplicate's once


def test_a_rolled_back_incident_queues_nothing(db, alice):
    rule(alice, [channel(alice)["id"]])
    with pytest.raises(psycopg.errors.RaiseException), db.transaction():
        incident(db, **FIRE)
        db.execute("do $$ begin raise exception 'undo'; end $$")
    assert deliveries(db) == []
    with switched(db, None):
        assert db.execute("select count(*) from data.alert_messages").fetchone() == (0,)


def test_throttled_matches_are_recorded_not_sent(db, alice):
    hook = channel(alice)["id"]
    slow = rule(alice, [hook], throttle_sec=600)["id"]
    first, second = incident(db, **FIRE), incident(db, **FIRE)
    assert deliveries(db) == [(first, slow, hook, "queued"), (second, slow, hook, "throttled")]
    # Once the window has passed, the next match is sent again.
    with switched(db, None):
        db.execute("update data.alert_rules set last_queued_at = now() - interval '11 minutes'")
    third = incident(db, **FIRE)
    assert deliveries(db)[-1] == (third, slow, hook, "queued")


def test_several_incidents_in_one_statement_throttle_after_the_first(db, alice):
    hook = channel(alice)["id"]
    slow = rule(alice, [hook], throttle_sec=60)["id"]
    with switched(db, None):
        db.execute(
            "insert into data.incidents (dispatched_at, source_audio, incident_type)"
            " select now(), 'batch-' || n, 'Structure Fire' from generate_series(1, 3) as n"
        )
    statuses = [row[3] for row in deliveries(db) if row[1] == slow]
    assert statuses == ["queued", "throttled", "throttled"]


def test_a_delivery_carries_the_incident_envelope(db, alice):
    hook = channel(alice)["id"]
    made = rule(alice, [hook], name="Fires on E12")["id"]
    new = incident(db, **FIRE)
    with switched(db, "emberlog_worker"):
        (claimed,) = db.execute(
            "select * from api.claim_alert_deliveries('w1', 10, 30, 8)"
        ).fetchall()
    delivery_id, attempt, url, secret, body = claimed
    assert (attempt, url) == (1, "https://hooks.example/a")
    assert secret.startswith("whsec_")
    sent = json.loads(body)
    assert sent["event_type"] == "dispatch.incident.created"
    assert sent["payload"]["incident_id"] == str(new)
    assert sent["payload"]["units"] == ["E12", "L4"]
    assert sent["alert"] == {
        "delivery_id": str(delivery_id),
        "kind": "rule",
        "rule": {"id": made, "name": "Fires on E12"},
        "channel_id": hook,
    }
    with switched(db, None):
        stored = db.execute(
            "select payload from api.events where event_id = %s", (sent["event_id"],)
        ).fetchone()
    assert stored == (sent["payload"],)


def claim(db, worker: str = "w1", lease: float = 30, max_attempts: int = 3) -> list[tuple]:
    with switched(db, "emberlog_worker"):
        return db.execute(
            "select id, attempt from api.claim_alert_deliveries(%s, 10, %s, %s)",
            (worker, lease, max_attempts),
        ).fetchall()


def finish(db, results: list[dict], max_attempts: int = 3) -> list[tuple]:
    with switched(db, "emberlog_worker"):
        return db.execute(
            "select id, status, attempts from api.finish_alert_deliveries(%s, %s, 0, 0)",
            (json.dumps(results, default=str), max_attempts),
        ).fetchall()


def test_claims_are_exclusive_and_failures_back_off_until_dead(db, alice):
    rule(alice, [channel(alice)["id"]])
    incident(db, **FIRE)
    [(delivery, attempt)] = claim(db)
    assert claim(db, "w2") == []  # claimed: no other worker gets it
    for n in (1, 2):
        failed = {
            "id": delivery,
            "attempt": n,
            "ok": False,
            "status_code": 500,
            "error": "HTTP 500",
        }
        assert finish(db, [failed]) == [(delivery, "retrying", n)]
        [(again, attempt)] = claim(db)
        assert (again, attempt) == (delivery, n + 1)
    last = {"id": delivery, "attempt": 3, "ok": False, "error": "timed out"}
    assert finish(db, [last]) == [(delivery, "dead", 3)]
    assert claim(db) == []
    with as_user(db, "alice"):
        shown = call(db, "get_alert_delivery", delivery)
    assert (shown["status"], shown["attempts"], shown["last_error"]) == ("dead", 3, "timed out")
    with as_user(db, "alice"):
        assert call(db, "retry_alert_delivery", delivery)["status"] == "queued"
    assert claim(db) == [(delivery, 1)]
    assert finish(db, [{"id": delivery, "attempt": 1, "ok": True, "status_code": 204}]) == [
        (delivery, "delivered", 1)
    ]


def test_a_result_for_a_lost_lease_changes_nothing(db, alice):
    rule(alice, [channel(alice)["id"]])
    incident(db, **FIRE)
    [(delivery, _)] = claim(db, "w1", lease=0.01)
    db.execute("select pg_sleep(0.05)")
    # w1's lease ran out: w2 claims it again (attempt 2); w1's late answer is ignored.
    assert claim(db, "w2") == [(delivery, 2)]
    assert finish(db, [{"id": delivery, "attempt": 1, "ok": True}]) == []
    assert finish(db, [{"id": delivery, "attempt": 2, "ok": True}]) == [(delivery, "delivered", 2)]
    with switched(db, None):
        row = db.execute("select last_error, status from data.alert_deliveries").fetchone()
    assert row == (None, "delivered")


def test_a_refused_destination_is_dead_at_once(db, alice):
    rule(alice, [channel(alice)["id"]])
    incident(db, **FIRE)
    [(delivery, attempt)] = claim(db)
    refused = {"id": delivery, "attempt": attempt, "ok": False, "permanent": True,
               "error": "destination 10.0.0.1 is not allowed"}  # fmt: skip
    assert finish(db, [refused]) == [(delivery, "dead", 1)]


def test_a_successful_test_delivery_verifies_the_channel(db, alice):
    hook = channel(alice)["id"]
    queued = call(alice, "test_alert_channel", hook)
    assert call(alice, "test_alert_channel", hook)["id"] == queued["id"]  # one at a time
    [(delivery, attempt)] = claim(db)
    assert str(delivery) == queued["id"]
    finish(db, [{"id": delivery, "attempt": attempt, "ok": True, "status_code": 200}])
    with as_user(db, "alice"):
        shown = call(db, "get_alert_channel", hook)
    assert shown["verified"] is True


def test_the_notifier_receives_every_incident(db, alice):
    with switched(db, "emberlog_worker"):
        db.execute("select api.set_alert_notifier('http://notifier.internal:8090/', null)")
    first = incident(db)
    with switched(db, None):
        rows = db.execute(
            "select kind, incident_id, url, status from data.alert_deliveries"
        ).fetchall()
    assert rows == [("system", first, "http://notifier.internal:8090/api/v1/events/new_incident",
                     "queued")]  # fmt: skip
    with switched(db, "emberlog_worker"):
        db.execute("select api.set_alert_notifier(null, null)")
    incident(db)
    with switched(db, None):
        assert db.execute("select count(*) from data.alert_deliveries").fetchone() == (1,)


# --- row-level security -----------------------------------------------------------------


def test_a_user_sees_and_changes_only_their_own_rows(db):
    with as_user(db, "alice") as conn:
        hook = channel(conn)["id"]
        made = rule(conn, [hook])["id"]
    incident(db, **FIRE)
    with as_user(db, "bob") as conn:
        assert call(conn, "list_alert_channels") == {"data": []}
        assert call(conn, "list_alert_rules") == {"data": []}
        assert call(conn, "list_alert_deliveries", None, None, None, 50, 0)["data"] == []
        for statement, args in [
            ("select api.get_alert_channel(%s)", (hook,)),
            ("select api.get_alert_rule(%s)", (made,)),
            ('select api.update_alert_rule(%s, \'{"name": "mine"}\')', (made,)),
            ("select api.delete_alert_channel(%s)", (hook,)),
            ("select api.delete_alert_rule(%s)", (made,)),
            ("select api.test_alert_channel(%s)", (hook,)),
        ]:
            with pytest.raises(psycopg.Error, match="not found") as refused:
                conn.execute(statement, args)
            assert refused.value.diag.sqlstate == "PT404"
        # bob's rule cannot notify alice's channel
        with pytest.raises(psycopg.Error, match="not one of your"):
            rule(conn, [hook])
        # and the tables themselves show and change nothing of hers
        assert conn.execute("select count(*) from data.alert_rules").fetchone() == (0,)
        assert conn.execute("update data.alert_channels set name = 'x'").rowcount == 0
        assert pg.denied(conn, "delete from data.alert_deliveries")  # history stays
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("insert into data.alert_rules (user_id, name) values (1, 'sneaky')")
    with as_user(db, "alice") as conn:
        assert [c["id"] for c in call(conn, "list_alert_channels")["data"]] == [hook]
        assert len(call(conn, "list_alert_deliveries", None, None, None, 50, 0)["data"]) == 1


def test_no_user_may_read_a_channel_secret(db, alice):
    created = channel(alice)
    assert created["secret"].startswith("whsec_")
    assert "secret" not in call(alice, "get_alert_channel", created["id"])
    assert pg.denied(alice, "select secret from data.alert_channels")
    assert pg.denied(alice, "select * from data.alert_messages")
    assert pg.denied(alice, "select * from data.alert_users")


def test_claims_set_outside_the_api_name_nobody(db, database_url):
    """A psql login cannot pose as a web user by setting request.jwt.claims: outside the
    API's sessions the caller is the login."""
    with psql_login(db, database_url) as (mallory, _):
        mallory.execute("select set_config('request.jwt.claims', '{\"sub\": \"alice\"}', false)")
        mine = channel(mallory)["id"]
    with as_user(db, "alice") as conn:
        assert call(conn, "list_alert_channels") == {"data": []}
    owner = db.execute(
        "select u.subject, u.db_login from data.alert_channels as c"
        " join data.alert_users as u on u.id = c.user_id where c.id = %s",
        (mine,),
    ).fetchone()
    assert owner[0] is None and owner[1].startswith("alerts_psql_")


def test_psql_logins_are_users_of_their_own(db, database_url):
    with psql_login(db, database_url) as (a, a_name), psql_login(db, database_url) as (b, _):
        hook = channel(a)["id"]
        made = rule(a, [hook], filters={"units": ["E12"]})["id"]
        assert a.execute("select id, units from api.alert_rules").fetchall() == [(made, ["E12"])]
        assert b.execute("select count(*) from api.alert_rules").fetchone() == (0,)
        assert b.execute("select count(*) from api.alert_channels").fetchone() == (0,)
        assert b.execute("update data.alert_rules set enabled = false").rowcount == 0
        with pytest.raises(psycopg.Error, match="not found"):
            b.execute("select api.delete_alert_rule(%s)", (made,))
        # SET ROLE changes nothing: the login is who they are
        b.execute("set role emberlog_user")
        assert b.execute("select count(*) from api.alert_channels").fetchone() == (0,)
        new = incident(db, **FIRE)
        assert a.execute("select incident_id from api.alert_deliveries").fetchall() == [(new,)]
        assert b.execute("select count(*) from api.alert_deliveries").fetchone() == (0,)
    assert db.execute(
        "select db_login from data.alert_users where db_login = %s", (a_name,)
    ).fetchone() == (a_name,)


class psql_login:
    """A login role of its own (a psql user granted emberlog_user), connected; dropped after."""

    def __init__(self, db, database_url):
        self.db, self.url = db, database_url
        self.name = f"alerts_psql_{uuid.uuid4().hex[:8]}"

    def __enter__(self):
        role = sql.Identifier(self.name)
        self.db.execute(sql.SQL("create role {} login in role emberlog_user").format(role))
        self.conn = psycopg.connect(pg.with_user(self.url, self.name), autocommit=True)
        return self.conn, self.name

    def __exit__(self, *exc):
        self.conn.close()
        role = sql.Identifier(self.name)
        self.db.execute(sql.SQL("drop owned by {}").format(role))
        self.db.execute(sql.SQL("drop role {}").format(role))


# --- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://x.example"}, "name"),
        ({"name": "n"}, "url"),
        ({"name": "n", "url": "ftp://x.example"}, "url"),
        ({"name": "n", "url": "https://user:pw@x.example/"}, "url"),
        ({"name": "n", "url": "https://x.example", "secret": "mine"}, "secret"),
        ({"name": "", "url": "https://x.example"}, "name"),
        ({"name": "n", "url": "https://x.example/a b"}, "url"),
        ({"name": "n", "url": "https://x.example", "kind": "sms"}, "kind"),
    ],
)
def test_bad_channels_are_refused_naming_the_field(alice, body, field):
    with pytest.raises(psycopg.Error) as refused:
        call(alice, "create_alert_channel", json.dumps(body))
    assert refused.value.diag.sqlstate == "PT422"
    assert json.loads(refused.value.diag.message_detail) == {"field": field}


RULE = {"name": "r", "alert_channel_ids": [1]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"alert_channel_ids": [1]}, "name"),
        ({"name": "r"}, "alert_channel_ids"),
        ({"name": "r", "alert_channel_ids": []}, "alert_channel_ids"),
        ({"name": "r", "alert_channel_ids": ["1"]}, "alert_channel_ids"),
        ({**RULE, "throttle_sec": -1}, "throttle_sec"),
        ({**RULE, "throttle_sec": 1.5}, "throttle_sec"),
        ({**RULE, "filters": []}, "filters"),
        ({**RULE, "filters": {"units": "E12"}}, "filters.units"),
        ({**RULE, "filters": {"units": [""]}}, "filters.units"),
        ({**RULE, "filters": {"talkgroups": []}}, "filters.talkgroups"),
        ({**RULE, "filters": {"keywords": "the"}}, "filters.keywords"),
        ({**RULE, "filters": {"keywords": 7}}, "keywords"),
        ({**RULE, "enabled": "yes"}, "enabled"),
        ({**RULE, "owner": 2}, "owner"),
    ],
)
def test_bad_rules_are_refused_naming_the_field(alice, body, field):
    channel(alice)  # id 1
    with pytest.raises(psycopg.Error) as refused:
        call(alice, "create_alert_rule", json.dumps(body))
    assert refused.value.diag.sqlstate == "PT422"
    assert json.loads(refused.value.diag.message_detail) == {"field": field}
    assert alice.execute("select count(*) from api.alert_rules").fetchone() == (0,)


def test_a_channel_in_use_cannot_be_deleted_and_deleting_a_rule_cancels_its_queue(db, alice):
    hook = channel(alice)["id"]
    made = rule(alice, [hook])["id"]
    incident(db, **FIRE)
    with pytest.raises(psycopg.Error) as refused:
        call(alice, "delete_alert_channel", hook)
    assert refused.value.diag.sqlstate == "PT409"
    call(alice, "delete_alert_rule", made)
    call(alice, "delete_alert_channel", hook)
    with switched(db, None):
        row = db.execute("select status, last_error, rule_id from data.alert_deliveries").fetchone()
    assert row == ("cancelled", "the rule was deleted", None)


def test_updating_a_rule_replaces_only_the_filters_given(alice):
    a, b = channel(alice)["id"], channel(alice)["id"]
    made = rule(alice, [a], filters={"units": ["E12"], "keywords": "fire"})["id"]
    changed = call(
        alice,
        "update_alert_rule",
        made,
        json.dumps({"filters": {"keywords": None, "address": "Main"}, "alert_channel_ids": [b]}),
    )
    assert changed["filters"] == {
        "incident_types": [], "units": ["E12"], "channels": [], "keywords": None,
        "address": "Main",
    }  # fmt: skip
    assert changed["alert_channel_ids"] == [b]


def test_a_user_has_at_most_20_channels(alice):
    for _ in range(20):
        channel(alice)
    with pytest.raises(psycopg.Error) as refused:
        channel(alice)
    assert refused.value.diag.sqlstate == "PT409"


def test_pruning_keeps_what_is_not_finished(db, alice):
    rule(alice, [channel(alice)["id"]])
    incident(db, **FIRE)
    incident(db, **FIRE)
    with switched(db, None):
        db.execute(
            "update data.alert_deliveries set updated_at = now() - interval '31 days',"
            " status = case when incident_id = 1 then 'delivered' else status end"
        )
        db.execute("update data.alert_messages set created_at = now() - interval '31 days'")
        assert db.execute("select internal.prune_events()").fetchone() == (0,)
        left = db.execute("select incident_id, status from data.alert_deliveries").fetchall()
        assert left == [(2, "queued")]  # still to be sent, however old
        messages = db.execute("select incident_id from data.alert_messages").fetchall()
        assert messages == [(2,)]


def test_a_channel_deleted_during_an_attempt_cancels_the_delivery(db, alice):
    hook = channel(alice)["id"]
    made = rule(alice, [hook])["id"]
    incident(db, **FIRE)
    [(delivery, attempt)] = claim(db)
    call(alice, "delete_alert_rule", made)
    call(alice, "delete_alert_channel", hook)
    failed = {"id": delivery, "attempt": attempt, "ok": False, "error": "HTTP 503"}
    assert finish(db, [failed]) == [(delivery, "cancelled", 1)]
    assert claim(db) == []


def test_users_change_states_and_secrets_only_through_the_routes(db, alice):
    """A delivery's state, a channel's verification and its secret are the server's: a
    user (a psql login too) may not write them, even on their own rows."""
    hook = channel(alice)["id"]
    rule(alice, [hook])
    incident(db, **FIRE)
    for statement in [
        "update data.alert_deliveries set status = 'delivered'",
        "update data.alert_deliveries set attempts = -1000, next_attempt_at = now()",
        "update data.alert_channels set verified_at = now()",
        "insert into data.alert_channels (user_id, name, url, secret)"
        " select user_id, 'mine', 'https://x.example', 'whsec_' || repeat('A', 44)"
        " from data.alert_rules",
    ]:
        assert pg.denied(alice, statement), statement
    # renaming or moving one's channel is theirs; a new URL is unverified again
    with switched(db, None):
        db.execute("update data.alert_channels set verified_at = now()")
    alice.execute("update data.alert_channels set url = 'https://hooks.example/b'")
    assert call(alice, "get_alert_channel", hook)["verified"] is False


def test_limits_hold_for_psql_inserts_too(db, database_url):
    with psql_login(db, database_url) as (conn, _):
        hook = channel(conn)["id"]
        user = conn.execute("select user_id from data.alert_channels").fetchone()[0]
        with pytest.raises(psycopg.Error) as refused:
            conn.execute(
                "insert into data.alert_rules (user_id, name)"
                " select %s, 'r' || n from generate_series(1, 101) as n",
                (user,),
            )
        assert refused.value.diag.sqlstate == "PT409"
        assert conn.execute("select count(*) from data.alert_rules").fetchone() == (0,)
        # (rule, channel) pairs too: 100 at most over all of one user's rules
        made = [rule(conn, [hook], name=f"r{n}")["id"] for n in range(6)]
        every = [hook, *(channel(conn)["id"] for _ in range(19))]
        for one in made[:4]:  # 4 rules x 20 channels + 2 x 1 = 82 pairs
            call(conn, "update_alert_rule", one, json.dumps({"alert_channel_ids": every}))
        with pytest.raises(psycopg.Error) as refused:  # + 19 = 101
            call(conn, "update_alert_rule", made[4], json.dumps({"alert_channel_ids": every}))
        assert refused.value.diag.sqlstate == "PT409"


def test_concurrent_creates_cannot_pass_the_limit_together(db, database_url, alice):
    import concurrent.futures

    for _ in range(18):
        channel(alice)

    def create(n: int) -> str:
        with psycopg.connect(database_url, autocommit=True) as conn, as_user(conn, "alice"):
            try:
                channel(conn, name=f"racing {n}")
                return "made"
            except psycopg.Error as exc:
                return exc.diag.sqlstate or "?"

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(create, range(6)))
    assert sorted(outcomes) == ["PT409"] * 4 + ["made"] * 2
    assert alice.execute("select count(*) from api.alert_channels").fetchone() == (20,)


def test_a_channel_deleted_behind_the_routes_back_cancels_its_deliveries(db, alice):
    hook = channel(alice)["id"]
    rule(alice, [hook])
    incident(db, **FIRE)
    with switched(db, None):
        db.execute("delete from data.alert_rule_channels")
        db.execute("delete from data.alert_channels")
    assert claim(db) == []
    assert deliveries(db)[0][3] == "cancelled"


def test_one_users_many_deliveries_do_not_hold_back_anothers(db):
    with as_user(db, "noisy") as conn:
        hooks = [channel(conn)["id"] for _ in range(5)]
        rule(conn, hooks, name="everything")
        for n in range(3):
            rule(conn, hooks, name=f"also {n}")
    for _ in range(3):
        incident(db, **FIRE)  # 60 deliveries of noisy's, due before anything of quiet's
    with as_user(db, "quiet") as conn:
        rule(conn, [channel(conn)["id"]], filters={"units": ["E12"]})
    quiet = incident(db, **FIRE)  # 20 more of noisy's, and quiet's one, queued last
    claiming = "select id from api.claim_alert_deliveries('w', 10, 30, 8, 3)"
    with switched(db, "emberlog_worker"):
        first = [row[0] for row in db.execute(claiming).fetchall()]
        again = db.execute(claiming).fetchall()
    with switched(db, None):
        claimed = db.execute(
            "select u.subject, d.incident_id from data.alert_deliveries as d"
            " join data.alert_users as u on u.id = d.user_id where d.id = any(%s)",
            (first,),
        ).fetchall()
    assert [who for who, _ in claimed].count("noisy") == 3  # per_user: 3 in flight at most
    assert ("quiet", quiet) in claimed  # quiet's is not held behind noisy's 80
    assert again == []  # noisy's others wait until one of those three ends


def test_removing_the_notifier_cancels_what_was_queued_for_it(db):
    with switched(db, "emberlog_worker"):
        db.execute("select api.set_alert_notifier('http://notifier.internal:8090', null)")
    incident(db)
    with switched(db, "emberlog_worker"):
        db.execute("select api.set_alert_notifier(null, null)")
        assert (
            db.execute("select * from api.claim_alert_deliveries('w', 10, 30, 8)").fetchall() == []
        )
    with switched(db, None):
        row = db.execute("select status, last_error from data.alert_deliveries").fetchone()
    assert row == ("cancelled", "the system destination was removed")


def test_a_test_sent_to_an_old_url_does_not_verify_the_new_one(db, alice):
    hook = channel(alice)["id"]
    call(alice, "test_alert_channel", hook)
    [(delivery, attempt)] = claim(db)
    db.execute("select pg_sleep(0.01)")
    call(alice, "update_alert_channel", hook, json.dumps({"url": "https://hooks.example/new"}))
    finish(db, [{"id": delivery, "attempt": attempt, "ok": True, "status_code": 200}])
    assert call(alice, "get_alert_channel", hook)["verified"] is False
