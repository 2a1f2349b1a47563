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

import json
import os
from typing import Any

import falcon
import falcon.asgi
import psycopg
from psycopg_pool import AsyncConnectionPool

from app.database import routes
from app.http import wire
from app.http.prepared import AS_ROLE
from app.http.statements import CONTEXT, Statement, call_statement, script
from app.settings import Settings

QUERY = "select api.incident_json(i)::text from api.incidents as i where i.id = %s"
PAGE = "select api.list_incidents(page_size => 50)::text"  # the list scenario's SQL page
ROLE = Settings().anon_role  # as the API's requests without credentials run


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
    """The API's get_by_id message: the two statements it prepares on each connection
    (app/http/statements.py), read from the route the catalog declares at start-up, and
    the values of a request without credentials."""

    def __init__(self) -> None:
        self.statements: tuple[Statement, ...] = ()
        self.values: dict[str, Any] = {
            "_role": ROLE,
            "_claims": json.dumps({"role": ROLE}),
            "_method": "GET",
            "_base_url": "",
            "_statement_timeout": None,
            "body": None,
            "version": None,  # no If-None-Match: the function runs, as in get_by_id
        }

    async def load(self, url: str) -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            table = await routes.load(conn, "api")
        route = next(r for r in table.routes if r.function == "get_incident")
        call = call_statement(route, ("id",), None)
        self.statements = (CONTEXT[True], call)
        self.script = script(call, read_only=True)

    async def prepare(self, conn: psycopg.AsyncConnection) -> None:
        """The pool's configure: each statement prepared as the request's role."""
        for statement in self.statements:
            definition = statement.definition.replace("%", "%%")
            cursor = psycopg.AsyncClientCursor(conn)
            await cursor.execute(f"{AS_ROLE};\n{definition}", {"role": ROLE})


class ContractIncident:
    def __init__(self, pool: AsyncConnectionPool, contract: Contract) -> None:
        self.pool = pool
        self.contract = contract

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, id: int) -> None:
        values = {
            **self.contract.values,
            "_headers": json.dumps({k.lower(): v for k, v in req.headers.items()}),
            "_path": req.path,
            "values": json.dumps({"id": id}),
        }
        conn = await self.pool.getconn()
        try:
            message = self.contract.script.render(values, conn.pgconn)
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
