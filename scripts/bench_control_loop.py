#!/usr/bin/env python3
"""Control-loop benchmark: stats read -> plan applied latency (p50/p99) and controller CPU.

Runs the real ControlLoop (real planner, real epochs) for N short epochs against either a live
bessd (--grpc-url, with the Dyssect pipeline loaded at S shards and M cores) or, without one,
the replay data plane fed with generated snapshots whose load moves between levels. It says which
one it measured. Target: p99 < 20 ms and CPU < 10 % of one core.

    python scripts/bench_control_loop.py                       # replay, S=64, M=16, 600 epochs
    python scripts/bench_control_loop.py --grpc-url 127.0.0.1:10514 --pybess-path /opt/bess
    python scripts/bench_control_loop.py --bessd /work/bess-src   # starts its own bessd

With --bessd the script starts a bessd of that BESS tree (-m 0, a free port, the plugin .so of
--plugin-dir copied aside), builds a pipeline of S shards on M slots (worker k+1 runs working
slot k and offloading slot M-1-k, worker 0 runs a rate-limited Source -> DyssectSeqGen ->
DyssectDispatcher), changes the offered rate every 50 epochs so the controller has to scale,
and stops that bessd (by PID) at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from dyssect_ctrl.config import parse_config
from dyssect_ctrl.dataplane import open_dataplane
from dyssect_ctrl.decision_log import DecisionLog
from dyssect_ctrl.loop import ControlLoop
from dyssect_ctrl.metrics import Metrics

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests package: the harness
from tests.bess import harness


def write_snapshots(path: Path, epochs: int, shards: int, cores: int, seed: int) -> None:
    """Load levels (in cores) that change every 50 epochs, skewed across shards, with noise."""
    rng = random.Random(seed)
    levels = [0.3 * cores, 0.55 * cores, 0.2 * cores, 0.45 * cores, 0.1 * cores]
    weights = [rng.random() ** 2 + 0.02 for _ in range(shards)]
    with path.open("w") as f:
        for e in range(epochs):
            total = levels[(e // 50) % len(levels)]
            noisy = [w * rng.uniform(0.9, 1.1) for w in weights]
            scale = total * 0.1 / 1e-6 / sum(noisy)
            pk = [int(w * scale) for w in noisy]
            line = {
                "cores": cores,
                "window_s": 0.1,
                "shards": [{"packets": p, "bytes": 100 * p} for p in pk],
            }
            f.write(json.dumps(line) + "\n")


RATES_PPS = (20_000, 60_000, 30_000, 80_000, 10_000)  # offered load phases, 50 epochs each


def start_bessd(src: Path, plugin_dir: Path, tmp: Path) -> tuple[harness.Daemon, Any]:
    """A bessd of `src` with a copy of the plugin (harness.start_bessd), and a pybess client."""
    modules = tmp / "modules"
    modules.mkdir()
    shutil.copy(plugin_dir / "dyssect.so", modules / "dyssect.so")
    bessd = harness.start_bessd(src, modules, tmp / "bessd.log")
    return bessd, harness.connect(harness.import_pybess(src), bessd, timeout_s=120)


def udp_frame() -> bytes:
    eth = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
    ip = bytes.fromhex("4500002e00010000401100000a000001c0000201")
    udp = bytes.fromhex("27100035001a0000") + bytes(18)
    return eth + ip + udp


def build_pipeline(b: Any, shards: int, cores: int) -> None:
    """S shards on M slots; slot k's working and slot M-1-k's offloading task on worker k+1."""
    ncpu = os.cpu_count() or 1
    b.pause_all()
    b.reset_all()
    b.add_worker(0, 0)
    for k in range(cores):
        b.add_worker(k + 1, (k + 1) % ncpu)
    b.create_module(
        "DyssectShardManager",
        "dyssect",
        {"shards": shards, "cores": list(range(1, cores + 1)), "working": 1},
    )
    b.create_module("Source", "src", {"pkt_size": 60})
    b.create_module("Rewrite", "tmpl", {"templates": [udp_frame()]})
    b.create_module("DyssectSeqGen", "gen", {"flows": 4096})
    b.create_module("DyssectDispatcher", "disp", {})
    b.connect_modules("src", "tmpl")
    b.connect_modules("tmpl", "gen")
    b.connect_modules("gen", "disp")
    b.add_tc("rl", policy="rate_limit", wid=0, resource="packet", limit={"packet": RATES_PPS[0]})
    b.attach_task("src", parent="rl")
    b.attach_task("disp", wid=0)
    for k in range(cores):
        j = cores - 1 - k
        b.create_module("DyssectWorkingCore", f"w{k}", {"slot": k})
        b.create_module("DyssectOffloadingCore", f"o{j}", {"slot": j})
        b.create_module("DyssectEgress", f"eg{k}", {})
        b.create_module("Sink", f"sink{k}", {})
        b.connect_modules(f"w{k}", f"eg{k}")
        b.connect_modules(f"o{j}", f"eg{k}")
        b.connect_modules(f"eg{k}", f"sink{k}")
        b.attach_task(f"w{k}", wid=k + 1)
        b.attach_task(f"o{j}", wid=k + 1)
    b.resume_all()


def vary_rate(b: Any, stop: threading.Event, period_s: float) -> None:
    n = 0
    while not stop.wait(period_s):
        n += 1
        b.update_tc_params("rl", resource="packet", limit={"packet": RATES_PPS[n % len(RATES_PPS)]})


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))
    return xs[k]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=600)
    ap.add_argument("--shards", type=int, default=64)
    ap.add_argument("--cores", type=int, default=16)
    ap.add_argument("--short-ms", type=int, default=100)
    ap.add_argument("--long-ms", type=int, default=1000)
    ap.add_argument("--solver", default="highs")
    ap.add_argument("--grpc-url", help="live bessd; without it the replay data plane is used")
    ap.add_argument("--pybess-path", default="/opt/bess")
    ap.add_argument("--module", default="dyssect")
    ap.add_argument("--bessd", metavar="BESS_SRC", help="start a bessd of this BESS tree")
    ap.add_argument(
        "--plugin-dir",
        default=str(Path(__file__).resolve().parents[1] / "native" / "build" / "plugin"),
    )
    ap.add_argument(
        "--t-working-us",
        type=float,
        default=None,
        help="per-packet cost for the load estimate (default 1; 100 with --bessd)",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="also print the result as JSON")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    tmp = Path(tempfile.mkdtemp(prefix="dyssect-bench-loop-"))
    core_list = list(range(2, 2 + args.cores))
    bessd: harness.Daemon | None = None
    rate_stop = threading.Event()
    model: dict[str, Any] = {}
    if args.bessd:
        src = Path(args.bessd)
        bessd, b = start_bessd(src, Path(args.plugin_dir), tmp)
        url = bessd.url
        build_pipeline(b, args.shards, args.cores)
        threading.Thread(
            target=vary_rate, args=(b, rate_stop, 50 * args.short_ms / 1000), daemon=True
        ).start()
        args.grpc_url, args.pybess_path = url, str(src)
        core_list = list(range(1, args.cores + 1))
        model["t_working_us"] = args.t_working_us or 100.0
    elif args.t_working_us:
        model["t_working_us"] = args.t_working_us
    if args.grpc_url:
        dataplane: dict[str, Any] = {
            "kind": "bess",
            "grpc_url": args.grpc_url,
            "pybess_path": args.pybess_path,
            "module": args.module,
        }
        source = f"live bessd at {args.grpc_url}" + (
            f" (started here from {args.bessd}, rates {RATES_PPS} pps)" if args.bessd else ""
        )
    else:
        replay = tmp / "snapshots.jsonl"
        write_snapshots(replay, args.epochs, args.shards, args.cores, args.seed)
        dataplane = {"kind": "replay", "replay_file": str(replay)}
        source = "replay data plane (generated snapshots; no live bessd)"
    config = parse_config(
        {
            "dataplane": dataplane,
            "cores": {"list": core_list, "controller": 0 if args.bessd else 1},
            "model": model,
            "shards": args.shards,
            "epochs": {"short_ms": args.short_ms, "long_ms": args.long_ms},
            "solver": {"backend": args.solver},
            "state_dir": str(tmp / "state"),
            "metrics": {"port": 0},
        }
    )
    metrics = Metrics(CollectorRegistry())
    decisions = DecisionLog(tmp / "state", 10 << 20, 1)
    loop = ControlLoop(config, open_dataplane(config), metrics, decisions)

    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    try:
        loop.run(threading.Event(), max_ticks=args.epochs)
    finally:
        wall = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        loop.close()
        decisions.close()
        rate_stop.set()
        if bessd is not None:
            bessd.stop()  # the bessd this script started, by PID
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)

    every = [x * 1e3 for x in loop.latencies]
    applied = [x * 1e3 for x in loop.apply_latencies]
    overhead = [x * 1e3 for x in loop.apply_overheads]
    rpc = [x * 1e3 for x in loop.apply_rpc]
    loop_cpu = loop.loop_cpu_s
    result = {
        "source": source,
        "shards": args.shards,
        "cores": args.cores,
        "solver": args.solver,
        "epochs": args.epochs,
        "wall_s": round(wall, 2),
        "decided_epochs": len(every),
        "applied_plans": len(applied),
        "missed_epochs": loop.counts["missed"],
        "fallbacks": loop.counts["fallbacks"],
        "rejected": loop.counts["rejected"],
        "latency_ms_all": {
            "p50": percentile(every, 50),
            "p99": percentile(every, 99),
            "max": max(every, default=float("nan")),
        },
        "latency_ms_applied": {
            "p50": percentile(applied, 50),
            "p99": percentile(applied, 99),
            "max": max(applied, default=float("nan")),
        },
        "latency_ms_applied_minus_solve": {
            "p50": percentile(overhead, 50),
            "p99": percentile(overhead, 99),
            "max": max(overhead, default=float("nan")),
        },
        "apply_call_ms": {
            "p50": percentile(rpc, 50),
            "p99": percentile(rpc, 99),
            "max": max(rpc, default=float("nan")),
        },
        "loop_thread_cpu_s": round(loop_cpu, 3),
        "load_average": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "cpu_s": round(cpu, 3),
        "cpu_share_of_one_core": cpu / wall,
    }
    print(f"control-loop benchmark: {source}")
    print(
        f"S={args.shards} M={args.cores} solver={args.solver} epochs={args.epochs} "
        f"(short {args.short_ms} ms, long {args.long_ms} ms), wall {wall:.1f} s"
    )
    print(
        f"epochs decided {len(every)}, plans applied {len(applied)}, missed "
        f"{loop.counts['missed']}, fallbacks {loop.counts['fallbacks']}"
    )
    print(f"{'stats read -> plan applied':32} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    rows = (
        ("every decided epoch", every),
        ("epochs that applied a plan", applied),
        ("  the same minus the solve", overhead),
        ("  the data plane's apply call", rpc),
    )
    for name, xs in rows:
        print(
            f"{name:32} {percentile(xs, 50):8.2f} {percentile(xs, 99):8.2f} "
            f"{max(xs, default=float('nan')):8.2f}"
        )
    print(
        f"controller CPU: {cpu:.2f} s over {wall:.1f} s = {100 * cpu / wall:.1f} % of one core"
        f" (mean {statistics.fmean(every) if every else float('nan'):.2f} ms per decision)"
    )
    print(
        f"loop thread alone (no solver): {loop_cpu:.2f} s = {100 * loop_cpu / wall:.1f} % of one"
        f" core; machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    ok = result["latency_ms_all"]["p99"] < 20 and result["cpu_share_of_one_core"] < 0.10
    print(f"target p99 < 20 ms and CPU < 10 % of one core: {'met' if ok else 'NOT met'}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
