"""Issue 18's ratios, side by side: each API scenario and its bare handler measured back
to back, ROUNDS times over, with both servers up all along, so that what else this
shared machine is doing falls on both halves of a ratio alike. One run of each after
the other (the table above it) is at the mercy of a neighbour's burst: the bare
healthz alone moved from 23,000 to 35,500 req/s between two runs of the same code.
Each round's ratio is reported, then their median, which is what is held against the
target.

get_by_id is also set beside a handler sending the API's own SQL message with nothing
around it (ops/bench/reference.py's Contract): no target of its own, it says how much
of get_by_id's distance from the bare handler is the layer's, and how much the SQL's.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# (API scenario, its bare handler's scenario, the target: API req/s >= target x bare's;
# None: measured, not held against a target)
PAIRS: tuple[tuple[str, str, float | None], ...] = (
    ("get_by_id", "reference", 0.80),
    ("get_by_id", "reference_contract", None),
    ("healthz", "reference_healthz", 0.70),
    ("list", "reference_list", 0.80),
)
P99_LIMIT = 2.0  # the API's p99 at most this times the bare handler's


class Measured(Protocol):
    rps: float
    p99_ms: float
    worker_cpu: tuple[float, ...]


@dataclass(frozen=True)
class Pair:
    """Every round of one scenario against its bare handler."""

    scenario: str
    bare: str
    target: float | None
    ratios: tuple[float, ...]  # API req/s over the bare handler's, per round
    p99_ratios: tuple[float, ...]  # API p99 over the bare handler's, per round
    spreads: tuple[float, ...]  # busiest worker's CPU over the least busy one's, per round

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    @property
    def p99_median(self) -> float:
        return statistics.median(self.p99_ratios)

    def line(self) -> str:
        rounds = ", ".join(f"{r:.2f}" for r in self.ratios)
        p99 = ", ".join(f"{r:.1f}x" for r in self.p99_ratios)
        spread = ", ".join(f"{s:.2f}x" for s in self.spreads)
        if self.target is None:
            target = "- (the SQL's share apart)"
        else:
            met = "met" if self.median >= self.target else "NOT met"
            target = f">= {self.target:.2f} ({met})"
        return (
            f"| {self.scenario} / {self.bare} | {rounds} | **{self.median:.2f}** | "
            f"{target} | {p99}; median {self.p99_median:.1f}x"
            f" (<= {P99_LIMIT:.0f}x) | {spread} |"
        )


def side_by_side(
    ours: Callable[[str], Measured],
    bare: Callable[[str], Measured],
    rounds: int,
    say: Callable[[str], None],
) -> list[Pair]:
    """ROUNDS rounds of every pair, each round the API's run then the bare one's."""
    found: dict[str, list[tuple[float, float, float]]] = {bare: [] for _, bare, _ in PAIRS}
    for number in range(1, rounds + 1):
        for scenario, reference, _ in PAIRS:
            api, base = ours(scenario), bare(reference)
            found[reference].append(
                (api.rps / base.rps, api.p99_ms / base.p99_ms, spread(api.worker_cpu))
            )
            say(f"  round {number}: {scenario} {api.rps:,.0f} / {reference} {base.rps:,.0f}"
                f" req/s = {api.rps / base.rps:.2f}, workers"
                f" {spread(api.worker_cpu):.2f}x")  # fmt: skip
    return [
        Pair(scenario, reference, target, *map(tuple, zip(*found[reference], strict=True)))
        for scenario, reference, target in PAIRS
    ]


def spread(cpu: tuple[float, ...]) -> float:
    """How much busier the busiest worker was than the least busy (1.0: even; infinite
    when one did nothing while another worked: the worst split, never "even")."""
    if len(cpu) < 2 or max(cpu) == 0:
        return 1.0
    return max(cpu) / min(cpu) if min(cpu) > 0 else math.inf


def report(pairs: list[Pair]) -> list[str]:
    """The side-by-side table (markdown lines)."""
    if not pairs:
        return []
    rounds = len(pairs[0].ratios)
    return [
        "",
        f"Side by side ({rounds} rounds; each round the API's run, then the bare handler's,"
        " back to back; the median is held against the target):",
        "",
        "| API / bare handler | req/s ratio per round | median | target | p99 ratio"
        " per round | busiest / least busy worker |",
        "|---|---|---:|---|---|---|",
        *(pair.line() for pair in pairs),
    ]
