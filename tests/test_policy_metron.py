"""metron: rounds of MethodMetron::rebalance on fixed loads and a fake clock, expectations worked
by hand from rsspp/fastclick's metron.cc (UNDERLOAD 0.25, OVERLOAD 0.75, MIN_MOVEMENT 3 s,
DEFLATION_FACTOR 2)."""

from __future__ import annotations

from dyssect_ctrl.dataplane.base import plan_problem
from dyssect_ctrl.model import Params, Plan
from dyssect_ctrl.policy.base import working_only
from dyssect_ctrl.policy.metron import MetronPolicy
from tests.plan_checker import violations


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_deflates_half_the_rules_to_a_new_core_then_waits() -> None:
    clock = Clock()
    policy = MetronPolicy(Params(), cores=3, shards=8, clock=clock)
    loads = [0.125] * 8  # one core at 1.0
    clock.t = 1.0
    # Within MIN_MOVEMENT of the start: no core may move yet.
    assert policy.short(loads, Plan.initial(8)).plan == Plan.initial(8)
    clock.t = 5.0
    res = policy.short(loads, Plan.initial(8))
    # Overloaded (1.0 > 0.75), a core is left: the last 4 of its 8 shards go to the new core 1.
    assert res.plan.working == 2
    assert res.plan.assignment == (0, 0, 0, 0, 1, 1, 1, 1)
    assert plan_problem(res.plan, 8, 3) is None
    assert violations(res.plan, loads, Params(), 3) == []
    # Both cores moved at t=5: left alone until t=8.
    clock.t = 6.0
    assert policy.long(loads, res.plan).plan == res.plan


def test_merges_the_two_least_loaded_underloaded_cores() -> None:
    clock = Clock()
    policy = MetronPolicy(Params(), cores=3, shards=6, clock=clock)
    # Cores 0.1 / 0.2 / 0.05; last loads 0, so the forecasts are 0.2 / 0.4 / 0.1: cores 0 and 2
    # are underloaded (core 1's forecast is not). Core 0 (the second least loaded) goes into
    # core 2, then slot 2's shards take slot 0.
    loads = [0.05, 0.1, 0.025, 0.05, 0.1, 0.025]
    clock.t = 5.0
    res = policy.long(loads, working_only(3, [s % 3 for s in range(6)]))
    assert res.plan.working == 2
    assert res.plan.assignment == (0, 1, 0, 0, 1, 0)
    assert violations(res.plan, loads, Params(), 3) == []


def test_no_core_to_deflate_to_changes_nothing() -> None:
    clock = Clock()
    policy = MetronPolicy(Params(), cores=2, shards=4, clock=clock)
    current = working_only(2, [0, 1, 0, 1])
    clock.t = 5.0
    # Both overloaded, no core left, none underloaded.
    assert policy.short([0.5, 0.5, 0.5, 0.5], current).plan == current
