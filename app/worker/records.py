"""What moves between the worker's parts: a claimed delivery, and the result of one
attempt at it (what ``api.finish_alert_deliveries`` records)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


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
        """The element of finish's results array."""
        fields = asdict(self)
        del fields["deadline"]
        return fields
