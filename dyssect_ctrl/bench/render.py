"""Rendering a bench result as tables on the terminal."""

from __future__ import annotations

from typing import Any


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
