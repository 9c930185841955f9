#!/usr/bin/env python3
"""Dyssect data-plane benchmark, in one bessd on virtual devices (no NIC, no hugepages).

1. Rate: the same chain (DyssectNAT -> DyssectCpuNF(cost 0) -> DyssectEgress -> Sink) fed by a
   BESS Source (64-byte UDP, 1024 flows), on ONE worker, once with the Dyssect bookkeeping
   (software dispatcher -> working core: shards, ownership, stats, ranking, migration checks)
   and once without (DyssectPlainClassifier: the same flow-table lookup, nothing else).
   Prints both packet rates and their ratio (target >= 0.90). Rounds alternate to spread
   the noise of a shared machine; the medians are compared.
2. Migrations: two working cores at a steady offered load, N shard migrations driven through
   apply_plan; prints packets lost (sent - received) and reordered (per-flow sequence check in
   bessd), target 0 and 0.

Usage: DYSSECT_BESS_SRC=/path/to/bess python3 native/bench/dataplane_bench.py [--seconds 2]
       [--rounds 3] [--migrations 1000] [--rate 50000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bess import harness  # noqa: E402


def rate_pipeline(b: Any, dyssect: bool) -> None:
    b.add_worker(0, 0)
    b.create_module("DyssectShardManager", "dyssect", {"shards": 16, "cores": [0]})
    b.create_module("Source", "src", {"pkt_size": 64})
    b.create_module("Rewrite", "tmpl", {"templates": [harness.udp_template()]})
    b.create_module("DyssectSeqGen", "gen", {"flows": 1024})
    b.create_module("Sink", "sink", {})
    b.connect_modules("src", "tmpl")
    b.connect_modules("tmpl", "gen")
    b.attach_task("src", wid=0)
    if dyssect:
        b.create_module("DyssectDispatcher", "disp", {})
        b.connect_modules("gen", "disp")
        b.attach_task("disp", wid=0)
        b.create_module("DyssectWorkingCore", "w0", {"slot": 0})
        harness.chain(b, "w0", "x", "sink")
        b.attach_task("w0", wid=0)
    else:
        b.create_module("DyssectPlainClassifier", "plain", {})
        b.connect_modules("gen", "plain")
        harness.chain(b, "plain", "x", "sink")


def measure_rate(b: Any, dyssect: bool, seconds: float) -> tuple[float, dict[str, int]]:
    b.pause_all()
    b.reset_all()
    rate_pipeline(b, dyssect)
    b.resume_all()
    time.sleep(0.5)  # warm-up
    s0 = harness.get_stats(b)
    t0 = time.monotonic()
    time.sleep(seconds)
    s1 = harness.get_stats(b)
    t1 = time.monotonic()
    b.pause_all()
    drops = {k: v for k, v in s1.drops.items() if v}
    return (s1.packets_out - s0.packets_out) / (t1 - t0), drops


def run_migrations(b: Any, count: int, rate: int) -> dict[str, Any]:
    b.pause_all()
    b.reset_all()
    shards, flows = 16, 256
    harness.seq_pipeline(
        b,
        shards,
        working=2,
        offloading=0,
        flows=flows,
        rate_pps=rate,
        workers=[(0, 0), (1, 1), (2, 0)],
    )
    rnd = random.Random(1)
    assignment = [0] * shards
    done = 0
    stuck = 0
    b.resume_all()
    time.sleep(0.3)
    t0 = time.monotonic()
    while done < count:
        s = rnd.randrange(shards)
        assignment[s] ^= 1  # one shard migrates per plan
        r = harness.apply_plan(
            b,
            {
                "working": 2,
                "offloading": 0,
                "assignment": assignment,
                "pairing": [-1, -1],
                "offload": [0.0] * shards,
            },
        )
        done += r.migrations
        if not harness.wait_not_migrating(b, 10):
            stuck += 1
            break
    elapsed = time.monotonic() - t0
    b.disconnect_modules("tmpl", 0)  # stop offering load, then let everything drain
    last: list[Any] = []

    def settled() -> bool:
        sent, check, st = harness.seq_totals(b)
        last[:] = [sent, check, st]
        return sent == check.received + harness.total_drops(st) and not st.migrating

    harness.wait_until(settled, 30, 0.1)
    b.pause_all()
    sent, check, st = last
    return {
        "migrations": done,
        "seconds": elapsed,
        "sent": sent,
        "received": check.received,
        "lost": sent - check.received,
        "reordered": check.reordered,
        "gaps": check.gaps,
        "drops": {k: v for k, v in st.drops.items() if v},
        "migrations_done": st.migrations_done,
        "stuck": stuck,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bess-src", default=None)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--migrations", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=50000)
    args = ap.parse_args()
    src = Path(args.bess_src) if args.bess_src else harness.bess_src()
    if src is None:
        print(harness.SKIP_REASON)
        return 2
    so = harness.build_plugin(src)
    log = Path(tempfile.mkstemp(prefix="dyssect-bench-bessd-", suffix=".log")[1])
    daemon = harness.start_bessd(src, so.parent, log)
    try:
        b = harness.connect(harness.import_pybess(src), daemon)
        plain: list[float] = []
        dys: list[float] = []
        for i in range(args.rounds):
            p, pd = measure_rate(b, False, args.seconds)
            d, dd = measure_rate(b, True, args.seconds)
            plain.append(p)
            dys.append(d)
            print(
                f"round {i + 1}: plain {p / 1e6:.3f} Mpps  dyssect {d / 1e6:.3f} Mpps  "
                f"ratio {d / p:.3f}  drops plain={pd} dyssect={dd}",
                flush=True,
            )
        mp, md = statistics.median(plain), statistics.median(dys)
        print("== rate, one worker, NAT -> CPU NF (cost 0), 64 B UDP, 1024 flows ==")
        print(f"plain chain (no Dyssect bookkeeping): {mp / 1e6:.3f} Mpps (median)")
        print(f"Dyssect chain:                        {md / 1e6:.3f} Mpps (median)")
        print(f"ratio: {md / mp:.3f} (target >= 0.90)")
        m = run_migrations(b, args.migrations, args.rate)
        print(f"== {m['migrations']} shard migrations at {args.rate} pps offered ==")
        print(
            f"sent {m['sent']}  received {m['received']}  lost {m['lost']}  "
            f"reordered {m['reordered']}  gaps {m['gaps']}  drops {m['drops']}  "
            f"hand-offs completed {m['migrations_done']}  in {m['seconds']:.1f} s"
        )
        print(f"lost: {m['lost']} (target 0)   reordered: {m['reordered']} (target 0)")
        b.disconnect()
        ok = md / mp >= 0.90 and m["lost"] == 0 and m["reordered"] == 0 and not m["stuck"]
        return 0 if ok else 1
    finally:
        daemon.stop()
        print(f"bessd log: {log}")


if __name__ == "__main__":
    sys.exit(main())
