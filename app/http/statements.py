"""The text a request sends PostgreSQL: the statement that sets its role and settings
(SET_CONTEXT), a route's call, a stream's read, and the script that puts two of them
in one simple-query message (one implicit transaction: see app/http/calls.py).

Each statement comes in two forms. Prepared once per connection (app/http/prepared.py)
and run by EXECUTE, its values quoted as literals (libpq's quoting: app/http/wire.py,
which renders the message): preparing took PostgreSQL's CPU per get_by_id from 0.36 to
0.28 ms (issue 5; docs/performance.md). Or inline: behind a pooler in transaction
mode (PgBouncer), a connection's prepared statements are not the next transaction's,
and PREPARED_STATEMENTS=false sends each statement whole instead, in the same one
message, its values cast to the declared types.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from psycopg import sql

from ..database.route_table import Route
from .wire import Script

SET_CONTEXT = (
    "select pg_catalog.set_config('role', $1, true),"
    " pg_catalog.set_config('request.jwt.claims', $2, true),"
    " pg_catalog.set_config('request.headers', $3, true),"
    " pg_catalog.set_config('request.method', $4, true),"
    " pg_catalog.set_config('request.path', $5, true),"
    " pg_catalog.set_config('request.base_url', $6, true),"
    " pg_catalog.set_config('statement_timeout', coalesce($7,"
    " pg_catalog.current_setting('statement_timeout')), true)"
)
# Reads cannot write, whatever the function tries (as BEGIN READ ONLY would).
READ_ONLY = ", pg_catalog.set_config('transaction_read_only', 'on', true)"
# After the function in the same target list: what it set, evaluated after it ran.
RESPONSE_SETTINGS = (
    ", pg_catalog.current_setting('response.status', true),"
    " pg_catalog.current_setting('response.headers', true)"
)
# SET_CONTEXT's values, in order (underscored: a route's statement names its own).
CONTEXT_PARAMS = {
    name: "text"
    for name in (
        "_role",
        "_claims",
        "_headers",
        "_method",
        "_path",
        "_base_url",
        "_statement_timeout",
    )
}
# Quoted names and strings (kept whole), parameters outside them ($1, not a$1), and %.
PARAMETER = re.compile(r'"(?:[^"]|"")*"|\'(?:[^\']|\'\')*\'|(?<![\w$])\$(\d+)(?!\d)|%')


@dataclass(frozen=True)
class Statement:
    """One statement with numbered parameters, in the two ways it may be sent.

    Prepared by name on each pooled connection (PREPARE, once), then run with EXECUTE
    inside the request's message: parsed and planned once per connection instead of
    once per request. Or, where connections are not the app's own (PREPARED_STATEMENTS
    =false), sent inline: each $n replaced by its value as a literal of the declared
    type. Both carry psycopg's named placeholders for the values."""

    name: str
    definition: str  # PREPARE name (types) AS statement
    execute: str  # EXECUTE name(%(a)s, ...)
    inline: str  # the statement, $n written as (%(a)s)::type

    @classmethod
    def of(cls, label: str, statement: str, params: Mapping[str, str]) -> Statement:
        """params: placeholder name -> type, in $n order. Named after what it runs
        (pg_stat_activity shows "execute emberlog_<label>_...", so a DBA still sees
        which function a session is in), and a digest of it."""
        types = ", ".join(params.values())
        digest = hashlib.blake2b(f"{types}|{statement}".encode(), digest_size=8).hexdigest()
        name = f"emberlog_{re.sub(r'[^a-z0-9_]', '', label.lower())[:36]}_{digest}"
        values = [f"%({p})s" for p in params]
        casts = [f"({v})::{t}" for v, t in zip(values, params.values(), strict=True)]
        return cls(
            name,
            f"prepare {name} ({types}) as {statement}",
            f"execute {name}({', '.join(values)})",
            inline(statement, casts),
        )


def inline(statement: str, values: list[str]) -> str:
    """The statement with $n replaced by values[n - 1] and every other % doubled (the
    message's placeholders are %(name)s: app/http/wire.py); text in quotes is left as
    it is."""

    def value(match: re.Match[str]) -> str:
        number = match.group(1)
        return values[int(number) - 1] if number else match.group(0).replace("%", "%%")

    return PARAMETER.sub(value, statement)


CONTEXT = {
    read_only: Statement.of(
        "context", SET_CONTEXT + (READ_ONLY if read_only else ""), CONTEXT_PARAMS
    )
    for read_only in (True, False)
}


@lru_cache(maxsize=1024)
def call_statement(route: Route, names: tuple[str, ...], body_arg: str | None) -> Statement:
    """``select to_json(schema.fn(a => _.a, ...))::text from jsonb_to_record(...) as _(a type)``.

    Only the arguments the request gave are named, so PostgreSQL applies the defaults,
    and it casts every value to the argument's declared type.
    """
    named = [sql.SQL("{0} => _.{0}").format(sql.Identifier(n)) for n in names]
    if body_arg:
        named.append(sql.SQL("{} => $2").format(sql.Identifier(body_arg)))
    invocation = sql.SQL("{}({})").format(
        sql.Identifier(route.schema, route.function), sql.SQL(", ").join(named)
    )
    sources = []  # what the FROM clause reads: the bound values, the @etag version
    if names:
        columns = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(route.argument(n).type))
            for n in names
        )
        sources.append(sql.SQL("pg_catalog.jsonb_to_record($1) as _({})").format(columns))
    if route.etag and not route.returns_set:
        schema, _, function = route.etag.partition(".")
        version = sql.SQL("(select ({}())::text as v) as _v")
        sources.insert(0, version.format(sql.Identifier(schema, function)))
    source = sql.SQL(" from ") + sql.SQL(", ").join(sources) if sources else sql.SQL("")
    params = {"values": "jsonb", "body": "jsonb"}
    if route.returns_set:
        join = sql.SQL(", lateral ") if names else sql.SQL(" from ")
        statement = sql.SQL(
            "select coalesce(pg_catalog.json_agg(_r), '[]')::text{}{}{}{} as _r"
        ).format(sql.SQL(RESPONSE_SETTINGS), source, join, invocation)
    elif route.etag:
        # The version (in the same snapshot as the call): when it is the one the client
        # holds ($3), the function is not called at all (app/http/etags.py).
        statement = sql.SQL(
            "select case when _v.v = $3 then null else pg_catalog.to_json({})::text end{}, _v.v{}"
        ).format(invocation, sql.SQL(RESPONSE_SETTINGS), source)
        params["version"] = "text"
    else:
        statement = sql.SQL("select pg_catalog.to_json({})::text{}{}").format(
            invocation, sql.SQL(RESPONSE_SETTINGS), source
        )
    # Rendered once: names quoted the standard way. $1: the values, $2: the body,
    # $3: the version an If-None-Match names (@etag routes).
    return Statement.of(route.function, statement.as_string(None), params)


@lru_cache(maxsize=256)
def stream_statement(route: Route, names: tuple[str, ...] = ()) -> Statement:
    """``select id, event, data::text from schema.fn(after_id, max_events)``.

    A stream with filters also selects its ``match_<filter>`` columns (as text, for
    matching live events: app/streams/filters.py) and passes the filters a client gave
    (``names``, in argument order) by name, each cast to its argument's type: absent
    ones are left out, so the function's defaults apply, as for HTTP routes.
    """
    params = route.stream_params
    selected = sql.SQL("").join(
        sql.SQL(", {}::text").format(sql.Identifier(f"match_{a.name}")) for a in params
    )
    given = [a for a in params if a.name in names]
    named = sql.SQL("").join(
        sql.SQL(", {} => ${}").format(sql.Identifier(a.name), sql.SQL(str(n)))
        for n, a in enumerate(given, start=3)
    )
    statement = sql.SQL("select id, event, data::text{} from {}($1, $2{})").format(
        selected, sql.Identifier(route.schema, route.function), named
    )
    types = {"after_id": "bigint", "limit": "integer"}
    types.update({stream_param(a.name): a.type for a in given})
    return Statement.of(route.function, statement.as_string(None), types)


def stream_param(name: str) -> str:
    """The placeholder of a stream filter (apart from the context's and after_id/limit)."""
    return f"filter_{name}"


@lru_cache(maxsize=64)
def position_statement(function: str) -> Statement:
    """``select schema.fn($1)``: a stream's position for a resume token. The token's type
    is left to PostgreSQL (unknown: the function's argument type, text or uuid...)."""
    schema, _, name = function.partition(".")
    statement = sql.SQL("select {}($1)").format(sql.Identifier(schema, name))
    return Statement.of(f"{name}_position", statement.as_string(None), {"token": "unknown"})


@lru_cache(maxsize=2048)
def script(statement: Statement, read_only: bool, prepared: bool = True) -> Script:
    """The whole transaction around one statement, as one simple-query message."""
    if prepared:
        return Script.of(f"{CONTEXT[read_only].execute};\n{statement.execute}")
    return Script.of(f"{CONTEXT[read_only].inline};\n{statement.inline}")
