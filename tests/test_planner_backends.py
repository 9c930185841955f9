"""Backends: HiGHS and Gurobi agree, greedy stays feasible and close, failures fall back."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from dyssect_ctrl.bench import instance, random_current
from dyssect_ctrl.model import Params, Plan
from dyssect_ctrl.planner import core, formulation, milp, plan
from dyssect_ctrl.planner import long as long_mod
from dyssect_ctrl.planner import short as short_mod
from tests.plan_checker import violations

P = Params(sigma=0.4)
# limits for calls whose optimality is asserted: wall-clock limits of a loaded machine must not
# decide the outcome (the deadline tests in test_planner.py use short ones, on CPU time)
SLOW = {"long_time_limit_s": 60.0, "short_time_limit_s": 60.0}

needs_gurobi = pytest.mark.skipif(
    not milp.gurobi_available(), reason="gurobipy cannot solve here (not installed or no licence)"
)


def _hard_short(s: int, m: int, tries: int = 200):
    """Short instances where the greedy repair does not meet the lower bound: the exact search
    or the MILP is needed to prove the optimum."""
    caps = core.Caps.of(P)
    out = []
    for k in range(tries):
        loads = instance(s, m, k, seed=3)
        lr = plan(loads, P, m, Plan.initial(s), mode="long", solver="greedy", greedy_deadline_s=1.0)
        w, e = lr.plan.working, lr.plan.offloading
        cur = random_current(s, w, e, random.Random(k))
        rep = short_mod.repair(loads, w, e, caps, cur)
        lb = short_mod.lower_bound(loads, w, e, caps, cur)
        if rep is None or short_mod.migrations(rep[0], rep[1], w, cur) > lb:
            out.append((loads, w, e, cur))
    return out


@pytest.fixture
def no_search(monkeypatch):
    """Make the exact search give up at once, so that the MILP backend has to run."""
    monkeypatch.setattr(
        short_mod.ExactSearch,
        "run",
        lambda self, lb, ub: short_mod.SearchResult(short_mod.Verdict.UNKNOWN, None, lb),
    )


def test_exact_search_matches_the_milp_optimum():
    caps = core.Caps.of(P)
    cases = _hard_short(16, 8) + _hard_short(64, 16, tries=60)
    assert len(cases) >= 3
    for loads, w, e, cur in cases:
        lb = short_mod.lower_bound(loads, w, e, caps, cur)
        status, found, k = short_mod.ExactSearch(loads, w, e, caps, cur, 1e18).run(lb, 1e9)
        assert status is short_mod.Verdict.FOUND
        assert core.placement_ok(found[0], found[1], loads, w, e, caps)
        assert short_mod.migrations(found[0], found[1], w, cur) == k
        model = formulation.build(loads, w, e, caps, current=cur)
        res = milp.solve_highs(model.milp, 30.0)
        assert res.status == "optimal"
        assert round(res.objective) == k


@needs_gurobi
def test_highs_and_gurobi_same_objective_on_placement_models(no_search):
    caps = core.Caps.of(P)
    cases = _hard_short(16, 8)[:6]
    assert cases, "no instance needing the MILP found"
    for loads, w, e, cur in cases:
        model = formulation.build(loads, w, e, caps, current=cur)
        h = milp.solve_highs(model.milp, 20.0)
        g = milp.solve_gurobi(model.milp, 20.0)
        assert h.status == g.status == "optimal"
        assert h.objective == pytest.approx(g.objective, abs=1e-6)
        rh = plan(loads, P, w + e, cur, mode="short", solver="highs", **SLOW)
        rg = plan(loads, P, w + e, cur, mode="short", solver="gurobi", **SLOW)
        assert rh.optimal and rg.optimal
        assert rh.plan.migrations(cur) == rg.plan.migrations(cur)
    # long feasibility models, at the optimum and one core below it
    for k in range(6):
        loads = instance(12, 6, k, seed=9)
        lr = plan(loads, P, 6, Plan.initial(12), mode="long", solver="highs", **SLOW)
        w, e = lr.plan.working, lr.plan.offloading
        for ww, ee in ((w, e), (max(1, w - 1), 0)):
            # the pairing formulation and the grouped one (what the long model uses) agree,
            # on both solvers
            model = formulation.build(loads, ww, ee, caps, symmetry=True)
            h = milp.solve_highs(model.milp, 20.0)
            g = milp.solve_gurobi(model.milp, 20.0)
            assert h.status == g.status
            far = time.perf_counter() + 30.0
            hg = long_mod._pair_milp(loads, ww, ee, caps, "highs", far)[0]
            gg = long_mod._pair_milp(loads, ww, ee, caps, "gurobi", far)[0]
            assert hg == gg == ("found" if h.status == "optimal" else "infeasible")


@needs_gurobi
def test_highs_and_gurobi_same_plain_milp_optimum():
    from dyssect_ctrl.planner import baseline

    for k in range(4):
        loads = instance(8, 4, k, seed=2)
        m = baseline.plain_long(loads, P, 4)
        h = milp.solve_highs(m, 20.0)
        g = milp.solve_gurobi(m, 20.0)
        assert h.status == g.status == "optimal"
        assert h.objective == pytest.approx(g.objective, abs=1e-6)
        ours = plan(loads, P, 4, Plan.initial(8), mode="long", solver="gurobi", **SLOW)
        assert ours.objective == pytest.approx(h.objective, abs=1e-6)


@needs_gurobi
def test_gurobi_over_licence_falls_back_to_greedy(monkeypatch, no_search):
    cases = [c for c in _hard_short(256, 32, tries=60) if 256 * c[1] > milp.LIMITED_VARS]
    if not cases:
        pytest.skip("no 256x32 instance needs a MILP larger than the licence")
    loads, _w, _e, cur = cases[0]
    monkeypatch.setattr(milp, "_gurobi_state", {**milp._gurobi_state, "limited": True})
    res = plan(loads, P, 32, cur, mode="short", solver="gurobi")
    assert res.solver == "greedy"
    assert res.fallback and "licence" in res.fallback
    assert not violations(res.plan, loads, P, 32, check_caps=res.feasible)


def test_auto_picks_highs_when_gurobi_cannot_hold_the_model():
    from dyssect_ctrl.planner import resolve_solver

    assert resolve_solver("auto", 256, 32) == "highs"  # 8000+ variables: over any pip licence
    if milp.gurobi_available():
        assert resolve_solver("auto", 16, 8) == "gurobi"
    else:
        assert resolve_solver("auto", 16, 8) == "highs"


def test_greedy_never_infeasible_and_within_one_core():
    """Empirical bound, asserted: greedy core count <= optimum + 1 (docs/planner.md)."""
    worse = 0
    n = 0
    for s, m in ((16, 8), (64, 16), (24, 6)):
        for k in range(40):
            loads = instance(s, m, k, seed=21)
            ex = plan(loads, P, m, Plan.initial(s), mode="long", solver="highs", **SLOW)
            gr = plan(
                loads, P, m, Plan.initial(s), mode="long", solver="greedy", greedy_deadline_s=1.0
            )
            assert not violations(gr.plan, loads, P, m, check_caps=gr.feasible)
            if ex.feasible:
                assert gr.feasible
                assert gr.objective <= ex.objective + 1
                worse += gr.objective > ex.objective
            n += 1
    assert n == 120
    assert worse <= n // 10


def test_greedy_never_infeasible_on_adversarial_small_instances():
    rng = random.Random(4)
    for _ in range(150):
        s = rng.randint(1, 9)
        m = rng.randint(1, 5)
        params = Params(
            sigma=rng.choice([0.3, 0.5, 1.0, 2.0]), max_offloading_ratio=rng.choice([0.0, 0.5, 1.0])
        )
        loads = [rng.choice([0.05, 0.3, 0.45, 0.5, 0.7, 0.9, 1.1]) for _ in range(s)]
        ex = plan(loads, params, m, Plan.initial(s), mode="long", solver="highs", **SLOW)
        gr = plan(
            loads, params, m, Plan.initial(s), mode="long", solver="greedy", greedy_deadline_s=1.0
        )
        assert not violations(gr.plan, loads, params, m, check_caps=gr.feasible)
        if ex.feasible:
            assert gr.feasible, (loads, m, params)


def test_failing_backend_falls_back_to_greedy_with_reason(monkeypatch, no_search):
    cases = _hard_short(16, 8)
    assert cases
    loads, w, e, cur = cases[0]

    def boom(*_a, **_k):
        raise milp.BackendError("highs: injected failure")

    monkeypatch.setattr(milp, "solve_highs", boom)
    res = plan(loads, P, w + e, cur, mode="short", solver="highs")
    assert res.solver == "greedy"
    assert res.fallback == "highs: injected failure"
    assert res.feasible and not res.optimal
    assert not violations(res.plan, loads, P, w + e)


def test_timed_out_backend_without_incumbent_falls_back(monkeypatch, no_search):
    cases = _hard_short(16, 8)
    loads, w, e, cur = cases[0]
    monkeypatch.setattr(
        milp,
        "solve_highs",
        lambda *_a, **_k: milp.MilpResult("nosolution", None, None, 0.05, "Time limit reached"),
    )
    res = plan(loads, P, w + e, cur, mode="short", solver="highs")
    assert res.solver == "greedy"
    assert "Time limit reached" in res.fallback
    assert not violations(res.plan, loads, P, w + e)


def test_long_backend_failure_records_reason(monkeypatch):
    """Constructions made to miss the first level force the MILP; the MILP then fails."""
    loads = instance(16, 8, 1)
    ex = plan(loads, P, 8, Plan.initial(16), mode="long", solver="highs", **SLOW)
    best = ex.objective
    real = core.construct

    def weak(ld, w, e, caps):
        return None if w + e <= best else real(ld, w, e, caps)

    monkeypatch.setattr(long_mod.core, "construct", weak)

    def no_time(*_a, **_k):
        raise core.SearchTimeout

    monkeypatch.setattr(long_mod.core, "pack_search", no_time)

    def boom(*_a, **_k):
        raise milp.BackendError("highs: injected failure")

    monkeypatch.setattr(milp, "solve_highs", boom)
    res = plan(loads, P, 8, Plan.initial(16), mode="long", solver="highs")
    assert res.solver == "greedy" and res.fallback == "highs: injected failure"
    assert res.feasible and not res.optimal
    assert res.objective > best
    assert not violations(res.plan, loads, P, 8)


@pytest.mark.parametrize("search", [True, False], ids=["pack-search", "grouped-milp"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_long_proves_level_when_constructions_miss(monkeypatch, search, k):
    """Constructions made to miss every level up to the optimum: the packing search, or (when
    it is made to time out) the grouped MILP, must prove the lower levels empty and find one."""
    loads = instance(16, 8, k)
    ex = plan(loads, P, 8, Plan.initial(16), mode="long", solver="highs", **SLOW)
    real = core.construct
    monkeypatch.setattr(
        long_mod.core,
        "construct",
        lambda ld, w, e, caps: None if w + e <= ex.objective else real(ld, w, e, caps),
    )
    if not search:

        def no_time(*_a, **_k):
            raise core.SearchTimeout

        monkeypatch.setattr(long_mod.core, "pack_search", no_time)
    res = plan(loads, P, 8, Plan.initial(16), mode="long", solver="highs", **SLOW)
    assert res.optimal and res.objective == ex.objective
    assert not violations(res.plan, loads, P, 8)


def test_time_limited_incumbent_is_kept(monkeypatch, no_search):
    cases = _hard_short(16, 8)
    loads, w, e, cur = cases[0]
    real = milp.solve_highs

    def limited(m, t, start=None):
        r = real(m, t, start)
        return milp.MilpResult(
            "feasible", r.x, r.objective, r.seconds, "Time limit reached, gap 0.5"
        )

    monkeypatch.setattr(milp, "solve_highs", limited)
    res = plan(loads, P, w + e, cur, mode="short", solver="highs", **SLOW)
    assert res.solver == "highs" and res.fallback is None
    assert res.feasible and not res.optimal
    assert not violations(res.plan, loads, P, w + e)


@settings(max_examples=80, deadline=None)
@given(
    loads=st.lists(
        st.sampled_from([0.05, 0.1566732402065563, 0.3, 0.45, 0.62, 0.8, 0.95, 1.3]),
        min_size=1,
        max_size=8,
    ),
    w=st.integers(1, 4),
    e=st.integers(0, 2),
    sigma=st.sampled_from([0.0, 0.4, 1.0, 2.0]),
)
def test_pack_search_agrees_with_the_pairing_milp(loads, w, e, sigma):
    """The exact packing search (used to prove a level empty) against the MILP with pairing
    variables, on feasibility of one (W, E)."""
    e = min(e, w)
    assume(w <= len(loads))
    caps = core.Caps.of(Params(sigma=sigma))
    res = milp.solve_highs(formulation.build(loads, w, e, caps, symmetry=True).milp, 30.0)
    assert res.status in ("optimal", "infeasible")
    found = None
    for parts in formulation.partitions(w, e):
        found = core.pack_search(loads, parts, w, caps, time.perf_counter() + 30.0)
        if found is not None:
            pairing = dict(enumerate(long_mod._group_of(parts))) if e else {}
            assert core.placement_ok(found, pairing, loads, w, e, caps)
            break
    assert (found is not None) == (res.status == "optimal")


@settings(max_examples=50, deadline=None)
@given(
    loads=st.lists(
        st.sampled_from([0.05, 0.12, 0.3, 0.45, 0.62, 0.8, 1.1]), min_size=2, max_size=10
    ),
    w=st.integers(1, 4),
    e=st.integers(0, 2),
    sigma=st.sampled_from([0.4, 1.0, 2.0]),
    seed=st.integers(0, 10_000),
)
# Re-pointing a core into a group that only later moves make fit (the search used to skip it)
@example(loads=[0.12, 0.12, 0.45, 0.45, 0.45, 0.8, 1.1, 0.8, 0.3, 0.8], w=4, e=2, sigma=1.0, seed=4)
def test_exact_search_agrees_with_the_placement_milp(loads, w, e, sigma, seed):
    """The short model's exact search (iterative deepening with its prunings) against the
    placement MILP, from random current plans (optimum up to 4 migrations: the search is
    exponential in the count)."""
    w = min(w, len(loads))
    e = min(e, w)
    caps = core.Caps.of(Params(sigma=sigma))
    cur = random_current(len(loads), w, e, random.Random(seed))
    res = milp.solve_highs(formulation.build(loads, w, e, caps, current=cur).milp, 30.0)
    lb = short_mod.lower_bound(loads, w, e, caps, cur)
    far = time.perf_counter() + 60.0
    if res.status == "infeasible":
        # (solve_short searches only where the bounds allow a plan, as here)
        if core.Bounds(loads, caps).possible(w, e):
            status, _, _ = short_mod.ExactSearch(loads, w, e, caps, cur, far).run(lb, lb + 2)
            assert status is not short_mod.Verdict.FOUND, "a plan where the MILP proves none exists"
        return
    assert res.status == "optimal"
    opt = round(res.objective)
    assert lb <= opt
    assume(opt <= 4)
    status, found, k = short_mod.ExactSearch(loads, w, e, caps, cur, far).run(lb, opt + 1)
    assert status is short_mod.Verdict.FOUND and k == opt
    assert core.placement_ok(found[0], found[1], loads, w, e, caps)
    assert short_mod.migrations(found[0], found[1], w, cur) == k


def test_warm_up_runs_the_backend_once_before_any_epoch(monkeypatch):
    solved = []
    real = milp.solve_highs

    def counted(m, t, start=None):
        solved.append(m)
        return real(m, t, start)

    monkeypatch.setattr(milp, "solve_highs", counted)
    assert milp.warm_up("highs") >= 0.0
    assert len(solved) == 1 and real(solved[0], 1.0).status == "optimal"
    assert milp.warm_up("greedy") < 0.01  # nothing to load
    assert solved == solved[:1]
