"""static: RSS's round-robin table over every core, whatever the load."""

from __future__ import annotations

import pytest

from dyssect_ctrl.dataplane.base import plan_problem
from dyssect_ctrl.model import Params, Plan
from dyssect_ctrl.policy.static import StaticPolicy
from tests.plan_checker import violations


def test_round_robin_over_all_cores_and_never_moved() -> None:
    params = Params()
    policy = StaticPolicy(params, cores=3, shards=8)
    current = Plan.initial(8)
    for loads in ([0.01] * 8, [0.5] * 8, [0.0] * 8, [2.0, *[0.0] * 7]):
        res = policy.short(loads, current)
        assert res.plan.assignment == (0, 1, 2, 0, 1, 2, 0, 1)
        assert (res.plan.working, res.plan.offloading) == (3, 0)
        assert plan_problem(res.plan, 8, 3) is None
        assert violations(res.plan, loads, params, 3, check_caps=False) == []
        current = res.plan
    assert policy.long([0.01] * 8, current).objective == 0.0  # nothing moves once in place


def test_first_decision_moves_from_the_initial_plan() -> None:
    res = StaticPolicy(Params(), cores=3, shards=8).long([0.1] * 8, Plan.initial(8))
    # shards 1, 2, 4, 5, 7 leave core 0
    assert res.objective == 5.0
    assert res.feasible


def test_overload_is_reported_not_acted_on() -> None:
    res = StaticPolicy(Params(), cores=2, shards=4).short([0.5] * 4, Plan.initial(4))
    assert res.plan.working == 2
    assert not res.feasible  # 1.0 per core over the 0.9 cap
    assert res.max_load_working == pytest.approx(1.0)


def test_fewer_shards_than_cores() -> None:
    res = StaticPolicy(Params(), cores=4, shards=2).short([0.1, 0.1], Plan.initial(2))
    assert res.plan.working == 2 and res.plan.assignment == (0, 1)


def test_refuses_wrong_shapes() -> None:
    with pytest.raises(ValueError, match="3 shard loads for 4 shards"):
        StaticPolicy(Params(), cores=2, shards=4).short([0.1] * 3, Plan.initial(4))
