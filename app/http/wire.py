"""A request's message on the wire: its text rendered from a Script with each value
quoted as a literal, sent on psycopg's connection as one simple query, and the
results read back raw (text as PostgreSQL sent it).

Why not a psycopg cursor: a route's answer is already JSON text, so the cursor's work
(parsing the placeholders, adapting each value, making result sets and rows, loading
each column) bought nothing, and cost about half the client CPU of a call: 115-155 µs
through AsyncClientCursor against 63-72 µs sent this way, with PostgreSQL's work the
same (issue 18; docs/performance.md). What is kept from psycopg: the connection, its
non-blocking wait (a cancelled request still cancels its query in the server), libpq's
literal quoting, and the error classes (psycopg.errors, with their diagnostics).
Connections speak UTF-8 (app/database/connections.py), so values are encoded so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors, generators, pq

PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")
Row = tuple[str | None, ...]


@dataclass(frozen=True)
class Script:
    """A message's text cut at its named placeholders (``%(name)s``; ``%%`` is a %)."""

    chunks: tuple[bytes, ...]  # one more than names: the text around them
    names: tuple[str, ...]

    @classmethod
    def of(cls, text: str) -> Script:
        chunks, names, pending, start = [], [], "", 0
        for match in PLACEHOLDER.finditer(text):
            pending += text[start : match.start()]
            start = match.end()
            if match.group(1) is None:
                pending += "%"
                continue
            chunks.append(pending.encode())
            names.append(match.group(1))
            pending = ""
        chunks.append((pending + text[start:]).encode())
        return cls(tuple(chunks), tuple(names))

    def render(self, values: Mapping[str, Any], pgconn: pq.abc.PGconn) -> bytes:
        """The text with each placeholder replaced by its value as a literal."""
        escape = pq.Escaping(pgconn).escape_literal
        parts = [self.chunks[0]]
        for name, chunk in zip(self.names, self.chunks[1:], strict=True):
            parts.append(literal(values[name], escape))
            parts.append(chunk)
        return b"".join(parts)


def literal(value: Any, escape: Callable[[bytes], bytes]) -> bytes:
    """A value as an SQL literal: null, or its text quoted (libpq's quoting: escape),
    which PostgreSQL reads as the parameter's declared type (a list as an array's
    text)."""
    if value is None:
        return b"null"
    text = (value if type(value) is str else _text_of(value)).encode()
    if b"\x00" in text:  # as psycopg's own text adapter says it
        raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    return escape(text)


def _text_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return array_text(value)
    return str(value)


def array_text(items: list[Any] | tuple[Any, ...]) -> str:
    """An array's text form: {"a","b \\"q\\""}; NULL for None, nested lists nested."""

    def element(item: Any) -> str:
        if item is None:
            return "NULL"
        if isinstance(item, list | tuple):
            return array_text(item)
        return '"' + _text_of(item).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "{" + ",".join(element(i) for i in items) + "}"


async def run(conn: psycopg.AsyncConnection, message: bytes) -> pq.abc.PGresult:
    """Send one simple-query message and return the last statement's result; the first
    error as the psycopg exception it is (PostgreSQL has then rolled the message's
    implicit transaction back)."""
    async with conn.lock:
        conn.pgconn.send_query(message)
        results = await conn.wait(generators.execute(conn.pgconn))
    for result in results:
        if result.status == pq.ExecStatus.FATAL_ERROR:
            raise errors.error_from_result(result, encoding="utf-8")
    return results[-1]


def rows(result: pq.abc.PGresult) -> list[Row]:
    """Every row, each value as text (None for null)."""
    columns = range(result.nfields)
    return [tuple(text(result.get_value(r, c)) for c in columns) for r in range(result.ntuples)]


def first_row(result: pq.abc.PGresult) -> tuple[bytes | None, ...]:
    """The first row's values as PostgreSQL sent them (a response body stays bytes)."""
    assert result.ntuples > 0, "the statement returned no row"
    return tuple(result.get_value(0, c) for c in range(result.nfields))


def text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def integer(value: str | None) -> int | None:
    """A bigint column of rows(), as the number it is (None for null)."""
    return None if value is None else int(value)
