"""The bare reference handlers `make bench` measures the API against: a few lines of
Falcon and psycopg-pool doing the primary-key lookup (and the same list page the API's
list runs) and returning PostgreSQL's JSON text, and a bare /healthz. No routing table,
roles, claims, limits or error mapping: what is left when the declarative layer is
taken away. Run as ``uvicorn ops.bench.reference:app``."""

from __future__ import annotations

import os

import falcon
import falcon.asgi
from psycopg_pool import AsyncConnectionPool

QUERY = "select api.incident_json(i)::text from api.incidents as i where i.id = %s"
PAGE = "select api.list_incidents(page_size => 50)::text"  # the list scenario's SQL page


class Incident:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, id: int) -> None:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(QUERY, (id,))).fetchone()
        if row is None:
            raise falcon.HTTPNotFound()
        resp.content_type = falcon.MEDIA_JSON
        resp.text = row[0]


class Page:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(PAGE)).fetchone()
        assert row is not None
        resp.content_type = falcon.MEDIA_JSON
        resp.text = row[0]


class Health:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.text = '{"status": "ok"}'


class Pool:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def process_startup(self, scope: object, event: object) -> None:
        await self.pool.open()

    async def process_shutdown(self, scope: object, event: object) -> None:
        await self.pool.close()


def create_app() -> falcon.asgi.App:
    pool = AsyncConnectionPool(
        os.environ["DATABASE_URL"],
        min_size=int(os.environ.get("POOL_MIN_SIZE", "2")),
        max_size=int(os.environ.get("POOL_MAX_SIZE", "10")),
        kwargs={"autocommit": True},
        open=False,
    )
    app = falcon.asgi.App(middleware=[Pool(pool)])
    app.add_route("/incidents/{id:int}", Incident(pool))
    app.add_route("/incidents", Page(pool))
    app.add_route("/healthz", Health())
    return app


app = create_app()
