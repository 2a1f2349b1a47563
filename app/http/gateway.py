"""The generic resource: every route declared in SQL is served here."""

from __future__ import annotations

import json
import logging
from typing import Any

import falcon
from falcon.asgi import Request, Response

from ..auth.authenticator import Identity
from ..database.route_table import Match, RouteTable
from ..settings import Settings
from ..state import AppState
from ..streams import sse
from . import calls, watch
from .binding import bind
from .calls import Context, Result
from .clients import of_request
from .errors import ApiError
from .etags import Tag
from .guards import carries_credentials, refuse_cross_site_write

log = logging.getLogger(__name__)

# Credentials never reach SQL settings (or logs): identity arrives as the role and claims.
SECRET_HEADERS = frozenset({"authorization", "cookie", "x-api-key", "proxy-authorization"})


def request_context(
    req: Request,
    identity: Identity,
    settings: Settings,
    statement_timeout: str | None = None,
) -> Context:
    """The transaction's settings for this request. request.base_url is PUBLIC_URL (or
    empty: links stay relative), never the Host header a client may write."""
    headers = {k.lower(): v for k, v in req.headers.items() if k.lower() not in SECRET_HEADERS}
    return Context(
        role=identity.role,
        claims=identity.claims_json,
        headers=json.dumps(headers),
        method=req.method,
        path=req.path,
        base_url=settings.public_url or "",
        statement_timeout=statement_timeout,
    )


def apply_result(resp: Response, result: Result, default_status: int = 200) -> None:
    """The function's JSON as the body, with the status and headers it set, if any."""
    resp.status = _status(result.status, default_status)
    resp.content_type = falcon.MEDIA_JSON
    resp.data = result.body
    for name, value in _headers(result.headers):
        resp.set_header(name, value)


def _status(setting: str | None, default: int) -> int:
    if not setting:
        return default
    try:
        status = int(setting)
    except ValueError:
        status = 0
    if not 100 <= status <= 599:
        log.error("function set response.status to %r; answering %d", setting, default)
        return default
    return status


def _headers(setting: str | None) -> list[tuple[str, str]]:
    """response.headers: a JSON object, or PostgREST's array of one-key objects."""
    if not setting:
        return []
    try:
        parsed = json.loads(setting)
    except ValueError:
        log.error("function set response.headers to invalid JSON; ignored")
        return []
    items = parsed if isinstance(parsed, list) else [parsed]
    return [(str(k), str(v)) for item in items if isinstance(item, dict) for k, v in item.items()]


class Gateway:
    """A Falcon sink: match the route table, bind, call, pass the JSON through."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    async def __call__(self, req: Request, resp: Response, **_: Any) -> None:
        if "\x00" in req.path:
            raise ApiError(400, "the path contains a NUL character")
        table = self.state.require_routes()
        if req.method == "OPTIONS":
            return self._options(table, req, resp)
        match = table.match(req.method, req.path)
        if match is None:
            allowed = table.methods_for(req.path)
            if allowed:
                raise ApiError(
                    405,
                    f"{req.method} is not allowed on {req.path}",
                    headers={"Allow": ", ".join([*allowed, "OPTIONS"])},
                )
            raise ApiError(404, f"no route for {req.path}")
        req.context.route = match.route.template
        settings = self.state.settings
        refuse_cross_site_write(req, settings)
        # Streams are capped by MAX_STREAMS_PER_ADDRESS instead (a burst of reconnecting
        # EventSources must not meet a 429: they would give up for good).
        in_flight = self.state.in_flight
        counted = (
            in_flight.limit > 0
            and not match.route.is_stream
            and not carries_credentials(req, settings)
        )
        address = of_request(req, settings.trusted_proxies) if counted else None
        with in_flight.hold(address):
            await self._serve(req, resp, match)

    async def _serve(self, req: Request, resp: Response, match: Match) -> None:
        """Identify the caller, then stream, or bind and call within the route's share."""
        state, settings = self.state, self.state.settings
        identity = await state.auth.identify(req, state.require_pool())
        state.limits.check_identity(identity)  # per credential, whatever the address
        req.context.authenticated = identity.authenticated  # a denial is then 403, not 401
        req.context.role = identity.role  # for the access log (never the credential)
        timeout = state.auth.timeouts.get(identity.role)
        context = request_context(req, identity, settings, timeout)
        route = match.route
        if route.is_stream:
            return await sse.serve(state, req, resp, route, context)
        call = await bind(req, match, settings.max_body_bytes)
        tag = None
        if route.etag:
            tag = Tag.of(route, call.values, identity.claims, state.fingerprint, settings)
            call.version = tag.held(req.get_header("If-None-Match"))
        async with state.route_slots.hold((route.method, route.template)):
            work = calls.execute(state.pool_for(route), call, context, settings.prepared_statements)
            if state.tracing is not None:
                work = state.tracing.call(route, work)
            if settings.cancel_on_disconnect:
                work = watch.unless_client_leaves(req, work)
            result = await work
        if tag is not None and result.version is not None:
            resp.set_header("ETag", tag.header(result.version))
            resp.set_header("Cache-Control", "no-cache")  # kept, but asked again each time
            if result.not_modified:
                resp.status = falcon.HTTP_304
                return
        apply_result(resp, result)

    def _options(self, table: RouteTable, req: Request, resp: Response) -> None:
        allowed = table.methods_for(req.path)
        if not allowed:
            raise ApiError(404, f"no route for {req.path}")
        resp.status = falcon.HTTP_204
        resp.set_header("Allow", ", ".join([*allowed, "OPTIONS"]))
