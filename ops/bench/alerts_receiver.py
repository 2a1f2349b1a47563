"""make bench-alerts' webhook receiver, a process of its own (so it shares neither the
benchmark's event loop nor its CPU time): answers every POST with an empty 200 at once and
notes its webhook-id and arrival (time.monotonic(): CLOCK_MONOTONIC, the same clock in
every process of this machine). GET /stats: {"count", "first", "last"}; GET /arrivals:
[[webhook-id, arrival], ...]. Prints its port on stdout once it listens.

    python ops/bench/alerts_receiver.py
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

from aiohttp import web


def application() -> web.Application:
    arrivals: list[tuple[str, float]] = []

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        arrivals.append((request.headers.get("webhook-id", ""), time.monotonic()))
        return web.Response(status=200)

    async def stats(request: web.Request) -> web.Response:
        first = arrivals[0][1] if arrivals else None
        last = arrivals[-1][1] if arrivals else None
        return web.json_response({"count": len(arrivals), "first": first, "last": last})

    async def listed(request: web.Request) -> web.Response:
        return web.json_response(arrivals)

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    app.router.add_get("/stats", stats)
    app.router.add_get("/arrivals", listed)
    return app


async def serve() -> None:
    runner = web.AppRunner(application(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(port, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    sys.exit(0)


if __name__ == "__main__":
    main()
