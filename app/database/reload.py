"""The route reload: read the route table, the roles a token may name and the API
schema's fingerprint, and put them in place; the stream hubs and the listener follow
the new table, and pooled connections are drained when the schema changed.

A reload NOTIFY asks for one (coalesced: one at a time, at most one every
RELOAD_EVERY seconds, since any database login may NOTIFY the channel); the listener's
(re)connect runs one at once. The two catalog queries only the reload reads are here;
the route declarations' is app/database/routes.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from . import routes

if TYPE_CHECKING:
    from ..state import AppState

log = logging.getLogger("app.state")  # the name the reload has always logged under

# Roles a token may name: those the authenticator is a member of (it may SET ROLE),
# with the statement_timeout each was given (ALTER ROLE ... SET), applied per request.
SWITCHABLE_ROLES = (
    "select r.rolname::text, (select pg_catalog.substr(c, 19) from unnest(r.rolconfig) as c"
    " where c like 'statement\\_timeout=%%' limit 1) from pg_catalog.pg_roles as r"
    " where r.rolname <> %(a)s and r.rolname !~ '^pg_'"
    " and pg_catalog.pg_has_role(%(a)s, r.oid, 'member')"
)
# What the API schema is made of right now: its functions and relations (their oids
# change when a deploy re-creates it). Pooled connections hold statements planned
# against the old ones; they are drained only when this changes.
SCHEMA_FINGERPRINT = (
    "select pg_catalog.md5(coalesce(pg_catalog.string_agg(o::text, ',' order by o), ''))"
    " from (select p.oid from pg_catalog.pg_proc as p where p.pronamespace = %(s)s::regnamespace"
    " union all select c.oid from pg_catalog.pg_class as c"
    " where c.relnamespace = %(s)s::regnamespace) as _(o)"
)
RELOAD_EVERY = 1.0  # seconds: at most one reload a second, however many NOTIFYs come


class Reloader:
    """Reloads one app's state (AppState.reload_routes and friends delegate here)."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self._reload_wanted = False
        self._reloader: asyncio.Task[None] | None = None
        self._reloaded_at = float("-inf")

    def request_reload(self) -> None:
        """A reload NOTIFY came: reload soon, without holding up the listener. Coalesced:
        one reload at a time and at most one every RELOAD_EVERY seconds, since any
        database login may NOTIFY the channel."""
        self._reload_wanted = True
        if self._reloader is None or self._reloader.done():
            self._reloader = asyncio.create_task(self._reload_when_due(), name="route reload")

    async def _reload_when_due(self) -> None:
        loop = asyncio.get_running_loop()
        while self._reload_wanted:
            await asyncio.sleep(max(0.0, self._reloaded_at + RELOAD_EVERY - loop.time()))
            self._reload_wanted = False
            try:
                await self.reload_routes()
            except Exception as exc:  # the database is away: the listener's reconnect reloads
                log.warning("route reload failed (%s)", exc)

    async def reload_routes(self) -> None:
        """Read the route table again. Pooled connections are drained (their statements
        were planned against the old schema) only when the schema changed since the last
        load. Stream hubs follow the table, and the listener learns their channels."""
        state = self.state
        pool = state.require_pool()
        self._reloaded_at = asyncio.get_running_loop().time()
        schema = state.settings.api_schema
        async with pool.connection() as conn:
            table = await routes.load(conn, schema)
            cur = await conn.execute(SWITCHABLE_ROLES, {"a": state.settings.authenticator_role})
            roles = await cur.fetchall()
            cur = await conn.execute(SCHEMA_FINGERPRINT, {"s": schema})
            (fingerprint,) = await cur.fetchone()  # type: ignore[misc]
        changed = state.fingerprint is not None and fingerprint != state.fingerprint
        state.fingerprint = fingerprint
        state.auth.roles = frozenset(role for role, _ in roles)
        state.auth.timeouts = {role: timeout for role, timeout in roles if timeout}
        state.routes = table
        state.grants.clear()
        state.reloads += 1
        state.metrics.route_reloads.inc()
        state.metrics.routes.set(len(table))
        if state.streams is not None:
            channels = state.streams.sync([r for r in table.routes if r.is_stream])
            if state.listener is not None and state.settings.stream_mode != "poll":
                for channel in channels:
                    state.listener.add(channel, self._stream_handler(channel))
        state.routes_loaded.set()
        if changed:
            for each in state.pools().values():
                await each.drain()
        log.info("route table loaded: %d routes%s", len(table), " (pools drained)" * changed)

    def stop_reloading(self) -> asyncio.Task[None] | None:
        """Shutdown: no reload may start after this; returns the one running, if any."""
        self._reload_wanted = False
        reloader, self._reloader = self._reloader, None
        if reloader is not None:
            reloader.cancel()
        return reloader

    def _stream_handler(self, channel: str) -> Any:
        streams = self.state.require_streams()

        async def notified(payload: str | None) -> None:
            streams.notified(channel)  # payload is only an id: fetch everything new

        return notified
