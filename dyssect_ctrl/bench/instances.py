"""The bench's instances, random and repeatable: the loads of one instance, and a
random current plan for the short model.

Seed 100000*S + 1000*M + k (+ --seed); total load uniform on [0.5, 0.45*M] cores; even k uniform
shard loads, odd k Zipf(1.1) with permuted ranks; every shard capped at 0.8 core with the excess
spread over the others. Short-model input: W and E from the long result, a random current
assignment on them (every core holds a shard), each working core pointed at a random offloading
core, every offloading core used, r = 0.
"""

from __future__ import annotations

import argparse
import random

from dyssect_ctrl.model import Plan

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
