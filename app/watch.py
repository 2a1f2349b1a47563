"""One HTTP connection as the app sees it: who to tell, and what to cancel, when the
client goes away."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from falcon.asgi import Request

from .errors import ApiError
from .streams import Hub, Subscriber

WATCH_KEY = "emberlog.watch"


class Watch:
    """The app's view of one HTTP connection: who to tell when the client goes away.

    Falcon reads the disconnect message in a task of its own; the app wraps receive()
    so a streaming client is released at once, not at the next write. For a plain
    request, until_disconnect() reads the connection once the body is in, so a query
    can be cancelled when its client leaves.
    """

    __slots__ = ("hub", "receive", "sub")

    def __init__(self) -> None:
        self.hub: Hub | None = None
        self.sub: Subscriber | None = None
        self.receive: Callable[[], Awaitable[dict[str, Any]]] | None = None  # set by the app

    async def until_disconnect(self) -> None:
        """Return when the client has gone (call only after the body has been read)."""
        assert self.receive is not None
        while (await self.receive())["type"] != "http.disconnect":
            pass

    def attach(self, hub: Hub, sub: Subscriber) -> None:
        self.hub, self.sub = hub, sub

    def release(self) -> None:
        """The client is gone (or the response is over): stop feeding it."""
        if self.hub is not None and self.sub is not None:
            self.hub.unsubscribe(self.sub)
        self.hub = self.sub = None


T = TypeVar("T")
CLIENT_GONE = 499  # nginx's "client closed request": only ever seen in the logs


async def unless_client_leaves(req: Request, work: Awaitable[T]) -> T:
    """Await work; if the client disconnects first, cancel it (psycopg then cancels the
    running query in the server, and the transaction rolls back) and answer 499."""
    watch = req.scope.get(WATCH_KEY)
    if not isinstance(watch, Watch) or watch.receive is None:
        return await work
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(watch.until_disconnect())
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this request itself cancelled (e.g. shutdown): so is its query
        task.cancel()
        raise
    finally:
        gone.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise ApiError(CLIENT_GONE, "the client closed the request", "client_closed_request")
    return task.result()
