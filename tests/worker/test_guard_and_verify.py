"""The worker's pure parts: which addresses webhooks may reach, and verify-webhook."""

from __future__ import annotations

import ipaddress
import time

import pytest

from app.worker import verify
from app.worker.guard import DestinationRefused, Guard, GuardedResolver
from app.worker.records import Delivery
from app.worker.sender import headers

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.215.14", True),
        ("2606:4700::1", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("169.254.169.254", False),  # cloud metadata
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("::ffff:93.184.215.14", True),
        ("2002:7f00:1::", False),  # 6to4 around 127.0.0.1
        ("2002:5db8:d70e::", True),  # 6to4 around 93.184.215.14
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", False),  # Teredo, client 10.0.0.1
    ],
)
def test_only_public_addresses_are_allowed(address, allowed):
    assert Guard(()).allows(ipaddress.ip_address(address)) is allowed


def test_an_allowed_network_opens_private_addresses_and_no_others():
    guard = Guard((ipaddress.ip_network("10.0.0.0/8"),))
    assert guard.allows(ipaddress.ip_address("10.9.9.9"))
    assert not guard.allows(ipaddress.ip_address("192.168.1.1"))
    with pytest.raises(DestinationRefused, match="WEBHOOK_ALLOWED_NETWORKS"):
        guard.check_literal("[::1]")
    guard.check_literal("10.1.1.1")
    guard.check_literal("example.com")  # a name: the resolver's to check


class Answers:
    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(self, host, port=0, family=0):
        return [{"hostname": host, "host": a, "port": port, "family": family, "proto": 0,
                 "flags": 0} for a in self.addresses]  # fmt: skip


async def test_the_resolver_drops_disallowed_addresses_and_refuses_when_none_is_left():
    resolver = GuardedResolver(Guard(()))
    resolver.inner = Answers("10.0.0.5", "93.184.215.14")  # a rebinding attempt, half of it
    assert [r["host"] for r in await resolver.resolve("x.example", 443)] == ["93.184.215.14"]
    resolver.inner = Answers("127.0.0.1")
    with pytest.raises(DestinationRefused, match=r"127\.0\.0\.1 is not allowed"):
        await resolver.resolve("x.example", 443)


def signed(body: str = '{"a": 1}', secret: str | None = SECRET) -> dict[str, str]:
    delivery = Delivery("msg_1", 1, "http://x/", secret, body, deadline=0.0)
    return headers(delivery, int(time.time()))


def test_verify_accepts_what_the_sender_signs_and_refuses_changes():
    sent = signed()
    assert verify.verify(SECRET, sent, b'{"a": 1}', 300) == "msg_1"
    with pytest.raises(verify.Invalid, match="no matching signature"):
        verify.verify(SECRET, sent, b'{"a": 2}', 300)
    with pytest.raises(verify.Invalid, match="no matching signature"):
        verify.verify(SECRET, {**sent, "webhook-id": "msg_2"}, b'{"a": 1}', 300)
    with pytest.raises(verify.Invalid, match="timestamp too old"):
        verify.verify(SECRET, sent, b'{"a": 1}', 300, now=time.time() + 600)
    assert verify.verify(SECRET, sent, b'{"a": 1}', 0, now=time.time() + 600) == "msg_1"


def test_an_unsigned_delivery_has_no_signature_and_does_not_verify():
    sent = signed(secret=None)
    assert "webhook-signature" not in sent and sent["webhook-id"] == "msg_1"
    with pytest.raises(verify.Invalid, match="missing header"):
        verify.verify(SECRET, sent, b'{"a": 1}', 300)


def test_header_lines_read_a_captured_request():
    lines = ["POST /hook HTTP/1.1", "Host: x", "webhook-id: msg_1", "Webhook-Timestamp:  17 ",
             "", "body: not a header"]  # fmt: skip
    assert verify.header_lines(lines) == {"host": "x", "webhook-id": "msg_1",
                                          "webhook-timestamp": "17"}  # fmt: skip


def test_an_error_text_is_stored_printable():
    from app.worker.records import Result

    result = Result("d", 1, False, 500, "HTTP 500: \x1f\x8b\x08\x00 gzip", False, 0.0)
    assert result.as_json()["error"] == "HTTP 500: \ufffd\ufffd\ufffd\ufffd gzip"
