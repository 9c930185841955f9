#!/usr/bin/env python3
"""Dyssect data-plane benchmark, in one bessd on virtual devices (no NIC, no hugepages).

1. Rate: the same chain (DyssectNAT -> DyssectCpuNF -> DyssectEgress) on ONE worker, once
   with the Dyssect bookkeeping (software dispatcher -> working core: shards, ownership,
   stats, ranking, migration checks) and once without (DyssectPlainClassifier: the same
   flow hash and flow-table lookup, nothing else), for two chains: the cost-0 chain (64-byte
   UDP, CPU NF cost 0: the data plane's own cost laid bare) and the seed's chain (a
   `--size`-byte payload, 1024 by default, that the CPU NF iterates over at `--nf-cost`
   rounds per byte, 1 by default). Packets (1024 flows) come from a DPDK virtual device (the
   null PMD, filled by Rewrite) and leave through another, or, with `--feed source`, from
   BESS's in-memory Source into a Sink (no device cost at all: the harshest comparison).
   Prints both packet rates, ns per packet, the overhead and the ratio, and the targets:
   cost-0 chain overhead <= 8 ns per packet (ratio >= 0.83 at 41 ns), seed's chain ratio >=
   0.97, both on the medians and on the best rounds. The Dyssect chain runs as deployed on
   one worker: the dispatcher hands each burst straight to the working core (run to
   completion); for comparison (not the headline) the same chain is also measured with the
   hand-off forced through the RX ring (`ring_only`: dispatcher and working core as two
   tasks). Rounds alternate to spread the noise of a shared machine.
2. Migrations: two working cores at a steady offered load, N shard migrations driven through
   apply_plan; prints packets lost (sent - received) and reordered (per-flow sequence check in
   bessd), target 0 and 0.

Usage: DYSSECT_BESS_SRC=/path/to/bess python3 native/bench/dataplane_bench.py [--seconds 1]
       [--rounds 7] [--migrations 1000] [--rate 50000] [--order both] [--feed both]
       [--chain both] [--nf-cost 1] [--size 1024] [--no-ring]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bess import harness  # noqa: E402

RX_RING = 512


# Chains measured: the plain baseline, the Dyssect chain as deployed on one worker (the
# dispatcher hands each burst straight to the working core: run to completion), and the same
# chain forced through the RX ring (dispatcher and working core as two tasks).
PLAIN, DYSSECT, DYSSECT_RING = "plain", "dyssect", "dyssect_ring"

# The rate pipelines' shard manager (--shards, --hash).
MANAGER_ARG: dict[str, Any] = {"shards": 16, "hash": "crc32c"}

# Ethernet + IPv4 + UDP headers: a frame is its payload plus these.
HEADERS = 42
MIN_FRAME = 64
# Targets (issue: data plane cost): the cost-0 chain's overhead, the seed's chain's ratio.
COST0_MAX_OVERHEAD_NS = 8.0
SEED_MIN_RATIO = 0.97


@dataclass(frozen=True)
class Chain:
    """What the NFs get: frame size and the CPU NF's cost per payload byte."""

    name: str
    frame: int
    cost: float

    def describe(self) -> str:
        return (
            f"{self.name}: NAT -> CPU NF (cost {self.cost:g} per byte), "
            f"{self.frame} B UDP frames ({self.frame - HEADERS} B payload)"
        )


def chains(which: str, nf_cost: float, size: int) -> list[Chain]:
    cost0 = Chain("cost-0 chain", MIN_FRAME, 0.0)
    seed = Chain("seed's chain", max(MIN_FRAME, size + HEADERS), nf_cost)
    return {"cost0": [cost0], "seed": [seed], "both": [cost0, seed]}[which]


def rate_pipeline(
    b: Any,
    mode: str,
    random_order: bool = False,
    feed: str = "null",
    chain: Chain = Chain("cost-0 chain", MIN_FRAME, 0.0),
) -> None:
    b.add_worker(0, 0)
    # A short software RX ring, like a NIC RX ring: with a deep one the unthrottled source
    # runs thousands of packets ahead and the working core finds them out of cache.
    b.create_module("DyssectShardManager", "dyssect", dict(MANAGER_ARG, cores=[0], rx_ring=RX_RING))
    if feed == "null":
        # A virtual device as the NIC, in and out: DPDK's null PMD, whose RX hands out
        # 64-byte mbufs (Rewrite fills them) and whose TX frees them.
        size = chain.frame
        b.create_port("PMDPort", "null_in", {"vdev": f"net_null0,size={size}", "num_inc_q": 1})
        b.create_port("PMDPort", "null_out", {"vdev": f"net_null1,size={size}", "num_out_q": 1})
        b.create_module("PortInc", "src", {"port": "null_in"})
    else:
        b.create_module("Source", "src", {"pkt_size": chain.frame})
    b.create_module("Rewrite", "tmpl", {"templates": [harness.udp_template(chain.frame)]})
    b.create_module("DyssectSeqGen", "gen", {"flows": 1024, "random_order": random_order})
    if feed == "null":
        b.create_module("PortOut", "sink", {"port": "null_out"})
    else:
        b.create_module("Sink", "sink", {})
    b.connect_modules("src", "tmpl")
    b.connect_modules("tmpl", "gen")
    b.attach_task("src", wid=0)
    if mode != PLAIN:
        b.create_module("DyssectDispatcher", "disp", {"ring_only": mode == DYSSECT_RING})
        b.connect_modules("gen", "disp")
        b.attach_task("disp", wid=0)
        b.create_module("DyssectWorkingCore", "w0", {"slot": 0})
        harness.chain(b, "w0", "x", "sink", chain.cost)
        b.attach_task("w0", wid=0)
    else:
        b.create_module("DyssectPlainClassifier", "plain", {})
        b.connect_modules("gen", "plain")
        harness.chain(b, "plain", "x", "sink", chain.cost)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_rate(
    b: Any,
    pid: int,
    mode: str,
    seconds: float,
    random_order: bool = False,
    feed: str = "null",
    chain: Chain = Chain("cost-0 chain", MIN_FRAME, 0.0),
) -> tuple[float, float, dict[str, int], float]:
    """Packets per wall-clock second and per CPU-second of bessd (the machine is shared:
    the worker does not always get a whole CPU, so the CPU-normalised rate is the fair one),
    the drops and the share of packets handed over run to completion."""
    b.pause_all()
    b.reset_all()
    rate_pipeline(b, mode, random_order, feed, chain)
    b.resume_all()
    time.sleep(0.5)  # warm-up
    s0 = harness.get_stats(b)
    c0 = cpu_seconds(pid)
    t0 = time.monotonic()
    time.sleep(seconds)
    s1 = harness.get_stats(b)
    c1 = cpu_seconds(pid)
    t1 = time.monotonic()
    b.pause_all()
    drops = {k: v for k, v in s1.drops.items() if v}
    n = s1.packets_out - s0.packets_out
    n_in = s1.packets_in - s0.packets_in
    inline = (s1.packets_inline - s0.packets_inline) / n_in if n_in else 0.0
    return n / (t1 - t0), n / max(c1 - c0, 1e-9), drops, inline


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
        r = harness.apply_plan(b, harness.working_plan(assignment))
        done += r.migrations
        if not harness.wait_not_migrating(b, 10):
            stuck += 1
            break
    elapsed = time.monotonic() - t0
    b.disconnect_modules("tmpl", 0)  # stop offering load, then let everything drain
    sent, check, st = harness.wait_accounted(b, 30)
    b.pause_all()
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


ORDERS = {"sequential": ["sequential"], "random": ["random"], "both": ["sequential", "random"]}
FEEDS = {
    "null": "virtual device (net_null PMD) in and out",
    "source": "in-memory Source and Sink, no device",
}


def ns(per_cpu_s: float) -> float:
    """CPU-nanoseconds per packet from packets per CPU-second."""
    return 1e9 / per_cpu_s if per_cpu_s > 0 else float("inf")


def rate_rounds(
    b: Any,
    pid: int,
    rounds: int,
    seconds: float,
    order: str,
    ring: bool,
    feed: str,
    chain: Chain,
) -> bool:
    """Alternating plain/Dyssect(/ring) rounds; prints the rounds, the medians and the best
    rounds, and whether the chain's target is met (on both). Returns that."""
    random_order = order == "random"
    modes = [PLAIN, DYSSECT] + ([DYSSECT_RING] if ring else [])
    wall: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    inl: dict[str, list[float]] = {m: [] for m in modes}
    for i in range(rounds):
        parts = []
        for mode in modes:
            w, c, d, f = measure_rate(b, pid, mode, seconds, random_order, feed, chain)
            wall[mode].append(w)
            cpu[mode].append(c)
            inl[mode].append(f)
            parts.append(
                f"{mode} {w / 1e6:.3f} Mpps ({c / 1e6:.3f} M/CPU-s"
                + (f", inline {f:.2f}" if mode != PLAIN else "")
                + f", drops {d})"
            )
        print(
            f"[{chain.name}, {FEEDS[feed]}, {order}] round {i + 1}: "
            + "  ".join(parts)
            + f"  ratio {wall[DYSSECT][-1] / wall[PLAIN][-1]:.3f}"
            f" (per CPU-s {cpu[DYSSECT][-1] / cpu[PLAIN][-1]:.3f})",
            flush=True,
        )
    med_w = {m: statistics.median(v) for m, v in wall.items()}
    med_c = {m: statistics.median(v) for m, v in cpu.items()}
    print(
        f"== rate, one worker, {FEEDS[feed]}, {chain.describe()}, 1024 flows, "
        f"flows in {order} order, {MANAGER_ARG['shards']} shards, "
        f"flow hash {MANAGER_ARG['hash']} =="
    )
    labels = {
        PLAIN: "plain chain (no Dyssect bookkeeping)",
        DYSSECT: "Dyssect chain (dispatcher -> working core, run to completion)",
        DYSSECT_RING: "Dyssect chain, RX-ring hand-off forced (ring_only, two tasks)",
    }
    # Each round builds its pipeline afresh, and a pipeline's rate depends on where its
    # tables landed in physical memory (L2 set conflicts): steady within a round, bimodal
    # across rounds. So the best round of each chain (its rate without conflicts) is
    # compared as well as the medians, and the target holds only if both meet it.
    best_c = {m: max(v) for m, v in cpu.items()}
    for m in modes:
        extra = f", inline share {statistics.median(inl[m]):.2f}" if m != PLAIN else ""
        print(
            f"{labels[m]}: {med_w[m] / 1e6:.3f} Mpps, "
            f"{med_c[m] / 1e6:.3f} M packets per CPU-second, {ns(med_c[m]):.1f} ns per packet "
            f"(medians{extra}); best round {best_c[m] / 1e6:.3f} M per CPU-second, "
            f"{ns(best_c[m]):.1f} ns"
        )
    ratio_w = med_w[DYSSECT] / med_w[PLAIN]
    ratio_c = med_c[DYSSECT] / med_c[PLAIN]
    ratio_b = best_c[DYSSECT] / best_c[PLAIN]
    over_c = ns(med_c[DYSSECT]) - ns(med_c[PLAIN])
    over_b = ns(best_c[DYSSECT]) - ns(best_c[PLAIN])
    print(
        f"ratio: {ratio_w:.3f} wall-clock, {ratio_c:.3f} per CPU-second (medians), "
        f"{ratio_b:.3f} per CPU-second (best rounds); Dyssect overhead {over_c:.1f} ns per "
        f"packet (medians), {over_b:.1f} ns (best rounds)"
    )
    if chain.cost == 0:
        met = max(over_c, over_b) <= COST0_MAX_OVERHEAD_NS
        target = f"overhead <= {COST0_MAX_OVERHEAD_NS:g} ns per packet"
    else:
        met = min(ratio_c, ratio_b) >= SEED_MIN_RATIO
        target = f"ratio >= {SEED_MIN_RATIO:g}"
    print(
        f"target ({chain.name}): {target}, medians and best rounds: {'met' if met else 'NOT met'}"
    )
    if ring:
        print(
            f"ring hand-off ratio: {med_w[DYSSECT_RING] / med_w[PLAIN]:.3f} wall-clock, "
            f"{med_c[DYSSECT_RING] / med_c[PLAIN]:.3f} per CPU-second, "
            f"{best_c[DYSSECT_RING] / best_c[PLAIN]:.3f} best rounds (for comparison)"
        )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    return met


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bess-src", default=None)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--migrations", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=50000)
    ap.add_argument(
        "--order",
        choices=sorted(ORDERS),
        default="both",
        help="flow order of the offered packets: round robin (sequential), random, or both",
    )
    ap.add_argument(
        "--feed",
        choices=[*FEEDS, "both"],
        default="both",
        help="where packets come from and go to: a DPDK virtual device (null PMD), BESS's "
        "in-memory Source and Sink, or both",
    )
    ap.add_argument(
        "--chain",
        choices=["cost0", "seed", "both"],
        default="both",
        help="the cost-0 chain (64 B frames, CPU NF cost 0), the seed's chain (--size, "
        "--nf-cost) or both",
    )
    ap.add_argument(
        "--nf-cost",
        type=float,
        default=1.0,
        help="the seed's chain: CPU NF rounds per payload byte (cost_per_byte)",
    )
    ap.add_argument("--size", type=int, default=1024, help="the seed's chain: UDP payload bytes")
    ap.add_argument(
        "--hash",
        choices=["crc32c", "toeplitz"],
        default="crc32c",
        help="the Dyssect chain's flow hash (the manager's hash arg)",
    )
    ap.add_argument("--shards", type=int, default=16, help="shards of the rate pipelines")
    ap.add_argument(
        "--no-ring",
        action="store_true",
        help="skip the forced RX-ring configuration (printed for comparison)",
    )
    args = ap.parse_args()
    MANAGER_ARG.update(shards=args.shards, hash=args.hash)
    src = Path(args.bess_src) if args.bess_src else harness.bess_src()
    so = harness.build_plugin(src)
    log = Path(tempfile.mkstemp(prefix="dyssect-bench-bessd-", suffix=".log")[1])
    daemon = harness.start_bessd(src, so.parent, log)
    try:
        b = harness.connect(harness.import_pybess(src), daemon)
        pid = daemon.proc.pid
        met: list[bool] = []
        feeds = list(FEEDS) if args.feed == "both" else [args.feed]
        for chain in chains(args.chain, args.nf_cost, args.size):
            for feed in feeds:
                for order in ORDERS[args.order]:
                    met.append(
                        rate_rounds(
                            b,
                            pid,
                            args.rounds,
                            args.seconds,
                            order,
                            not args.no_ring,
                            feed,
                            chain,
                        )
                    )
        m = run_migrations(b, args.migrations, args.rate)
        print(f"== {m['migrations']} shard migrations at {args.rate} pps offered ==")
        print(
            f"sent {m['sent']}  received {m['received']}  lost {m['lost']}  "
            f"reordered {m['reordered']}  gaps {m['gaps']}  drops {m['drops']}  "
            f"hand-offs completed {m['migrations_done']}  in {m['seconds']:.1f} s"
        )
        print(f"lost: {m['lost']} (target 0)   reordered: {m['reordered']} (target 0)")
        b.disconnect()
        ok = all(met) and m["lost"] == 0 and m["reordered"] == 0 and not m["stuck"]
        return 0 if ok else 1
    finally:
        daemon.stop()
        print(f"bessd log: {log}")


if __name__ == "__main__":
    sys.exit(main())
