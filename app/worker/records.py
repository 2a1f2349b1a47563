"""What moves between the worker's parts: a claimed delivery, and the result of one
attempt at it (what ``api.finish_alert_deliveries`` records)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

# What an error text may not hold: control characters (a receiver's gzip or binary body
# has NULs, which PostgreSQL's text and jsonb refuse), lone surrogates.
UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str | None) -> str | None:
    """An error text safe to store and to show: control characters become U+FFFD."""
    return None if text is None else UNPRINTABLE.sub("\ufffd", text)


@dataclass(frozen=True)
class Delivery:
    """One claimed attempt. ``deadline`` (time.monotonic()) is when its lease runs out
    as this process reckons it, from before the claim was sent: never later than the
    database's own, so a result kept past it is not recorded (another worker may have
    claimed the delivery again by then)."""

    id: str
    attempt: int
    url: str
    secret: str | None
    body: str
    deadline: float


@dataclass(frozen=True)
class Result:
    """An attempt's outcome. ok: a 2xx. permanent: no use trying again (a refused
    destination), dead at once. error: for the user, short (the delivery's last_error)."""

    id: str
    attempt: int
    ok: bool
    status_code: int | None
    error: str | None
    permanent: bool
    deadline: float

    def as_json(self) -> dict[str, Any]:
        """The element of finish's results array (the error text made printable: one
        receiver's odd answer must not make the batch it is recorded in fail)."""
        fields = asdict(self)
        del fields["deadline"]
        fields["error"] = printable(self.error)
        return fields
