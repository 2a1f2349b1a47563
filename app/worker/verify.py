"""``emberlog-api verify-webhook``: does a captured request verify against a channel's
secret? For an operator or a user debugging their receiver: give the secret, the
request's headers (a file of ``Name: value`` lines, such as a capture's, or --header)
and its body (a file, or stdin); it prints ``valid: <webhook-id>`` or the reason.

The signature is computed by the ``standardwebhooks`` library (Webhook.sign) and compared
with each ``v1,`` signature in the header, as its Webhook.verify does. verify() itself is
not called because it fixes the timestamp tolerance at 5 minutes, and a captured request
is often older: the timestamp is checked here against --tolerance (0: not checked).
The worker checks its NOTIFIER_SECRET with the same rule when it starts.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import os
import re
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from standardwebhooks.webhooks import Webhook

from ..settings import Settings, SettingsError

HEADER_LINE = re.compile(r"^([A-Za-z0-9-]+):[ \t]*(.*?)\s*$")


class Invalid(Exception):
    """Why the request does not verify (printed as is)."""


def header_lines(lines: Iterable[str]) -> dict[str, str]:
    """``Name: value`` lines (a request line, continuation or junk skipped; stops at the
    blank line that ends a captured request's headers), names lowercased."""
    found: dict[str, str] = {}
    started = False
    for line in lines:
        if not line.strip():
            if started:
                break
            continue
        match = HEADER_LINE.match(line)
        if match:
            started = True
            found[match.group(1).lower()] = match.group(2)
    return found


def check_secret(secret: str) -> None:
    """Invalid unless the secret is one standardwebhooks can sign with."""
    try:
        Webhook(secret)
    except Exception as exc:  # binascii.Error, EmptyWebhookSecretError
        raise Invalid(f"the secret is not whsec_<base64> ({exc})") from None


def check_notifier_secret(settings: Settings) -> None:
    """NOTIFIER_SECRET, when set, must be one the worker can sign with: refused at start
    rather than on every notifier delivery."""
    if not settings.notifier_secret:
        return
    try:
        check_secret(settings.notifier_secret)
    except Invalid as exc:
        raise SettingsError(f"NOTIFIER_SECRET: {exc}") from None


def verify(
    secret: str, headers: dict[str, str], body: bytes, tolerance: float, now: float | None = None
) -> str:
    """The request's webhook-id when its signature is the secret's; Invalid otherwise."""
    headers = {k.lower(): v for k, v in headers.items()}
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    missing = [n for n, v in (("webhook-id", msg_id), ("webhook-timestamp", stamp),
                              ("webhook-signature", signatures)) if not v]  # fmt: skip
    if missing:
        raise Invalid(f"missing header(s): {', '.join(missing)}")
    assert msg_id and stamp and signatures
    try:
        timestamp = int(stamp)
    except ValueError:
        raise Invalid(f"webhook-timestamp is not unix seconds: {stamp!r}") from None
    skew = (time.time() if now is None else now) - timestamp
    if tolerance and abs(skew) > tolerance:
        when = "old" if skew > 0 else "new"
        raise Invalid(f"timestamp too {when}: {abs(skew):.0f} s off, tolerance {tolerance:g} s")
    try:
        text = body.decode("utf-8")
        expected = Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, tz=UTC), text)
    except UnicodeDecodeError:
        raise Invalid("the body is not UTF-8") from None
    except Exception as exc:  # binascii.Error, EmptyWebhookSecretError...
        raise Invalid(f"the secret is not whsec_<base64> ({exc})") from None
    want = base64.b64decode(expected.split(",", 1)[1])
    for one in signatures.split():
        version, _, value = one.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except binascii.Error:
            continue
        if hmac.compare_digest(want, given):
            return msg_id
    raise Invalid("no matching signature: wrong secret, or the body or headers were changed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments (the secret never among them: ps would show it)."""
    parser.add_argument(
        "--secret-file", metavar="F",
        help="a file holding the channel's secret, whsec_... (default: the WEBHOOK_SECRET"
        " environment variable; never on the command line, where ps would show it)",
    )  # fmt: skip
    parser.add_argument("--headers-file", metavar="F", help="the request's headers, Name: value")
    parser.add_argument(
        "--header", action="append", default=[], metavar="'NAME: VALUE'", help="one header"
    )
    parser.add_argument("--body-file", metavar="F", help="the request's body (default: stdin)")
    parser.add_argument(
        "--tolerance", type=float, default=300.0, metavar="SECONDS",
        help="how far webhook-timestamp may be from now (default 300; 0: not checked)",
    )  # fmt: skip


def command(args: argparse.Namespace) -> int:
    """Read the capture and the secret, print the verdict: exit 0 (valid), 1 (invalid),
    2 (no secret given)."""
    lines = list(args.header)
    if args.headers_file:
        lines += Path(args.headers_file).read_text().splitlines()
    body = Path(args.body_file).read_bytes() if args.body_file else sys.stdin.buffer.read()
    secret = (
        Path(args.secret_file).read_text().strip()
        if args.secret_file
        else os.environ.get("WEBHOOK_SECRET", "")
    )
    if not secret:
        print("give the secret: --secret-file F, or WEBHOOK_SECRET in the environment")
        return 2
    try:
        msg_id = verify(secret, header_lines(lines), body, args.tolerance)
    except Invalid as exc:
        print(f"invalid: {exc}")
        return 1
    print(f"valid: {msg_id}")
    return 0
