"""RSS++'s two bucket problems, on inputs worked by hand from solver.hh."""

from __future__ import annotations

import pytest

from dyssect_ctrl.policy.rsspp_solver import _greedy_pass, solve_target, spread


def test_spread_takes_the_lightest_bucket_first_and_ignores_existing_load() -> None:
    # 0.1 -> core 0 (both empty, lower id), 0.2 -> core 1, 0.3 -> core 0 (0.1 < 0.2).
    assert spread([0.3, 0.1, 0.2], 2) == [0, 0, 1]


def test_spread_needs_a_core() -> None:
    with pytest.raises(ValueError):
        spread([0.1], 0)


def test_first_pass_keeps_buckets_that_would_overshoot() -> None:
    # allowances -0.01: a bucket moves only if it is below the room minus 0.01.
    run = _greedy_pass([0.3, 0.2, 0.1], [0, 0, 0], [0.3], [0.3], -0.01, -0.01)
    assert run.transfer == [-1, 0, -1]
    assert run.imbalance_over == pytest.approx(0.1)
    assert run.imbalance_under == pytest.approx(0.1)
    assert run.square_imbalance == pytest.approx(0.02)


def test_allowance_search_finds_the_single_bucket_that_fills_the_gap() -> None:
    # Pass 1 moves 0.2 and leaves 0.1 on each side (square imbalance 0.02 >= 0.01); pass 2
    # allows 0.1 either way, moves the 0.3 bucket and leaves nothing: that pass's answer stands.
    assert solve_target([0.3, 0.2, 0.1], [0, 0, 0], [0.3], [0.3]) == [0, -1, -1]


def test_biggest_bucket_of_the_most_overloaded_core_goes_to_the_core_with_most_room() -> None:
    # Core A sheds 0.4 (buckets 0.25, 0.15), core B 0.1 (0.1, 0.05); rooms 0.3 and 0.2.
    # A's 0.25 -> room 0.3 (left 0.05, done); A (0.15 left) 0.15 -> room 0.2 (0.05 left, done);
    # no room left: B keeps its buckets. Square imbalance 2*0.05^2 + 0.1^2 = 0.015 >= 0.01, so
    # the search goes on; later passes allow more and still move A's two buckets only.
    transfer = solve_target([0.25, 0.15, 0.1, 0.05], [0, 0, 1, 1], [0.3, 0.2], [0.4, 0.1])
    assert transfer[:2] == [0, 1]
