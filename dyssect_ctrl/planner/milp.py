"""A small matrix-form MILP and the two solver backends that take it (HiGHS, Gurobi)."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

INF = math.inf


@dataclass
class Milp:
    """min c x + offset, row_lo <= A x <= row_hi, lb <= x <= ub, x integer where integral."""

    c: list[float] = field(default_factory=list)
    lb: list[float] = field(default_factory=list)
    ub: list[float] = field(default_factory=list)
    integral: list[bool] = field(default_factory=list)
    rows_lo: list[float] = field(default_factory=list)
    rows_hi: list[float] = field(default_factory=list)
    starts: list[int] = field(default_factory=lambda: [0])
    index: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    offset: float = 0.0

    def var(self, cost: float = 0.0, lb: float = 0.0, ub: float = 1.0, integer: bool = True) -> int:
        self.c.append(cost)
        self.lb.append(lb)
        self.ub.append(ub)
        self.integral.append(integer)
        return len(self.c) - 1

    def row(self, idx: list[int], val: list[float], lo: float = -INF, hi: float = INF) -> None:
        self.index.extend(idx)
        self.value.extend(val)
        self.starts.append(len(self.index))
        self.rows_lo.append(lo)
        self.rows_hi.append(hi)

    @property
    def num_vars(self) -> int:
        return len(self.c)

    @property
    def num_rows(self) -> int:
        return len(self.rows_lo)


@dataclass
class MilpResult:
    status: str  # "optimal", "infeasible", "feasible" (limit hit, incumbent kept), "nosolution"
    x: list[float] | None
    objective: float | None
    seconds: float
    detail: str = ""


def argmax(values: Sequence[float]) -> int:
    """The index of the largest value, the first on a tie (decodes a one-hot row)."""
    return max(range(len(values)), key=values.__getitem__)


class BackendError(RuntimeError):
    """The backend could not run the model (licence, size, crash)."""


# --------------------------------------------------------------------------------------------
# HiGHS

_banner_done = False


def new_highs(time_limit: float) -> Any:
    """A quiet single-thread Highs; the first construction prints a banner on fd 1, hidden."""
    global _banner_done
    import highspy

    if not _banner_done:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 1)
                h = highspy.Highs()  # type: ignore[no-untyped-call]
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _banner_done = True
    else:
        h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    h.setOptionValue("random_seed", 0)
    h.setOptionValue("time_limit", max(1e-3, float(time_limit)))
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("mip_abs_gap", 1e-6)
    return h


def _interrupt_at(h: Any, deadline: float) -> None:
    """Stop HiGHS at `deadline` (time.perf_counter) from its interrupt callbacks.

    HiGHS checks its own time_limit only between phases (presolve, root LP, cuts): a 50 ms limit
    measured 60 to 115 ms of CPU at S=256, W=32. Its interrupt callbacks come more often.
    """
    from highspy import cb

    def check(_type: Any, _msg: Any, _out: Any, data_in: Any, _user: Any) -> None:
        if time.perf_counter() > deadline:
            data_in.user_interrupt = True

    h.setCallback(check, None)
    for t in (
        cb.HighsCallbackType.kCallbackMipInterrupt,
        cb.HighsCallbackType.kCallbackSimplexInterrupt,
        cb.HighsCallbackType.kCallbackIpmInterrupt,
    ):
        h.startCallback(t)


def solve_highs(m: Milp, time_limit: float, start: list[float] | None = None) -> MilpResult:
    """`time_limit` counts from the call: handing the model over is part of it."""
    import highspy

    t0 = time.perf_counter()
    deadline = t0 + max(1e-3, float(time_limit))
    h = new_highs(time_limit)
    n = m.num_vars
    inf = highspy.kHighsInf
    lb = np.array(m.lb, dtype=np.float64)
    ub = np.array(m.ub, dtype=np.float64)
    h.addVars(n, lb, ub)
    h.changeColsCost(n, np.arange(n, dtype=np.int32), np.array(m.c, dtype=np.float64))
    ints = np.array([k for k in range(n) if m.integral[k]], dtype=np.int32)
    if len(ints):
        h.changeColsIntegrality(
            len(ints), ints, np.array([highspy.HighsVarType.kInteger] * len(ints))
        )
    lo = np.array([-inf if x == -INF else x for x in m.rows_lo], dtype=np.float64)
    hi = np.array([inf if x == INF else x for x in m.rows_hi], dtype=np.float64)
    h.addRows(
        m.num_rows,
        lo,
        hi,
        len(m.index),
        np.array(m.starts[:-1], dtype=np.int32),
        np.array(m.index, dtype=np.int32),
        np.array(m.value, dtype=np.float64),
    )
    if start is not None:
        h.setSolution(n, np.arange(n, dtype=np.int32), np.array(start, dtype=np.float64))
    h.setOptionValue("time_limit", max(1e-3, deadline - time.perf_counter()))
    _interrupt_at(h, deadline)
    h.run()
    secs = time.perf_counter() - t0
    status = h.getModelStatus()
    ms = highspy.HighsModelStatus
    info = h.getInfo()
    has_sol = info.primal_solution_status == 2  # kSolutionStatusFeasible
    # stopped by our callback at the deadline: the time limit, as far as callers are concerned
    why = (
        "Time limit reached (interrupted)"
        if status == ms.kInterrupt
        else h.modelStatusToString(status)
    )
    if status == ms.kOptimal:
        x = list(h.getSolution().col_value)
        return MilpResult("optimal", x, info.objective_function_value + m.offset, secs)
    if status == ms.kInfeasible:
        return MilpResult("infeasible", None, None, secs)
    if has_sol:
        x = list(h.getSolution().col_value)
        return MilpResult(
            "feasible",
            x,
            info.objective_function_value + m.offset,
            secs,
            f"{why}, gap {info.mip_gap:.3g}",
        )
    return MilpResult("nosolution", None, None, secs, why)


def warm_up(backend: str) -> float:
    """Pay a backend's first-use costs (import, banner, licence check) now; seconds taken.

    The first HiGHS solve in a process measured over 100 ms here (mostly the import), more than a
    short epoch's whole time limit: paid inside the first epoch it made that solve late.
    """
    t0 = time.perf_counter()
    if backend == "highs":
        m = Milp()
        x = m.var(cost=1.0, ub=3.0)
        y = m.var(cost=1.0, ub=3.0)
        m.row([x, y], [1.0, 1.0], lo=1.0)
        solve_highs(m, 1.0)
    elif backend == "gurobi":
        gurobi_available()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------------
# Gurobi

LIMITED_VARS = 2000
LIMITED_ROWS = 2000
LIMITED_VARS_QUADRATIC = 200

_gurobi_state: dict[str, Any] = {}


def gurobi_env() -> Any:
    """A shared quiet Env, or raise BackendError when gurobipy or its licence is missing."""
    if "env" in _gurobi_state:
        return _gurobi_state["env"]
    if "error" in _gurobi_state:
        raise BackendError(_gurobi_state["error"])
    try:
        import gurobipy as gp

        env = gp.Env(params={"OutputFlag": 0})
        # probe: does a model over the size-limited licence's bound solve?
        probe = gp.Model(env=env)
        x = probe.addVars(LIMITED_VARS + 1, ub=1.0)
        probe.addConstr(gp.quicksum(x.values()) <= 1)
        try:
            probe.optimize()
            _gurobi_state["limited"] = False
        except gp.GurobiError:
            _gurobi_state["limited"] = True
        probe.dispose()
    except Exception as exc:  # import error, licence error
        _gurobi_state["error"] = f"gurobi unavailable: {exc}"
        raise BackendError(_gurobi_state["error"]) from exc
    _gurobi_state["env"] = env
    return env


def gurobi_available() -> bool:
    try:
        gurobi_env()
    except BackendError:
        return False
    return True


def gurobi_fits(num_vars: int, num_rows: int, quadratic: bool = False) -> bool:
    """Whether the licence holds a model of this size (unlimited licences hold anything)."""
    if not gurobi_available():
        return False
    if not _gurobi_state.get("limited", True):
        return True
    if quadratic:
        return num_vars <= LIMITED_VARS_QUADRATIC and num_rows <= LIMITED_ROWS
    return num_vars <= LIMITED_VARS and num_rows <= LIMITED_ROWS


def solve_gurobi(m: Milp, time_limit: float, start: list[float] | None = None) -> MilpResult:
    if not gurobi_fits(m.num_vars, m.num_rows):
        raise BackendError(
            f"gurobi: model of {m.num_vars} variables / {m.num_rows} rows exceeds the licence"
        )
    import gurobipy as gp
    from gurobipy import GRB

    t0 = time.perf_counter()
    env = gurobi_env()
    g = gp.Model(env=env)
    try:
        g.Params.Threads = 1
        g.Params.TimeLimit = max(1e-3, float(time_limit))
        g.Params.MIPGap = 0.0
        g.Params.MIPGapAbs = 1e-6
        vt = [GRB.INTEGER if k else GRB.CONTINUOUS for k in m.integral]
        ub = [GRB.INFINITY if u == INF else u for u in m.ub]
        lb = [-GRB.INFINITY if v == -INF else v for v in m.lb]
        # A count with per-variable lists is valid gurobipy; the stubs type lists for index sets.
        x = g.addVars(m.num_vars, lb=lb, ub=ub, obj=m.c, vtype=vt)  # type: ignore[call-overload]
        xs = [x[k] for k in range(m.num_vars)]
        for r in range(m.num_rows):
            a, b = m.starts[r], m.starts[r + 1]
            expr = gp.LinExpr(m.value[a:b], [xs[k] for k in m.index[a:b]])
            lo, hi = m.rows_lo[r], m.rows_hi[r]
            if lo == hi:
                g.addLConstr(expr, GRB.EQUAL, lo)
            else:
                if lo != -INF:
                    g.addLConstr(expr, GRB.GREATER_EQUAL, lo)
                if hi != INF:
                    g.addLConstr(expr, GRB.LESS_EQUAL, hi)
        if start is not None:
            for k, v in enumerate(start):
                xs[k].Start = v
        try:
            g.optimize()
        except gp.GurobiError as exc:
            raise BackendError(f"gurobi: {exc}") from exc
        secs = time.perf_counter() - t0
        st = g.Status
        if st == GRB.OPTIMAL:
            return MilpResult("optimal", [v.X for v in xs], g.ObjVal + m.offset, secs)
        if st in (GRB.INFEASIBLE, GRB.INF_OR_UNBD):
            return MilpResult("infeasible", None, None, secs)
        if g.SolCount > 0:
            return MilpResult(
                "feasible",
                [v.X for v in xs],
                g.ObjVal + m.offset,
                secs,
                f"status {st}, gap {g.MIPGap:.3g}",
            )
        return MilpResult("nosolution", None, None, secs, f"status {st}")
    finally:
        g.dispose()


def solve(backend: str, m: Milp, time_limit: float, start: list[float] | None = None) -> MilpResult:
    if backend == "highs":
        return solve_highs(m, time_limit, start)
    if backend == "gurobi":
        return solve_gurobi(m, time_limit, start)
    raise BackendError(f"unknown MILP backend {backend!r}")
