"""planner.short.repair: the bump and the move inside one offloading group reach the optimum."""

from __future__ import annotations

from dyssect_ctrl.model import Params, Plan
from dyssect_ctrl.planner import plan, short
from dyssect_ctrl.planner.core import Caps
from tests.plan_checker import violations

P = Params(sigma=0.4)


def test_short_repair_bumps_a_smaller_shard_when_the_evicted_one_fits_nowhere():
    caps = Caps.of(P)
    cw = caps.working
    # core 0 is over its cap by 0.1; whichever shard leaves it (0.6 or 0.5) finds 0.16 of room
    # on core 1. Putting it there in place of the 0.39 shard, which then fits on core 0, works:
    # 2 migrations, the optimum (one migration cannot do it).
    loads = [0.6 * cw, 0.5 * cw, 0.39 * cw, 0.3 * cw, 0.15 * cw]
    cur = Plan(2, 0, (0, 0, 1, 1, 1), {}, (0.0,) * 5)
    got = short.repair(loads, 2, 0, caps, cur)
    assert got is not None
    assignment, _ = got
    assert short.migrations(assignment, {}, 2, cur) == 2
    for i in (0, 1):
        assert sum(v for v, a in zip(loads, assignment, strict=True) if a == i) <= cw + 1e-9
    res = plan(loads, P, 2, cur, mode="short", solver="highs")
    assert res.feasible and res.optimal and res.plan.migrations(cur) == 2


def test_short_repair_moves_a_shard_inside_the_one_offloading_group():
    caps = Caps.of(P)
    cw, b = caps.working, caps.offload_room
    # E = 1: every working core offloads to the same core, whose room B is exceeded by 0.05 B.
    # One shard moved to core 2 (below Cw by 0.2 B) fixes it: 1 migration, the optimum.
    loads = [0.5 * cw, 0.5 * cw + 0.6 * b, 0.6 * cw, 0.4 * cw + 0.35 * b, 0.1 * b]
    loads += [0.5 * cw, 0.5 * cw - 0.2 * b]
    cur = Plan(3, 1, (0, 0, 1, 1, 1, 2, 2), {0: 0, 1: 0, 2: 0}, (0.0,) * 7)
    got = short.repair(loads, 3, 1, caps, cur)
    assert got is not None
    assignment, pairing = got
    assert short.migrations(assignment, pairing, 3, cur) == 1
    res = plan(loads, P, 4, cur, mode="short", solver="highs")
    assert res.feasible and res.optimal and res.plan.migrations(cur) == 1
    assert not violations(res.plan, loads, P, 4)
