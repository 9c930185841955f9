"""Running the bench: every size and instance through our backends and the baselines, one row of
timings, objectives and proofs per (size, model, method)."""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dyssect_ctrl.bench import compare
from dyssect_ctrl.bench.instances import instance, random_current
from dyssect_ctrl.model import Params, Plan
from dyssect_ctrl.planner import available_backends, baseline, milp, plan
from dyssect_ctrl.planner.short import migrations

# Our objective and whether it is proven optimal, by model, for one instance.
Ours = dict[str, tuple[float, float]]
RowOf = Callable[[str, str, str], "Row"]


@dataclass
class Row:
    size: str
    model: str
    method: str
    times_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    objectives: list[float] = field(default_factory=list)
    optimal: int = 0
    unproven: int = 0
    fallback: int = 0
    infeasible: int = 0
    errors: int = 0
    agree: int = 0
    compared: int = 0
    ours_lower: int = 0  # baseline optimum above ours (e.g. the original's ordering constraint)

    def summary(self) -> dict[str, Any]:
        t = sorted(self.times_ms)
        c = sorted(self.cpu_ms)
        return {
            "size": self.size,
            "model": self.model,
            "method": self.method,
            "n": len(t),
            "p50_ms": pct(t, 50),
            "p99_ms": pct(t, 99),
            "max_ms": t[-1] if t else None,
            "cpu_p50_ms": pct(c, 50),
            "cpu_p99_ms": pct(c, 99),
            "mean_objective": statistics.fmean(self.objectives) if self.objectives else None,
            "optimal": self.optimal,
            "unproven": self.unproven,
            "fallback": self.fallback,
            "infeasible": self.infeasible,
            "errors": self.errors,
            "agree_with_ours": f"{self.agree}/{self.compared}" if self.compared else "",
            "ours_lower": self.ours_lower,
        }

    def add_baseline(
        self, cpu0: float, seconds: float, status: str, obj: float | None, ours: tuple[float, float]
    ) -> None:
        """One baseline solve: its times, status and objective, compared with ours when both are
        proven optimal; cpu0: time.thread_time() before it, ours: (objective, proven)."""
        self.cpu_ms.append((time.thread_time() - cpu0) * 1e3)
        self.times_ms.append(seconds * 1e3)
        if status == "optimal":
            self.optimal += 1
        elif status == "infeasible":
            self.infeasible += 1
        else:
            self.unproven += 1  # time limit, with or without an incumbent
        if obj is None:
            return
        self.objectives.append(obj)
        if status == "optimal" and ours[1]:
            self.compared += 1
            self.agree += int(abs(obj - ours[0]) < 1e-6)
            self.ours_lower += int(obj > ours[0] + 1e-6)


def pct(sorted_vals: Sequence[float], p: float) -> float | None:
    """Percentile with linear interpolation."""
    if not sorted_vals:
        return None
    if len(sorted_vals) == 1:
        return sorted_vals[0]
    pos = (len(sorted_vals) - 1) * p / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def run(args: argparse.Namespace, tick: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    params = Params(sigma=args.sigma)
    backends = [b for b in args.backends.split(",") if b] or available_backends()
    rows: dict[tuple[str, str, str], Row] = {}

    def row(size: str, model: str, method: str) -> Row:
        key = (size, model, method)
        if key not in rows:
            rows[key] = Row(size, model, method)
        return rows[key]

    sizes = list(dict.fromkeys([*args.sizes, *args.baseline_sizes, *args.miqcp_sizes]))
    base_set = set(args.baseline_sizes)
    miqcp_set = set(args.miqcp_sizes)
    env = None
    if miqcp_set and milp.gurobi_available():
        env = milp.gurobi_env()
    for s, m in sizes:
        size = f"{s}x{m}"
        n_inst = args.instances
        for k in range(n_inst):
            loads = instance(s, m, k, args.seed)
            ours: Ours = {}
            cur: Plan | None = None
            for b in backends:
                tick(f"{size} {b}")
                c0 = time.thread_time()
                lr = plan(
                    loads,
                    params,
                    m,
                    Plan.initial(s),
                    mode="long",
                    solver=b,
                    long_time_limit_s=args.long_time_limit,
                )
                _record(row(size, "long", b), lr.solve_ms, lr.objective, lr, c0)
                if cur is None:
                    cur = random_current(
                        s, lr.plan.working, lr.plan.offloading, random.Random(7 * k + s * 131 + m)
                    )
                    ours["long"] = (lr.objective, 1.0 if lr.optimal else 0.0)
                c0 = time.thread_time()
                sr = plan(
                    loads,
                    params,
                    m,
                    cur,
                    mode="short",
                    solver=b,
                    short_time_limit_s=args.short_time_limit,
                )
                mig = float(sr.plan.migrations(cur))
                _record(row(size, "short", b), sr.solve_ms, mig, sr, c0)
                if "short" not in ours:
                    ours["short"] = (mig, 1.0 if sr.optimal else 0.0)
            assert cur is not None
            if (s, m) in base_set and k < args.baseline_instances:
                tick(f"{size} plain MILP")
                _plain(row, size, loads, params, m, cur, ours, args.baseline_time_limit)
            if (s, m) in miqcp_set and env is not None:
                tick(f"{size} MIQCP")
                _miqcp(row, size, loads, params, m, cur, ours, env, args.miqcp_time_limit)
    summaries = [r.summary() for r in rows.values()]
    return {
        "params": {
            "sigma": params.sigma,
            "rho_max_working": params.rho_max_working,
            "rho_max_offloading": params.rho_max_offloading,
            "max_offloading_ratio": params.max_offloading_ratio,
        },
        "backends": backends,
        "rows": summaries,
        "ratios": compare.ratios(summaries, backends),
        "targets": compare.targets(summaries),
    }


def _record(r: Row, ms: float, obj: float, res: Any, cpu0: float) -> None:
    """One planner solve; cpu0: time.thread_time() before it (this thread's CPU time)."""
    r.cpu_ms.append((time.thread_time() - cpu0) * 1e3)
    r.times_ms.append(ms)
    r.objectives.append(obj)
    if not res.feasible:
        r.infeasible += 1
    if res.optimal:
        r.optimal += 1
    else:
        r.unproven += 1
    if res.fallback:
        r.fallback += 1


def _plain(
    row: RowOf,
    size: str,
    loads: list[float],
    params: Params,
    m: int,
    cur: Plan,
    ours: Ours,
    limit: float,
) -> None:
    def short_migrations(x: Any) -> float:
        a, p = baseline.plain_short_decode(x, len(loads), cur.working, cur.offloading)
        return float(migrations(a, p, cur.working, cur))

    cases: list[tuple[str, Callable[[], Any], Callable[[Any], float]]] = [
        (
            "long",
            lambda: baseline.plain_long(loads, params, m),
            lambda x: float(sum(baseline.plain_long_cores(x, m))),
        ),
        (
            "short",
            lambda: baseline.plain_short(loads, params, cur.working, cur.offloading, cur),
            short_migrations,
        ),
    ]
    for model, build, objective in cases:
        md = build()
        c0 = time.thread_time()
        res = milp.solve_highs(md, limit)
        obj = None if res.x is None else objective(res.x)
        row(size, model, "plain MILP/highs").add_baseline(
            c0, res.seconds, res.status, obj, ours[model]
        )


def _miqcp(
    row: RowOf,
    size: str,
    loads: list[float],
    params: Params,
    m: int,
    cur: Plan,
    ours: Ours,
    env: Any,
    limit: float,
) -> None:
    builds: list[tuple[str, Callable[[], Any]]] = [
        ("long", lambda: baseline.miqcp_long(loads, params, m, env)),
        (
            "short",
            lambda: baseline.miqcp_short(loads, params, cur.working, cur.offloading, cur, env, m),
        ),
    ]
    for model, build in builds:
        r = row(size, model, "MIQCP/gurobi")
        md = build()
        c0 = time.thread_time()
        try:
            res = baseline.solve_gurobi_model(md, limit)
        except milp.BackendError:
            r.errors += 1  # licence: too large
            md.dispose()
            continue
        obj = res.objective
        if obj is not None and model == "short":
            obj /= 2.0  # the original's short objective counts each move and re-pointing twice
        r.add_baseline(c0, res.seconds, res.status, obj, ours[model])
        md.dispose()
