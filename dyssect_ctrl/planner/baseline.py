"""Baselines for the benchmark and cross-checks: the plain MILP and the original MIQCP.

plain_long / plain_short: the straightforward MILP of the long and short models, with
interchangeable slots (w_i, e_j for every core slot), shard-count ordering for symmetry, and
McCormick products for A*r and O*(offloaded load). Slow by design: it is what the planner is
measured against.

miqcp_long / miqcp_short: the original Dyssect's non-convex models, with the Kingman equalities
v(1 - rho) = rho kept bilinear, NonConvex = 2, sigma a real value. Only gurobipy solves them;
the pip licence holds 200 variables once a quadratic term exists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from dyssect_ctrl.model import Params, Plan
from dyssect_ctrl.planner.milp import INF, Milp, MilpResult, argmax


def _ub_off(params: Params, loads: Sequence[float]) -> float:
    b = params.rho_max_offloading / params.sigma if params.sigma > 0 else math.inf
    return min(b, float(sum(loads)))


def plain_long(loads: Sequence[float], params: Params, cores: int) -> Milp:
    n, m_ = len(loads), cores
    cw, co = params.rho_max_working, params.rho_max_offloading
    u = _ub_off(params, loads)
    m = Milp()
    w = [m.var(1.0) for _ in range(m_)]
    e = [m.var(1.0) for _ in range(m_)]
    a = [[m.var() for _ in range(m_)] for _ in range(n)]
    o = [[m.var() for _ in range(m_)] for _ in range(m_)]  # o[j][i]
    r = [m.var(0.0, 0.0, 1.0, integer=False) for _ in range(n)]
    p = [[m.var(0.0, 0.0, 1.0, integer=False) for _ in range(m_)] for _ in range(n)]  # A*r
    t = [m.var(0.0, 0.0, u, integer=False) for _ in range(m_)]  # offloaded load of core i
    q = [[m.var(0.0, 0.0, u, integer=False) for _ in range(m_)] for _ in range(m_)]  # O*t
    m.row(w, [1.0] * m_, 1.0, INF)
    m.row(w + e, [1.0] * (2 * m_), -INF, float(m_))
    ratio = params.max_offloading_ratio
    # E <= ceil(ratio * W): E - ratio*W <= 1 - delta
    m.row(e + w, [1.0] * m_ + [-ratio] * m_, -INF, 1.0 - 1e-6)
    m.row(e + w, [1.0] * m_ + [-1.0] * m_, -INF, 0.0)
    for s in range(n):
        m.row(a[s], [1.0] * m_, 1.0, 1.0)
        m.row([r[s], e[0]], [1.0, -1.0], -INF, 0.0)
        for i in range(m_):
            m.row([a[s][i], w[i]], [1.0, -1.0], -INF, 0.0)
            m.row([p[s][i], a[s][i]], [1.0, -1.0], -INF, 0.0)
            m.row([p[s][i], r[s]], [1.0, -1.0], -INF, 0.0)
            m.row([p[s][i], r[s], a[s][i]], [1.0, -1.0, -1.0], -1.0, INF)
    for i in range(m_):
        col = [a[s][i] for s in range(n)]
        m.row([*col, w[i]], [1.0] * n + [-1.0], 0.0, INF)
        # local load
        m.row(col + [p[s][i] for s in range(n)], list(loads) + [-v for v in loads], -INF, cw)
        m.row([t[i]] + [p[s][i] for s in range(n)], [1.0] + [-v for v in loads], 0.0, 0.0)
        oi = [o[j][i] for j in range(m_)]
        m.row(oi, [1.0] * m_, -INF, 1.0)
        m.row([*oi, w[i], e[0]], [1.0] * m_ + [-1.0, -1.0], -1.0, INF)  # res = w_i AND e_0
        for j in range(m_):
            m.row([o[j][i], w[i]], [1.0, -1.0], -INF, 0.0)
            m.row([q[j][i], o[j][i]], [1.0, -u], -INF, 0.0)
            m.row([q[j][i], t[i]], [1.0, -1.0], -INF, 0.0)
            m.row([q[j][i], t[i], o[j][i]], [1.0, -1.0, -u], -u, INF)
        if i + 1 < m_:
            m.row([w[i], w[i + 1]], [1.0, -1.0], 0.0, INF)
            m.row([e[i], e[i + 1]], [1.0, -1.0], 0.0, INF)
            m.row(col + [a[s][i + 1] for s in range(n)], [1.0] * n + [-1.0] * n, 0.0, INF)
    for j in range(m_):
        m.row([o[j][i] for i in range(m_)] + [e[j]], [1.0] * m_ + [-1.0], 0.0, INF)
        for i in range(m_):
            m.row([o[j][i], e[j]], [1.0, -1.0], -INF, 0.0)
        m.row([q[j][i] for i in range(m_)], [params.sigma] * m_, -INF, co)
    return m


def plain_long_cores(x: Sequence[float], cores: int) -> tuple[int, int]:
    return round(sum(x[:cores])), round(sum(x[cores : 2 * cores]))


def plain_short(loads: Sequence[float], params: Params, w_: int, e_: int, cur: Plan) -> Milp:
    """Fixed W, E; minimise sum |A - A_old| + |O - O_old| (each move counts 2, as the original)
    + 1e-3 sum |r - r_old|; McCormick products as in the long model."""
    n = len(loads)
    cw, co = params.rho_max_working, params.rho_max_offloading
    u = _ub_off(params, loads)
    m = Milp()
    a = []
    for s in range(n):
        row = []
        for i in range(w_):
            old = 1 if cur.assignment[s] == i else 0
            # |A - A_old| = A if old = 0 else 1 - A
            row.append(m.var(-1.0 if old else 1.0))
            m.offset += old
        a.append(row)
    o = []
    for j in range(e_):
        row = []
        for i in range(w_):
            old = 1 if cur.pairing.get(i) == j else 0
            row.append(m.var(-1.0 if old else 1.0))
            m.offset += old
        o.append(row)
    old_r = cur.offload if len(cur.offload) == n else (0.0,) * n
    r = [m.var(0.0, 0.0, 1.0 if e_ else 0.0, integer=False) for _ in range(n)]
    d = [m.var(1e-3, 0.0, 1.0, integer=False) for _ in range(n)]  # |r - r_old|
    p = [[m.var(0.0, 0.0, 1.0, integer=False) for _ in range(w_)] for _ in range(n)]
    t = [m.var(0.0, 0.0, u, integer=False) for _ in range(w_)]
    q = [[m.var(0.0, 0.0, u, integer=False) for _ in range(w_)] for _ in range(e_)]
    for s in range(n):
        m.row(a[s], [1.0] * w_, 1.0, 1.0)
        m.row([d[s], r[s]], [1.0, -1.0], -old_r[s], INF)
        m.row([d[s], r[s]], [1.0, 1.0], old_r[s], INF)
        for i in range(w_):
            m.row([p[s][i], a[s][i]], [1.0, -1.0], -INF, 0.0)
            m.row([p[s][i], r[s]], [1.0, -1.0], -INF, 0.0)
            m.row([p[s][i], r[s], a[s][i]], [1.0, -1.0, -1.0], -1.0, INF)
    for i in range(w_):
        col = [a[s][i] for s in range(n)]
        m.row(col, [1.0] * n, 1.0, INF)
        m.row(col + [p[s][i] for s in range(n)], list(loads) + [-v for v in loads], -INF, cw)
        m.row([t[i]] + [p[s][i] for s in range(n)], [1.0] + [-v for v in loads], 0.0, 0.0)
        if e_:
            m.row([o[j][i] for j in range(e_)], [1.0] * e_, 1.0, 1.0)
            for j in range(e_):
                m.row([q[j][i], o[j][i]], [1.0, -u], -INF, 0.0)
                m.row([q[j][i], t[i]], [1.0, -1.0], -INF, 0.0)
                m.row([q[j][i], t[i], o[j][i]], [1.0, -1.0, -u], -u, INF)
    for j in range(e_):
        m.row(o[j], [1.0] * w_, 1.0, INF)
        m.row(q[j], [params.sigma] * w_, -INF, co)
    return m


def plain_short_decode(
    x: Sequence[float], n: int, w_: int, e_: int
) -> tuple[list[int], dict[int, int]]:
    """Assignment and pairing of a plain_short solution (A first, s-major; then O, j-major)."""
    assignment = [argmax([x[s * w_ + i] for i in range(w_)]) for s in range(n)]
    base = n * w_
    pairing = {}
    if e_:
        for i in range(w_):
            pairing[i] = argmax([x[base + j * w_ + i] for j in range(e_)])
    return assignment, pairing


# ---------------------------------------------------------------------------------------------
# The original MIQCP (gurobipy only)


def _kingman(g: Any, model: Any, load: Any, k: float, t: float, slo: float, name: str) -> None:
    from gurobipy import GRB

    v = model.addVar(lb=0.0, name=f"v_{name}")
    a = model.addVar(lb=0.0, name=f"a_{name}")
    model.addQConstr(v * (1 - load) == load)
    model.addQConstr(a == v * k * t)  # quadratic constraint without quadratic part, as the C++
    model.addQConstr(a <= slo)
    _ = GRB


def miqcp_long(loads: Sequence[float], params: Params, cores: int, env: Any) -> Any:
    """The original long model, sigma real. Returns an unsolved gurobipy Model."""
    import gurobipy as gp
    from gurobipy import GRB

    n, m_ = len(loads), cores
    md = gp.Model(env=env)
    w = md.addVars(m_, vtype=GRB.BINARY)
    e = md.addVars(m_, vtype=GRB.BINARY)
    a = md.addVars(n, m_, vtype=GRB.BINARY)
    o = md.addVars(m_, m_, vtype=GRB.BINARY)  # o[j, i]
    f = md.addVar(vtype=GRB.BINARY)
    res = md.addVars(m_)  # continuous, forced binary by the AND
    r = md.addVars(n, ub=1.0)
    cap = params.rho_cap
    lw = md.addVars(m_, ub=cap)
    le = md.addVars(m_, ub=cap)
    t1 = md.addVars(m_, lb=-1.0, ub=1.0)
    t2 = md.addVars(m_, lb=-1.0, ub=1.0)
    u = md.addVars(m_, lb=-1.0, ub=1.0)
    md.setObjective(w.sum() + e.sum(), GRB.MINIMIZE)
    md.addConstr(w.sum() >= 1)
    md.addConstr(w.sum() + e.sum() <= m_)
    md.addConstr(e.sum() <= params.max_offloading_ratio * w.sum() + 1 - 1e-6)
    md.addConstr((e[0] == 1) >> (f == 1))
    md.addConstr((e[0] == 0) >> (f == 0))
    for s in range(n):
        md.addQConstr(r[s] * f == r[s])
        md.addConstr(a.sum(s, "*") == 1)
    for i in range(m_):
        md.addGenConstrAnd(res[i], [w[i], e[0]])
        md.addConstr((w[i] == 0) >> (a.sum("*", i) == 0))
        md.addConstr((w[i] == 0) >> (o.sum("*", i) == 0))
        md.addConstr((w[i] == 1) >> (a.sum("*", i) >= 1))
        md.addConstr((res[i] == 1) >> (o.sum("*", i) == 1))
        md.addConstr((e[i] == 0) >> (o.sum(i, "*") == 0))
        md.addConstr((e[i] == 1) >> (o.sum(i, "*") >= 1))
        if i + 1 < m_:
            md.addConstr(a.sum("*", i) >= a.sum("*", i + 1))
            md.addConstr(w[i] >= w[i + 1])
            md.addConstr(e[i] >= e[i + 1])
        md.addQConstr(t1[i] == gp.quicksum(a[s, i] * loads[s] * (1 - r[s]) for s in range(n)))
        md.addQConstr(t2[i] == gp.quicksum(a[s, i] * loads[s] * r[s] for s in range(n)))
        md.addQConstr(lw[i] == w[i] * t1[i])
        _kingman(
            gp, md, lw[i], params.k_priority, params.working_us, params.slo_priority_us, f"w{i}"
        )
    for j in range(m_):
        md.addQConstr(u[j] == gp.quicksum(o[j, i] * t2[i] for i in range(m_)))
        md.addQConstr(le[j] == params.sigma * e[j] * u[j])
        _kingman(
            gp, md, le[j], params.k_regular, params.offloading_us, params.slo_regular_us, f"e{j}"
        )
    md.Params.NonConvex = 2
    md.Params.Threads = 1
    md.Params.MIPFocus = 1
    md._w, md._e = w, e
    return md


def miqcp_short(
    loads: Sequence[float],
    params: Params,
    w_: int,
    e_: int,
    cur: Plan,
    env: Any,
    cores: int | None = None,
) -> Any:
    """The original short model: A and O over all M slots, slots >= W (>= E) kept empty."""
    import gurobipy as gp
    from gurobipy import GRB

    n = len(loads)
    m_ = cores if cores is not None else w_ + e_
    cap = params.rho_cap
    md = gp.Model(env=env)
    a = md.addVars(n, m_, vtype=GRB.BINARY)
    o = md.addVars(m_, m_, vtype=GRB.BINARY)  # o[j, i]
    r = md.addVars(n, ub=1.0)
    lw = md.addVars(m_, ub=cap)
    lwe = md.addVars(m_, ub=cap)
    le = md.addVars(m_, ub=cap)
    da = md.addVars(n, m_)
    do = md.addVars(m_, m_)
    # |x - x_old| through a difference variable, as the original's helper variables
    for s in range(n):
        for i in range(m_):
            z = md.addVar(lb=-1.0, ub=1.0)
            md.addConstr(z == a[s, i] - (1 if cur.assignment[s] == i else 0))
            md.addGenConstrAbs(da[s, i], z)
    for j in range(m_):
        for i in range(m_):
            z = md.addVar(lb=-1.0, ub=1.0)
            md.addConstr(z == o[j, i] - (1 if cur.pairing.get(i) == j else 0))
            md.addGenConstrAbs(do[j, i], z)
    md.setObjective(da.sum() + do.sum(), GRB.MINIMIZE)
    if e_ == 0:
        md.addConstrs(o.sum("*", i) == 0 for i in range(m_))
        md.addConstrs(r[s] == 0 for s in range(n))
    else:
        for i in range(m_):
            md.addConstr(o.sum("*", i) == (1 if i < w_ else 0))
        for j in range(m_):
            if j < e_:
                md.addConstr(o.sum(j, "*") >= 1)
            else:
                md.addConstr(o.sum(j, "*") == 0)
    for s in range(n):
        md.addConstr(a.sum(s, "*") == 1)
    for i in range(m_):
        if i < w_:
            md.addConstr(a.sum("*", i) >= 1)
        else:
            md.addConstr(a.sum("*", i) == 0)
        if i + 1 < m_:
            md.addConstr(a.sum("*", i) >= a.sum("*", i + 1))
        md.addQConstr(lw[i] == gp.quicksum(a[s, i] * loads[s] * (1 - r[s]) for s in range(n)))
        md.addQConstr(lwe[i] == gp.quicksum(a[s, i] * loads[s] * r[s] for s in range(n)))
        _kingman(
            gp, md, lw[i], params.k_priority, params.working_us, params.slo_priority_us, f"w{i}"
        )
    for j in range(m_):
        md.addQConstr(le[j] == params.sigma * gp.quicksum(o[j, i] * lwe[i] for i in range(m_)))
        _kingman(
            gp, md, le[j], params.k_regular, params.offloading_us, params.slo_regular_us, f"e{j}"
        )
    md.Params.NonConvex = 2
    md.Params.Threads = 1
    md.Params.MIPFocus = 1
    return md


def solve_gurobi_model(md: Any, time_limit: float) -> MilpResult:
    """Optimise a gurobipy model; BackendError when the licence refuses it."""
    import time

    import gurobipy as gp
    from gurobipy import GRB

    from dyssect_ctrl.planner.milp import BackendError

    md.Params.TimeLimit = time_limit
    t0 = time.perf_counter()
    try:
        md.optimize()
    except gp.GurobiError as exc:
        raise BackendError(f"gurobi: {exc}") from exc
    secs = time.perf_counter() - t0
    if md.Status == GRB.OPTIMAL:
        return MilpResult("optimal", None, md.ObjVal, secs)
    if md.Status in (GRB.INFEASIBLE, GRB.INF_OR_UNBD):
        return MilpResult("infeasible", None, None, secs)
    if md.SolCount:
        return MilpResult("feasible", None, md.ObjVal, secs)
    return MilpResult("nosolution", None, None, secs, f"status {md.Status}")
