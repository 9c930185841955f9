"""`dyssect-ctrl bench`: time the planner against the plain MILP and the original MIQCP.

Instances follow reference/planner-baseline.md: seed 100000*S + 1000*M + k (+ --seed); total
load uniform on [0.5, 0.45*M] cores; even k uniform shard loads, odd k Zipf(1.1) with permuted
ranks; every shard capped at 0.8 core with the excess spread over the others. Short-model input:
W and E from the long result, a random current assignment on them (every core holds a shard),
each working core pointed at a random offloading core, every offloading core used, r = 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dyssect_ctrl.model import Params, Plan
from dyssect_ctrl.planner import available_backends, baseline, milp, plan
from dyssect_ctrl.planner.short import migrations

DEFAULT_SIZES = "16x8,16x16,16x32,64x8,64x16,64x32,256x8,256x16,256x32"
DEFAULT_BASELINE_SIZES = "16x8,64x16"
DEFAULT_MIQCP_SIZES = "8x4,16x4"
SHARD_CAP = 0.8


def parse_sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            s, m = part.lower().split("x")
            size = (int(s), int(m))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(
                f"bad size {part!r}: expected SxM, e.g. 64x16"
            ) from exc
        if size[0] < 1 or size[1] < 1:
            raise argparse.ArgumentTypeError(f"bad size {part!r}: S and M must be positive")
        out.append(size)
    return out


def instance(shards: int, cores: int, k: int, seed: int = 0) -> list[float]:
    rng = random.Random(100000 * shards + 1000 * cores + k + seed * 7919)
    total = rng.uniform(0.5, 0.45 * cores)
    if k % 2 == 0:
        raw = [1.0] * shards
    else:
        ranks = list(range(1, shards + 1))
        rng.shuffle(ranks)
        raw = [1.0 / r**1.1 for r in ranks]
    s = sum(raw)
    loads = [total * v / s for v in raw]
    # cap at 0.8 core, spreading the excess proportionally over the uncapped shards
    for _ in range(shards):
        over = [i for i, v in enumerate(loads) if v > SHARD_CAP]
        if not over:
            break
        excess = sum(loads[i] - SHARD_CAP for i in over)
        for i in over:
            loads[i] = SHARD_CAP
        free = [i for i, v in enumerate(loads) if v < SHARD_CAP]
        if not free:
            break
        fs = sum(loads[i] for i in free)
        for i in free:
            loads[i] += excess * loads[i] / fs
    return loads


def random_current(shards: int, w: int, e: int, rng: random.Random) -> Plan:
    a = list(range(w)) + [rng.randrange(w) for _ in range(shards - w)]
    rng.shuffle(a)
    pairing: dict[int, int] = {}
    if e:
        order = list(range(w))
        rng.shuffle(order)
        for n, i in enumerate(order):
            pairing[i] = n if n < e else rng.randrange(e)
    return Plan(w, e, tuple(a), pairing, tuple([0.0] * shards))


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


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dyssect-ctrl bench", description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    ap.add_argument(
        "--sizes",
        type=parse_sizes,
        default=parse_sizes(DEFAULT_SIZES),
        help=f"SxM list for the planner (default {DEFAULT_SIZES})",
    )
    ap.add_argument("--instances", type=int, default=30, help="instances per size (default 30)")
    ap.add_argument("--seed", type=int, default=0, help="added to every instance seed")
    ap.add_argument(
        "--backends",
        default="",
        help="comma list of planner backends (default: every available one)",
    )
    ap.add_argument(
        "--baseline-sizes",
        type=parse_sizes,
        default=parse_sizes(DEFAULT_BASELINE_SIZES),
        help=f"sizes for the plain MILP on HiGHS (default {DEFAULT_BASELINE_SIZES}; '' none)",
    )
    ap.add_argument(
        "--baseline-instances",
        type=int,
        default=10,
        help="instances per size for the plain MILP (default 10)",
    )
    ap.add_argument(
        "--baseline-time-limit",
        type=float,
        default=2.0,
        help="time limit per plain-MILP solve in seconds (default 2)",
    )
    ap.add_argument(
        "--miqcp-sizes",
        type=parse_sizes,
        default=parse_sizes(DEFAULT_MIQCP_SIZES),
        help=f"extra sizes for the original MIQCP on Gurobi (default {DEFAULT_MIQCP_SIZES})",
    )
    ap.add_argument("--miqcp-time-limit", type=float, default=10.0)
    ap.add_argument("--sigma", type=float, default=0.4, help="sigma of the instances (default 0.4)")
    ap.add_argument("--long-time-limit", type=float, default=0.5)
    ap.add_argument("--short-time-limit", type=float, default=0.05)
    return ap


def _progress(total: int, quiet: bool) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=quiet or not console.is_terminal,
    )


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
            ours: dict[str, tuple[float, float]] = {}
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
        "ratios": _ratios(summaries, backends),
        "targets": _targets(summaries),
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


def _plain(row, size, loads, params, m, cur, ours, limit) -> None:
    model = baseline.plain_long(loads, params, m)
    c0 = time.thread_time()
    res = milp.solve_highs(model, limit)
    r = row(size, "long", "plain MILP/highs")
    r.cpu_ms.append((time.thread_time() - c0) * 1e3)
    r.times_ms.append(res.seconds * 1e3)
    _status(r, res.status)
    if res.x is not None:
        w, e = baseline.plain_long_cores(res.x, m)
        r.objectives.append(w + e)
        if res.status == "optimal" and ours["long"][1]:
            r.compared += 1
            r.agree += int(abs(w + e - ours["long"][0]) < 1e-6)
            r.ours_lower += int(w + e > ours["long"][0] + 1e-6)
    model = baseline.plain_short(loads, params, cur.working, cur.offloading, cur)
    c0 = time.thread_time()
    res = milp.solve_highs(model, limit)
    r = row(size, "short", "plain MILP/highs")
    r.cpu_ms.append((time.thread_time() - c0) * 1e3)
    r.times_ms.append(res.seconds * 1e3)
    _status(r, res.status)
    if res.x is not None:
        a, p = baseline.plain_short_decode(res.x, len(loads), cur.working, cur.offloading)
        mig = migrations(a, p, cur.working, cur)
        r.objectives.append(mig)
        if res.status == "optimal" and ours["short"][1]:
            r.compared += 1
            r.agree += int(abs(mig - ours["short"][0]) < 1e-6)
            r.ours_lower += int(mig > ours["short"][0] + 1e-6)


def _status(r: Row, status: str) -> None:
    if status == "optimal":
        r.optimal += 1
    elif status == "infeasible":
        r.infeasible += 1
    else:
        r.unproven += 1  # time limit, with or without an incumbent


def _miqcp(row, size, loads, params, m, cur, ours, env, limit) -> None:
    for model, build in (
        ("long", lambda: baseline.miqcp_long(loads, params, m, env)),
        (
            "short",
            lambda: baseline.miqcp_short(loads, params, cur.working, cur.offloading, cur, env, m),
        ),
    ):
        r = row(size, model, "MIQCP/gurobi")
        md = build()
        c0 = time.thread_time()
        try:
            res = baseline.solve_gurobi_model(md, limit)
        except milp.BackendError:
            r.errors += 1  # licence: too large
            md.dispose()
            continue
        r.cpu_ms.append((time.thread_time() - c0) * 1e3)
        r.times_ms.append(res.seconds * 1e3)
        _status(r, res.status)
        if res.objective is not None:
            # the original's short objective counts each move and each re-pointing twice
            obj = res.objective if model == "long" else res.objective / 2.0
            r.objectives.append(obj)
            if res.status == "optimal" and ours[model][1]:
                r.compared += 1
                r.agree += int(abs(obj - ours[model][0]) < 1e-6)
                r.ours_lower += int(obj > ours[model][0] + 1e-6)
        md.dispose()


def _ratios(rows: list[dict[str, Any]], backends: list[str]) -> list[dict[str, Any]]:
    by = {(r["size"], r["model"], r["method"]): r for r in rows}
    out = []
    for (size, model, method), r in by.items():
        if method not in ("plain MILP/highs", "MIQCP/gurobi") or not r["n"]:
            continue
        for b in backends:
            o = by.get((size, model, b))
            if not o or not o["n"] or not r["p50_ms"]:
                continue
            out.append(
                {
                    "size": size,
                    "model": model,
                    "ours": b,
                    "against": method,
                    "p50_ratio": o["p50_ms"] / r["p50_ms"],
                    "p99_ratio": o["p99_ms"] / r["p99_ms"] if r["p99_ms"] else None,
                }
            )
    return out


def _targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for size, model, limit in (("64x16", "short", 10.0), ("256x32", "long", 100.0)):
        r = next(
            (x for x in rows if (x["size"], x["model"], x["method"]) == (size, model, "highs")),
            None,
        )
        if r is None or not r["n"]:
            continue
        out.append(
            {
                "target": f"{model} model p99 < {limit:g} ms at {size} (highs)",
                "p99_ms": r["p99_ms"],
                "cpu_p99_ms": r["cpu_p99_ms"],
                "met_cpu": r["cpu_p99_ms"] < limit and r["optimal"] == r["n"],
                "proven_optimal": f"{r['optimal']}/{r['n']}",
                "met": r["p99_ms"] < limit and r["optimal"] == r["n"],
            }
        )
    return out


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def print_tables(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(180, Console().width))
    p = result["params"]
    t = Table(
        title=f"planner bench (sigma={p['sigma']}, caps {p['rho_max_working']:.3g}/"
        f"{p['rho_max_offloading']:.3g}, one thread)"
    )
    cols = [
        "size",
        "model",
        "method",
        "n",
        "p50 ms",
        "p99 ms",
        "max ms",
        "cpu p50",
        "cpu p99",
        "mean obj",
        "optimal",
        "unproven",
        "fallback",
        "infeasible",
        "licence err",
        "agrees w/ ours",
        "ours lower",
    ]
    for c in cols:
        t.add_column(c, justify="right" if c not in ("model", "method") else "left")
    for r in result["rows"]:
        t.add_row(
            r["size"],
            r["model"],
            r["method"],
            str(r["n"]),
            _fmt(r["p50_ms"]),
            _fmt(r["p99_ms"]),
            _fmt(r["max_ms"]),
            _fmt(r["cpu_p50_ms"]),
            _fmt(r["cpu_p99_ms"]),
            _fmt(r["mean_objective"]),
            str(r["optimal"]),
            str(r["unproven"]),
            str(r["fallback"]),
            str(r["infeasible"]),
            str(r["errors"]),
            r["agree_with_ours"],
            str(r["ours_lower"]) if r["agree_with_ours"] else "",
        )
    console.print(t)
    if result["ratios"]:
        rt = Table(title="time ratio ours / baseline (below 1: ours faster)")
        for c in ("size", "model", "ours", "against", "p50 ratio", "p99 ratio"):
            rt.add_column(c)
        for r in result["ratios"]:
            rt.add_row(
                r["size"],
                r["model"],
                r["ours"],
                r["against"],
                _fmt(r["p50_ratio"]),
                _fmt(r["p99_ratio"]),
            )
        console.print(rt)
    for tg in result["targets"]:
        mark = "met" if tg["met"] else "NOT met"
        cpu = "met" if tg["met_cpu"] else "NOT met"
        console.print(
            f"target {tg['target']}: wall p99 {tg['p99_ms']:.3g} ms ({mark}); thread CPU p99 "
            f"{tg['cpu_p99_ms']:.3g} ms ({cpu}); proven optimal {tg['proven_optimal']}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.instances < 1:
        ap.error("--instances must be at least 1")
    sizes = list(dict.fromkeys([*args.sizes, *args.baseline_sizes, *args.miqcp_sizes]))
    backends = [b for b in args.backends.split(",") if b] or available_backends()
    total = len(sizes) * args.instances * len(backends)
    total += sum(min(args.instances, args.baseline_instances) for _ in args.baseline_sizes)
    total += len(args.miqcp_sizes) * args.instances if milp.gurobi_available() else 0
    t0 = time.perf_counter()
    with _progress(total, args.json) as prog:
        task = prog.add_task("bench", total=total)

        def tick(label: str) -> None:
            prog.update(task, advance=1, description=label)

        result = run(args, tick)
    result["wall_s"] = time.perf_counter() - t0
    # the machine may be shared: the load average tells how much wall times are inflated
    result["load_average"] = list(os.getloadavg())
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print_tables(result)
        la = ", ".join(f"{x:.2f}" for x in result["load_average"])
        print(f"wall time {result['wall_s']:.1f} s; load average at the end {la}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
