"""A lower bound on the migrations any placement with W, E needs from the current plan."""

from __future__ import annotations

import math
from collections.abc import Sequence

from dyssect_ctrl.model import Plan
from dyssect_ctrl.planner.core import EPS, Caps


def min_removals(sizes: list[float], excess: float) -> int:
    """Fewest items whose sum reaches `excess` (largest first)."""
    k = 0
    for v in sorted(sizes, reverse=True):
        if excess <= EPS:
            break
        excess -= v
        k += 1
    return k if excess <= EPS else len(sizes) + 1


def lower_bound(loads: Sequence[float], w: int, e: int, caps: Caps, cur: Plan) -> int:
    """Forced moves (shards on slots >= W), per-core excess, empty cores, broken pairings and
    per-group excess, each a count of actions no placement can do without."""
    n = len(loads)
    forced = sum(1 for s in range(n) if cur.assignment[s] >= w)
    members: list[list[int]] = [[] for _ in range(w)]
    for s in range(n):
        if cur.assignment[s] < w:
            members[cur.assignment[s]].append(s)
    empty = sum(1 for i in range(w) if not members[i])
    g = [sum(loads[s] for s in members[i]) for i in range(w)]
    b = caps.offload_room
    core_cap = caps.working + b if e else caps.working
    need = 0
    for i in range(w):
        if g[i] > core_cap + EPS:
            need += min_removals([loads[s] for s in members[i]], g[i] - core_cap)
    if e == 0:
        pairs = sum(1 for i in range(w) if cur.pairing.get(i) is not None)
        return max(empty, forced + need) + pairs
    valid = {
        i: cur.pairing[i] for i in range(w) if cur.pairing.get(i) is not None and cur.pairing[i] < e
    }
    invalid = w - len(valid)
    unserved = e - len(set(valid.values()))
    a_bound = max(empty, forced + need) + max(invalid, unserved)
    # per group with its valid members: each action (repoint a core, move a shard) lowers the
    # group's overflow by at most the core's overflow or the shard's load
    group_need = 0
    if math.isfinite(b):
        for j in range(e):
            mem = [i for i, jj in valid.items() if jj == j]
            over = {i: max(0.0, g[i] - caps.working) for i in mem}
            excess = sum(over.values()) - b
            if excess <= EPS:
                continue
            cands = []
            for i in mem:
                if over[i] > 0:
                    cands.append(over[i])
                    cands.extend(min(loads[s], over[i]) for s in members[i])
            group_need += min_removals(cands, excess)
    b_bound = forced + invalid + group_need
    return max(a_bound, b_bound)
