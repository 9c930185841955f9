"""Planner: how many working/offloading cores, and where every shard goes.

API used by the CLI and the control loop:
- plan(loads, params, cores, current, mode=..., solver=...) -> PlanResult (stateless);
- Planner: the same per epoch with scale-down hysteresis;
- available_backends().
See docs/planner.md for the models and how optimality is proven.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Literal

from dyssect_ctrl.model import Params, Plan, PlanResult
from dyssect_ctrl.planner import core, milp
from dyssect_ctrl.planner.long import LongOutcome, solve_long
from dyssect_ctrl.planner.short import ShortOutcome, objective, solve_short

__all__ = ["SOLVERS", "Planner", "available_backends", "plan", "resolve_solver"]

SOLVERS = ("auto", "highs", "gurobi", "greedy")


def available_backends() -> list[str]:
    out = ["highs"]
    if milp.gurobi_available():
        out.append("gurobi")
    out.append("greedy")
    return out


def resolve_solver(solver: str, shards: int, cores: int) -> str:
    """`auto`: gurobi when its licence holds the largest placement model, else highs."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    if solver != "auto":
        return solver
    n_vars = shards * cores + cores * cores
    n_rows = shards + 5 * cores + cores * cores
    return "gurobi" if milp.gurobi_fits(n_vars, n_rows) else "highs"


def _validate(loads: Sequence[float], cores: int, current: Plan) -> list[float]:
    """Refuse inputs no model can take (ValueError, which the CLI reports as one line)."""
    out = [float(v) for v in loads]
    if not out:
        raise ValueError("no shards")
    bad = [s for s, v in enumerate(out) if not math.isfinite(v) or v < 0.0]
    if bad:
        raise ValueError(f"shard load must be finite and >= 0 (shard {bad[0]}: {out[bad[0]]})")
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    if len(current.assignment) != len(out):
        raise ValueError(f"current plan has {len(current.assignment)} shards, the loads {len(out)}")
    w, e = current.working, current.offloading
    if w < 1 or e < 0 or any(not 0 <= a < w for a in current.assignment):
        raise ValueError(f"current plan is malformed (W={w}, E={e}, assignment outside 0..W-1)")
    return out


def _kept(current: Plan, shards: int, cores: int) -> tuple[int, int, str]:
    """The (W, E) a short solve keeps: the current one, or the nearest one a plan can have
    (W <= S, E <= W, W + E <= M) with a message saying so."""
    w, e = current.working, current.offloading
    kw, ke = core.keepable_pair(w, e, shards, cores)
    if (kw, ke) == (w, e):
        return w, e, ""
    note = (
        f"current W={w}, E={e} cannot be kept with {shards} shards and {cores} cores: "
        f"planned with W={kw}, E={ke}"
    )
    return kw, ke, note


def _result(
    p: Plan,
    loads: Sequence[float],
    params: Params,
    backend: str,
    out: LongOutcome | ShortOutcome,
    t0: float,
    obj: float,
    *,
    optimal: bool | None = None,
    message: str | None = None,
) -> PlanResult:
    mw, mo = core.max_loads(p, loads, params)
    return PlanResult(
        plan=p,
        solver="greedy" if out.fallback else backend,
        fallback=out.fallback,
        solve_ms=(time.perf_counter() - t0) * 1e3,
        feasible=out.feasible,
        optimal=out.optimal if optimal is None else optimal,
        objective=obj,
        max_load_working=mw,
        max_load_offloading=mo,
        message=out.message if message is None else message,
    )


def _short_after_long(t0: float, long_t: float, short_t: float, greedy_t: float) -> float:
    """Time for a short solve that follows a long one in the same call: what is left of the long
    limit (at least the greedy deadline), so the call ends within its long limit + greedy_t."""
    left = long_t - (time.perf_counter() - t0)
    return min(short_t, max(greedy_t, left))


def _long(
    loads: Sequence[float],
    params: Params,
    cores: int,
    backend: str,
    long_t: float,
    greedy_t: float,
) -> LongOutcome:
    if backend == "gurobi" and not milp.gurobi_available():
        out = solve_long(
            loads, params, cores, backend="greedy", time_limit_s=long_t, greedy_deadline_s=greedy_t
        )
        out.fallback = "gurobi unavailable"
        return out
    return solve_long(
        loads, params, cores, backend=backend, time_limit_s=long_t, greedy_deadline_s=greedy_t
    )


def plan(
    loads: Sequence[float],
    params: Params,
    cores: int,
    current: Plan,
    *,
    mode: Literal["long", "short", "both"] = "both",
    solver: str = "auto",
    long_time_limit_s: float = 0.5,
    short_time_limit_s: float = 0.05,
    greedy_deadline_s: float = 0.005,
) -> PlanResult:
    t0 = time.perf_counter()
    loads = _validate(loads, cores, current)
    backend = resolve_solver(solver, len(loads), cores)
    if mode == "long":
        lo = _long(loads, params, cores, backend, long_time_limit_s, greedy_deadline_s)
        p = lo.plan
        return _result(p, loads, params, backend, lo, t0, float(p.working + p.offloading))
    if mode == "short":
        w, e, note = _kept(current, len(loads), cores)
        so = solve_short(
            loads,
            params,
            w,
            e,
            current,
            backend=backend,
            time_limit_s=short_time_limit_s,
            greedy_deadline_s=greedy_deadline_s,
        )
        msg = "; ".join(x for x in (note, so.message) if x)
        return _result(
            so.plan, loads, params, backend, so, t0, objective(so.plan, current), message=msg
        )
    if mode != "both":
        raise ValueError(f"unknown mode {mode!r}")
    lo = _long(loads, params, cores, backend, long_time_limit_s, greedy_deadline_s)
    w, e = lo.plan.working, lo.plan.offloading
    if not lo.feasible:
        p = lo.plan
        return _result(p, loads, params, backend, lo, t0, float(w + e))
    so = solve_short(
        loads,
        params,
        w,
        e,
        current,
        backend=backend,
        time_limit_s=_short_after_long(
            t0, long_time_limit_s, short_time_limit_s, greedy_deadline_s
        ),
        greedy_deadline_s=greedy_deadline_s,
    )
    so.fallback = so.fallback or lo.fallback
    msg = "; ".join(x for x in (lo.message, so.message) if x)
    return _result(
        so.plan,
        loads,
        params,
        backend,
        so,
        t0,
        objective(so.plan, current),
        optimal=lo.optimal and so.optimal,
        message=msg,
    )


class Planner:
    """Per-epoch planner for the control loop: same models, plus scale-down hysteresis.

    Models are rebuilt per solve (building the placement MILP costs ~1 ms and most epochs need
    none); what is kept across epochs is the parameters, the backend choice and the hysteresis
    counter.
    """

    def __init__(
        self,
        params: Params,
        cores: int,
        shards: int,
        *,
        solver: str = "auto",
        long_time_limit_s: float = 0.5,
        short_time_limit_s: float = 0.05,
        greedy_deadline_s: float = 0.005,
        scale_down_hysteresis: int = 3,
    ) -> None:
        self.params = params
        self.cores = cores
        self.shards = shards
        self.long_time_limit_s = long_time_limit_s
        self.short_time_limit_s = short_time_limit_s
        self.greedy_deadline_s = greedy_deadline_s
        self.scale_down_hysteresis = max(1, int(scale_down_hysteresis))
        self._down_votes = 0
        self.set_solver(solver)

    def set_solver(self, solver: str) -> None:
        self.solver = solver
        self.backend = resolve_solver(solver, self.shards, self.cores)

    def warm_up(self) -> float:
        """First-use costs of this planner's backend, paid before the first epoch; seconds."""
        return milp.warm_up(self.backend)

    @property
    def pending_scale_down(self) -> int:
        """Consecutive long epochs that asked for fewer cores so far."""
        return self._down_votes

    def carry_over(self, earlier: object) -> None:
        """Take the scale-down votes of the planner this one replaces for new service times: a
        measured service time moves every long epoch, and restarting the count with each new
        planner would hold a scale-down for as long as traffic flows."""
        if isinstance(earlier, Planner):
            self._down_votes = earlier._down_votes

    def long(self, loads: Sequence[float], current: Plan) -> PlanResult:
        t0 = time.perf_counter()
        loads = _validate(loads, self.cores, current)
        lo = _long(
            loads,
            self.params,
            self.cores,
            self.backend,
            self.long_time_limit_s,
            self.greedy_deadline_s,
        )
        new_total = lo.plan.working + lo.plan.offloading
        cur_total = current.working + current.offloading
        hold = False
        note = ""
        if lo.feasible and new_total < cur_total:
            self._down_votes += 1
            if self._down_votes < self.scale_down_hysteresis:
                hold = True
                note = (
                    f"scale-down to {new_total} cores held "
                    f"({self._down_votes}/{self.scale_down_hysteresis})"
                )
            else:
                self._down_votes = 0
        else:
            self._down_votes = 0
            if (
                lo.feasible
                and new_total == cur_total
                and (lo.plan.working, lo.plan.offloading) != (current.working, current.offloading)
            ):
                hold = True  # same core count: keep the current split, no churn
                note = "same core count: current split kept"
        kw, ke, _ = _kept(current, len(loads), self.cores)
        if hold and (kw, ke) == (current.working, current.offloading):
            so = solve_short(
                loads,
                self.params,
                current.working,
                current.offloading,
                current,
                backend=self.backend,
                time_limit_s=_short_after_long(
                    t0, self.long_time_limit_s, self.short_time_limit_s, self.greedy_deadline_s
                ),
                greedy_deadline_s=self.greedy_deadline_s,
            )
            if so.feasible:
                return _result(
                    so.plan,
                    loads,
                    self.params,
                    self.backend,
                    so,
                    t0,
                    float(current.working + current.offloading),
                    optimal=False,
                    message=note,
                )
            self._down_votes = 0
        p = lo.plan
        return _result(p, loads, self.params, self.backend, lo, t0, float(new_total))

    def short(self, loads: Sequence[float], current: Plan) -> PlanResult:
        t0 = time.perf_counter()
        loads = _validate(loads, self.cores, current)
        w, e, note = _kept(current, len(loads), self.cores)
        so = solve_short(
            loads,
            self.params,
            w,
            e,
            current,
            backend=self.backend,
            time_limit_s=self.short_time_limit_s,
            greedy_deadline_s=self.greedy_deadline_s,
        )
        msg = "; ".join(x for x in (note, so.message) if x)
        return _result(
            so.plan,
            loads,
            self.params,
            self.backend,
            so,
            t0,
            objective(so.plan, current),
            message=msg,
        )
