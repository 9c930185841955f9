"""dyssect and dyssect-no-offload: the same models, with and without offloading cores."""

from __future__ import annotations

from dyssect_ctrl.config import parse_config
from dyssect_ctrl.dataplane.base import plan_problem
from dyssect_ctrl.model import Plan
from dyssect_ctrl.policy import make_policy
from tests.plan_checker import violations

# One shard at 1.2 cores cannot fit a working core (cap 0.9 with the default model): only
# offloading part of it keeps every core under its cap.
HOT = [1.2, *[0.05] * 7]


def config(policy: str):
    return parse_config({"policy": policy, "shards": 8, "cores": {"list": [2, 3, 4, 5]}})


def test_dyssect_offloads_the_hot_shard() -> None:
    c = config("dyssect")
    res = make_policy(c, "highs").long(HOT, Plan.initial(8))
    assert res.feasible and res.plan.offloading >= 1
    assert violations(res.plan, HOT, c.params, 4) == []
    assert plan_problem(res.plan, 8, 4) is None


def test_no_offload_never_uses_an_offloading_core() -> None:
    c = config("dyssect-no-offload")
    planner = make_policy(c, "highs")
    current = Plan.initial(8)
    for loads in ([0.1] * 8, [0.5] * 8, HOT, [0.1] * 8):
        res = planner.long(loads, current)
        assert res.plan.offloading == 0 and not any(res.plan.offload)
        assert violations(res.plan, loads, planner.params, 4, check_caps=False) == []
        assert plan_problem(res.plan, 8, 4) is None
        current = res.plan
    # The hot shard alone is over the cap: infeasible, the best balance on all cores.
    assert not planner.long(HOT, current).feasible
