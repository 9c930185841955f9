"""`dyssect-ctrl`: run | status | check-config | plan | bench | record | load | report |
experiment.

check-config and plan live here; run, status and bench belong to their own modules and are
imported only when asked for, so a missing piece breaks only its own subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

from dyssect_ctrl import __version__, inputs
from dyssect_ctrl.config import BACKENDS, Config, ConfigError, load_config
from dyssect_ctrl.model import Plan, PlanResult, Snapshot
from dyssect_ctrl.snapshot import SnapshotError, load_snapshot, parse_snapshot_line

PROG = "dyssect-ctrl"
MODES = ("long", "short", "both")
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2  # malformed snapshot (and argparse usage errors)

# Subcommands owned by other modules: name -> (module, help). Their arguments pass through.
DELEGATED = {
    "run": ("dyssect_ctrl.service", "run the controller service (run --config FILE)"),
    "status": ("dyssect_ctrl.status", "show the running controller's state"),
    "calibrate": (
        "dyssect_ctrl.calibrate",
        "print the service time per packet the data plane measures",
    ),
    "bench": ("dyssect_ctrl.bench", "time the planner backends over a grid of instances"),
    "record": ("dyssect_ctrl.experiment.record", "sample the running controller into JSON lines"),
    "load": ("dyssect_ctrl.experiment.load", "set the offered load of the pipeline's test source"),
    "ports": ("dyssect_ctrl.experiment.ports", "print the data plane's port counters as JSON"),
    "report": ("dyssect_ctrl.experiment.report", "summary.json and plots of a recorded run"),
    "experiment": (
        "dyssect_ctrl.experiment.runner",
        "run an experiment spec's points through Ansible (experiment run SPEC.yml)",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Dyssect controller: plans working/offloading cores, shards and offload.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = sub.add_parser("check-config", help="validate a config file; changes nothing")
    check.add_argument("file", metavar="FILE")

    plan = sub.add_parser("plan", help="plan one snapshot and print the plan")
    plan.add_argument(
        "--snapshot", required=True, metavar="FILE", help="snapshot JSON ('-': stdin)"
    )
    plan.add_argument("--mode", choices=MODES, default="both", help="default: both")
    plan.add_argument(
        "--solver", choices=BACKENDS, default=None, help="default: solver.backend of the config"
    )
    plan.add_argument("--config", metavar="FILE", help="config for defaults and time limits")
    plan.add_argument("--json", action="store_true", help="print one JSON object")

    for name, (_module, text) in DELEGATED.items():
        # Listed for --help only; main() hands their arguments over untouched.
        sub.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in DELEGATED:
        return _delegate(args_list[0], args_list[1:])
    args = build_parser().parse_args(args_list)
    if args.command == "check-config":
        return check_config(args.file)
    if args.command == "plan":
        return plan_command(args)
    raise AssertionError(args.command)  # argparse rejects anything else


def _delegate(name: str, argv: list[str]) -> int:
    module_name = DELEGATED[name][0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        print(f"{PROG} {name}: not available ({e})", file=sys.stderr)
        return EXIT_ERROR
    entry: Callable[[list[str]], int] = module.main
    return int(entry(argv))


def check_config(path: str) -> int:
    try:
        load_config(path)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return EXIT_ERROR
    print(f"{path}: ok")
    return EXIT_OK


def _read_snapshot(path: str, config: Config | None) -> Snapshot:
    if path == "-":
        try:
            text = inputs.read_stream(sys.stdin.buffer, inputs.MAX_SNAPSHOT_BYTES)
            return parse_snapshot_line(text, config)
        except (SnapshotError, inputs.InputError) as e:
            raise SnapshotError(f"<stdin>: {e}") from None
    return load_snapshot(path, config)


def plan_command(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config) if args.config else None
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return EXIT_ERROR
    try:
        snapshot = _read_snapshot(args.snapshot, config)
    except SnapshotError as e:
        print(str(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    solver_cfg = (config or Config()).solver
    from dyssect_ctrl import planner  # the heavy imports (highspy, gurobipy) only when planning

    try:
        result = planner.plan(
            snapshot.loads(),
            snapshot.params,
            snapshot.cores,
            snapshot.current_or_initial(),
            mode=args.mode,
            solver=args.solver or solver_cfg.backend,
            long_time_limit_s=solver_cfg.long_time_limit_s,
            short_time_limit_s=solver_cfg.short_time_limit_s,
            greedy_deadline_s=solver_cfg.greedy_deadline_s,
        )
    except ValueError as e:  # the planner's refusal of an input; other exceptions are bugs
        print(f"{PROG} plan: {e}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(_finite(result.to_json()), allow_nan=False))
    else:
        print_plan(snapshot, result, config)
    return EXIT_OK


def _finite(value: Any) -> Any:
    """JSON has no inf/nan: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _cpu_names(config: Config | None, cores: int) -> tuple[list[str], list[str]]:
    """CPU ids of the working and offloading slots (model.py's mapping), when known."""
    if config is None or config.core_count != cores:
        return [f"w{i}" for i in range(cores)], [f"o{j}" for j in range(cores)]
    cpus = config.cores.list
    return [f"w{i} (cpu {cpus[i]})" for i in range(cores)], [
        f"o{j} (cpu {cpus[cores - 1 - j]})" for j in range(cores)
    ]


def _shard_list(shards: list[int], offload: Sequence[float]) -> str:
    parts = []
    for s in shards:
        r = offload[s] if offload else 0.0
        parts.append(f"{s}" if r <= 0 else f"{s}(r={r:.2f})")
    text = " ".join(parts)
    return text if len(text) <= 60 else text[:57] + "..."


def _load_cell(load: float, cap: float) -> str:
    # Over the cap (only in an infeasible plan): flag it so it shows without colour too.
    return f"{load:.3f}" if load <= cap + 1e-9 else f"[bold red]{load:.3f}![/]"


def print_plan(snapshot: Snapshot, result: PlanResult, config: Config | None) -> None:
    """A short human-readable view of a plan."""
    from rich.console import Console
    from rich.table import Table

    from dyssect_ctrl.model import core_loads

    plan: Plan = result.plan
    params = snapshot.params
    loads = snapshot.loads()
    work, offl = core_loads(plan, loads, params)
    wnames, onames = _cpu_names(config, snapshot.cores)
    # soft_wrap: long summary lines stay whole when piped (rich assumes 80 columns then).
    console = Console(highlight=False, soft_wrap=True)
    status = "feasible" if result.feasible else "INFEASIBLE (best balance on all cores)"
    console.print(
        f"W={plan.working} E={plan.offloading} of M={snapshot.cores}  {status}  "
        f"solver={result.solver}{' (optimal)' if result.optimal else ''}  "
        f"objective={result.objective:g}  solve={result.solve_ms:.1f} ms"
    )
    if result.fallback:
        console.print(f"fallback: {result.fallback}")
    if result.message:
        console.print(result.message)
    console.print(
        f"total load {sum(loads):.3f} cores; caps: working {params.rho_max_working:.3f}, "
        f"offloading {params.rho_max_offloading:.3f}"
    )
    table = Table(show_header=True, header_style="bold")
    table.add_column("core")
    table.add_column("load", justify="right")
    table.add_column("cap", justify="right")
    table.add_column("offloads to / serves")
    table.add_column("shards")
    for i in range(plan.working):
        shards = [s for s, a in enumerate(plan.assignment) if a == i]
        pair = plan.pairing.get(i)
        table.add_row(
            wnames[i],
            _load_cell(work[i], params.rho_max_working),
            f"{params.rho_max_working:.3f}",
            "" if pair is None else onames[pair],
            _shard_list(shards, plan.offload),
        )
    for j in range(plan.offloading):
        served = [wnames[i] for i, o in sorted(plan.pairing.items()) if o == j]
        table.add_row(
            onames[j],
            _load_cell(offl[j], params.rho_max_offloading),
            f"{params.rho_max_offloading:.3f}",
            " ".join(served),
            "",
        )
    console.print(table)
    if config is not None and config.core_count != snapshot.cores:
        console.print(
            f"(CPU ids not shown: cores.list has {config.core_count} entries, "
            f"the snapshot {snapshot.cores} cores)"
        )
