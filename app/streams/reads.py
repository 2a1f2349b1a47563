"""Reading a stream function through the pool: the hubs' fetch of new events, a
resuming client's replay (both become a hub's Fetch, via AppState.fetch_events), and
the periodic read of each stream's head for the lag gauges.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import psycopg

from ..database.route_table import Route
from ..http.calls import Context, read_rows
from ..http.statements import position_statement, stream_param, stream_statement
from ..http.wire import integer
from .hub import Row

if TYPE_CHECKING:
    from ..state import AppState

log = logging.getLogger("app.state")  # the name these lines have always logged under


def stream_context(state: AppState, route: Route) -> Context:
    """How the process-wide hub reads a stream: as the anonymous role."""
    anonymous = state.auth.anonymous
    return Context(
        role=anonymous.role,
        claims=anonymous.claims_json,
        headers="{}",
        method="GET",
        path=route.template,
        base_url=state.settings.public_url or "",
        statement_timeout=state.auth.timeouts.get(anonymous.role),
    )


async def fetch_events(
    state: AppState,
    route: Route,
    after: int | None,
    limit: int,
    context: Context | None,
    values: Mapping[str, Any] | None = None,
) -> list[Row]:
    """Rows of a stream function after an id: the hub's (context None, no filters), in
    a transaction that may write, so the function may publish what writers queued
    (internal.publish_events); or a resuming client's, read-only, as it, through the
    filters it gave (``values``)."""
    values = values or {}
    names = tuple(a.name for a in route.stream_params if a.name in values)
    params: dict[str, Any] = {"after_id": after, "limit": limit}
    params.update({stream_param(n): values[n] for n in names})
    rows = await read_rows(
        state.require_pool(),
        stream_statement(route, names),
        params,
        context or stream_context(state, route),
        read_only=context is not None,
        prepared=state.settings.prepared_statements,
    )
    return [(integer(r[0]), *r[1:]) for r in rows]  # the event id: a bigint, as text


async def find_position(state: AppState, route: Route, token: str, context: Context) -> int | None:
    """The position the route's position function gives a resume token, as the client's
    role; None when it knows none (null) or the token is no value of its argument's type."""
    assert route.position is not None
    try:
        rows = await read_rows(
            state.require_pool(),
            position_statement(route.position),
            {"token": token},
            context,
            prepared=state.settings.prepared_statements,
        )
    except psycopg.DataError:  # e.g. not a uuid: no such event
        return None
    return integer(rows[0][0]) if rows else None


async def refresh_stream_metrics(state: AppState, every: float) -> None:
    """Every few seconds, the streams' lag gauges (see stream_metrics_once)."""
    while True:
        await asyncio.sleep(every)
        await stream_metrics_once(state)


async def stream_metrics_once(state: AppState) -> None:
    """Each stream's head in the log against what this process has fetched
    (emberlog_stream_lag_events). Read-only: it publishes nothing."""
    metrics = state.metrics
    for hub in list(state.streams.hubs.values()) if state.streams is not None else []:
        name = hub.route.template
        try:
            context = stream_context(state, hub.route)
            rows = await fetch_events(state, hub.route, None, 1, context)
        except Exception as exc:  # the database is away: health reports that
            log.debug("stream %s: reading the head failed (%s)", name, exc)
            continue
        head = rows[0][0] if rows else 0
        metrics.stream_head.labels(name).set(head)
        metrics.stream_position.labels(name).set(hub.cursor)
        metrics.stream_lag.labels(name).set(max(head - hub.cursor, 0))
