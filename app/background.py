"""What the background commands (``mqtt-bridge``, ``worker``) share: one asyncio run that
ends on SIGTERM or SIGINT. The signal only sets ``stop``; each command drains in its own
way (the bridge applies what it received, the worker lets its webhooks finish)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable


def run_until_signalled(service: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    """asyncio.run(service(stop)), stop set by SIGTERM or SIGINT; its exit status."""

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await service(stop)

    return asyncio.run(main())
