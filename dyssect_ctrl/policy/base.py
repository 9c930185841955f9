"""What every policy offers the control loop, and the pieces the simple policies share."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Protocol

from dyssect_ctrl.model import Params, Plan, PlanResult, core_loads

FIT_SLACK = 1e-9


class Policy(Protocol):
    """The interface of dyssect_ctrl.planner.Planner, as the control loop uses it."""

    @property
    def backend(self) -> str: ...

    def warm_up(self) -> float: ...

    def long(self, loads: Sequence[float], current: Plan) -> PlanResult: ...

    def short(self, loads: Sequence[float], current: Plan) -> PlanResult: ...


def check_inputs(loads: Sequence[float], shards: int, current: Plan) -> list[float]:
    """Refuse loads and plans no policy can take (ValueError with one line)."""
    out = [float(v) for v in loads]
    if len(out) != shards:
        raise ValueError(f"{len(out)} shard loads for {shards} shards")
    bad = [s for s, v in enumerate(out) if not math.isfinite(v) or v < 0.0]
    if bad:
        raise ValueError(f"shard load must be finite and >= 0 (shard {bad[0]}: {out[bad[0]]})")
    if len(current.assignment) != shards:
        raise ValueError(f"current plan has {len(current.assignment)} shards, expected {shards}")
    w = current.working
    if w < 1 or any(not 0 <= a < w for a in current.assignment):
        raise ValueError(f"current plan is malformed (W={w}, assignment outside 0..W-1)")
    return out


def working_only(working: int, assignment: Sequence[int]) -> Plan:
    """A plan of working cores only: no offloading core, no pairing, nothing offloaded."""
    return Plan(working, 0, tuple(assignment), {}, tuple([0.0] * len(assignment)))


def fits(plan: Plan, loads: Sequence[float], params: Params) -> bool:
    work, offl = core_loads(plan, list(loads), params)
    return all(x <= params.rho_max_working + FIT_SLACK for x in work) and all(
        x <= params.rho_max_offloading + FIT_SLACK for x in offl
    )


def result(
    name: str, plan: Plan, loads: Sequence[float], params: Params, current: Plan, t0: float
) -> PlanResult:
    """A policy's decision in the planner's result type. `feasible` says whether every core
    stays under its load cap; the objective is the migrations the plan costs."""
    work, offl = core_loads(plan, list(loads), params)
    return PlanResult(
        plan=plan,
        solver=name,
        fallback=None,
        solve_ms=(time.perf_counter() - t0) * 1e3,
        feasible=fits(plan, loads, params),
        optimal=False,
        objective=float(plan.migrations(current)),
        max_load_working=max(work) if work else 0.0,
        max_load_offloading=max(offl) if offl else 0.0,
    )


class RoundPolicy:
    """A policy that does one round of its method every epoch, long or short (static, rsspp,
    metron): check the inputs, rebalance the shard -> working core table, build the result."""

    backend = ""

    def __init__(self, params: Params, cores: int, shards: int) -> None:
        if cores < 1 or shards < 1:
            raise ValueError(
                f"{self.backend} needs cores >= 1 and shards >= 1 (got {cores}, {shards})"
            )
        self.params = params
        self.shards = shards
        self.max_working = min(cores, shards)

    def warm_up(self) -> float:
        return 0.0

    def long(self, loads: Sequence[float], current: Plan) -> PlanResult:
        return self.decide(loads, current)

    def short(self, loads: Sequence[float], current: Plan) -> PlanResult:
        return self.decide(loads, current)

    def decide(self, loads: Sequence[float], current: Plan) -> PlanResult:
        t0 = time.perf_counter()
        values = check_inputs(loads, self.shards, current)
        working, table = self.rebalance(values, current.working, list(current.assignment))
        plan = working_only(working, table)
        return result(self.backend, plan, values, self.params, current, t0)

    def rebalance(
        self, loads: list[float], working: int, table: list[int]
    ) -> tuple[int, list[int]]:
        """One round: the new working-core count and shard -> working core table."""
        raise NotImplementedError
