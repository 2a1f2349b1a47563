"""Where webhooks may go: public addresses only, unless an operator allows a network
(WEBHOOK_ALLOWED_NETWORKS). A user's channel URL must not reach the database, the
cluster's services or a cloud's metadata endpoint (SSRF).

Checked where the address is final: in the connector's resolver, after DNS, so a name
that resolves to a public address when checked and a private one when connecting (DNS
rebinding) cannot slip through; the connection is made to the checked address. aiohttp
calls no resolver for an IP literal host, so those are checked before the request.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from ..http.clients import Network, within

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationRefused(OSError):
    """Every address of the destination is one webhooks may not reach: a permanent
    failure (the delivery is dead at once). An OSError so that aiohttp's connector
    passes it on (wrapped in ClientConnectorError, as ``os_error``)."""


class Guard:
    """The rule: an address is allowed when it is public, or inside an allowed network."""

    def __init__(self, allowed_networks: tuple[Network, ...]) -> None:
        self.allowed_networks = allowed_networks

    def allows(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address):
            # An IPv4 address inside IPv6 is judged as itself: ::ffff:127.0.0.1 (mapped),
            # 2002:7f00:1:: (6to4), Teredo's client.
            inner = address.ipv4_mapped or address.sixtofour or (address.teredo or (None,))[-1]
            if inner is not None and not within(address, self.allowed_networks):
                return self.allows(inner)
        if within(address, self.allowed_networks):
            return True
        return address.is_global and not (
            address.is_multicast
            or address.is_reserved
            or address.is_unspecified
            or address.is_loopback
            or address.is_link_local
            or address.is_private
        )

    def refusal(self, host: str, addresses: list[str]) -> DestinationRefused:
        shown = ", ".join(addresses[:3]) if addresses else host
        return DestinationRefused(
            f"destination {shown} is not allowed (private/loopback/link-local; an operator"
            " may allow it with WEBHOOK_ALLOWED_NETWORKS)"
        )

    def check_literal(self, host: str) -> None:
        """Raise DestinationRefused for an IP literal host that is not allowed; a name
        passes (the resolver checks what it resolves to)."""
        try:
            address = ipaddress.ip_address(host.strip("[]").split("%")[0])
        except ValueError:
            return
        if not self.allows(address):
            raise self.refusal(host, [str(address)])


class GuardedResolver(AbstractResolver):
    """The default (threaded getaddrinfo) resolver, keeping only allowed addresses."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        kept = [one for one in found if self._allowed(one)]
        if not kept:
            raise self.guard.refusal(host, [one["host"] for one in found])
        return kept

    def _allowed(self, result: Any) -> bool:
        try:
            address = ipaddress.ip_address(result["host"].split("%")[0])
        except ValueError:
            return False
        return self.guard.allows(address)

    async def close(self) -> None:
        await self.inner.close()
