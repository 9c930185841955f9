"""The placement MILP for a fixed (W, E): no interchangeable slots, overflow instead of products.

Variables: A[s,i] (shard s on working core i < W), O[i,j] (core i offloads to core j < E), and
Y[i,j] >= 0, the load core i offloads to j. Since only the sum of a core's offloaded load
matters, the products A*r and O*load of the plain formulation are not needed: r is chosen after
(core.choose_offload). Used by the long model as a feasibility problem for one (W, E), with
symmetry broken, and by the short model with migration costs against the current plan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from dyssect_ctrl.model import Plan
from dyssect_ctrl.planner.core import Caps
from dyssect_ctrl.planner.milp import INF, Milp, argmax


@dataclass
class Placement:
    milp: Milp
    w: int
    e: int
    a: list[list[int]]  # a[s][i]
    o: list[list[int]]  # o[i][j]
    y: list[list[int]]

    def decode(self, x: Sequence[float]) -> tuple[list[int], dict[int, int]]:
        assignment = [argmax([x[k] for k in row]) for row in self.a]
        pairing = {}
        if self.e:
            for i in range(self.w):
                pairing[i] = argmax([x[k] for k in self.o[i]])
        return assignment, pairing

    def encode(self, plan: Plan, loads: Sequence[float], caps: Caps) -> list[float]:
        x = [0.0] * self.milp.num_vars
        for s, i in enumerate(plan.assignment):
            x[self.a[s][i]] = 1.0
        if self.e:
            g = [0.0] * self.w
            for s, i in enumerate(plan.assignment):
                g[i] += loads[s]
            for i in range(self.w):
                j = plan.pairing[i]
                x[self.o[i][j]] = 1.0
                x[self.y[i][j]] = max(0.0, g[i] - caps.working)
        return x


def build(
    loads: Sequence[float],
    w: int,
    e: int,
    caps: Caps,
    *,
    current: Plan | None = None,
    symmetry: bool = False,
) -> Placement:
    """current given: minimise migrations against it; else a feasibility model (objective 0)."""
    n = len(loads)
    m = Milp()
    a = [[0] * w for _ in range(n)]
    for s in range(n):
        for i in range(w):
            cost = 0.0
            if current is not None and current.assignment[s] == i:
                cost = -1.0
            a[s][i] = m.var(cost)
    if current is not None:
        # a shard that stays costs 0, one that moves 1: sum over s of (1 - A[s, old_s])
        m.offset += n
    o = [[0] * e for _ in range(w)]
    y = [[0] * e for _ in range(w)]
    b = caps.offload_room
    total = float(sum(loads))
    ymax = min(b, total) if math.isfinite(b) else total
    for i in range(w):
        old_j = current.pairing.get(i) if current is not None else None
        for j in range(e):
            o[i][j] = m.var(-1.0 if (current is not None and old_j == j) else 0.0)
            y[i][j] = m.var(0.0, 0.0, ymax, integer=False)
    if current is not None and e:
        m.offset += w  # each working core whose offloading core differs from the old one costs 1
    if current is not None and e == 0:
        m.offset += sum(1 for i in range(w) if current.pairing.get(i) is not None)
    for s in range(n):
        m.row([a[s][i] for i in range(w)], [1.0] * w, 1.0, 1.0)
    for i in range(w):
        m.row([a[s][i] for s in range(n)], [1.0] * n, 1.0, INF)
        idx = [a[s][i] for s in range(n)]
        val = [float(v) for v in loads]
        # local load <= Cw
        m.row(idx + [y[i][j] for j in range(e)], val + [-1.0] * e, -INF, caps.working)
        if e:
            # offloaded load <= the core's own load (r <= 1)
            m.row(idx + [y[i][j] for j in range(e)], val + [-1.0] * e, 0.0, INF)
            m.row([o[i][j] for j in range(e)], [1.0] * e, 1.0, 1.0)
            for j in range(e):
                m.row([y[i][j], o[i][j]], [1.0, -ymax], -INF, 0.0)
    for j in range(e):
        m.row([o[i][j] for i in range(w)], [1.0] * w, 1.0, INF)
        if math.isfinite(b):
            m.row([y[i][j] for i in range(w)], [1.0] * w, -INF, b)
    if symmetry and current is None:
        order = sorted(range(n), key=lambda s: -loads[s])
        if e == 0:
            # bins are interchangeable: the k-th largest shard uses one of the first k+1 bins
            for k, s in enumerate(order):
                for i in range(k + 1, w):
                    m.ub[a[s][i]] = 0.0
        else:
            # groups are contiguous blocks of working cores, in order; largest shard on core 0
            for i in range(w - 1):
                m.row(
                    [o[i][j] for j in range(e)] + [o[i + 1][j] for j in range(e)],
                    [float(j) for j in range(e)] + [-float(j) for j in range(e)],
                    -INF,
                    0.0,
                )
            m.lb[a[order[0]][0]] = 1.0
            m.lb[o[0][0]] = 1.0
    return Placement(m, w, e, a, o, y)


# ---------------------------------------------------------------------------------------------
# Long model feasibility: shards of equal load pooled, one model per split of W into E groups.


def partitions(w: int, e: int) -> list[tuple[int, ...]]:
    """Ways to split W working cores into E non-empty groups (sizes non-increasing)."""
    out: list[tuple[int, ...]] = []

    def rec(left: int, parts: int, cap: int, acc: tuple[int, ...]) -> None:
        if parts == 0:
            if left == 0:
                out.append(acc)
            return
        for k in range(min(cap, left - (parts - 1)), 0, -1):
            if k * parts < left:
                break
            rec(left - k, parts - 1, k, (*acc, k))

    if e == 0:
        return [()]
    rec(w, e, w, ())
    return out


@dataclass
class Grouped:
    milp: Milp
    w: int
    e: int
    classes: list[list[int]]  # shard ids per load class
    n: list[list[int]]  # n[c][i]: variable, shards of class c on core i
    group_of: list[int]  # core -> offloading slot

    def decode(self, x: Sequence[float], shards: int) -> tuple[list[int], dict[int, int]]:
        a = [0] * shards
        for c, ids in enumerate(self.classes):
            k = 0
            for i in range(self.w):
                for _ in range(round(x[self.n[c][i]])):
                    if k < len(ids):
                        a[ids[k]] = i
                        k += 1
        pairing = {i: self.group_of[i] for i in range(self.w)} if self.e else {}
        return a, pairing


def load_classes(loads: Sequence[float]) -> list[list[int]]:
    by: dict[float, list[int]] = {}
    for s, v in enumerate(loads):
        by.setdefault(round(float(v), 12), []).append(s)
    return sorted(by.values(), key=lambda ids: -loads[ids[0]])


def build_grouped(
    loads: Sequence[float],
    w: int,
    e: int,
    caps: Caps,
    parts: tuple[int, ...],
    classes: list[list[int]] | None = None,
) -> Grouped:
    """Feasibility of (W, E) with group sizes `parts`: integer counts per load class and core,
    X_i >= 0 the load core i offloads. No pairing variables, no big-M; cores ordered by load
    within a group and groups of equal size ordered by total, to break symmetry."""
    classes = classes if classes is not None else load_classes(loads)
    sizes = [float(loads[ids[0]]) for ids in classes]
    m = Milp()
    n = [[m.var(0.0, 0.0, float(len(ids))) for _ in range(w)] for ids in classes]
    group_of: list[int] = []
    for j, p in enumerate(parts):
        group_of.extend([j] * p)
    x = [m.var(0.0, 0.0, INF, integer=False) if e else -1 for _ in range(w)]
    for c, ids in enumerate(classes):
        m.row(n[c], [1.0] * w, float(len(ids)), float(len(ids)))
    nc = len(classes)
    for i in range(w):
        col = [n[c][i] for c in range(nc)]
        m.row(col, [1.0] * nc, 1.0, INF)
        if e:
            m.row([*col, x[i]], [*sizes, -1.0], -INF, caps.working)
            m.row([*col, x[i]], [*sizes, -1.0], 0.0, INF)
        else:
            m.row(col, sizes, -INF, caps.working)
    b = caps.offload_room
    start = 0
    firsts = []
    for p in parts:
        mem = list(range(start, start + p))
        firsts.append(mem)
        if math.isfinite(b):
            m.row([x[i] for i in mem], [1.0] * p, -INF, b)
        for i in mem[:-1]:  # loads non-increasing inside a group
            m.row(
                [n[c][i] for c in range(nc)] + [n[c][i + 1] for c in range(nc)],
                sizes + [-v for v in sizes],
                0.0,
                INF,
            )
        start += p
    if e == 0:
        for i in range(w - 1):
            m.row(
                [n[c][i] for c in range(nc)] + [n[c][i + 1] for c in range(nc)],
                sizes + [-v for v in sizes],
                0.0,
                INF,
            )
    for j in range(len(parts) - 1):
        if parts[j] == parts[j + 1]:
            a_mem, b_mem = firsts[j], firsts[j + 1]
            m.row(
                [n[c][i] for i in a_mem for c in range(nc)]
                + [n[c][i] for i in b_mem for c in range(nc)],
                [sizes[c] for _ in a_mem for c in range(nc)]
                + [-sizes[c] for _ in b_mem for c in range(nc)],
                0.0,
                INF,
            )
    return Grouped(m, w, e, classes, n, group_of)
