"""One HTTP connection as the app sees it: who to tell, and what to cancel, when the
client goes away."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from falcon.asgi import Request

from ..streams.hub import Hub
from ..streams.subscriber import Subscriber
from .errors import ApiError

WATCH_KEY = "emberlog.watch"


class Watch:
    """The app's view of one HTTP connection: who to tell when the client goes away.

    It is the receive() the app hands Falcon (wrapping the server's): Falcon reads the
    disconnect message in a task of its own, and through this a streaming client is
    released at once, not at the next write. For a plain request, until_disconnect()
    reads the connection once the body is in, so a query can be cancelled when its
    client leaves. One small object per connection, no closure: 10,000 idle streams
    hold 10,000 of them (issue 18's memory target).
    """

    __slots__ = ("hub", "receive", "sub")

    def __init__(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self.hub: Hub | None = None
        self.sub: Subscriber | None = None
        self.receive: Callable[[], Awaitable[dict[str, Any]]] | None = receive  # the server's

    async def __call__(self) -> dict[str, Any]:
        assert self.receive is not None
        message = await self.receive()
        if message["type"] == "http.disconnect":
            self.release()
        return message

    async def until_disconnect(self) -> None:
        """Return when the client has gone (call only after the body has been read)."""
        while (await self())["type"] != "http.disconnect":
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
# A call answered within this time is never watched: most are, and for each of them
# the watch (a task, its wait on the connection, its cancellation) was a share of the
# request's Python in issue 18's profiles. A client that leaves a longer call is
# noticed from then on.
WATCH_AFTER = 0.02  # seconds


async def unless_client_leaves(req: Request, work: Awaitable[T]) -> T:
    """Await work; if the client disconnects first, cancel it (psycopg then cancels the
    running query in the server, and the transaction rolls back) and answer 499.

    The work runs in the request's own task (so a request cancelled, e.g. at shutdown,
    cancels its query too); once it has run WATCH_AFTER, one small task waits for the
    disconnect and cancels it."""
    watch = req.scope.get(WATCH_KEY)
    request = asyncio.current_task()
    if not isinstance(watch, Watch) or watch.receive is None or request is None:
        return await work
    left = False
    guarding: asyncio.Future[None] | None = None

    async def guard() -> None:
        nonlocal left
        await watch.until_disconnect()
        left = True
        request.cancel()

    def start_guard() -> None:
        nonlocal guarding
        guarding = asyncio.ensure_future(guard())

    timer = asyncio.get_running_loop().call_later(WATCH_AFTER, start_guard)
    try:
        result = await work
    except asyncio.CancelledError:
        if not left:
            raise  # cancelled by someone else: let it through
        raise _gone(request) from None
    finally:
        timer.cancel()
        if guarding is not None:
            guarding.cancel()
    if left:  # gone while the work finished anyway: nobody to answer
        raise _gone(request)
    return result


def _gone(request: asyncio.Task[Any]) -> ApiError:
    request.uncancel()  # the cancel was ours; the 499 ends the request instead
    return ApiError(CLIENT_GONE, "the client closed the request", "client_closed_request")
