"""Waiting for a condition in tests and benchmarks: bounded by the clock, never by a
count of sleeps (a busy machine is slow, not wrong)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx


def wait_until(
    check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1, what: str = "condition"
) -> Any:
    """Poll check() until it returns something truthy (an HTTP error counts as not yet);
    fail after timeout seconds, naming what was awaited and the last answer."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"{what} not met in {timeout}s (last: {last!r})")
