"""app/http/wire.py: every value a request sends reaches PostgreSQL as exactly that value.

The request's message is text with its values quoted as literals, so the quoting is the
whole defence against injection: any text (quotes, backslashes, any character but NUL),
any list of texts (an array's quoting inside a literal's), reads back as itself.
"""

from __future__ import annotations

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import pq

from app.http.wire import Script, literal

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
FAST = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def read_back(db: psycopg.Connection, script: str, **values: object) -> object:
    message = Script.of(script).render(values, db.pgconn)
    row = db.execute(message).fetchone()
    assert row is not None
    return row[0]


@FAST
@given(value=TEXT)
def test_any_text_reads_back_as_itself(db, value):
    assert read_back(db, "select %(v)s::text", v=value) == value


@FAST
@given(items=st.lists(st.one_of(st.none(), TEXT), max_size=6))
def test_any_list_of_texts_reads_back_as_that_array(db, items):
    assert read_back(db, "select %(v)s::text[]", v=items) == items


def test_numbers_booleans_null_and_nested_arrays(db):
    assert read_back(db, "select %(v)s::bigint", v=9007199254740993) == 9007199254740993
    assert read_back(db, "select %(v)s::boolean", v=False) is False
    assert read_back(db, "select %(v)s::int[]", v=[[1, 2], [3, None]]) == [[1, 2], [3, None]]
    assert read_back(db, "select %(v)s::text is null", v=None) is True


def test_percent_signs_and_placeholders_in_the_text():
    script = Script.of("select 'a%%b', %(x)s, '%%(y)s', %(x)s")
    assert script.names == ("x", "x")
    assert script.chunks == (b"select 'a%b', ", b", '%(y)s', ", b"")


def test_nul_is_refused_as_psycopg_refuses_it(db):
    escape = pq.Escaping(db.pgconn).escape_literal
    with pytest.raises(psycopg.DataError, match="NUL"):
        literal("a\x00b", escape)
    with pytest.raises(psycopg.DataError, match="NUL"):
        literal(["ok", "a\x00b"], escape)
