"""`dyssect-ctrl bench`: time the planner against the plain MILP and the original MIQCP.

The parts: instances (the instance recipe), run (solving them, one row per size, model and
method), compare (time ratios and targets), render (the tables); this module is the command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from dyssect_ctrl.bench.instances import (
    DEFAULT_BASELINE_SIZES,
    DEFAULT_MIQCP_SIZES,
    DEFAULT_SIZES,
    SHARD_CAP,
    instance,
    parse_sizes,
    random_current,
)
from dyssect_ctrl.bench.render import print_tables
from dyssect_ctrl.bench.run import pct
from dyssect_ctrl.bench.run import run as run_bench
from dyssect_ctrl.planner import available_backends, milp

__all__ = ["SHARD_CAP", "instance", "main", "pct", "random_current"]


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
    from dyssect_ctrl.progress import progress_bar  # rich loads only when the bench runs

    with progress_bar(quiet=args.json, transient=True) as prog:
        task = prog.add_task("bench", total=total)

        def tick(label: str) -> None:
            prog.update(task, advance=1, description=label)

        result = run_bench(args, tick)
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
