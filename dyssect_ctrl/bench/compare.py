"""Comparing the rows: time ratios of ours against each baseline, and the latency targets."""

from __future__ import annotations

from typing import Any


def ratios(rows: list[dict[str, Any]], backends: list[str]) -> list[dict[str, Any]]:
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


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
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
