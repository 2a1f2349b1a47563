"""Where a request comes from: the socket peer, or what X-Forwarded-For says when, and
only when, the peer is one of TRUSTED_PROXIES.

X-Forwarded-For is read from the right: each trusted proxy appends the address it saw,
so the first hop that is not a trusted proxy is the client. A header a client wrote
itself (the leftmost hops) is never believed beyond that point. An unreadable hop
makes the client unknown, never the proxy: a proxy must not lend its own address.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from typing import Any

from falcon.asgi import Request

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=4096)
def parse_address(text: str) -> Address | None:
    """An address, IPv4-mapped IPv6 as IPv4; None for anything else (a hostname, junk).
    Remembered: the same few peers ask again and again, and parsing one cost a few
    per cent of a request's Python (issue 18)."""
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_networks(raw: str) -> tuple[Network, ...]:
    """'10.0.0.0/8, 192.168.1.7' -> networks (a bare address is a /32 or /128)."""
    return tuple(ipaddress.ip_network(part.strip()) for part in raw.split(",") if part.strip())


def within(address: Address, networks: Iterable[Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def peer(scope: dict[str, Any]) -> Address | None:
    """The socket peer from the ASGI scope (None for a Unix socket or when unknown)."""
    client = scope.get("client")
    if not client:
        return None
    client = scope["client"] = tuple(client)  # may be a one-shot iterator (Falcon's tests)
    return parse_address(str(client[0]))


def client_address(
    scope: dict[str, Any], forwarded_for: str | None, proxies: tuple[Network, ...]
) -> Address | None:
    address = peer(scope)
    if address is None or not forwarded_for or not within(address, proxies):
        return address
    for hop in reversed(forwarded_for.split(",")):
        address = parse_address(hop)
        if address is None:
            return None
        if not within(address, proxies):
            return address
    return address  # every hop a trusted proxy: the leftmost is as far as we can see


def of_request(req: Request, proxies: tuple[Network, ...]) -> Address | None:
    """client_address for this request, worked out once (the rate limit and the trusted
    networks both ask)."""
    if "client_address" not in req.context:
        forwarded_for = req.get_header("X-Forwarded-For")
        req.context.client_address = client_address(req.scope, forwarded_for, proxies)
    return req.context.client_address
