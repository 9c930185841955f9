"""bench.run: the percentile the rows report and how a baseline solve is counted."""

from __future__ import annotations

import time

import pytest

from dyssect_ctrl.bench import run


def test_percentile_interpolates():
    assert run.pct([], 50) is None
    assert run.pct([3.0], 99) == 3.0
    assert run.pct([0.0, 10.0], 50) == pytest.approx(5.0)
    assert run.pct([float(x) for x in range(101)], 99) == pytest.approx(99.0)


def test_a_baseline_solve_is_counted_and_compared_only_when_both_are_proven() -> None:
    r = run.Row("16x8", "short", "plain MILP/highs")
    cpu0 = time.thread_time()
    r.add_baseline(cpu0, 0.002, "optimal", 3.0, (3.0, 1.0))  # agrees
    r.add_baseline(cpu0, 0.004, "optimal", 4.0, (3.0, 1.0))  # ours lower
    r.add_baseline(cpu0, 0.006, "optimal", 5.0, (3.0, 0.0))  # ours not proven: not compared
    r.add_baseline(cpu0, 2.0, "time_limit", 6.0, (3.0, 1.0))  # unproven: not compared
    r.add_baseline(cpu0, 0.001, "infeasible", None, (3.0, 1.0))
    s = r.summary()
    assert (s["optimal"], s["unproven"], s["infeasible"]) == (3, 1, 1)
    assert s["agree_with_ours"] == "1/2" and s["ours_lower"] == 1
    assert s["mean_objective"] == pytest.approx(4.5)  # the infeasible solve has none
    assert s["n"] == 5 and s["max_ms"] == pytest.approx(2000.0)
