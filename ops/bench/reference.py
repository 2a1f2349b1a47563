"""The bare reference handlers `make bench` measures the API against: a few lines of
Falcon and psycopg-pool doing the primary-key lookup (and the same list page the API's
list runs) and returning PostgreSQL's JSON text, and a bare /healthz. No routing table,
roles, claims, limits or error mapping: what is left when the declarative layer is
taken away.

And one more, /contract/incidents/{id}: the API's own message for get_by_id, its role,
request settings and version read included, with as little around it as the bare
handler has. It splits the API's distance from the bare handler in two: what the
contract's SQL costs (contract / bare), and what the layer does (API / contract).

Run as ``uvicorn ops.bench.reference:app``."""

from __future__ import annotations

import os

import falcon
import falcon.asgi
import psycopg
from psycopg_pool import AsyncConnectionPool

from app.auth.authenticator import Identity
from app.database import routes
from app.database.route_table import Route
from app.http import prepared, wire
from app.http.calls import Call
from app.http.gateway import request_context
from app.http.statements import CONTEXT, script
from app.settings import Settings

QUERY = "select api.incident_json(i)::text from api.incidents as i where i.id = %s"
PAGE = "select api.list_incidents(page_size => 50)::text"  # the list scenario's SQL page
SETTINGS = Settings()  # the defaults: the anonymous role, no PUBLIC_URL


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


class Contract:
    """The API's get_by_id message, made by the API's own pieces: the route the catalog
    declares (read at start-up), its call (app/http/calls.py) and the request's settings
    (app/http/gateway.py's request_context) for a request without credentials, the two
    statements prepared on each connection as the API prepares them
    (app/http/prepared.py)."""

    def __init__(self) -> None:
        self.route: Route | None = None
        self.identity = Identity(SETTINGS.anon_role, {"role": SETTINGS.anon_role})

    async def load(self, url: str) -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            table = await routes.load(conn, "api")
        self.route = next(r for r in table.routes if r.function == "get_incident")

    def call(self, id: int) -> Call:
        assert self.route is not None, "loaded at start-up"
        return Call(self.route, {"id": id})  # no If-None-Match: the function runs

    async def prepare(self, conn: psycopg.AsyncConnection) -> None:
        """The pool's configure."""
        statements = (CONTEXT[True], self.call(0).statement())
        await prepared.prepare(conn, statements, self.identity.role)

    def message(self, req: falcon.asgi.Request, id: int, conn: psycopg.AsyncConnection) -> bytes:
        call = self.call(id)
        values = {**request_context(req, self.identity, SETTINGS).params(), **call.params()}
        return script(call.statement(), read_only=True).render(values, conn.pgconn)


class ContractIncident:
    def __init__(self, pool: AsyncConnectionPool, contract: Contract) -> None:
        self.pool = pool
        self.contract = contract

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, id: int) -> None:
        conn = await self.pool.getconn()
        try:
            message = self.contract.message(req, id, conn)
            body = wire.first_row(await wire.run(conn, message))[0]
        finally:
            await self.pool.putconn(conn)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = body


class Pool:
    def __init__(self, pool: AsyncConnectionPool, contract: Contract, url: str) -> None:
        self.pool = pool
        self.contract = contract
        self.url = url

    async def process_startup(self, scope: object, event: object) -> None:
        await self.contract.load(self.url)
        await self.pool.open()

    async def process_shutdown(self, scope: object, event: object) -> None:
        await self.pool.close()


def create_app() -> falcon.asgi.App:
    url = os.environ["DATABASE_URL"]
    contract = Contract()
    pool = AsyncConnectionPool(
        url,
        min_size=int(os.environ.get("POOL_MIN_SIZE", "2")),
        max_size=int(os.environ.get("POOL_MAX_SIZE", "10")),
        kwargs={"autocommit": True},
        configure=contract.prepare,
        open=False,
    )
    app = falcon.asgi.App(middleware=[Pool(pool, contract, url)])
    app.add_route("/incidents/{id:int}", Incident(pool))
    app.add_route("/incidents", Page(pool))
    app.add_route("/contract/incidents/{id:int}", ContractIncident(pool, contract))
    app.add_route("/healthz", Health())
    return app


app = create_app()
