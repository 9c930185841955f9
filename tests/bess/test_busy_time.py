"""Busy time per packet measured by the working and offloading cores, against a real bessd."""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest

from tests.bess import harness
from tests.bess.harness import apply_plan, get_stats, wait_not_migrating

pytestmark = [
    pytest.mark.bess,
    pytest.mark.timeout(180, func_only=True),  # the session setup builds the plugin
]

SHARDS = 8
COSTS = (0, 200, 400)  # CPU NF iterations per payload byte
ROUNDS = 24
WINDOW_S = 0.025
KINDS = ("working", "offloading")


def totals(b: Any) -> dict[str, tuple[int, int]]:
    """Busy cycles and packets so far, summed over the slots of each kind."""
    st = get_stats(b)
    return {
        k: (sum(getattr(st, f"{k}_busy_cycles")), sum(getattr(st, f"{k}_busy_packets")))
        for k in KINDS
    }


def cycles_per_packet(b: Any) -> dict[str, float]:
    """Busy cycles per packet of each kind over one window (a kind with no packets left out:
    its worker may not have run in a window this short on a busy machine)."""
    t0 = totals(b)
    time.sleep(WINDOW_S)
    t1 = totals(b)
    out = {}
    for k in KINDS:
        (c0, p0), (c1, p1) = t0[k], t1[k]
        if p1 > p0:
            assert c1 > c0
            out[k] = (c1 - c0) / (p1 - p0)
    return out


def set_cost(b: Any, cost: int) -> None:
    for nf in ("cpu_w0", "cpu_o0"):
        harness.cmd(b, nf, "set_cost", "DyssectCpuNFCommandSetCostArg", {"cost_per_byte": cost})


def test_busy_cycles_per_packet_follow_the_nf_cost(bess: Any) -> None:
    # Working slot 0 on worker 1 (CPU 1), offloading slot 0 on worker 2 (CPU 0, with the source
    # and the dispatcher); half of every shard's packets are offloaded.
    harness.seq_pipeline(
        bess,
        SHARDS,
        working=1,
        offloading=1,
        flows=64,
        rate_pps=10000,
        workers=[(0, 0), (1, 1), (2, 0)],
    )
    assert get_stats(bess).tsc_hz > 1e8
    per: dict[tuple[str, int], list[float]] = {}
    with harness.running(bess):
        apply_plan(
            bess,
            {
                "working": 1,
                "offloading": 1,
                "assignment": [0] * SHARDS,
                "pairing": [0],
                "offload": [0.5] * SHARDS,
            },
        )
        assert wait_not_migrating(bess, 10)
        # rounds interleave the costs so that a noisy stretch hits all of them alike
        for _ in range(ROUNDS):
            for cost in COSTS:
                set_cost(bess, cost)
                time.sleep(0.05)  # the batches of the old cost finish
                for kind, cpp in cycles_per_packet(bess).items():
                    per.setdefault((kind, cost), []).append(cpp)
    # Time-sharing the CPU only adds cycles (a batch preempted midway): the best window of
    # each cost is the one least disturbed.
    assert len(per) == len(KINDS) * len(COSTS), f"windows without packets: {sorted(per)}"
    best = {k: min(v) for k, v in per.items()}
    print({f"{k[0]}@{k[1]}": (round(best[k]), round(statistics.median(v))) for k, v in per.items()})
    for kind in KINDS:
        base, one, two = (best[(kind, c)] for c in COSTS)
        # The NF's cost per packet is linear in its iterations: the cycles it adds at twice the
        # cost are twice those it adds at the cost.
        added_one, added_two = one - base, two - base
        assert added_one > 0, f"{kind}: cost {COSTS[1]} added {added_one:.0f} cycles"
        assert added_two == pytest.approx(2 * added_one, rel=0.25), kind
