"""Serving a stream route as Server-Sent Events (the hub does the fan-out): where the
client resumes (a position, or a token the route's position function turns into one;
a token it does not know: a reset), and the filters it gave (app/streams/filters.py),
both checked before the stream starts."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import psycopg
from falcon.asgi import Request, Response
from psycopg_pool import PoolTimeout

from ..database.route_table import Route
from ..http.calls import Context
from ..http.clients import of_request
from ..http.errors import ApiError, status_for_sqlstate
from ..http.watch import WATCH_KEY, Watch
from ..state import AppState
from . import filters
from .frames import Frame, hello
from .hubs import Streams
from .limits import Lease, too_many_streams
from .reads import find_position
from .subscriber import frames

EVENT_ID = re.compile(r"^[0-9]{1,18}$")


def last_event_id(req: Request, route: Route | None = None) -> int | str | None:
    """Where the client resumes: the Last-Event-ID header (sent by a reconnecting
    EventSource), else ?last_event_id= (a first connect); None for live only. A position
    (digits), or, for a route with a position function, any other token (returned as
    text, for that function to turn into a position)."""
    header = req.get_header("Last-Event-ID")
    raw = header if header is not None and header.strip() else req.get_param("last_event_id")
    if raw is None or not raw.strip():
        return None
    if not EVENT_ID.match(raw.strip()):
        if route is not None and route.position is not None:
            return raw.strip()
        raise ApiError(
            400,
            "last_event_id must be an event id (a non-negative integer)",
            "invalid_parameter",
            {"parameter": "last_event_id"},
        )
    return int(raw)


async def serve(
    state: AppState, req: Request, resp: Response, route: Route, context: Context
) -> None:
    """200 text/event-stream from the route's hub.

    While the stream is not ready, or the server is shutting down, the answer is still
    200, with only the retry hint: an EventSource gives up for good on any other status,
    and this way it reconnects (elsewhere) after ``SSE_RETRY_MS``. An address already
    holding MAX_STREAMS_PER_ADDRESS streams gets 429 (see stream_limits).
    """
    after = last_event_id(req, route)
    values = filters.bind(route, req)
    resp.set_header("Cache-Control", "no-cache")
    resp.set_header("X-Accel-Buffering", "no")
    resp.content_type = "text/event-stream"
    if req.method == "HEAD":
        return
    if not await state.may_execute(route, context.role):
        authenticated = getattr(req.context, "authenticated", False)
        raise ApiError(
            status_for_sqlstate("42501", authenticated),  # as when SQL denies a JSON route
            f"role {context.role} may not read this stream",
            "forbidden",
        )
    streams = state.require_streams()
    retry_ms = state.settings.sse_retry_ms
    wants, unknown = None, None
    try:
        if values:
            canonical = await filters.canonical(state.require_pool(), route, values)
            wants = filters.wants(route, canonical)
        if isinstance(after, str):  # a token for the route's position function
            unknown, after = after, await find_position(state, route, after, context)
            if after is not None:
                unknown = None
    except (psycopg.OperationalError, PoolTimeout):  # the database is away: come back
        resp.sse = come_back_later(retry_ms)
        return
    hub = None if streams.closing else await streams.ready_hub(route, state.settings.pool_timeout)
    # Checked again after the wait: shutdown or a reload may have come meanwhile.
    if hub is None or streams.closing or streams.hubs.get(route.template) is not hub:
        resp.sse = come_back_later(retry_ms)
        return
    # From the lease to the subscriber nothing awaits: the count cannot leak in between,
    # and from there on the subscriber's end gives it back.
    lease = admit(state, req, streams)
    settings = state.settings
    sub, replay = hub.subscribe(
        after, settings.sse_replay_limit, on_close=lease.release, wants=wants
    )
    sub.values = values
    if unknown is not None:  # the position function knows no such token: a reset
        hub.reset_unknown(sub, unknown)
    watch = req.scope.get(WATCH_KEY)
    if isinstance(watch, Watch):
        watch.attach(hub, sub)
    resp.sse = frames(hub, sub, replay, context, retry_ms)


def admit(state: AppState, req: Request, streams: Streams) -> Lease:
    """A place for one more stream from this client's address, else 429."""
    limit = state.settings.max_streams_per_address
    lease = streams.per_address.lease(of_request(req, state.settings.trusted_proxies), limit)
    if lease is None:
        state.metrics.sse_streams_refused.inc()
        raise too_many_streams(limit)
    return lease


async def come_back_later(retry_ms: int) -> AsyncIterator[Frame]:
    """Only the retry hint, then the end: the client reconnects after retry_ms."""
    yield hello(retry_ms)
