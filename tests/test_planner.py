"""Planner: every plan valid, optimum proven and cross-checked, infeasible case, hysteresis."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dyssect_ctrl.bench import instance, random_current
from dyssect_ctrl.model import Params, Plan
from dyssect_ctrl.planner import Planner, available_backends, baseline, milp, plan
from tests.plan_checker import max_core_load, violations

P = Params(sigma=0.4)


def _check(res, loads, params, cores):
    errs = violations(res.plan, loads, params, cores, check_caps=res.feasible)
    assert not errs, errs


loads_st = st.lists(
    st.floats(min_value=0.0, max_value=1.2, allow_nan=False), min_size=1, max_size=24
)
params_st = st.builds(
    Params,
    sigma=st.sampled_from([0.0, 0.25, 0.4, 1.0, 2.0]),
    slo_priority_us=st.sampled_from([2.0, 10.0, 100.0]),
    slo_regular_us=st.sampled_from([5.0, 50.0]),
    max_offloading_ratio=st.sampled_from([0.0, 0.34, 0.5, 1.0]),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    loads=loads_st,
    params=params_st,
    cores=st.integers(1, 8),
    solver=st.sampled_from(["highs", "greedy"]),
    mode=st.sampled_from(["long", "both"]),
    seed=st.integers(0, 1000),
)
def test_every_plan_meets_every_constraint(loads, params, cores, solver, mode, seed):
    rng = random.Random(seed)
    s = len(loads)
    w = rng.randint(1, min(s, cores))
    cur = random_current(s, w, 0, rng)
    res = plan(loads, params, cores, cur, mode=mode, solver=solver)
    _check(res, loads, params, cores)
    if not res.feasible:
        # best-balance plan on every core it may use
        assert res.plan.working + res.plan.offloading == max(
            ww + min(ww, params.max_offloading(ww), cores - ww)
            for ww in range(1, min(s, cores) + 1)
        )


@settings(max_examples=60, deadline=None)
@given(loads=loads_st, params=params_st, seed=st.integers(0, 1000))
def test_short_keeps_w_e_and_never_beats_its_lower_bound(loads, params, seed):
    from dyssect_ctrl.planner.core import Caps
    from dyssect_ctrl.planner.short import lower_bound

    rng = random.Random(seed)
    s = len(loads)
    w = rng.randint(1, s)
    e = rng.randint(0, min(w, params.max_offloading(w)))
    cur = random_current(s, w, e, rng)
    res = plan(loads, params, w + e, cur, mode="short", solver="highs")
    _check(res, loads, params, w + e)
    assert (res.plan.working, res.plan.offloading) == (w, e)
    if res.feasible:
        assert res.plan.migrations(cur) >= lower_bound(loads, w, e, Caps.of(params), cur)
        if violations(cur, loads, params, w + e) == []:
            assert res.plan.migrations(cur) == 0  # a valid current plan is kept as it is


def test_long_matches_plain_milp_on_small_instances():
    checked = 0
    for s, m in ((8, 4), (12, 4), (8, 6), (16, 6)):
        for k in range(4):
            loads = instance(s, m, k, seed=11)
            ours = plan(loads, P, m, Plan.initial(s), mode="long", solver="highs")
            assert ours.optimal and ours.feasible
            res = milp.solve_highs(baseline.plain_long(loads, P, m), 30.0)
            assert res.status == "optimal"
            w, e = baseline.plain_long_cores(res.x, m)
            assert ours.plan.working + ours.plan.offloading == w + e, (s, m, k)
            checked += 1
    assert checked == 16


def test_short_matches_plain_milp_on_small_instances():
    for s, m in ((8, 4), (12, 6)):
        for k in range(4):
            loads = instance(s, m, k, seed=5)
            lr = plan(loads, P, m, Plan.initial(s), mode="long", solver="highs")
            cur = random_current(s, lr.plan.working, lr.plan.offloading, random.Random(k))
            ours = plan(loads, P, m, cur, mode="short", solver="highs")
            assert ours.optimal
            res = milp.solve_highs(
                baseline.plain_short(loads, P, cur.working, cur.offloading, cur), 30.0
            )
            assert res.status == "optimal"
            a, p = baseline.plain_short_decode(res.x, s, cur.working, cur.offloading)
            from dyssect_ctrl.planner.short import migrations

            assert ours.plan.migrations(cur) == migrations(a, p, cur.working, cur)


def test_bench_sized_instances_proven_and_valid():
    for s, m in ((16, 8), (64, 16), (256, 32)):
        for k in range(6):
            loads = instance(s, m, k)
            res = plan(loads, P, m, Plan.initial(s), mode="both", solver="highs")
            _check(res, loads, P, m)
            assert res.feasible and res.optimal, res.message


def test_infeasible_at_all_cores_returns_min_max_plan():
    params = Params(sigma=1.0, max_offloading_ratio=0.0)  # no offloading: plain makespan
    loads = [1.5, 0.5, 0.5, 0.5]
    res = plan(loads, params, 2, Plan.initial(4), mode="both", solver="highs")
    assert not res.feasible
    assert "infeasible" in res.message
    assert (res.plan.working, res.plan.offloading) == (2, 0)
    assert max_core_load(res.plan, loads, params) == pytest.approx(1.5, abs=1e-5)
    assert not violations(res.plan, loads, params, 2, check_caps=False)


def test_infeasible_with_offloading_balances_every_core():
    params = Params(sigma=1.0, max_offloading_ratio=0.5)
    loads = [0.5] * 12  # 6 cores of load over 3 cores: best is 2.0 on each
    res = plan(loads, params, 3, Plan.initial(12), mode="long", solver="highs")
    assert not res.feasible
    assert res.plan.working + res.plan.offloading == 3
    assert max_core_load(res.plan, loads, params) == pytest.approx(2.0, abs=1e-4)


def test_hysteresis_scale_down_after_n_epochs_scale_up_at_once():
    s, m = 16, 8
    params = Params(sigma=1.0, max_offloading_ratio=0.0)  # core counts easy to see
    pl = Planner(params, m, s, solver="highs", scale_down_hysteresis=3)
    big = Plan(4, 0, tuple(i % 4 for i in range(s)), {}, (0.0,) * s)
    low = [0.02] * s  # fits on one core
    r1 = pl.long(low, big)
    assert (r1.plan.working, r1.plan.offloading) == (4, 0)
    assert "held (1/3)" in r1.message
    r2 = pl.long(low, r1.plan)
    assert (r2.plan.working, r2.plan.offloading) == (4, 0)
    r3 = pl.long(low, r2.plan)
    assert r3.plan.working + r3.plan.offloading == 1
    assert pl.pending_scale_down == 0
    for r in (r1, r2, r3):
        _check(r, low, params, m)
    # a vote for fewer cores followed by one for the same resets the count
    pl.long(low, big)
    assert pl.pending_scale_down == 1
    high = [0.9 * 4 / s] * s
    pl.long(high, big)
    assert pl.pending_scale_down == 0
    # scale up at once
    small = Plan(1, 0, (0,) * s, {}, (0.0,) * s)
    heavy = [0.3] * s
    up = pl.long(heavy, small)
    assert up.plan.working + up.plan.offloading > 1
    _check(up, heavy, params, m)


def test_planner_short_uses_current_w_e():
    s, m = 64, 16
    loads = instance(s, m, 3)
    pl = Planner(P, m, s, solver="highs")
    lr = pl.long(loads, Plan.initial(s))
    cur = random_current(s, lr.plan.working, lr.plan.offloading, random.Random(1))
    sr = pl.short(loads, cur)
    assert (sr.plan.working, sr.plan.offloading) == (cur.working, cur.offloading)
    _check(sr, loads, P, m)


def test_available_backends_and_unknown_solver():
    b = available_backends()
    assert b[0] == "highs" and b[-1] == "greedy"
    with pytest.raises(ValueError, match="unknown solver"):
        plan([0.1], P, 2, Plan.initial(1), solver="cplex")


@pytest.mark.parametrize(
    ("loads", "cores", "current", "message"),
    [
        ([], 2, Plan.initial(0), "no shards"),
        ([0.1, float("nan")], 2, Plan.initial(2), "finite and >= 0 (shard 1"),
        ([0.1, -0.2], 2, Plan.initial(2), "finite and >= 0 (shard 1"),
        ([0.1], 0, Plan.initial(1), "cores must be >= 1"),
        ([0.1, 0.2], 2, Plan.initial(3), "current plan has 3 shards, the loads 2"),
        ([0.1, 0.2], 2, Plan(1, 0, (0, 1), {}, (0.0, 0.0)), "current plan is malformed"),
    ],
)
def test_bad_inputs_are_refused(loads, cores, current, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        plan(loads, P, cores, current)
