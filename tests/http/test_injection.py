"""SQL injection attempts in every parameter of every route have no effect.

Classic payloads go into each list filter (and repeated units, and a parameter *named*
like SQL), the {id} path segment, the stream's Last-Event-ID header and ?last_event_id=,
every key and value of the POST body, the X-API-Key header, the Bearer token (as the
token, and as claims of a validly signed one), X-Request-ID and X-Forwarded-For.

No effect means, checked after every surface:
- never a 5xx, and every error in the one shape;
- the canary: ``public.canary_hit()``, executable by every role, takes a session
  advisory lock (which outlives a rollback and is allowed read-only, so it stays on the
  app's pooled connection) and, when it may write, records a row: a payload that ran as
  SQL, even a SELECT, even as a role that may drop nothing, leaves a trace. Payloads
  that call it stand beside the classic ones that drop or delete; ``public.canary``
  must still hold its row;
- the sentinel incident is unchanged and the row count grew only by the incidents the
  test legitimately created (a payload in a text field is data: a 201 that stores it
  byte for byte, which a GET shows);
- no pg_sleep is running, and /readyz is still 200.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import time
from urllib.parse import quote, urlencode

import jwt
import psycopg
import pytest

from app.http.errors import CODE
from tests import pg
from tests.conftest import app_client
from tests.incidents import payload

LIST = "/api/v1/incidents"
STREAM = "/api/v1/sse/incidents"
SECRET = "j" * 40
TEXT_FIELDS = ["channel", "incident_type", "address", "source_audio", "original_text", "transcript"]

PAYLOADS = [
    "'; drop table data.incidents; --",
    "1 or 1=1",
    "1 or public.canary_hit('or')",
    "0) or public.canary_hit('paren') or (1=1",
    "1' or '1'='1",
    "') or ('1'='1",
    '"); delete from data.incidents; --',
    "$$; drop table data.incidents; $$",
    "$x$; select public.canary_hit('dollar'); $x$",
    "\\'; select public.canary_hit('backslash'); --",
    "\\\\'; drop table public.canary; --",
    "1; select pg_sleep(5)",
    "1); select pg_sleep(5); --",
    "'||pg_sleep(5)||'",
    "' || (select public.canary_hit('concat'))::text || '",
    "1 union select null, null, null --",
    "%' or '%'='",
    "%",
    "_",
    '{"a":1}\'::jsonb',
    "E'\\x27'; select public.canary_hit('escape'); --",
    "%s; select public.canary_hit('placeholder'); --",
    "%(role)s",
    "{0}{1}",
    "\u2019; drop table data.incidents; --",  # right single quotation mark
    "\u02bc or \u02bc1\u02bc=\u02bc1",  # modifier letter apostrophe
    "\uff07; drop table data.incidents; --",  # fullwidth apostrophe
    "\u201c) or (\u201d1\u201d=\u201d1",  # curly double quotes
    "'\x00'; drop table data.incidents; --",
    "\x00",
    "null",
    "-1",
]
# Header values cannot carry CR or LF; none of the payloads do.
assert not any("\r" in p or "\n" in p for p in PAYLOADS)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def on_the_wire(value: str) -> str:
    """A header value as a client sends it: UTF-8 bytes (the test client sends latin-1)."""
    return value.encode().decode("latin-1")


def token(claims: dict) -> str:
    return jwt.encode({"exp": int(time.time()) + 600, **claims}, SECRET, algorithm="HS256")


CANARY_LOCK = (20261122, 1)
CANARY = f"""
create table if not exists public.canary (note text not null);
create table if not exists public.canary_hits (note text, hit_at timestamptz default now());
create or replace function public.canary_hit(note text default '') returns boolean
    language plpgsql volatile security definer set search_path = pg_catalog, public
    as $$
begin
    -- A session lock outlives a rollback and is allowed in a read-only transaction: it
    -- stays on the app's pooled connection. The row says which payload it was.
    perform pg_try_advisory_lock{CANARY_LOCK};
    if current_setting('transaction_read_only') = 'off' then
        insert into public.canary_hits (note) values (note);
    end if;
    return true;
end $$;
grant execute on function public.canary_hit(text) to public;
"""
CANARY_HELD = (
    "select count(*) from pg_locks where locktype = 'advisory'"
    " and classid::bigint = %s and objid::bigint = %s"
)


@pytest.fixture(scope="module")
def canary_objects(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(CANARY)
        # The canary works: any web role that runs SQL calling it leaves a hit.
        for role in ("emberlog_anon", "emberlog_ingest", "emberlog_authenticator"):
            with pg.connect_as(database_url, role) as as_role:
                as_role.execute("begin read only")
                as_role.execute("select public.canary_hit('control')")
                as_role.execute("rollback")
                assert conn.execute(CANARY_HELD, CANARY_LOCK).fetchone()[0] == 1
                as_role.execute("select public.canary_hit('control')")
        assert conn.execute("select count(*) from public.canary_hits").fetchone()[0] == 3
    yield
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "drop function public.canary_hit(text); drop table public.canary, public.canary_hits"
        )


@pytest.fixture
def canary(db, canary_objects):
    db.execute("truncate public.canary, public.canary_hits")
    db.execute("insert into public.canary values ('alive')")
    return db


@pytest.fixture
async def client(settings, canary):
    """Limits off (hundreds of requests), JWT on, 127.0.0.1 a trusted proxy and
    10.0.0.0/8 a trusted ingest network, so every header has something to reach."""
    changed = dataclasses.replace(
        settings,
        rate_limit_per_address=0.0,
        rate_limit_per_key=0.0,
        jwt_secret=SECRET,
        jwt_audience=None,
        trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),),
        trusted_networks=(ipaddress.ip_network("10.0.0.0/8"),),
    )
    async with app_client(changed) as conductor:
        yield conductor


class Audit:
    """What one test sent, and the checks that nothing happened beyond it."""

    def __init__(self, client, db) -> None:
        self.client = client
        self.db = db
        self.created = 0
        self.sentinel_id: int | None = None
        self.sentinel: dict | None = None

    async def start(self) -> Audit:
        body = payload(channel="SENTINEL", incident_type="Sentinel Type", address="9 Sentinel Row")
        result = await self.client.simulate_post(LIST, json=body, headers=self.client.ingest)
        assert result.status_code == 201, result.text
        self.sentinel_id = result.json["id"]
        self.sentinel = (await self.client.simulate_get(f"{LIST}/{self.sentinel_id}")).json
        return self

    def answered(self, result, *allowed: int, what: object = None) -> None:
        """Never a 5xx, one of the allowed statuses, errors in the one shape."""
        status = result.status_code
        assert status < 500, (what, status, result.text)
        assert status in allowed, (what, status, result.text)
        if status >= 400:
            error = result.json["error"]
            assert set(result.json) == {"error"}, (what, result.text)
            assert set(error) == {"code", "message", "details"}, (what, result.text)
            assert CODE.match(error["code"]) and isinstance(error["details"], dict), what

    async def stored(self, result, what: object, **expected) -> None:
        """A legitimate 201: counted, and the fields read back exactly as sent."""
        self.answered(result, 201, what=what)
        self.created += 1
        item = await self.client.simulate_get(f"{LIST}/{result.json['id']}")
        assert item.status_code == 200, item.text
        for name, value in expected.items():
            assert item.json[name] == value, (what, name, item.json[name])

    async def intact(self) -> None:
        db = self.db
        assert db.execute("select note from public.canary").fetchall() == [("alive",)]
        assert db.execute("select note from public.canary_hits").fetchall() == []
        assert db.execute(CANARY_HELD, CANARY_LOCK).fetchone()[0] == 0
        count = db.execute("select count(*) from data.incidents").fetchone()[0]
        assert count == 1 + self.created
        again = await self.client.simulate_get(f"{LIST}/{self.sentinel_id}")
        assert again.status_code == 200 and again.json == self.sentinel
        sleeping = db.execute(
            "select count(*) from pg_stat_activity"
            " where datname = current_database() and query ilike %s"
            " and pid <> pg_backend_pid()",
            ("%pg_sleep%",),
        ).fetchone()[0]
        assert sleeping == 0
        ready = await self.client.simulate_get("/readyz")
        assert ready.status_code == 200, ready.text


@pytest.fixture
async def audit(client, canary):
    audit = await Audit(client, canary).start()
    yield audit
    await audit.intact()


# -- GET /api/v1/incidents ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["incident_type", "channel", "address_search", "units"])
async def test_filters_compare_the_payload_as_data(client, audit, name):
    for p in PAYLOADS:
        result = await client.simulate_get(LIST, query_string=urlencode({name: p}))
        if "\x00" in p:
            audit.answered(result, 400, what=(name, p))
            continue
        audit.answered(result, 200, what=(name, p))
        assert result.json["total"] == 0, (name, p)  # nothing stored contains it


async def test_full_text_search_takes_any_payload(client, audit):
    for p in PAYLOADS:
        result = await client.simulate_get(LIST, query_string=urlencode({"q": p}))
        audit.answered(result, 400 if "\x00" in p else 200, what=p)


@pytest.mark.parametrize("name", ["from_dispatched_at", "to_dispatched_at", "page", "page_size"])
async def test_typed_parameters_refuse_the_payload(client, audit, name):
    for p in PAYLOADS:
        result = await client.simulate_get(LIST, query_string=urlencode({name: p}))
        audit.answered(result, 400, what=(name, p))


async def test_repeated_units_and_sql_named_parameters(client, audit):
    for p in PAYLOADS:
        clean = "\x00" not in p
        units = urlencode([("units", p), ("units", p + "'"), ("units", "E1")])
        result = await client.simulate_get(LIST, query_string=units)
        audit.answered(result, 200 if clean else 400, what=p)
        if clean:
            assert result.json["total"] == 1  # E1: the sentinel, and only it
        # A parameter named like SQL is no argument: ignored, as unknown keys are.
        result = await client.simulate_get(LIST, query_string=urlencode({p: p, "page": 1}))
        audit.answered(result, 200, what=p)
        assert result.json["total"] == 1


# -- GET /api/v1/incidents/{id} ------------------------------------------------------------


async def test_the_id_path_segment(client, audit):
    for p in [*PAYLOADS, f"{audit.sentinel_id} or 1=1", f"{audit.sentinel_id}; select 1"]:
        result = await client.simulate_get(f"{LIST}/{quote(p, safe='')}")
        # 404 only when a decoded "/" leaves the route; never the sentinel.
        audit.answered(result, 400, 404, what=p)


# -- GET /api/v1/sse/incidents -------------------------------------------------------------


async def test_the_stream_resume_position(client, audit):
    for p in PAYLOADS:
        for kwargs in (
            {"headers": {"Last-Event-ID": on_the_wire(p)}},
            {"query_string": urlencode({"last_event_id": p})},
        ):
            async with client.simulate_get_stream(STREAM, **kwargs) as sr:
                assert sr.status_code == 400, (p, kwargs)


# -- POST /api/v1/incidents ----------------------------------------------------------------


async def test_every_body_value_is_stored_as_data(client, audit):
    for p in PAYLOADS:
        clean = "\x00" not in p  # jsonb cannot hold \u0000: a 400, nothing stored
        for field in TEXT_FIELDS:
            result = await client.simulate_post(
                LIST, json=payload(**{field: p}), headers=client.ingest
            )
            if clean:
                await audit.stored(result, (field, p), **{field: p})
            else:
                audit.answered(result, 400, what=(field, p))
        cases = [
            ({"units": [p, "E1"]}, {"units": [p, "E1"]}),
            ({"parsed": {"note": p, p: [p, {p: p}]}}, {"parsed": {"note": p, p: [p, {p: p}]}}),
        ]
        for override, expected in cases:
            result = await client.simulate_post(
                LIST, json=payload(**override), headers=client.ingest
            )
            if clean:
                await audit.stored(result, (override, p), **expected)
            else:
                audit.answered(result, 400, what=(override, p))
        for field in ("dispatched_at", "special_call"):
            result = await client.simulate_post(
                LIST, json=payload(**{field: p}), headers=client.ingest
            )
            audit.answered(result, 422 if clean else 400, what=(field, p))


async def test_every_body_key_is_data(client, audit):
    for p in PAYLOADS:
        clean = "\x00" not in p
        # A key named like SQL is no field: ignored, the incident stored as sent.
        body = payload() | {p: p, f'{p}": 1, "x': p}
        result = await client.simulate_post(LIST, json=body, headers=client.ingest)
        if clean:
            await audit.stored(result, p, transcript=body["transcript"])
        else:
            audit.answered(result, 400, what=p)
        # Only SQL-named keys: no dispatched_at, no source_audio.
        result = await client.simulate_post(LIST, json={p: p}, headers=client.ingest)
        audit.answered(result, 422 if clean else 400, what=p)


# -- Credentials and the other headers -----------------------------------------------------


async def test_api_key_and_bearer_token_headers(client, audit):
    for p in PAYLOADS:
        wire = on_the_wire(p)
        for headers in (
            {"X-API-Key": wire},
            {"Authorization": f"Bearer {wire}"},
            {"Authorization": wire},
        ):
            audit.answered(await client.simulate_get(LIST, headers=headers), 401, what=headers)
            result = await client.simulate_post(LIST, json=payload(), headers=headers)
            audit.answered(result, 401, what=headers)
            assert "WWW-Authenticate" in result.headers


async def test_claims_of_a_valid_token(client, audit):
    for p in PAYLOADS:
        # A role claim is only ever one of the roles the API may switch to.
        bad_role = {"Authorization": f"Bearer {token({'role': p})}"}
        audit.answered(await client.simulate_get(LIST, headers=bad_role), 401, what=p)
        # Other claims reach SQL as request.jwt.claims: as data.
        claims = {"role": "emberlog_ingest", "sub": p, p: p}
        ingest = {"Authorization": f"Bearer {token(claims)}"}
        result = await client.simulate_post(LIST, json=payload(address=p), headers=ingest)
        if "\x00" in p:
            audit.answered(result, 400, what=p)
        else:
            await audit.stored(result, p, address=p)
        anon = {"Authorization": f"Bearer {token({'role': 'emberlog_anon', 'sub': p})}"}
        audit.answered(await client.simulate_get(LIST, headers=anon), 200, what=p)


async def test_request_id_and_forwarded_for(client, audit):
    for p in PAYLOADS:
        wire = on_the_wire(p)
        result = await client.simulate_get(LIST, headers={"X-Request-ID": wire})
        audit.answered(result, 200, what=p)
        assert REQUEST_ID.match(result.headers["x-request-id"]), p  # never echoed raw
        peer = {"remote_addr": "127.0.0.1"}  # a trusted proxy: X-Forwarded-For is read
        for forwarded in (wire, f"10.0.0.1, {wire}"):
            headers = {"X-Forwarded-For": forwarded}
            result = await client.simulate_get(LIST, headers=headers, **peer)
            audit.answered(result, 200, what=forwarded)
            # An unreadable hop makes the client unknown: no ingest role without a key.
            result = await client.simulate_post(LIST, json=payload(), headers=headers, **peer)
            audit.answered(result, 401, what=forwarded)
            result = await client.simulate_post(
                LIST, json=payload(), headers=headers | client.ingest, **peer
            )
            await audit.stored(result, forwarded)
