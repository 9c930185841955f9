"""rsspp: rounds of MethodRSSPP::rebalance on fixed load sequences, expectations worked by hand
from rsspp/fastclick's rsspp.cc and solver.hh (TARGET_LOAD 0.8, IMBALANCE_THRESHOLD 0.02)."""

from __future__ import annotations

from dyssect_ctrl.dataplane.base import plan_problem
from dyssect_ctrl.model import Params, Plan
from dyssect_ctrl.policy.base import working_only
from dyssect_ctrl.policy.rsspp import RssppPolicy
from tests.plan_checker import violations


def check(plan: Plan, loads: list[float], cores: int) -> None:
    assert plan_problem(plan, len(loads), cores) is None
    assert violations(plan, loads, Params(), cores, check_caps=False) == []
    assert plan.offloading == 0 and not plan.pairing and not any(plan.offload)


def test_moves_one_bucket_then_waits_a_round_then_holds() -> None:
    # Core 0 holds shards 0, 2, 4, 6 (0.3 + 0.2 + 0.1 + 0.1 = 0.7), core 1 the odd ones (0.4).
    loads = [0.3, 0.1, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1]
    policy = RssppPolicy(Params(), cores=4, shards=8)
    current = working_only(2, [s % 2 for s in range(8)])
    # Round 1: mean 0.55, imbalance -0.15 / +0.15; no scaling (spare 0.5 < 1.35, not < -0.1).
    # Only a 0.1 bucket fits under 0.15 - 0.01: shard 4 (the first of the two) moves to core 1.
    res = policy.short(loads, current)
    assert res.plan.assignment == (0, 1, 0, 1, 1, 1, 0, 1)
    assert res.plan.working == 2 and res.objective == 1.0
    check(res.plan, loads, 4)
    # Round 2: core 1 received a bucket, so it sits out; no underloaded core, nothing moves.
    res2 = policy.short(loads, res.plan)
    assert res2.plan == res.plan
    # Round 3: 0.6 / 0.5, imbalance +-0.05; no bucket of core 0 fits under 0.04: stable.
    res3 = policy.long(loads, res2.plan)
    assert res3.plan == res.plan


def test_adds_a_core_and_moves_half_the_load_to_it() -> None:
    # One core at 1.2: spare 0.8 - 1.2 = -0.4 < -0.1, a core is added (mean 0.6 over two).
    # Pass 1 moves one 0.3 bucket (square imbalance 0.18); pass 2 allows 0.3 and moves two,
    # leaving 0.6 on each core.
    loads = [0.3, 0.3, 0.3, 0.3]
    policy = RssppPolicy(Params(), cores=3, shards=4)
    res = policy.long(loads, Plan.initial(4))
    assert res.plan.working == 2
    assert res.plan.assignment == (1, 1, 0, 0)
    assert policy.last_action == "add core 1"
    check(res.plan, loads, 3)


def test_no_core_left_to_add_balances_what_it_has() -> None:
    loads = [0.6, 0.6, 0.6, 0.6]
    policy = RssppPolicy(Params(), cores=1, shards=4)
    res = policy.short(loads, Plan.initial(4))
    assert res.plan == Plan.initial(4)
    assert policy.last_action == "add core: none left"
    assert not res.feasible


def test_removes_the_least_loaded_core_and_the_last_slot_takes_its_place() -> None:
    # Cores 0.2 / 0.1 / 0.3: spare 1.8 > 1 + 0.2 + 4 * 0.05 = 1.4, remove core 1 (least
    # loaded). Its shards 1 and 4 (0.05 each) spread over the others in RSS++'s load-array
    # order (core 0, then core 2 in core 1's place): shard 1 -> core 0, shard 4 -> core 2.
    # The data plane runs slots 0..W-1, so core 2's shards (2, 5 and now 4) become slot 1.
    loads = [0.1, 0.05, 0.15, 0.1, 0.05, 0.15]
    policy = RssppPolicy(Params(), cores=3, shards=6)
    res = policy.long(loads, working_only(3, [s % 3 for s in range(6)]))
    assert policy.last_action == "remove core 1"
    assert res.plan.working == 2
    assert res.plan.assignment == (0, 0, 1, 0, 1, 1)
    check(res.plan, loads, 3)


def test_a_plan_not_applied_clears_the_moved_flags() -> None:
    loads = [0.3, 0.1, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1]
    policy = RssppPolicy(Params(), cores=4, shards=8)
    start = working_only(2, [s % 2 for s in range(8)])
    first = policy.short(loads, start)
    assert policy.moved == {1}
    # The data plane did not take it: the next round starts from `start` again, with no flag,
    # and makes the same move.
    again = policy.short(loads, start)
    assert again.plan == first.plan


def test_one_loaded_bucket_cannot_be_split() -> None:
    # Core 0 carries a single loaded shard: overloaded but not a candidate (nbuckets_nz == 1).
    loads = [0.7, 0.0, 0.0, 0.1]
    policy = RssppPolicy(Params(), cores=2, shards=4)
    current = working_only(2, [0, 0, 1, 1])
    assert policy.short(loads, current).plan == current
