"""The short model's solve: the repair, then the exact search, then the placement MILP.

Cost = shards moved + working cores whose offloading core changed (Plan.migrations) + 1e-3 *
sum |r - r_old|. Migrations are integers and the r term is below 1 for S < 1000, so the model is
solved lexicographically: first the placement with the fewest migrations, then r (exact greedy,
core.choose_offload). The lower bound (bounds) and the repair usually meet, proving the optimum
with no search; otherwise the exact search runs for a share of the time limit, then the
placement MILP, warm-started from the repair.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from dyssect_ctrl.model import Params, Plan
from dyssect_ctrl.planner import core, formulation, milp
from dyssect_ctrl.planner.core import Caps
from dyssect_ctrl.planner.short.bounds import lower_bound
from dyssect_ctrl.planner.short.repair import Placement, migrations, repair
from dyssect_ctrl.planner.short.search import ExactSearch, Verdict

R_WEIGHT = 1e-3
# longest exact search before the MILP (seconds)
SEARCH_S = 0.025
# Least time left for the placement MILP to be worth starting (seconds): building it and
# handing it to HiGHS alone took 2 to 5 ms at S=64, W=10, and HiGHS's root processing runs
# without a callback for several more. With less left, the repair (or the search's plan) is
# returned unproven instead of overrunning the limit.
MILP_MIN_S = 0.015


@dataclass
class ShortOutcome:
    plan: Plan
    feasible: bool
    optimal: bool
    fallback: str | None
    message: str
    lower_bound: int


def objective(plan: Plan, cur: Plan) -> float:
    old = cur.offload if len(cur.offload) == len(plan.offload) else (0.0,) * len(plan.offload)
    dr = sum(abs(a - b) for a, b in zip(plan.offload, old, strict=True))
    return plan.migrations(cur) + R_WEIGHT * dr


def solve_short(
    loads: Sequence[float],
    params: Params,
    w: int,
    e: int,
    cur: Plan,
    *,
    backend: str,
    time_limit_s: float,
    greedy_deadline_s: float = 0.005,
) -> ShortOutcome:
    """greedy: everything within greedy_deadline_s; other backends: repair, then the search for up
    to half the time limit (at most SEARCH_S), then the MILP for what is left of the limit.

    The deadline is hard (time.perf_counter, checked inside every search and repair loop): when
    it passes, the best valid plan found so far is returned (the repair, else a construction,
    else the best-balance plan, itself cut at the deadline), with optimal=False.
    """
    t0 = time.perf_counter()
    end = t0 + (greedy_deadline_s if backend == "greedy" else time_limit_s)
    n = len(loads)
    caps = Caps.of(params)
    if len(cur.assignment) != n:
        cur = Plan.initial(n)
    old_r = cur.offload if len(cur.offload) == n else None
    if not core.Bounds(loads, caps).possible(w, e):
        plan = core.balance_plan(loads, params, w + e, pairs=[(w, e)], deadline=end)
        return ShortOutcome(
            plan,
            False,
            True,
            None,
            f"no plan meets the caps with W={w}, E={e}: best-balance plan",
            0,
        )
    lb = lower_bound(loads, w, e, caps, cur)
    rep = repair(loads, w, e, caps, cur, end)
    best: Placement | None = rep
    best_cost = migrations(rep[0], rep[1], w, cur) if rep else math.inf
    if best is not None and best_cost <= lb:
        plan = core.finish(best[0], best[1], loads, w, e, caps, old_r)
        return ShortOutcome(plan, True, True, None, "", lb)
    fallback = None
    msg = ""
    optimal = False
    # exact search over few migrations, for a share of the time limit
    search_end = end if backend == "greedy" else min(end, t0 + min(0.5 * time_limit_s, SEARCH_S))
    verdict, found, k = ExactSearch(loads, w, e, caps, cur, search_end).run(lb, best_cost)
    if verdict is Verdict.FOUND and found is not None:
        plan = core.finish(found[0], found[1], loads, w, e, caps, old_r)
        return ShortOutcome(plan, True, True, None, "", lb)
    if verdict is Verdict.NONE and best is not None:
        plan = core.finish(best[0], best[1], loads, w, e, caps, old_r)
        return ShortOutcome(plan, True, True, None, "", lb)
    lb = max(lb, k)
    if backend != "greedy" and end - time.perf_counter() >= MILP_MIN_S:
        model = formulation.build(loads, w, e, caps, current=cur)
        start = None
        if best is not None:
            start = model.encode(Plan(w, e, tuple(best[0]), best[1], ()), loads, caps)
        try:
            left = max(1e-3, end - time.perf_counter())
            res = milp.solve(backend, model.milp, left, start)
        except milp.BackendError as exc:
            res = None
            fallback = str(exc)
        if res is not None:
            if res.status in ("optimal", "feasible") and res.x is not None:
                a, pairing = model.decode(res.x)
                if core.placement_ok(a, pairing, loads, w, e, caps):
                    cost = migrations(a, pairing, w, cur)
                    if cost <= best_cost:
                        best, best_cost = (a, pairing), cost
                    optimal = res.status == "optimal" and cost <= best_cost
                    if not optimal:
                        msg = f"{backend}: {res.detail}; migrations {best_cost}, lower bound {lb}"
            elif res.status == "infeasible":
                optimal = True  # proven: no placement with these W, E
                best = None
            else:
                fallback = f"{backend}: {res.detail or res.status} after {time_limit_s} s"
    elif backend != "greedy":
        left_ms = max(0.0, end - time.perf_counter()) * 1e3
        msg = (
            f"{backend}: {left_ms:.1f} ms left of the {time_limit_s} s limit, too little to "
            f"start the MILP; migrations {best_cost}, lower bound {lb}"
        )
        if best is None:
            fallback = msg
    if best is None:
        if backend == "greedy" or fallback is not None:
            plan_c = core.construct(loads, w, e, caps)
            if plan_c is not None:
                best = (list(plan_c.assignment), dict(plan_c.pairing))
        if best is None:
            plan = core.balance_plan(loads, params, w + e, pairs=[(w, e)], deadline=end)
            return ShortOutcome(
                plan,
                False,
                optimal,
                fallback,
                f"no plan found that meets the caps with W={w}, E={e}",
                lb,
            )
    plan = core.finish(best[0], best[1], loads, w, e, caps, old_r)
    return ShortOutcome(plan, True, optimal, fallback, msg, lb)
