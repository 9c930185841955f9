"""Long model: the fewest working + offloading cores, proven by bounds where possible.

For each (W, E) allowed by the structure, cheap necessary conditions (core.Bounds: the
fractional capacity W*Cw + E*B, the per-shard limits, Martello-Toth L2 when E = 0) rule pairs
out. Levels K = W + E are tried from the smallest any pair could reach: a constructive packing
that meets a level's bound proves that level optimal without branching. Only when no
construction fits a level is a feasibility MILP for each of its pairs solved (formulation.py,
symmetry broken); an infeasible MILP proves the level empty, a time-out leaves it unproven.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from dyssect_ctrl.model import Params, Plan
from dyssect_ctrl.planner import core, formulation, milp

# longest exact packing search per group split before its MILP (seconds)
SEARCH_S = 0.1


@dataclass
class LongOutcome:
    plan: Plan
    feasible: bool
    optimal: bool
    fallback: str | None
    message: str


def solve_long(
    loads: Sequence[float],
    params: Params,
    cores: int,
    *,
    backend: str,
    time_limit_s: float,
    greedy_deadline_s: float,
) -> LongOutcome:
    t0 = time.perf_counter()
    n = len(loads)
    caps = core.Caps.of(params)
    bounds = core.Bounds(loads, caps)
    pairs = [p for p in core.valid_pairs(params, cores, n) if bounds.possible(*p)]
    levels: dict[int, list[tuple[int, int]]] = {}
    for w, e in pairs:
        levels.setdefault(w + e, []).append((w, e))
    proven = True
    fallback: str | None = None
    notes: list[str] = []
    use_milp = backend != "greedy"
    late = False
    last_tries = 0
    # hard deadline for everything, the constructions and the best-balance plan included
    limit = greedy_deadline_s if backend == "greedy" else time_limit_s
    end = t0 + limit
    for k in sorted(levels):
        for w, e in levels[k]:
            if not late and time.perf_counter() > end:
                # past the deadline: one last try with the most cores, then give up
                late = True
                proven = False
                what = "greedy deadline" if backend == "greedy" else f"{backend}: long time limit"
                notes.append(f"{what} {limit * 1e3:g} ms reached")
            if late and (k != max(levels) or last_tries >= 2):
                break
            last_tries += late
            plan = core.construct(loads, w, e, caps)
            if plan is not None:
                return LongOutcome(plan, True, proven, fallback, "; ".join(notes))
        if not use_milp or late:
            proven = False
            continue
        for w, e in levels[k]:
            left = time_limit_s - (time.perf_counter() - t0)
            if left <= 0:
                proven = False
                fallback = f"{backend}: long time limit {time_limit_s} s used up at W+E={k}"
                use_milp = False
                break
            try:
                status, found, detail = _pair_milp(loads, w, e, caps, backend, t0 + time_limit_s)
            except milp.BackendError as exc:
                proven = False
                fallback = str(exc)
                use_milp = False
                break
            if status == "found" and found is not None:
                return LongOutcome(found, True, proven, fallback, "; ".join(notes))
            if status != "infeasible":
                proven = False
                notes.append(f"{backend}: no answer at W={w},E={e} ({detail})")
    plan = core.balance_plan(loads, params, cores, deadline=end)
    msg = f"infeasible with all {cores} cores: best-balance plan on all cores"
    if notes:
        msg += "; " + "; ".join(notes)
    # infeasibility is proven when every level was ruled out by bounds or MILP
    return LongOutcome(plan, False, proven, fallback, msg)


def _pair_milp(
    loads: Sequence[float], w: int, e: int, caps: core.Caps, backend: str, deadline: float
) -> tuple[str, Plan | None, str]:
    """Is (W, E) feasible? One grouped MILP per split of W into E groups.

    Returns ("found", plan, ""), ("infeasible", None, "") when every split is proven
    infeasible, or ("unknown", None, detail) when time ran out.
    """
    classes = formulation.load_classes(loads)
    unknown = ""
    for parts in formulation.partitions(w, e):
        left = deadline - time.perf_counter()
        if left <= 0:
            return "unknown", None, "time limit reached"
        # exact packing search first, for part of the time left; the MILP if it runs out
        try:
            found = core.pack_search(
                loads, parts, w, caps, time.perf_counter() + min(SEARCH_S, 0.3 * left)
            )
        except core.SearchTimeout:
            pass
        else:
            if found is None:
                continue  # proven: no packing with these group sizes
            pairing = {i: j for i, j in enumerate(_group_of(parts))} if e else {}
            if core.placement_ok(found, pairing, loads, w, e, caps):
                return "found", core.finish(found, pairing, loads, w, e, caps), ""
        left = deadline - time.perf_counter()
        if left <= 0:
            return "unknown", None, "time limit reached"
        model = formulation.build_grouped(loads, w, e, caps, parts, classes)
        res = milp.solve(backend, model.milp, left)
        if res.status in ("optimal", "feasible") and res.x is not None:
            a, pairing = model.decode(res.x, len(loads))
            if core.placement_ok(a, pairing, loads, w, e, caps):
                return "found", core.finish(a, pairing, loads, w, e, caps), ""
            unknown = f"plan failing the check for groups {parts}"
        elif res.status != "infeasible":
            unknown = res.detail or res.status
    if unknown:
        return "unknown", None, unknown
    return "infeasible", None, ""


def _group_of(parts: Sequence[int]) -> list[int]:
    out: list[int] = []
    for j, p in enumerate(parts):
        out.extend([j] * p)
    return out
