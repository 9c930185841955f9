"""Short model: W and E fixed, the fewest migrations from the current plan.

Cost = shards moved + working cores whose offloading core changed (Plan.migrations) + 1e-3 *
sum |r - r_old|. Migrations are integers and the r term is below 1 for S < 1000, so the model is
solved lexicographically: first the placement with the fewest migrations, then r (exact greedy,
core.choose_offload). A lower bound on migrations (forced moves, per-core excess, per-group
excess, empty cores, broken pairings) and a greedy repair of the current plan usually meet,
proving the optimum with no MILP; otherwise the placement MILP is solved, warm-started from the
repair.
"""

from __future__ import annotations

import bisect
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from dyssect_ctrl.model import Params, Plan
from dyssect_ctrl.planner import core, formulation, milp
from dyssect_ctrl.planner.core import EPS, Caps

R_WEIGHT = 1e-3
# longest exact search before the MILP (seconds)
SEARCH_S = 0.025
# Least time left for the placement MILP to be worth starting (seconds): building it and
# handing it to HiGHS alone took 2 to 5 ms at S=64, W=10, and HiGHS's root processing runs
# without a callback for several more. With less left, the repair (or the search's plan) is
# returned unproven instead of overrunning the limit.
MILP_MIN_S = 0.015


@dataclass
class ShortOutcome:
    plan: Plan
    feasible: bool
    optimal: bool
    fallback: str | None
    message: str
    lower_bound: int
    used_milp: bool = False


def migrations(assignment: Sequence[int], pairing: dict[int, int], w: int, cur: Plan) -> int:
    moved = sum(1 for a, b in zip(assignment, cur.assignment, strict=True) if a != b)
    return moved + sum(1 for i in range(w) if pairing.get(i) != cur.pairing.get(i))


def objective(plan: Plan, cur: Plan) -> float:
    old = cur.offload if len(cur.offload) == len(plan.offload) else (0.0,) * len(plan.offload)
    dr = sum(abs(a - b) for a, b in zip(plan.offload, old, strict=True))
    return plan.migrations(cur) + R_WEIGHT * dr


def _min_removals(sizes: list[float], excess: float) -> int:
    """Fewest items whose sum reaches `excess` (largest first)."""
    k = 0
    for v in sorted(sizes, reverse=True):
        if excess <= EPS:
            break
        excess -= v
        k += 1
    return k if excess <= EPS else len(sizes) + 1


def lower_bound(loads: Sequence[float], w: int, e: int, caps: Caps, cur: Plan) -> int:
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
            need += _min_removals([loads[s] for s in members[i]], g[i] - core_cap)
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
            group_need += _min_removals(cands, excess)
    b_bound = forced + invalid + group_need
    return max(a_bound, b_bound)


class _State:
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


def _bump(st: _State, s: int, gover: list[float], deadline: float) -> list[int] | None:
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


def repair(
    loads: Sequence[float],
    w: int,
    e: int,
    caps: Caps,
    cur: Plan,
    deadline: float = math.inf,
) -> tuple[list[int], dict[int, int]] | None:
    """A valid placement close to the current plan, or None (none found, or past `deadline`,
    a time.perf_counter value checked in every loop that grows with S or W).

    Two evictions from over-full cores are tried (largest shard first; the smallest shard that
    clears the excess): neither wins on every instance, and each costs well under a millisecond.
    """
    best: tuple[list[int], dict[int, int]] | None = None
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
) -> tuple[list[int], dict[int, int]] | None:
    n = len(loads)
    st = _State(loads, w, e, caps)
    pool: list[int] = []
    for s in range(n):
        if cur.assignment[s] < w:
            st.add(s, cur.assignment[s])
        else:
            pool.append(s)
    b = st.b
    core_cap = caps.working + b if e else caps.working
    for i in range(w):
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
    # pairings: keep the valid ones, serve unserved offloading cores, attach the rest
    if e:
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
                    return None
                i = min(donors, key=lambda x: st.over(x))
            st.pairing[i] = j
        for i in sorted((i for i in range(w) if i not in st.pairing), key=lambda x: -st.over(x)):
            gover = [st.group_over(j) for j in range(e)]
            st.pairing[i] = min(range(e), key=lambda j: gover[j])
    # empty cores take a pool shard, or the smallest shard of a core holding two or more
    for i in range(w):
        if st.members[i]:
            continue
        if pool:
            s = min(pool, key=lambda x: loads[x])
            pool.remove(s)
        else:
            donors = [k for k in range(w) if len(st.members[k]) >= 2]
            if not donors:
                return None
            k = max(donors, key=lambda x: st.g[x])
            s = min(st.members[k], key=lambda x: loads[x])
            st.remove(s)
        st.add(s, i)
    # place the pool, largest first, where most room is left; a shard that fits nowhere bumps a
    # smaller one out of a core (the bumped shard goes back to the pool): near the caps, plain
    # first-fit fails on most instances while a few bumps find a placement.
    pool.sort(key=lambda x: loads[x])
    bumps = 0
    while pool:
        if time.perf_counter() > deadline:
            return None
        s = pool.pop()
        gover = [st.group_over(j) for j in range(e)]
        best = max(range(w), key=lambda i: st.room_after(s, i, gover))
        if st.room_after(s, best, gover) >= -EPS:
            st.add(s, best)
            continue
        bumps += 1
        bumped = _bump(st, s, gover, deadline) if bumps <= 2 * n else None
        if bumped is None:
            return None
        for t in bumped:
            bisect.insort(pool, t, key=lambda x: loads[x])
    # fix over-full groups: repoint a core or move a shard, the biggest relief first
    if e and math.isfinite(b):
        for _ in range(4 * n + 4 * w):
            if time.perf_counter() > deadline:
                return None
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
                    return None
                if len(mem) >= 2:
                    for jj in range(e):
                        if jj != j and b - gover[jj] >= oi - EPS and oi > best_gain + EPS:
                            best_act, best_gain = ("pair", i, jj), oi
                for s in st.members[i]:
                    if len(st.members[i]) < 2:
                        break
                    v = loads[s]
                    gain = oi - max(0.0, st.g[i] - v - caps.working)
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
                        if gk > caps.working + b + EPS:
                            continue
                        net = gain - (max(0.0, gk - caps.working) - st.over(k))
                        if net > best_gain + EPS:
                            best_act, best_gain = ("move", s, k), net
                if best_gain >= excess - EPS:
                    break
            if best_act is None:
                return None
            if best_act[0] == "pair":
                st.pairing[best_act[1]] = best_act[2]
            else:
                st.remove(best_act[1])
                st.add(best_act[1], best_act[2])
    a = list(st.where)
    pairing = dict(st.pairing) if e else {}
    if not core.placement_ok(a, pairing, loads, w, e, caps):
        return None
    return _undo_changes(a, pairing, loads, w, e, caps, cur)


def _undo_changes(
    a: list[int],
    pairing: dict[int, int],
    loads: Sequence[float],
    w: int,
    e: int,
    caps: Caps,
    cur: Plan,
) -> tuple[list[int], dict[int, int]]:
    """Take back every move or re-pointing the caps allow (one pass each, largest shards
    first); each one taken back saves a migration."""
    cw = caps.working
    b = caps.offload_room if e else 0.0
    g = [0.0] * w
    cnt = [0] * w
    for s, i in enumerate(a):
        g[i] += loads[s]
        cnt[i] += 1
    grp = [pairing[i] if e else 0 for i in range(w)]
    gsum = [0.0] * max(e, 1)
    members = [0] * max(e, 1)
    for i in range(w):
        gsum[grp[i]] += max(0.0, g[i] - cw)
        members[grp[i]] += 1

    def over(x: float) -> float:
        return x - cw if x > cw else 0.0

    if e:
        for i in range(w):
            old = cur.pairing.get(i)
            if old is None or old >= e or old == grp[i] or members[grp[i]] < 2:
                continue
            o = over(g[i])
            if gsum[old] + o <= b + EPS:
                gsum[grp[i]] -= o
                members[grp[i]] -= 1
                gsum[old] += o
                members[old] += 1
                grp[i] = old
    for s in sorted(range(len(a)), key=lambda x: -loads[x]):
        src, dst = a[s], cur.assignment[s]
        if dst == src or dst >= w or cnt[src] < 2:
            continue
        v = loads[s]
        d_src = over(g[src] - v) - over(g[src])
        d_dst = over(g[dst] + v) - over(g[dst])
        if e:
            if grp[src] == grp[dst]:
                ok = gsum[grp[src]] + d_src + d_dst <= b + EPS
            else:
                ok = gsum[grp[dst]] + d_dst <= b + EPS
        else:
            ok = g[dst] + v <= cw + EPS
        if not ok:
            continue
        gsum[grp[src]] += d_src
        gsum[grp[dst]] += d_dst
        g[src] -= v
        g[dst] += v
        cnt[src] -= 1
        cnt[dst] += 1
        a[s] = dst
    new_pairing = {i: grp[i] for i in range(w)} if e else {}
    if not core.placement_ok(a, new_pairing, loads, w, e, caps):  # cannot happen; be safe
        return a, pairing
    return a, new_pairing


def solve_short(
    loads: Sequence[float],
    params: Params,
    w: int,
    e: int,
    cur: Plan,
    *,
    backend: str,
    time_limit_s: float,
    greedy_deadline_s: float = 0.005,
) -> ShortOutcome:
    """greedy: everything within greedy_deadline_s; other backends: repair, then the search for up
    to half the time limit (at most SEARCH_S), then the MILP for what is left of the limit.

    The deadline is hard (time.perf_counter, checked inside every search and repair loop): when
    it passes, the best valid plan found so far is returned (the repair, else a construction,
    else the best-balance plan, itself cut at the deadline), with optimal=False.
    """
    t0 = time.perf_counter()
    end = t0 + (greedy_deadline_s if backend == "greedy" else time_limit_s)
    n = len(loads)
    caps = Caps.of(params)
    if len(cur.assignment) != n:
        cur = Plan.initial(n)
    old_r = cur.offload if len(cur.offload) == n else None
    if not core.Bounds(loads, caps).possible(w, e):
        plan = core.balance_plan(loads, params, w + e, pairs=[(w, e)], deadline=end)
        return ShortOutcome(
            plan,
            False,
            True,
            None,
            f"no plan meets the caps with W={w}, E={e}: best-balance plan",
            0,
        )
    lb = lower_bound(loads, w, e, caps, cur)
    rep = repair(loads, w, e, caps, cur, end)
    best: tuple[list[int], dict[int, int]] | None = rep
    best_cost = migrations(rep[0], rep[1], w, cur) if rep else math.inf
    if best is not None and best_cost <= lb:
        plan = core.finish(best[0], best[1], loads, w, e, caps, old_r)
        return ShortOutcome(plan, True, True, None, "", lb)
    fallback = None
    msg = ""
    optimal = False
    used = False
    # exact search over few migrations, for a share of the time limit
    status, found, k = exact_search(
        loads,
        w,
        e,
        caps,
        cur,
        lb,
        best_cost,
        end if backend == "greedy" else min(end, t0 + min(0.5 * time_limit_s, SEARCH_S)),
    )
    if status == "found" and found is not None:
        plan = core.finish(found[0], found[1], loads, w, e, caps, old_r)
        return ShortOutcome(plan, True, True, None, "", lb)
    if status == "none" and best is not None:
        plan = core.finish(best[0], best[1], loads, w, e, caps, old_r)
        return ShortOutcome(plan, True, True, None, "", lb)
    lb = max(lb, k)
    if backend != "greedy" and end - time.perf_counter() >= MILP_MIN_S:
        model = formulation.build(loads, w, e, caps, current=cur)
        start = None
        if best is not None:
            start = model.encode(Plan(w, e, tuple(best[0]), best[1], ()), loads, caps)
        used = True
        try:
            left = max(1e-3, end - time.perf_counter())
            res = milp.solve(backend, model.milp, left, start)
        except milp.BackendError as exc:
            res = None
            fallback = str(exc)
        if res is not None:
            if res.status in ("optimal", "feasible") and res.x is not None:
                a, pairing = model.decode(res.x)
                if core.placement_ok(a, pairing, loads, w, e, caps):
                    cost = migrations(a, pairing, w, cur)
                    if cost <= best_cost:
                        best, best_cost = (a, pairing), cost
                    optimal = res.status == "optimal" and cost <= best_cost
                    if not optimal:
                        msg = f"{backend}: {res.detail}; migrations {best_cost}, lower bound {lb}"
            elif res.status == "infeasible":
                optimal = True  # proven: no placement with these W, E
                best = None
            else:
                fallback = f"{backend}: {res.detail or res.status} after {time_limit_s} s"
    elif backend != "greedy":
        left_ms = max(0.0, end - time.perf_counter()) * 1e3
        msg = (
            f"{backend}: {left_ms:.1f} ms left of the {time_limit_s} s limit, too little to "
            f"start the MILP; migrations {best_cost}, lower bound {lb}"
        )
        if best is None:
            fallback = msg
    if best is None:
        if backend == "greedy" or fallback is not None:
            plan_c = core.construct(loads, w, e, caps)
            if plan_c is not None:
                best = (list(plan_c.assignment), dict(plan_c.pairing))
        if best is None:
            plan = core.balance_plan(loads, params, w + e, pairs=[(w, e)], deadline=end)
            return ShortOutcome(
                plan,
                False,
                optimal,
                fallback,
                f"no plan found that meets the caps with W={w}, E={e}",
                lb,
                used,
            )
    plan = core.finish(best[0], best[1], loads, w, e, caps, old_r)
    return ShortOutcome(plan, True, optimal, fallback, msg, lb, used)


# ---------------------------------------------------------------------------------------------
# Exact search on few migrations: iterative deepening over moves and re-pointings.


class _Budget(Exception):
    pass


def exact_search(
    loads: Sequence[float],
    w: int,
    e: int,
    caps: Caps,
    cur: Plan,
    lb: int,
    ub: float,
    deadline: float,
) -> tuple[str, tuple[list[int], dict[int, int]] | None, int]:
    """Is there a plan with fewer than `ub` migrations? Depth-first, k = lb, lb+1, ...

    Only for the steady state (every shard on a slot < W, every slot used, pairing valid and
    serving every offloading core), where migrations = moves + re-pointings and no shard or core
    needs to change twice. Shards of equal load on one core, and destinations that differ only
    by name, are tried once; on the way a core may be left empty, or a group without members,
    until a later action fills it; at the last level a move or re-pointing is checked directly
    instead of recursing.
    Returns ("found", plan, k) with k proven minimal, ("none", None, ub) when nothing below ub
    exists, or ("unknown", None, k) when the deadline came first (k: every smaller count ruled
    out).
    """
    n = len(loads)
    if any(a >= w for a in cur.assignment):
        return "unknown", None, lb
    if e and any(cur.pairing.get(i) is None or cur.pairing[i] >= e for i in range(w)):
        return "unknown", None, lb
    where = list(cur.assignment)
    g = [0.0] * w
    cnt = [0] * w
    for s in range(n):
        g[where[s]] += loads[s]
        cnt[where[s]] += 1
    if min(cnt) == 0:
        return "unknown", None, lb
    pairing = dict(cur.pairing) if e else {}
    if e and len(set(pairing.values())) != e:
        return "unknown", None, lb
    cw = caps.working
    b = caps.offload_room if e else 0.0
    core_cap = cw + b
    moved = [False] * n
    repointed = [False] * w
    by_core: list[list[int]] = [[] for _ in range(w)]
    for s in sorted(range(n), key=lambda x: -loads[x]):
        by_core[where[s]].append(s)
    grp = [pairing[i] if e else 0 for i in range(w)]
    members = [0] * max(e, 1)
    gsum = [0.0] * max(e, 1)
    for i in range(w):
        members[grp[i]] += 1
        gsum[grp[i]] += max(0.0, g[i] - cw)
    nodes = [0]
    size_key = [round(float(x), 12) for x in loads]

    def over(i: int) -> float:
        return g[i] - cw if g[i] > cw else 0.0

    def violated() -> list[int]:
        """Groups (E > 0) or cores (E = 0) breaking a cap."""
        if e == 0:
            return [i for i in range(w) if g[i] > cw + EPS]
        bad = [j for j in range(e) if gsum[j] > b + EPS]
        for i in range(w):
            if g[i] > core_cap + EPS and grp[i] not in bad:
                bad.append(grp[i])
        return bad

    def excess(t: int) -> float:
        if e == 0:
            return g[t] - cw
        x = gsum[t] - b
        for i in range(w):
            if grp[i] == t and g[i] - core_cap > x:
                x = g[i] - core_cap
        return x

    def sources(t: int) -> list[int]:
        return [t] if e == 0 else [i for i in range(w) if grp[i] == t and g[i] > cw]

    def need(bad: list[int], k: int) -> int:
        total = 0
        for t in bad:
            cands = []
            for i in sources(t):
                oi = over(i)
                if e and not repointed[i]:
                    cands.append(oi)
                for s in by_core[i]:
                    if not moved[s]:
                        cands.append(min(loads[s], oi))
                        if len(cands) > 2 * (k + 1):
                            break
            total += _min_removals(cands, excess(t))
            if total > k:
                return total
        return total

    def shift(i: int, dv: float) -> None:
        j = grp[i]
        gsum[j] -= over(i)
        g[i] += dv
        gsum[j] += over(i)

    def move(s: int, d: int) -> tuple[int, int]:
        i = where[s]
        where[s] = d
        shift(i, -loads[s])
        shift(d, loads[s])
        cnt[i] -= 1
        cnt[d] += 1
        moved[s] = True
        pos = by_core[i].index(s)
        del by_core[i][pos]
        by_core[d].append(s)
        return i, pos

    def unmove(s: int, back: tuple[int, int]) -> None:
        i, pos = back  # moves are undone last first: the shard goes back to its place
        d = where[s]
        where[s] = i
        shift(d, -loads[s])
        shift(i, loads[s])
        cnt[d] -= 1
        cnt[i] += 1
        moved[s] = False
        by_core[d].pop()
        by_core[i].insert(pos, s)

    def last_move_fixes(s: int, i: int, d: int, t: int) -> bool:
        """With one action left and only `t` broken: does moving s from i to d fix every cap?"""
        v = loads[s]
        gi2 = g[i] - v
        gd2 = g[d] + v
        if e == 0:
            return gi2 <= cw + EPS and gd2 <= cw + EPS
        if gd2 > core_cap + EPS:
            return False
        for c in range(w):
            if c != i and grp[c] == t and g[c] > core_cap + EPS:
                return False
        di = (gi2 - cw if gi2 > cw else 0.0) - over(i)
        dd = (gd2 - cw if gd2 > cw else 0.0) - over(d)
        ji, jd = grp[i], grp[d]
        if ji == jd:
            return gsum[ji] + di + dd <= b + EPS
        return gsum[ji] + di <= b + EPS and gsum[jd] + dd <= b + EPS

    def regroup(i: int, j2: int) -> int:
        old = grp[i]
        o = over(i)
        gsum[old] -= o
        gsum[j2] += o
        members[old] -= 1
        members[j2] += 1
        grp[i] = j2
        return old

    def repoint(i: int, j2: int) -> int:
        repointed[i] = True
        return regroup(i, j2)

    def unrepoint(i: int, old: int) -> None:
        regroup(i, old)
        repointed[i] = False

    def holes() -> int:
        """Working cores left without a shard and offloading cores left serving nothing: a plan
        may pass through them on the way (a core's last shard leaves before another comes, a
        group's last member is re-pointed before another joins) but may not end with one."""
        n_holes = sum(1 for i in range(w) if cnt[i] == 0)
        if e:
            n_holes += sum(1 for j in range(e) if members[j] == 0)
        return n_holes

    def ok_now() -> bool:
        return not violated() and holes() == 0

    def fill(k: int) -> bool:
        """Every completion fills each hole with an action of its own: branch on the first."""
        d = next((i for i in range(w) if cnt[i] == 0), None)
        if d is not None:
            tried = set()
            for s in range(n):
                key = (size_key[s], where[s])
                if moved[s] or key in tried:
                    continue
                tried.add(key)
                back = move(s, d)
                if dfs(k - 1):
                    return True
                unmove(s, back)
            return False
        j = next(j for j in range(e) if members[j] == 0)
        for i in range(w):
            if repointed[i]:
                continue
            old = repoint(i, j)
            if dfs(k - 1):
                return True
            unrepoint(i, old)
        return False

    def tick() -> None:
        # every node and every last-level check counts: a check costs O(W), a node O(S + W)
        nodes[0] += 1
        if nodes[0] % 16 == 0 and time.perf_counter() > deadline:
            raise _Budget

    def dfs(k: int) -> bool:
        # Complete: a broken group t stays broken unless some action removes load from one of
        # its cores that is over now (a move off it, or re-pointing it), and the actions of a
        # plan commute, so trying every such action first loses no plan. Hence no check on an
        # action's intermediate state: only the last action must leave every cap kept.
        tick()
        bad = violated()
        n_holes = holes()
        if not bad and n_holes == 0:
            return True
        if k < max(n_holes, 1) or (bad and need(bad, k) > k):
            return False
        if n_holes:
            return fill(k)
        if k == 1 and len(bad) > 1:
            return False
        t = max(bad, key=excess)
        # with one action left it must remove the whole excess by itself
        last_need = excess(t) - EPS if k == 1 else -math.inf
        for i in sources(t):
            if e and not repointed[i] and (k > 1 or members[grp[i]] >= 2) and over(i) >= last_need:
                oi = over(i)
                for j2 in range(e):
                    if j2 == grp[i] or (k == 1 and gsum[j2] + oi > b + EPS):
                        continue
                    old = repoint(i, j2)
                    if k == 1:
                        tick()
                    if ok_now() if k == 1 else dfs(k - 1):
                        return True
                    unrepoint(i, old)
            if k == 1 and cnt[i] < 2:
                continue
            tried = set()
            cap_i = over(i) if e else math.inf
            for s in list(by_core[i]):
                if moved[s] or (k == 1 and cnt[i] < 2):
                    continue
                if min(loads[s], cap_i) < last_need:
                    continue
                key = size_key[s]
                if key in tried:
                    continue
                tried.add(key)
                seen_d = set()
                for d in range(w):
                    if d == i:
                        continue
                    # destinations that differ only by name: same group, same load, the same
                    # shards still free to move, the same re-pointing left
                    dk = (
                        grp[d],
                        round(g[d], 9),
                        repointed[d],
                        tuple(size_key[x] for x in by_core[d] if not moved[x]),
                    )
                    if dk in seen_d:
                        continue
                    seen_d.add(dk)
                    if k == 1:
                        # last action: check it arithmetically, move only when it works
                        tick()
                        if last_move_fixes(s, i, d, t):
                            move(s, d)
                            return True
                        continue
                    old_i = move(s, d)
                    if dfs(k - 1):
                        return True
                    unmove(s, old_i)
        return False

    k = lb
    try:
        while k < ub:
            if dfs(k):
                final = {i: grp[i] for i in range(w)} if e else {}
                return "found", (list(where), final), k
            k += 1
    except _Budget:
        return "unknown", None, k
    return "none", None, k
