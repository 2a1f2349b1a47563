"""Per-request concerns every route shares: request id and the request log line."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from falcon.asgi import Request, Response

log = logging.getLogger("emberlog.request")

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestLog:
    """Honours or creates X-Request-ID, echoes it, and logs one JSON line per request."""

    async def process_request(self, req: Request, resp: Response) -> None:
        given = req.get_header("X-Request-ID") or ""
        req.context.request_id = given if REQUEST_ID.match(given) else uuid.uuid4().hex
        req.context.started = time.perf_counter()
        req.context.route = None

    async def process_response(
        self, req: Request, resp: Response, resource: Any, req_succeeded: bool
    ) -> None:
        resp.set_header("X-Request-ID", req.context.request_id)
        duration = (time.perf_counter() - req.context.started) * 1000
        log.info(
            "request",
            extra={
                "method": req.method,
                "path": req.path,
                "route": req.context.route or req.uri_template,
                "status": int(resp.status_code),
                "duration_ms": round(duration, 2),
                "request_id": req.context.request_id,
            },
        )
