"""Whether a role may execute a route's function, asked of the catalog once per role
and function, and remembered until the next reload.

A stream asks at connect (live events are read once per process, not as each client);
the OpenAPI document asks for the anonymous role.
"""

from __future__ import annotations

from collections.abc import Callable

from psycopg_pool import AsyncConnectionPool

from .route_table import Route

EXECUTE_GRANT = (
    "select coalesce(bool_or(pg_catalog.has_function_privilege(%(role)s, p.oid, 'execute')),"
    " false) from pg_catalog.pg_proc as p"
    " where p.pronamespace = %(schema)s::regnamespace and p.proname = %(fn)s"
)


class Grants:
    """The answers so far, by (schema, function, role); asked on pool()'s connections."""

    def __init__(self, pool: Callable[[], AsyncConnectionPool]) -> None:
        self.pool = pool
        self.known: dict[tuple[str, str, str], bool] = {}

    def clear(self) -> None:
        """The route table was reloaded: grants may have changed with it."""
        self.known = {}

    async def may_execute(self, route: Route, role: str) -> bool:
        key = (route.schema, route.function, role)
        known = self.known.get(key)
        if known is None:
            async with self.pool().connection() as conn:
                cur = await conn.execute(
                    EXECUTE_GRANT, {"role": role, "schema": route.schema, "fn": route.function}
                )
                (known,) = await cur.fetchone()  # type: ignore[misc]
            self.known[key] = bool(known)
        return bool(known)
