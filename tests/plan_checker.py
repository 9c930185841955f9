"""An independent checker of plans: recomputes every load from the plan and the Params formulas.

Written from the models in docs/planner.md and the planner's API contract, without using the
planner's code (nor dyssect_ctrl.model.core_loads), so that a shared mistake cannot hide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

TOL = 1e-7


def caps(params) -> tuple[float, float]:
    """rho_max for working and offloading cores, from the Kingman formula written out again."""
    kp = (params.ca_priority**2 + params.cs_priority**2) / 2.0
    kr = (params.ca_regular**2 + params.cs_regular**2) / 2.0
    cw = min(
        params.rho_cap, params.slo_priority_us / (params.slo_priority_us + kp * params.working_us)
    )
    co = min(
        params.rho_cap,
        params.slo_regular_us / (params.slo_regular_us + kr * params.offloading_us),
    )
    return cw, co


def violations(
    plan, loads: Sequence[float], params, cores: int, *, check_caps: bool = True
) -> list[str]:
    """Every broken rule of `plan`, as readable strings (empty list: the plan is valid)."""
    out: list[str] = []
    w, e = plan.working, plan.offloading
    n = len(loads)
    if w < 1:
        out.append(f"W={w} < 1")
    if e < 0 or w + e > cores:
        out.append(f"W+E={w + e} outside [1, {cores}]")
    if e > math.ceil(w * params.max_offloading_ratio - 1e-9):
        out.append(f"E={e} above the offloading ratio for W={w}")
    if len(plan.assignment) != n or len(plan.offload) != n:
        out.append("assignment/offload length differs from the shard count")
        return out
    held = [0] * max(w, 0)
    for s, i in enumerate(plan.assignment):
        if not (0 <= i < w):
            out.append(f"shard {s} on slot {i} outside 0..{w - 1}")
            return out
        held[i] += 1
    for i, c in enumerate(held):
        if c == 0:
            out.append(f"working slot {i} holds no shard")
    for s, r in enumerate(plan.offload):
        if not (-TOL <= r <= 1 + TOL):
            out.append(f"r[{s}]={r} outside [0, 1]")
    if e == 0:
        if plan.pairing:
            out.append("pairing not empty with E=0")
        if any(abs(r) > TOL for r in plan.offload):
            out.append("r > 0 with E=0")
    else:
        if set(plan.pairing) != set(range(w)):
            out.append(f"pairing keys {sorted(plan.pairing)} != working slots 0..{w - 1}")
        for i, j in plan.pairing.items():
            if not (0 <= j < e):
                out.append(f"working slot {i} paired with {j} outside 0..{e - 1}")
        for j in range(e):
            if j not in plan.pairing.values():
                out.append(f"offloading slot {j} serves no working slot")
    if out or not check_caps:
        return out
    cw, co = caps(params)
    local = [0.0] * w
    shed = [0.0] * w
    for s in range(n):
        i = plan.assignment[s]
        local[i] += loads[s] * (1.0 - plan.offload[s])
        shed[i] += loads[s] * plan.offload[s]
    for i in range(w):
        if local[i] > cw + TOL:
            out.append(f"working slot {i} load {local[i]:.6f} > {cw:.6f}")
    for j in range(e):
        lj = params.sigma * sum(shed[i] for i in range(w) if plan.pairing[i] == j)
        if lj > co + TOL:
            out.append(f"offloading slot {j} load {lj:.6f} > {co:.6f}")
    return out


def max_core_load(plan, loads: Sequence[float], params) -> float:
    w, e = plan.working, plan.offloading
    local = [0.0] * w
    shed = [0.0] * w
    for s, v in enumerate(loads):
        local[plan.assignment[s]] += v * (1.0 - plan.offload[s])
        shed[plan.assignment[s]] += v * plan.offload[s]
    off = [
        params.sigma * sum(shed[i] for i in range(w) if plan.pairing.get(i) == j) for j in range(e)
    ]
    return max(local + off)
