"""Planner: every plan valid, optimum proven and cross-checked, infeasible case, hysteresis."""

from __future__ import annotations

import random
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dyssect_ctrl.bench import instance, random_current
from dyssect_ctrl.model import Params, Plan
from dyssect_ctrl.planner import Planner, available_backends, baseline, milp, plan
from tests.plan_checker import max_core_load, violations

P = Params(sigma=0.4)
# limits for calls whose optimum or balance is asserted: the wall clock of a loaded machine must
# not decide them (the deadline tests below use short limits, on CPU time)
SLOW = {"long_time_limit_s": 60.0, "short_time_limit_s": 60.0}


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
            ours = plan(loads, P, m, Plan.initial(s), mode="long", solver="highs", **SLOW)
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
            lr = plan(loads, P, m, Plan.initial(s), mode="long", solver="highs", **SLOW)
            cur = random_current(s, lr.plan.working, lr.plan.offloading, random.Random(k))
            ours = plan(loads, P, m, cur, mode="short", solver="highs", **SLOW)
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
            res = plan(loads, P, m, Plan.initial(s), mode="both", solver="highs", **SLOW)
            _check(res, loads, P, m)
            assert res.feasible and res.optimal, res.message


def test_infeasible_at_all_cores_returns_min_max_plan():
    params = Params(sigma=1.0, max_offloading_ratio=0.0)  # no offloading: plain makespan
    loads = [1.5, 0.5, 0.5, 0.5]
    res = plan(loads, params, 2, Plan.initial(4), mode="both", solver="highs", **SLOW)
    assert not res.feasible
    assert "infeasible" in res.message
    assert (res.plan.working, res.plan.offloading) == (2, 0)
    assert max_core_load(res.plan, loads, params) == pytest.approx(1.5, abs=1e-5)
    assert not violations(res.plan, loads, params, 2, check_caps=False)


def test_infeasible_with_offloading_balances_every_core():
    params = Params(sigma=1.0, max_offloading_ratio=0.5)
    loads = [0.5] * 12  # 6 cores of load over 3 cores: best is 2.0 on each
    res = plan(loads, params, 3, Plan.initial(12), mode="long", solver="highs", **SLOW)
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


def test_a_planner_built_for_new_service_times_keeps_the_scale_down_votes():
    s, m = 16, 8
    params = Params(sigma=1.0, max_offloading_ratio=0.0)
    big = Plan(4, 0, tuple(i % 4 for i in range(s)), {}, (0.0,) * s)
    low = [0.02] * s  # fits on one core
    first = Planner(params, m, s, solver="highs", scale_down_hysteresis=3)
    r1 = first.long(low, big)
    assert "held (1/3)" in r1.message
    # the loop builds a new planner whenever the measured service time moves (each long epoch)
    second = Planner(params, m, s, solver="highs", scale_down_hysteresis=3)
    second.carry_over(first)
    r2 = second.long(low, r1.plan)
    assert "held (2/3)" in r2.message
    third = Planner(params, m, s, solver="highs", scale_down_hysteresis=3)
    third.carry_over(second)
    r3 = third.long(low, r2.plan)
    assert r3.plan.working + r3.plan.offloading == 1
    # without the carry-over each new planner starts counting again
    fresh = Planner(params, m, s, solver="highs", scale_down_hysteresis=3)
    assert "held (1/3)" in fresh.long(low, r2.plan).message


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


# ---------------------------------------------------------------------------------------------
# Deadlines: every stage stops at the time limit. CPU time of this thread (time.thread_time) is
# asserted, not wall time, so that a loaded machine does not fail the tests; the margins are the
# stages that run once and are not cut (model hand-over, the final r choice, the checks).


# HiGHS calls its interrupt callback between phases of the root node (presolve, root LP, cuts),
# not inside them: one such stretch took up to ~30 ms of CPU at S=256, W=7..11 (measured).
HIGHS_STRETCH = 0.035


def _hard_256():
    """S=256, M=32 short instances where the repair misses the lower bound and the exact search
    needs far more than the limits below (asserted in the tests)."""
    from dyssect_ctrl.planner import core
    from dyssect_ctrl.planner import short as short_mod

    caps = core.Caps.of(P)
    out = []
    for k in (2, 10, 12, 20, 28):
        loads = instance(256, 32, k, seed=3)
        lr = plan(
            loads, P, 32, Plan.initial(256), mode="long", solver="greedy", greedy_deadline_s=1.0
        )
        w, e = lr.plan.working, lr.plan.offloading
        cur = random_current(256, w, e, random.Random(k))
        rep = short_mod.repair(loads, w, e, caps, cur)
        lb = short_mod.lower_bound(loads, w, e, caps, cur)
        assert rep is not None and short_mod.migrations(rep[0], rep[1], w, cur) > lb
        out.append((loads, w, e, cur, lb))
    return out


def _cpu(fn):
    t = time.thread_time()
    out = fn()
    return out, time.thread_time() - t


def test_exact_search_stops_at_its_deadline():
    from dyssect_ctrl.planner import core
    from dyssect_ctrl.planner import short as short_mod

    caps = core.Caps.of(P)
    for loads, w, e, cur, lb in _hard_256():
        # hard: 50 ms is not enough to settle it
        st_, _, _ = short_mod.ExactSearch(loads, w, e, caps, cur, time.perf_counter() + 0.05).run(
            lb, 1e9
        )
        assert st_ is short_mod.Verdict.UNKNOWN
        (st_, found, k), cpu = _cpu(
            lambda loads=loads, w=w, e=e, cur=cur, lb=lb: short_mod.ExactSearch(
                loads, w, e, caps, cur, time.perf_counter() + 0.002
            ).run(lb, 1e9)
        )
        assert st_ is short_mod.Verdict.UNKNOWN and found is None and k >= lb
        assert cpu < 0.002 + 0.004, cpu


@pytest.mark.parametrize("solver", ["highs", "greedy"])
def test_short_plan_ends_within_its_time_limit(solver):
    milp.new_highs(1.0)  # the first highspy import is not the planner's time
    limit, greedy_dl = 0.02, 0.002
    # HiGHS: its root processing is one stretch without callbacks (test_highs_stops_at_...)
    # greedy: uncut stages at S=256 (bounds, a construction, r choice, checks) take 5 to 10 ms
    budget = greedy_dl + 0.010 if solver == "greedy" else limit + HIGHS_STRETCH
    for loads, w, e, cur, lb in _hard_256():
        for ld in (loads, [2.0 * v for v in loads]):  # as measured; infeasible with W, E
            res, cpu = _cpu(
                lambda ld=ld, w=w, e=e, cur=cur: plan(
                    ld,
                    P,
                    w + e,
                    cur,
                    mode="short",
                    solver=solver,
                    short_time_limit_s=limit,
                    greedy_deadline_s=greedy_dl,
                )
            )
            _check(res, ld, P, w + e)
            assert (res.plan.working, res.plan.offloading) == (w, e)
            assert cpu < budget, (solver, cpu)
            if ld is loads:
                assert res.feasible
                if solver == "greedy":  # cut by the deadline: not proven
                    assert not res.optimal and res.plan.migrations(cur) > lb
        # a planner whose short model starts from another W, E (repair from scratch)
        other = random_current(256, max(1, w - 2), 0, random.Random(w))
        pl = Planner(
            P, w + e, 256, solver=solver, short_time_limit_s=limit, greedy_deadline_s=greedy_dl
        )
        cur2 = Plan(w, e, other.assignment, cur.pairing, ())
        res, cpu = _cpu(lambda pl=pl, loads=loads, cur2=cur2: pl.short(loads, cur2))
        _check(res, loads, P, w + e)
        assert cpu < budget, (solver, cpu)


@pytest.mark.parametrize("solver", ["highs", "greedy"])
def test_long_plan_ends_within_its_time_limit(solver, monkeypatch):
    """Constructions made to miss every level below all cores: the level search, packing
    search, MILPs and the best-balance plan must all stop at the limit."""
    from dyssect_ctrl.planner import core
    from dyssect_ctrl.planner import long as long_mod

    milp.new_highs(1.0)
    real = core.construct
    monkeypatch.setattr(
        long_mod.core,
        "construct",
        lambda ld, w, e, caps: None if w + e < 32 else real(ld, w, e, caps),
    )
    limit, greedy_dl = 0.03, 0.002
    # uncut stages at S=256: bounds, a last construction or two, r choice (~2-3 ms each)
    budget = greedy_dl + 0.012 if solver == "greedy" else limit + HIGHS_STRETCH
    for k in range(4):
        loads = instance(256, 32, k, seed=3)
        for ld in (loads, [4.0 * v for v in loads]):  # the second infeasible at 32 cores
            res, cpu = _cpu(
                lambda ld=ld: plan(
                    ld,
                    P,
                    32,
                    Plan.initial(256),
                    mode="long",
                    solver=solver,
                    long_time_limit_s=limit,
                    greedy_deadline_s=greedy_dl,
                )
            )
            _check(res, ld, P, 32)
            assert cpu < budget, (solver, k, cpu)


def test_best_balance_plan_past_its_deadline_is_quick_and_valid():
    from dyssect_ctrl.planner import core

    loads = [3.0 * v for v in instance(256, 32, 1)]
    full = core.balance_plan(loads, P, 32)
    cut, cpu_cut = _cpu(lambda: core.balance_plan(loads, P, 32, deadline=time.perf_counter()))
    for p in (full, cut):
        assert not violations(p, loads, P, 32, check_caps=False)
    assert cpu_cut < 0.006
    assert max_core_load(cut, loads, P) >= max_core_load(full, loads, P) - 1e-9


def test_highs_stops_at_its_time_limit():
    """HiGHS's own time_limit is checked between phases only (2x over, measured); the interrupt
    callback stops it at the deadline. Root processing is one stretch without callbacks, hence
    the margin (without the callback: 40 to 65 ms over a 50 ms limit at this size)."""
    from dyssect_ctrl.planner import core, formulation

    milp.new_highs(1.0)
    caps = core.Caps.of(P)
    loads = instance(256, 32, 0, seed=3)
    cur = random_current(256, 7, 4, random.Random(0))
    m = formulation.build(loads, 7, 4, caps, current=cur)
    for _ in range(3):
        res, cpu = _cpu(lambda: milp.solve_highs(m.milp, 0.03))
        assert res.status in ("feasible", "nosolution")  # unsolved in 30 ms: the test means it
        assert cpu < 0.03 + HIGHS_STRETCH, cpu


# A current plan that cannot be kept (W > S, E > W): the short model plans the nearest (W, E)
# that can exist and says so; nothing loops. M = 5 cores, every (W, E) with W + E <= M, against
# every shard count from 1 to M + 2. The timeout mark turns a hang into a failure.
P_ANY_E = Params(sigma=0.4, max_offloading_ratio=1.0)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("solver", ["highs", "greedy"])
def test_plan_returns_within_its_limit_for_every_w_e_against_every_s(solver):
    milp.new_highs(1.0)
    m, limit, greedy_dl = 5, 0.01, 0.002
    budget = 2 * limit + greedy_dl + HIGHS_STRETCH + 0.01
    for s in range(1, m + 3):
        loads = [0.2 + 0.15 * (k % 3) for k in range(s)]
        for w in range(1, m + 1):
            for e in range(0, m - w + 1):
                pairing = {i: i % e for i in range(w)} if e else {}
                cur = Plan(w, e, tuple(k % w for k in range(s)), pairing, (0.0,) * s)
                kept = w <= s and e <= w
                pl = Planner(
                    P_ANY_E,
                    m,
                    s,
                    solver=solver,
                    short_time_limit_s=limit,
                    long_time_limit_s=limit,
                    greedy_deadline_s=greedy_dl,
                )
                res, cpu = _cpu(lambda pl=pl, loads=loads, cur=cur: pl.short(loads, cur))
                _check(res, loads, P_ANY_E, m)
                assert cpu < budget, (solver, s, w, e, cpu)
                assert res.plan.working <= s and res.plan.offloading <= res.plan.working
                assert ("cannot be kept" in res.message) == (not kept), res.message
                if kept:
                    assert (res.plan.working, res.plan.offloading) == (w, e)
                for mode in ("short", "both"):
                    res, cpu = _cpu(
                        lambda loads=loads, cur=cur, mode=mode: plan(
                            loads,
                            P_ANY_E,
                            m,
                            cur,
                            mode=mode,
                            solver=solver,
                            short_time_limit_s=limit,
                            long_time_limit_s=limit,
                            greedy_deadline_s=greedy_dl,
                        )
                    )
                    _check(res, loads, P_ANY_E, m)
                    assert cpu < budget, (solver, mode, s, w, e, cpu)
