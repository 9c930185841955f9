"""The repair: a valid placement close to the current plan, built in named phases.

keep    shards on slots < W stay where they are, the others wait in the pool;
evict   over-full cores shed shards into the pool;
pair    valid pairings stay, unserved offloading cores get a core, the other cores join a group;
fill    empty cores take a shard;
place   the pool goes where most room is left, bumping smaller shards out when needed;
relieve over-full groups shed a core (re-pointed) or a shard (moved);
take back (takeback.py) every move or re-pointing the caps allow is undone.
"""

from __future__ import annotations

import bisect
import itertools
import math
import time
from collections.abc import Sequence

from dyssect_ctrl.model import Plan
from dyssect_ctrl.planner import core
from dyssect_ctrl.planner.core import EPS, Caps
from dyssect_ctrl.planner.short.takeback import take_back

Placement = tuple[list[int], dict[int, int]]


def migrations(assignment: Sequence[int], pairing: dict[int, int], w: int, cur: Plan) -> int:
    """Shards moved plus working cores whose offloading core changed."""
    moved = sum(1 for a, b in zip(assignment, cur.assignment, strict=True) if a != b)
    return moved + sum(1 for i in range(w) if pairing.get(i) != cur.pairing.get(i))


class _Draft:
    """A placement under construction: shards may be unplaced (-1), cores unpaired."""

    def __init__(self, loads: Sequence[float], w: int, e: int, caps: Caps) -> None:
        self.loads = loads
        self.w, self.e, self.caps = w, e, caps
        self.b = caps.offload_room
        self.g = [0.0] * w
        self.members: list[set[int]] = [set() for _ in range(w)]
        self.pairing: dict[int, int] = {}
        self.where: list[int] = [-1] * len(loads)

    def over(self, i: int) -> float:
        return max(0.0, self.g[i] - self.caps.working)

    def group_over(self, j: int) -> float:
        return sum(self.over(i) for i in range(self.w) if self.pairing.get(i) == j)

    def add(self, s: int, i: int) -> None:
        self.where[s] = i
        self.members[i].add(s)
        self.g[i] += self.loads[s]

    def remove(self, s: int) -> None:
        i = self.where[s]
        self.members[i].discard(s)
        self.g[i] -= self.loads[s]
        self.where[s] = -1

    def room_after(self, s: int, i: int, gover: list[float]) -> float:
        """Spare capacity left if shard s joins core i (negative: does not fit)."""
        v = self.loads[s]
        gi = self.g[i] + v
        if self.e == 0:
            return self.caps.working - gi
        j = self.pairing.get(i, -1)
        if j < 0:
            return -1.0
        delta = max(0.0, gi - self.caps.working) - self.over(i)
        grp_left = self.b - gover[j] - delta
        return min(grp_left, self.caps.working + self.b - gi) + max(0.0, self.caps.working - gi)


def repair(
    loads: Sequence[float],
    w: int,
    e: int,
    caps: Caps,
    cur: Plan,
    deadline: float = math.inf,
) -> Placement | None:
    """A valid placement close to the current plan, or None (none found, or past `deadline`,
    a time.perf_counter value checked in every loop that grows with S or W).

    Two evictions from over-full cores are tried (largest shard first; the smallest shard that
    clears the excess): neither wins on every instance, and each costs well under a millisecond.
    """
    best: Placement | None = None
    best_cost = math.inf
    for snug in (False, True):
        if snug and time.perf_counter() > deadline:
            break
        got = _repair(loads, w, e, caps, cur, deadline, snug)
        if got is not None:
            cost = migrations(got[0], got[1], w, cur)
            if cost < best_cost:
                best, best_cost = got, cost
    return best


def _repair(
    loads: Sequence[float],
    w: int,
    e: int,
    caps: Caps,
    cur: Plan,
    deadline: float,
    snug: bool,
) -> Placement | None:
    st, pool = _keep(loads, w, e, caps, cur)
    _evict(st, pool, snug)
    if e and not _pair(st, cur):
        return None
    if not _fill(st, pool):
        return None
    if not _place(st, pool, deadline):
        return None
    if e and math.isfinite(st.b) and not _relieve(st, deadline):
        return None
    a = list(st.where)
    pairing = dict(st.pairing) if e else {}
    if not core.placement_ok(a, pairing, loads, w, e, caps):
        return None
    return take_back(a, pairing, loads, w, e, caps, cur)


def _keep(
    loads: Sequence[float], w: int, e: int, caps: Caps, cur: Plan
) -> tuple[_Draft, list[int]]:
    st = _Draft(loads, w, e, caps)
    pool: list[int] = []
    for s in range(len(loads)):
        if cur.assignment[s] < w:
            st.add(s, cur.assignment[s])
        else:
            pool.append(s)
    return st, pool


def _evict(st: _Draft, pool: list[int], snug: bool) -> None:
    loads = st.loads
    core_cap = st.caps.working + st.b if st.e else st.caps.working
    for i in range(st.w):
        while st.g[i] > core_cap + EPS and st.members[i]:
            # The smallest shard that clears the excess alone, else the largest: as few moves
            # as largest-first, with less load to place elsewhere.
            excess = st.g[i] - core_cap
            enough = [x for x in st.members[i] if loads[x] >= excess - EPS] if snug else []
            if enough:
                s = min(enough, key=lambda x: loads[x])
            else:
                s = max(st.members[i], key=lambda x: loads[x])
            st.remove(s)
            pool.append(s)


def _pair(st: _Draft, cur: Plan) -> bool:
    """Keep the valid pairings, serve unserved offloading cores, attach the rest."""
    w, e = st.w, st.e
    for i in range(w):
        j = cur.pairing.get(i)
        if j is not None and j < e:
            st.pairing[i] = j
    for j in range(e):
        if j in st.pairing.values():
            continue
        free = [i for i in range(w) if i not in st.pairing]
        if free:
            i = min(free, key=lambda x: st.over(x))
        else:
            cnt = {jj: sum(1 for v in st.pairing.values() if v == jj) for jj in range(e)}
            donors = [i for i in range(w) if cnt[st.pairing[i]] >= 2]
            if not donors:
                return False
            i = min(donors, key=lambda x: st.over(x))
        st.pairing[i] = j
    for i in sorted((i for i in range(w) if i not in st.pairing), key=lambda x: -st.over(x)):
        gover = [st.group_over(j) for j in range(e)]
        st.pairing[i] = min(range(e), key=lambda j: gover[j])
    return True


def _fill(st: _Draft, pool: list[int]) -> bool:
    """Empty cores take a pool shard, or the smallest shard of a core holding two or more."""
    loads = st.loads
    for i in range(st.w):
        if st.members[i]:
            continue
        if pool:
            s = min(pool, key=lambda x: loads[x])
            pool.remove(s)
        else:
            donors = [k for k in range(st.w) if len(st.members[k]) >= 2]
            if not donors:
                return False
            k = max(donors, key=lambda x: st.g[x])
            s = min(st.members[k], key=lambda x: loads[x])
            st.remove(s)
        st.add(s, i)
    return True


def _place(st: _Draft, pool: list[int], deadline: float) -> bool:
    """Place the pool, largest first, where most room is left; a shard that fits nowhere bumps a
    smaller one out of a core (the bumped shard goes back to the pool): near the caps, plain
    first-fit fails on most instances while a few bumps find a placement."""
    loads = st.loads
    pool.sort(key=lambda x: loads[x])
    bumps = 0
    while pool:
        if time.perf_counter() > deadline:
            return False
        s = pool.pop()
        gover = [st.group_over(j) for j in range(st.e)]
        best = max(range(st.w), key=lambda i: st.room_after(s, i, gover))
        if st.room_after(s, best, gover) >= -EPS:
            st.add(s, best)
            continue
        bumps += 1
        bumped = _bump(st, s, gover, deadline) if bumps <= 2 * len(loads) else None
        if bumped is None:
            return False
        for t in bumped:
            bisect.insort(pool, t, key=lambda x: loads[x])
    return True


def _bump(st: _Draft, s: int, gover: list[float], deadline: float) -> list[int] | None:
    """Put shard s on a core in place of the smallest shard whose removal makes room for it, or
    failing that of the pair of shards with the smallest largest member; every shard taken out
    is strictly smaller than s. The shards taken out are returned (to be placed again), or None.
    """
    best: tuple[float, float, int, tuple[int, ...]] | None = None
    v = st.loads[s]
    g2 = list(gover)
    for size in (1, 2):
        for k in range(st.w):
            if time.perf_counter() > deadline:
                return None
            j = st.pairing.get(k, -1) if st.e else -1
            small = sorted((t for t in st.members[k] if st.loads[t] < v), key=st.loads.__getitem__)
            for out in itertools.combinations(small, size):
                top = st.loads[out[-1]]
                total = sum(st.loads[t] for t in out)
                if best is not None and (top, total) >= (best[0], best[1]):
                    continue
                before = st.over(k)
                for t in out:
                    st.remove(t)
                if j >= 0:  # only k's group changes
                    g2[j] = gover[j] + st.over(k) - before
                fits = st.room_after(s, k, g2) >= -EPS
                for t in out:
                    st.add(t, k)
                if j >= 0:
                    g2[j] = gover[j]
                if fits:
                    best = (top, total, k, out)
        if best is not None:
            break
    if best is None:
        return None
    _, _, k, out = best
    for t in out:
        st.remove(t)
    st.add(s, k)
    return list(out)


def _relieve(st: _Draft, deadline: float) -> bool:
    """Fix over-full groups: repoint a core or move a shard, the biggest relief first."""
    loads, w, e, b, cw = st.loads, st.w, st.e, st.b, st.caps.working
    n = len(loads)
    for _ in range(4 * n + 4 * w):
        if time.perf_counter() > deadline:
            return False
        gover = [st.group_over(j) for j in range(e)]
        bad = [j for j in range(e) if gover[j] > b + EPS]
        if not bad:
            break
        j = max(bad, key=lambda x: gover[x])
        excess = gover[j] - b
        mem = [i for i in range(w) if st.pairing[i] == j]
        best_act = None
        best_gain = 0.0
        for i in mem:
            oi = st.over(i)
            if oi <= 0:
                continue
            if time.perf_counter() > deadline:
                return False
            if len(mem) >= 2:
                for jj in range(e):
                    if jj != j and b - gover[jj] >= oi - EPS and oi > best_gain + EPS:
                        best_act, best_gain = ("pair", i, jj), oi
            for s in st.members[i]:
                if len(st.members[i]) < 2:
                    break
                v = loads[s]
                gain = oi - max(0.0, st.g[i] - v - cw)
                if gain <= best_gain + EPS:
                    continue
                for k in range(w):
                    if k == i:
                        continue
                    if st.pairing[k] != j:
                        if st.room_after(s, k, gover) >= -EPS:
                            best_act, best_gain = ("move", s, k), gain
                            break
                        continue
                    # Within the group: it gains what the source sheds of its overflow
                    # minus what the destination adds (a core below Cw absorbs some).
                    gk = st.g[k] + v
                    if gk > cw + b + EPS:
                        continue
                    net = gain - (max(0.0, gk - cw) - st.over(k))
                    if net > best_gain + EPS:
                        best_act, best_gain = ("move", s, k), net
            if best_gain >= excess - EPS:
                break
        if best_act is None:
            return False
        if best_act[0] == "pair":
            st.pairing[best_act[1]] = best_act[2]
        else:
            st.remove(best_act[1])
            st.add(best_act[1], best_act[2])
    return True
