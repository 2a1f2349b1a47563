"""Properties, checked over many generated inputs: the SQLSTATE -> HTTP mapping and the
one error shape (pure functions, and errors PostgreSQL really raises), then binding
over HTTP against the in-process app and a real PostgreSQL: whatever text, integer or
JSON a client sends, the answer is a 2xx or a 4xx in the one shape, never a 5xx, and a
refused write writes nothing.

How Hypothesis runs here. pytest-asyncio (asyncio_mode=auto) recognises a ``@given``
test whose body is ``async def``: it replaces Hypothesis' inner test with a wrapper that
runs each generated example to completion on the test's own event loop, the loop the
async ``client`` fixture started the app on. So a property is an ordinary async test
taking ``client``; the app starts once per test and every example of that test uses
it. That is why HealthCheck.function_scoped_fixture is suppressed: no property relies
on a fresh fixture per example, each one asserts only on what its own example did (a
row count before and after, an incident it created itself). Rejected: a sync test
calling ``asyncio.run`` per example (the app and its pool belong to one loop, so every
example would start its own app: slow) and ``strategy.example()`` (not for tests).

Deterministic: ``derandomize=True`` derives the examples from the test alone and
``database=None`` keeps no example database, so every run (and CI) tries the same
inputs. ``deadline=None``: a round trip to PostgreSQL has no stable latency. A domain
small enough to enumerate (statuses 100..599, PT000..PT999) is checked exhaustively.
"""

from __future__ import annotations

import dataclasses
import json
import re
import string
from urllib.parse import urlencode

import psycopg
import pytest
from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from app.http.errors import CODE, ApiError, default_code, from_database, status_for_sqlstate
from tests.conftest import app_client
from tests.incidents import INCIDENT_FIELDS, payload
from tests.properties import JSON_VALUES, through_the_app

PURE = hypothesis_settings(max_examples=150, deadline=None, derandomize=True, database=None)
PROPERTY = through_the_app(max_examples=60)

LIST = "/api/v1/incidents"
JSON = {"Content-Type": "application/json"}
SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
TEXT_FILTERS = ["incident_type", "channel", "address_search", "q", "units"]
TIME_FILTERS = ["from_dispatched_at", "to_dispatched_at"]
INT4 = (-(2**31), 2**31 - 1)
INT8 = (-(2**63), 2**63 - 1)
BOUNDARIES = [0, 1, 200, 201, *INT4, INT4[1] + 1, *INT8, INT8[0] - 1, INT8[1] + 1, 10**30]

# PostgreSQL's SQLSTATEs: five characters, digits and upper-case letters.
SQLSTATE = st.text(alphabet=string.digits + string.ascii_uppercase, min_size=5, max_size=5)
# Classes the mapping names (DESIGN.md §4); any other class is a server error.
NAMED_CLASSES = {"PT", "22", "23", "P0", "42", "25", "57", "54", "08", "53", "40", "55"}
PT_CODES = st.integers(0, 999).map(lambda n: f"PT{n:03d}")
UNNAMED_CLASS = st.text(alphabet=string.digits + string.ascii_uppercase, min_size=2, max_size=2)

# All a client learns of a server error (app/http/errors.py server_error).
SERVER_MESSAGES = (
    "internal server error",
    "the call took longer than its statement timeout allows",
    "timed out waiting for a database connection",
    "the database is unavailable, retry shortly",
)

NO_NUL = st.text(alphabet=st.characters(exclude_characters="\x00"))
JSON_OBJECTS = st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=6)
BODY_FIELDS = st.sampled_from(INCIDENT_FIELDS[1:11])  # the ten keys Calypso sends
TEXT_FIELDS = st.sampled_from(
    ["channel", "incident_type", "address", "original_text", "transcript"]
)
# ISO-8601-looking text, valid or not (25:61, month 13, offset +99:99...), for dispatched_at.
ISO_LIKE = st.from_regex(
    r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}"
    r"(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?\Z"
)
BODIES = st.one_of(
    JSON_VALUES,  # anything at all, mostly not an object
    JSON_OBJECTS,  # objects with arbitrary keys
    st.dictionaries(BODY_FIELDS, JSON_VALUES, max_size=4).map(lambda o: payload(**o)),
    st.dictionaries(BODY_FIELDS, st.text() | st.none(), max_size=4).map(lambda o: payload(**o)),
    st.dictionaries(TEXT_FIELDS, st.text() | st.none(), max_size=5).map(lambda o: payload(**o)),
    ISO_LIKE.map(lambda t: payload(dispatched_at=t)),
)


def assert_error_shape(result) -> dict:
    body = result.json
    assert set(body) == {"error"}, result.text
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, result.text
    assert isinstance(error["code"], str) and CODE.match(error["code"]), result.text
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    return error


@pytest.fixture
async def client(settings, db):
    """The app without rate limits: a property sends hundreds of requests a second."""
    unlimited = dataclasses.replace(settings, rate_limit_per_address=0.0, rate_limit_per_key=0.0)
    async with app_client(unlimited) as conductor:
        yield conductor


# -- The mapping and the shape: pure functions ------------------------------------------


@PURE
@given(sqlstate=SQLSTATE, authenticated=st.booleans())
def test_every_sqlstate_maps_to_an_http_status(sqlstate, authenticated):
    assert 100 <= status_for_sqlstate(sqlstate, authenticated) <= 599


def test_pt_codes_carry_their_own_status_and_only_in_range():
    for n in range(1000):
        expected = n if 100 <= n <= 599 else 500
        for authenticated in (False, True):
            assert status_for_sqlstate(f"PT{n:03d}", authenticated) == expected, n


@PURE
@given(klass=st.sampled_from(["22", "23"]), rest=SQLSTATE, authenticated=st.booleans())
def test_data_and_constraint_errors_are_client_errors(klass, rest, authenticated):
    assert 400 <= status_for_sqlstate(klass + rest[:3], authenticated) <= 499


def test_insufficient_privilege_is_401_anonymous_and_403_authenticated():
    assert status_for_sqlstate("42501", authenticated=False) == 401
    assert status_for_sqlstate("42501", authenticated=True) == 403


@PURE
@given(klass=UNNAMED_CLASS.filter(lambda k: k not in NAMED_CLASSES), rest=SQLSTATE)
@example(klass="XX", rest="00000")  # internal_error
@example(klass="42", rest="P0100")  # syntax_error_or_access_rule_violation, not 42501
def test_unnamed_classes_are_server_errors(klass, rest):
    assert status_for_sqlstate(klass + rest[:3]) == 500


def test_every_default_code_is_snake_case():
    for status in range(100, 600):
        assert SNAKE.match(default_code(status)), (status, default_code(status))


@PURE
@given(
    status=st.integers(100, 599),
    message=st.text(),
    code=st.none() | st.from_regex(CODE),
    details=st.none() | JSON_OBJECTS,
)
def test_an_api_error_body_is_always_the_one_shape(status, message, code, details):
    error = ApiError(status, message, code, details)
    body = json.loads(error.body(), parse_constant=lambda name: pytest.fail(f"{name} in body"))
    assert body == {
        "error": {
            "code": code or default_code(status),
            "message": message,
            "details": details or {},
        }
    }


@pytest.fixture
def raise_as(db):
    """A function raising any SQLSTATE with any message, detail and hint, as routes do."""
    db.execute(
        """create function pg_temp.raise_as(state text, msg text, det text, hnt text)
        returns void language plpgsql as $$
        begin
            raise exception using errcode = state, message = msg, detail = det, hint = hnt;
        end $$"""
    )
    return db


@hypothesis_settings(
    PURE, max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sqlstate=SQLSTATE.filter(lambda s: not s.startswith("00")),
    message=NO_NUL,
    detail=NO_NUL | JSON_OBJECTS.map(json.dumps),
    hint=NO_NUL | st.from_regex(CODE),
    authenticated=st.booleans(),
)
@example(
    sqlstate="PT404", message="gone", detail='{"id": 1}', hint="not_found", authenticated=False
)
@example(sqlstate="XX000", message="select secret from t", detail="x", hint="", authenticated=True)
def test_a_database_error_becomes_its_status_in_the_one_shape(
    raise_as, sqlstate, message, detail, hint, authenticated
):
    with pytest.raises(psycopg.Error) as caught:
        raise_as.execute(
            "select pg_temp.raise_as(%s, %s, %s, %s)", (sqlstate, message, detail, hint)
        )
    error = from_database(caught.value, authenticated)
    assert error.status == status_for_sqlstate(sqlstate, authenticated)
    body = json.loads(error.body())["error"]
    assert set(body) == {"code", "message", "details"}
    assert CODE.match(body["code"]), body
    assert isinstance(body["details"], dict)
    if error.status >= 500:
        # Nothing of what SQL said reaches the client: no message, detail or hint.
        assert body["details"] == {}
        assert body["message"] in SERVER_MESSAGES
        return
    if message:
        assert body["message"] == message
    if CODE.match(hint):
        assert body["code"] == hint
    parsed = json.loads(detail) if detail.startswith("{") else None
    if isinstance(parsed, dict):
        assert body["details"] == parsed


RAISING_ROUTE = """
create function api.raise_as(
    state text, msg text default '', det text default '', hnt text default ''
) returns json language plpgsql stable as $$
begin
    raise exception using errcode = state, message = msg, detail = det, hint = hnt;
end $$;
comment on function api.raise_as(text, text, text, text) is '@http GET /api/v1/raise_as';
grant execute on function api.raise_as(text, text, text, text) to emberlog_anon;
"""


@pytest.fixture
async def raising_client(settings, db):
    """An app with one more route, raising whatever error it is asked to."""
    db.execute(RAISING_ROUTE)
    try:
        async with app_client(
            dataclasses.replace(settings, rate_limit_per_address=0.0, rate_limit_per_key=0.0)
        ) as conductor:
            yield conductor
    finally:
        db.execute("drop function api.raise_as(text, text, text, text)")


@PROPERTY
@given(
    sqlstate=SQLSTATE.filter(lambda s: not s.startswith("00")) | PT_CODES,
    message=NO_NUL,
    detail=NO_NUL | JSON_OBJECTS.map(json.dumps),
    hint=NO_NUL | st.from_regex(CODE),
)
@example(sqlstate="PT404", message="gone", detail='{"id": 1}', hint="not_found")
@example(sqlstate="42501", message="denied", detail="", hint="")
@example(sqlstate="XX000", message="select secret from t", detail="x", hint="")
@example(sqlstate="PT418", message="short and stout", detail="", hint="")
@example(sqlstate="PT420", message="", detail="", hint="")
async def test_any_error_a_route_raises_is_its_status_in_the_one_shape(
    raising_client, sqlstate, message, detail, hint
):
    query = urlencode({"state": sqlstate, "msg": message, "det": detail, "hnt": hint})
    result = await raising_client.simulate_get("/api/v1/raise_as", query_string=query)
    status = status_for_sqlstate(sqlstate)
    assert result.status_code == status, (sqlstate, message, result.text)
    error = assert_error_shape(result)
    if status == 401:
        assert "WWW-Authenticate" in result.headers
    if status >= 500:
        assert error["message"] in SERVER_MESSAGES and error["details"] == {}  # SQL's stay in
    elif CODE.match(hint):
        assert error["code"] == hint


# -- Binding over HTTP -------------------------------------------------------------------


@PROPERTY
@given(name=st.sampled_from(TEXT_FILTERS), value=st.text())
@example(name="q", value="\x00")
@example(name="address_search", value="%_\\'\"$$;--")
async def test_any_text_in_a_text_filter_is_a_200_or_a_400(client, name, value):
    result = await client.simulate_get(LIST, query_string=urlencode({name: value}))
    assert result.status_code in (200, 400), (name, value, result.text)
    if result.status_code == 400:
        assert_error_shape(result)
    if "\x00" not in value:
        assert result.status_code == 200, (name, value, result.text)
        assert set(result.json) == {"items", "total", "total_exact", "page", "page_size"}


# What each filter means, said another way: how many stored incidents it must match.
ORACLES = {
    "incident_type": "select count(*) from data.incidents where incident_type = %(v)s",
    "channel": "select count(*) from data.incidents where channel = %(v)s",
    # ilike compares lower() of both sides; strpos has no wildcards to escape.
    "address_search": (
        "select count(*) from data.incidents where strpos(lower(address), lower(%(v)s)) > 0"
    ),
    "units": "select count(*) from data.incidents where %(v)s = any(units)",
}


@PROPERTY
@given(value=NO_NUL.filter(bool), other=NO_NUL)
@example(value="%", other="abc")
@example(value="_", other="x")
@example(value="\\", other="\\\\")
@example(value='it\'s "quoted" -- ; $$', other="it's")
async def test_text_filters_match_the_stored_text_exactly(client, db, value, other):
    """What a filter is given is compared as data: equal for type and channel, a plain
    substring for address_search (no wildcards, no escapes), an element for units."""
    ids = []
    for text in (value, other):
        created = await client.simulate_post(
            LIST,
            json=payload(incident_type=text, channel=text, address=f"at {text}.", units=[text]),
            headers=client.ingest,
        )
        assert created.status_code == 201, (text, created.text)
        ids.append(created.json["id"])
    for name, oracle in ORACLES.items():
        query = urlencode({name: value, "page_size": 200})
        result = await client.simulate_get(LIST, query_string=query)
        assert result.status_code == 200, (name, value, result.text)
        assert result.json["total"] == db.execute(oracle, {"v": value}).fetchone()[0], name
        found = [item["id"] for item in result.json["items"]]
        assert ids[0] in found, (name, value)
    item = (await client.simulate_get(f"{LIST}/{ids[0]}")).json
    assert (item["incident_type"], item["channel"], item["units"]) == (value, value, [value])


@PROPERTY
@given(name=st.sampled_from(TIME_FILTERS), value=st.text() | ISO_LIKE)
async def test_any_text_in_a_time_filter_is_a_200_or_a_400(client, name, value):
    result = await client.simulate_get(LIST, query_string=urlencode({name: value}))
    assert result.status_code in (200, 400), (name, value, result.text)
    if result.status_code == 400:
        assert_error_shape(result)
    else:
        assert set(result.json) == {"items", "total", "total_exact", "page", "page_size"}


@PROPERTY
@given(
    name=st.sampled_from(["page", "page_size", "id"]), n=st.integers() | st.sampled_from(BOUNDARIES)
)
async def test_any_integer_for_page_page_size_or_id(client, name, n):
    if name == "id":
        result = await client.simulate_get(f"{LIST}/{n}")
        expected = 404 if INT8[0] <= n <= INT8[1] else 400  # there are no incidents
    else:
        result = await client.simulate_get(LIST, query_string=urlencode({name: n}))
        low, high = (1, INT4[1]) if name == "page" else (1, 200)
        expected = 200 if low <= n <= high else 400
    assert result.status_code == expected, (name, n, result.text)
    if expected != 200:
        error = assert_error_shape(result)
        if expected == 400:
            assert name in error["message"] or name in json.dumps(error["details"]), error


def incident_count(db) -> int:
    return db.execute("select count(*) from data.incidents").fetchone()[0]


@PROPERTY
@given(body=BODIES)
@example(body=payload())
@example(body={"dispatched_at": "2026-11-22T05:04:15Z", "source_audio": "x", "parsed": None})
async def test_any_json_body_is_answered_and_a_refusal_writes_nothing(client, db, body):
    before = incident_count(db)
    raw = json.dumps(body, ensure_ascii=False).encode()
    result = await client.simulate_post(LIST, body=raw, headers=JSON | client.ingest)
    status = result.status_code
    event(f"status {status}")  # --hypothesis-show-statistics: the mix of outcomes
    assert status in (200, 201, 400, 413, 415, 422), (body, result.text)
    after = incident_count(db)
    if status == 201:
        assert after == before + 1
        assert isinstance(result.json["id"], int)
    else:
        assert after == before, (body, result.text)
    if status >= 400:
        assert_error_shape(result)
