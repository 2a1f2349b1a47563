"""One webhook attempt: the POST, signed as Standard Webhooks 1.0 says, and what came of it.

Signing (docs: https://www.standardwebhooks.com): ``webhook-id`` is the delivery's id (the
same on every attempt, so a receiver deduplicates on it), ``webhook-timestamp`` the unix
seconds of this attempt, ``webhook-signature`` ``v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">`` keyed with the secret's bytes (``whsec_<base64>``). This is
what DESIGN.md 5b asks and supersedes issue 17's "timestamp.body" wording: receivers then
verify with the ``standardwebhooks`` library (or its siblings) instead of code of ours,
and the same library signs here. A delivery without a secret is sent unsigned.

The request: no proxy from the environment, no redirect followed (a 3xx is a failure: the
receiver must give its final URL), the whole attempt bounded by WEBHOOK_TIMEOUT_SECONDS,
at most ERROR_BODY_BYTES of the answer read (for the error text), nothing decompressed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from datetime import UTC, datetime

import aiohttp
from standardwebhooks.webhooks import Webhook
from yarl import URL

from ..settings import Settings
from .guard import DestinationRefused, Guard, GuardedResolver
from .records import Delivery, Result

ERROR_BODY_BYTES = 4096
ERROR_TEXT_CHARS = 200
USER_AGENT = "emberlog-api-worker"
log = logging.getLogger("emberlog.worker")


def signature(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """The webhook-signature header's value (standardwebhooks signs)."""
    return Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, tz=UTC), body)


def headers(delivery: Delivery, timestamp: int) -> dict[str, str]:
    sent = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Accept-Encoding": "identity",
        "webhook-id": delivery.id,
        "webhook-timestamp": str(timestamp),
    }
    if delivery.secret:
        signed = signature(delivery.secret, delivery.id, timestamp, delivery.body)
        sent["webhook-signature"] = signed
    return sent


class Sender:
    """The HTTP client every attempt shares (one connection pool, the guarded resolver)."""

    def __init__(self, settings: Settings) -> None:
        self.timeout = settings.webhook_timeout_seconds
        self.guard = Guard(settings.webhook_allowed_networks)
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self.guard), limit=0, ttl_dns_cache=10
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, delivery: Delivery) -> tuple[Result, float]:
        """The attempt's result and how long it took (seconds). Never raises but for
        cancellation: every failure is a result, its error text for the user."""
        started = time.monotonic()
        ok, status, error, permanent = False, None, None, False
        try:
            async with asyncio.timeout(self.timeout):
                ok, status, error = await self._post(delivery)
        except TimeoutError:
            error = f"timed out after {self.timeout:g} s"
        except DestinationRefused as exc:
            error, permanent = str(exc), True
        except aiohttp.ClientConnectorError as exc:
            permanent = isinstance(exc.os_error, DestinationRefused)
            error = str(exc.os_error) if permanent else _connect_error(exc)
        except aiohttp.InvalidURL as exc:
            error, permanent = f"invalid URL: {exc}"[:ERROR_TEXT_CHARS], True
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_CHARS]
        except Exception as exc:  # anything else is still a result, never a lost attempt
            log.exception("delivery %s: unexpected error", delivery.id)
            error = f"internal error: {type(exc).__name__}"
        result = Result(delivery.id, delivery.attempt, ok, status, error, permanent,
                        delivery.deadline)  # fmt: skip
        return result, time.monotonic() - started

    async def _post(self, delivery: Delivery) -> tuple[bool, int, str | None]:
        assert self._session is not None, "open() first"
        url = URL(delivery.url)
        if url.scheme not in ("http", "https") or not url.host:
            raise aiohttp.InvalidURL(delivery.url)
        self.guard.check_literal(url.host)
        async with self._session.post(
            url,
            data=delivery.body.encode(),
            headers=headers(delivery, int(time.time())),
            allow_redirects=False,
        ) as response:
            if 200 <= response.status < 300:
                return True, response.status, None
            text = (await response.content.read(ERROR_BODY_BYTES)).decode("utf-8", "replace")
            return False, response.status, _http_error(response, text)


def _http_error(response: aiohttp.ClientResponse, text: str) -> str:
    if 300 <= response.status < 400:
        where = response.headers.get("Location", "?")[:ERROR_TEXT_CHARS]
        return f"HTTP {response.status}: redirect to {where} not followed"
    detail = " ".join(text.split())[:ERROR_TEXT_CHARS]
    return f"HTTP {response.status}: {detail}" if detail else f"HTTP {response.status}"


def _connect_error(exc: aiohttp.ClientConnectorError) -> str:
    """What a user can act on: connection refused, an unknown name, TLS."""
    if isinstance(exc.os_error, socket.gaierror):
        return f"cannot resolve {exc.host}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return f"TLS: {exc}"[:ERROR_TEXT_CHARS]
    if isinstance(exc.os_error, ConnectionRefusedError):
        return "connection refused"
    reason = exc.os_error.strerror or str(exc.os_error)
    return f"cannot connect to {exc.host}:{exc.port}: {reason}"[:ERROR_TEXT_CHARS]
