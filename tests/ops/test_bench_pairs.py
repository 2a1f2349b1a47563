"""make bench's side-by-side ratios (ops/bench/pairs.py): each round pairs the API's run
with the bare handler's that followed it, and the median is what meets the target."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ops.bench.pairs import PAIRS, side_by_side, spread
from ops.bench.pairs import report as pairs_report


@dataclass(frozen=True)
class Measured:
    rps: float
    p99_ms: float
    worker_cpu: tuple[float, ...] = (1.0, 1.0)


def test_each_round_is_one_api_run_then_its_bare_run_and_the_median_is_held():
    order: list[str] = []
    # per round: get_by_id, get_by_id (beside the contract handler), healthz, list
    rounds = ((700.0, 950.0, 900.0, 100.0), (850.0, 900.0, 800.0, 600.0),
              (820.0, 880.0, 750.0, 790.0))  # fmt: skip
    api_rps = iter([rps for one in rounds for rps in one])

    def ours(name: str) -> Measured:
        order.append(name)
        return Measured(next(api_rps), 20.0, (3.0, 2.0))

    def bare(name: str) -> Measured:
        order.append(name)
        return Measured(1000.0, 10.0)

    pairs = side_by_side(ours, bare, 3, lambda line: None)

    expected = [name for _ in range(3) for pair in PAIRS for name in pair[:2]]
    assert order == expected  # API then bare, pair by pair, round by round
    get_by_id, layer, healthz, _ = pairs
    assert get_by_id.ratios == (0.7, 0.85, 0.82)
    assert get_by_id.median == 0.82  # a round's outlier does not decide
    assert healthz.ratios == (0.9, 0.8, 0.75) and healthz.median == 0.8
    assert get_by_id.p99_median == 2.0 and get_by_id.spreads == (1.5, 1.5, 1.5)
    lines = pairs_report(pairs)
    assert any("get_by_id / reference | 0.70, 0.85, 0.82 | **0.82** | >= 0.80 (met)" in x
               for x in lines)  # fmt: skip
    assert any("list / reference_list" in x and "(NOT met)" in x for x in lines)
    assert layer.ratios == (0.95, 0.9, 0.88)  # its own rounds, not get_by_id's
    assert any("get_by_id / reference_contract" in x and "| - (" in x for x in lines)


def test_spread_of_one_worker_is_even():
    assert spread((2.0,)) == 1.0
    assert spread((1.2, 1.0)) == 1.2


def test_a_worker_that_did_nothing_beside_a_busy_one_is_the_worst_spread():
    assert spread((3.9, 0.0)) == math.inf
    assert spread((0.0, 0.0)) == 1.0  # nobody worked: nothing uneven
