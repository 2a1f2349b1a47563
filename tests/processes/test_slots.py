"""Whose turn it is to accept, from the counts the workers share (app/processes/slots.py)."""

from __future__ import annotations

import time

from app.processes.slots import SLACK, STALE, Slots


def slots_with(*counts: int) -> Slots:
    slots = Slots.create(len(counts))
    for index, count in enumerate(counts):
        slots.beat(index, count)
    return slots


def test_the_least_loaded_workers_take_the_next_connection_and_ties_may_both():
    slots = slots_with(3, 2, 2)
    assert [slots.my_turn(i, count) for i, count in enumerate((3, 2, 2))] == [False, True, True]


def test_a_worker_that_has_not_beaten_or_went_silent_is_not_waited_for():
    slots = slots_with(5, 0, 0)
    slots.reset(1)  # starting: no beat yet
    slots.shared[2 * 2 + 1] = time.monotonic() - STALE - 1  # hung or stopped beating
    assert slots.my_turn(0, 5)
    assert slots.silent_for(1) is None
    assert slots.silent_for(2) > STALE


def test_a_count_published_as_it_accepts_is_seen_at_once_and_keeps_the_beat():
    slots = slots_with(0, 0)
    beat = slots.shared[1]
    slots.count(0, 1)
    assert not slots.my_turn(0, 1) and slots.my_turn(1, 0)
    assert slots.shared[1] == beat  # only the loop's beat says the worker is alive


def test_past_a_few_dozen_a_worker_may_run_ahead_by_one_in_slack():
    slots = slots_with(3200, 0)  # worker 1 asks, against worker 0's 3,200
    ahead = 3200 + 3200 // SLACK
    assert slots.my_turn(1, ahead) and not slots.my_turn(1, ahead + 1)
    small = slots_with(31, 0)
    assert not small.my_turn(1, 32)  # below SLACK connections: exact
