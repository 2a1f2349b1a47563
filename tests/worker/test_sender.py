"""One attempt against a real local HTTP server: what counts as delivered, and the error
texts users read in last_error."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import replace

import pytest
from aiohttp import web

from app.settings import Settings
from app.worker.records import Delivery
from app.worker.sender import Sender
from ops.local import free_port


@pytest.fixture
async def server():
    async def answer(request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        if kind == "ok":
            return web.Response(status=204)
        if kind == "redirect":
            return web.Response(status=302, headers={"Location": "http://10.0.0.1/"})
        if kind == "slow":
            await asyncio.sleep(1)
        return web.Response(status=500, text="x" * 100_000)

    app = web.Application()
    app.router.add_post("/{kind}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def attempt(url: str, allowed: str | None = "127.0.0.0/8", timeout: float = 1.0):
    networks = (ipaddress.ip_network(allowed),) if allowed else ()
    settings = replace(Settings(), webhook_allowed_networks=networks,
                       webhook_timeout_seconds=timeout)  # fmt: skip
    sender = Sender(settings)
    await sender.open()
    try:
        delivery = Delivery("d1", 1, url, None, "{}", deadline=time.monotonic() + 60)
        result, _ = await sender.send(delivery)
        return result
    finally:
        await sender.close()


async def test_a_2xx_is_delivered(server):
    result = await attempt(f"{server}/ok")
    assert (result.ok, result.status_code, result.error) == (True, 204, None)


async def test_a_redirect_is_not_followed(server):
    result = await attempt(f"{server}/redirect")
    assert not result.ok and not result.permanent and result.status_code == 302
    assert result.error == "HTTP 302: redirect to http://10.0.0.1/ not followed"


async def test_an_error_names_the_status_and_the_start_of_the_body(server):
    result = await attempt(f"{server}/fail")
    assert result.error == "HTTP 500: " + "x" * 200


async def test_a_slow_receiver_times_out(server):
    result = await attempt(f"{server}/slow", timeout=0.3)
    assert result.error == "timed out after 0.3 s" and not result.permanent


async def test_refused_destinations_are_permanent(server):
    result = await attempt(f"{server}/ok", allowed=None)
    assert result.permanent and "127.0.0.1 is not allowed" in result.error
    port = server.rsplit(":", 1)[1]
    result = await attempt(f"http://localhost:{port}/ok", allowed=None)  # via the resolver
    assert result.permanent and "is not allowed" in result.error


async def test_a_closed_port_is_connection_refused(server):
    result = await attempt(f"http://127.0.0.1:{free_port()}/ok")
    assert result.error == "connection refused" and not result.permanent
