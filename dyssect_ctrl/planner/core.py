"""Pure-Python pieces shared by every backend: caps, bounds, constructive packings, r choice.

Vocabulary: a working core i holds shards with total load G_i; what exceeds the working cap Cw
("overflow", max(0, G_i - Cw)) must be offloaded to the one offloading core it is paired with; an
offloading core j takes at most B = Co / sigma of offloaded load (Co the offloading cap). So a
group (one offloading core and the working cores pointing at it) holds at most n*Cw + B.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from dyssect_ctrl.model import Params, Plan

EPS = 1e-9


@dataclass(frozen=True)
class Caps:
    working: float  # Cw: load cap of a working core
    offloading: float  # Co: load cap of an offloading core
    sigma: float

    @property
    def offload_room(self) -> float:
        """B: offloaded load (in working-core units) one offloading core can take."""
        if self.sigma <= 0.0:
            return math.inf
        return self.offloading / self.sigma

    @staticmethod
    def of(params: Params) -> Caps:
        return Caps(params.rho_max_working, params.rho_max_offloading, params.sigma)


def valid_pairs(params: Params, cores: int, shards: int) -> list[tuple[int, int]]:
    """Every (W, E) the structural constraints allow, by W+E then E (prefer plain working cores)."""
    out = []
    for w in range(1, min(cores, shards) + 1):
        for e in range(0, min(w, params.max_offloading(w), cores - w) + 1):
            out.append((w, e))
    out.sort(key=lambda p: (p[0] + p[1], p[1]))
    return out


def keepable_pair(w: int, e: int, shards: int, cores: int) -> tuple[int, int]:
    """The (W, E) nearest to (w, e) that a plan can have: every working core holds a shard
    (W <= S), every offloading core serves a working core (E <= W), W + E <= M."""
    kw = max(1, min(w, shards, cores))
    ke = max(0, min(e, kw, cores - kw))
    return kw, ke


def spread(shards: int, w: int, e: int) -> Plan:
    """A plan of the right shape whatever the loads: shard s on core s mod W, working core i
    paired with offloading core i mod E, nothing offloaded (needs 1 <= W <= S, E <= W)."""
    assignment = tuple(s % w for s in range(shards))
    pairing = {i: i % e for i in range(w)} if e else {}
    return Plan(w, e, assignment, pairing, tuple([0.0] * shards))


def l2_bound(sizes_sorted: Sequence[float], prefix: Sequence[float], cap: float) -> int:
    """Martello-Toth L2 lower bound on the bins of size `cap` for items sorted ascending."""
    n = len(sizes_sorted)
    if n == 0:
        return 0
    total = prefix[-1]
    best = math.ceil(total / cap - EPS)
    half = cap / 2.0
    # alpha runs over 0 and the distinct item sizes <= cap/2.
    k_half = bisect.bisect_right(sizes_sorted, half + EPS)  # items <= cap/2 are [0, k_half)
    alphas = [0.0, *sorted(set(sizes_sorted[:k_half]))]
    for alpha in alphas:
        # J1: v > cap - alpha; J2: cap/2 < v <= cap - alpha; J3: alpha <= v <= cap/2
        k_hi = bisect.bisect_right(sizes_sorted, cap - alpha + EPS)
        n1 = n - k_hi
        n2 = k_hi - k_half
        sum2 = prefix[k_hi] - prefix[k_half]
        k_alpha = bisect.bisect_left(sizes_sorted, alpha - EPS)
        sum3 = prefix[k_half] - prefix[k_alpha]
        extra = max(0, math.ceil((sum3 - (n2 * cap - sum2)) / cap - EPS))
        best = max(best, n1 + n2 + extra)
    return best


class Bounds:
    """Necessary conditions for a (W, E) to hold the loads; cheap, used to prove optimality."""

    def __init__(self, loads: Sequence[float], caps: Caps) -> None:
        self.caps = caps
        self.total = float(sum(loads))
        self.vmax = max(loads) if loads else 0.0
        asc = sorted(loads)
        prefix = [0.0]
        for v in asc:
            prefix.append(prefix[-1] + v)
        self.l2_working = l2_bound(asc, prefix, caps.working) if self.vmax <= caps.working else 0

    def possible(self, w: int, e: int) -> bool:
        c = self.caps
        if e == 0:
            return self.vmax <= c.working + EPS and self.l2_working <= w
        b = c.offload_room
        if self.vmax > c.working + b + EPS:
            return False
        return self.total <= w * c.working + e * b + EPS * (1 + self.total)


# ---------------------------------------------------------------------------------------------
# Checking a plan (internal; the tests use their own independent checker).


def group_overflows(
    assignment: Sequence[int],
    pairing: dict[int, int],
    loads: Sequence[float],
    w: int,
    e: int,
    caps: Caps,
) -> tuple[list[float], list[float], list[float]]:
    """Per working core load G_i and overflow o_i, per offloading core the sum of overflows."""
    g = [0.0] * w
    for s, i in enumerate(assignment):
        g[i] += loads[s]
    over = [max(0.0, x - caps.working) for x in g]
    grp = [0.0] * e
    if e:
        for i in range(w):
            grp[pairing[i]] += over[i]
    return g, over, grp


def structure_ok(assignment: Sequence[int], pairing: dict[int, int], w: int, e: int) -> bool:
    if any(not 0 <= a < w for a in assignment):
        return False
    if len(set(assignment)) != w:
        return False
    if e == 0:
        return not pairing
    if sorted(pairing) != list(range(w)):
        return False
    return set(pairing.values()) == set(range(e))


def placement_ok(
    assignment: Sequence[int],
    pairing: dict[int, int],
    loads: Sequence[float],
    w: int,
    e: int,
    caps: Caps,
) -> bool:
    """Can some choice of r make this assignment and pairing meet every cap?"""
    if not structure_ok(assignment, pairing, w, e):
        return False
    _, over, grp = group_overflows(assignment, pairing, loads, w, e, caps)
    if e == 0:
        return all(o <= EPS for o in over)
    b = caps.offload_room
    return all(x <= b + EPS for x in grp)


# ---------------------------------------------------------------------------------------------
# Choosing r: the fewest |r - r_old| for a given assignment and pairing (exact greedy).


def choose_offload(
    assignment: Sequence[int],
    pairing: dict[int, int],
    loads: Sequence[float],
    w: int,
    e: int,
    caps: Caps,
    old: Sequence[float] | None = None,
) -> tuple[float, ...]:
    """r per shard minimising sum |r - r_old| while every core meets its cap.

    Working core i must offload X_i in [o_i, G_i]; offloading core j takes sum X_i <= B. Raising
    or lowering the offloaded load by dx on shard s costs dx / V_s, so each core changes its
    largest shards first; this solves the small LP exactly (one budget per core, then one per
    group for the excess, both with constant unit costs).
    """
    n = len(loads)
    r = [0.0] * n
    if e == 0:
        return tuple(r)
    if old is None or len(old) != n:
        old = [0.0] * n
    r = [min(1.0, max(0.0, float(x))) for x in old]
    members: list[list[int]] = [[] for _ in range(w)]
    for s, i in enumerate(assignment):
        members[i].append(s)
    for i in range(w):
        members[i].sort(key=lambda s: -loads[s])
    g = [sum(loads[s] for s in members[i]) for i in range(w)]
    over = [max(0.0, g[i] - caps.working) for i in range(w)]
    x = [sum(loads[s] * r[s] for s in members[i]) for i in range(w)]
    for i in range(w):
        if x[i] < over[i]:  # raise, largest shards first
            need = over[i] - x[i]
            for s in members[i]:
                if need <= 0.0:
                    break
                v = loads[s]
                if v <= 0.0:
                    continue
                add = min(need, v * (1.0 - r[s]))
                r[s] += add / v
                need -= add
            x[i] = over[i]
    b = caps.offload_room
    if math.isfinite(b):
        grp: list[list[int]] = [[] for _ in range(e)]
        for i in range(w):
            grp[pairing[i]].append(i)
        for j in range(e):
            excess = sum(x[i] for i in grp[j]) - b
            if excess <= 0.0:
                continue
            # lower r where it costs least: largest shards on cores offloading more than needed
            cand = []
            for i in grp[j]:
                for s in members[i]:
                    if r[s] > 0.0 and loads[s] > 0.0:
                        cand.append((-loads[s], s, i))
            cand.sort()
            for _, s, i in cand:
                if excess <= 0.0:
                    break
                slack = x[i] - over[i]
                if slack <= 0.0:
                    continue
                dec = min(excess, slack, loads[s] * r[s])
                r[s] -= dec / loads[s]
                x[i] -= dec
                excess -= dec
    return tuple(min(1.0, max(0.0, v)) for v in r)


def finish(
    assignment: Sequence[int],
    pairing: dict[int, int],
    loads: Sequence[float],
    w: int,
    e: int,
    caps: Caps,
    old_r: Sequence[float] | None = None,
) -> Plan:
    r = choose_offload(assignment, pairing, loads, w, e, caps, old_r)
    return Plan(w, e, tuple(assignment), dict(pairing) if e else {}, r)


# ---------------------------------------------------------------------------------------------
# Constructive packings for a fixed (W, E).


def _fill_nonempty(bins: list[list[int]], loads: Sequence[float]) -> bool:
    """Give every empty bin the smallest shard of a bin holding two or more."""
    for k, b in enumerate(bins):
        if b:
            continue
        best = None
        for kk, bb in enumerate(bins):
            if len(bb) >= 2:
                s = min(bb, key=lambda x: loads[x])
                if best is None or loads[s] < loads[best[1]]:
                    best = (kk, s)
        if best is None:
            return False
        bins[best[0]].remove(best[1])
        bins[k].append(best[1])
    return True


def _bins_to_assignment(bins: list[list[int]], n: int) -> list[int]:
    a = [0] * n
    for i, b in enumerate(bins):
        for s in b:
            a[s] = i
    return a


def _best_fit(
    order: Sequence[int], loads: Sequence[float], caps: Sequence[float]
) -> list[list[int]] | None:
    rem = list(caps)
    bins: list[list[int]] = [[] for _ in caps]
    for s in order:
        v = loads[s]
        best, best_rem = -1, math.inf
        for k, c in enumerate(rem):
            left = c - v
            if left >= -EPS and left < best_rem:
                best, best_rem = k, left
        if best < 0:
            return None
        rem[best] -= v
        bins[best].append(s)
    return bins


def _worst_fit(
    order: Sequence[int], loads: Sequence[float], caps: Sequence[float]
) -> list[list[int]]:
    """Largest remaining room first (LPT when caps are equal); never fails, may overfill."""
    rem = list(caps)
    bins: list[list[int]] = [[] for _ in caps]
    for s in order:
        k = max(range(len(rem)), key=lambda x: rem[x])
        rem[k] -= loads[s]
        bins[k].append(s)
    return bins


def _pack_overflow(over: Sequence[float], e: int, room: float) -> dict[int, int] | None:
    """Pair working cores to offloading cores: FFD of the overflows, every offloading core used."""
    w = len(over)
    order = sorted(range(w), key=lambda i: -over[i])
    rem = [room] * e
    count = [0] * e
    pairing: dict[int, int] = {}
    for i in order:
        o = over[i]
        # cores without overflow go to empty offloading cores first, then anywhere
        if o <= EPS:
            empties = [j for j in range(e) if count[j] == 0]
            j = empties[0] if empties else 0
        else:
            j = -1
            for jj in range(e):
                if rem[jj] - o >= -EPS:
                    j = jj
                    break
            if j < 0:
                return None
        pairing[i] = j
        rem[j] -= o
        count[j] += 1
    # every offloading core must serve someone: move a zero-overflow core, else the smallest
    # overflow from a core that serves two or more (moving it only lowers the donor's load)
    for j in range(e):
        if count[j]:
            continue
        donors = [i for i in range(w) if count[pairing[i]] >= 2 and rem[j] - over[i] >= -EPS]
        if not donors:
            return None
        i = min(donors, key=lambda x: over[x])
        count[pairing[i]] -= 1
        rem[pairing[i]] += over[i]
        pairing[i] = j
        count[j] += 1
        rem[j] -= over[i]
    return pairing


def _group_fill(members: list[int], loads: Sequence[float], n: int, cw: float) -> list[list[int]]:
    """Fill n working cores of one group in turn so that each reaches Cw with little overshoot."""
    rest = sorted(members, key=lambda s: -loads[s])
    cores: list[list[int]] = []
    for k in range(n):
        if k == n - 1:
            cores.append(rest)
            break
        must_leave = n - 1 - k  # later cores need a shard each
        load = 0.0
        mine: list[int] = []
        keep: list[int] = []
        for s in rest:  # largest that still fit under Cw
            if load + loads[s] <= cw + EPS and len(rest) - len(mine) > must_leave:
                mine.append(s)
                load += loads[s]
            else:
                keep.append(s)
        if load < cw - EPS and keep and len(keep) > must_leave:
            s = keep.pop()  # cross Cw with the smallest shard left
            mine.append(s)
        if not mine and keep and len(keep) > must_leave:
            mine.append(keep.pop())
        cores.append(mine)
        rest = keep
    return cores


def construct(loads: Sequence[float], w: int, e: int, caps: Caps) -> Plan | None:
    """Try a few packings for (W, E); return a plan meeting every cap, or None."""
    n = len(loads)
    if w > n or w < 1:
        return None
    order = sorted(range(n), key=lambda s: -loads[s])
    cw = caps.working
    if e == 0:
        for packed in (_best_fit(order, loads, [cw] * w), _worst_fit(order, loads, [cw] * w)):
            if packed is None or not _fill_nonempty(packed, loads):
                continue
            a = _bins_to_assignment(packed, n)
            if placement_ok(a, {}, loads, w, 0, caps):
                return finish(a, {}, loads, w, 0, caps)
        return None
    b = caps.offload_room
    attempts: list[tuple[list[list[int]], dict[int, int] | None]] = []
    # 1. groups: E groups of near-equal size, each a super-bin of n_j*Cw + B
    sizes = [w // e + (1 if j < w % e else 0) for j in range(e)]
    gcaps = [sz * cw + (b if math.isfinite(b) else 1e18) for sz in sizes]
    for gbins in (_worst_fit(order, loads, gcaps), _best_fit(order, loads, gcaps)):
        if gbins is None:
            continue
        bins: list[list[int]] = []
        pairing: dict[int, int] = {}
        ok = True
        for j, members in enumerate(gbins):
            if len(members) < sizes[j]:
                ok = False
                break
            for core in _group_fill(members, loads, sizes[j], cw):
                pairing[len(bins)] = j
                bins.append(core)
        if ok:
            attempts.append((bins, pairing))
    # 2. balanced working loads, overflows packed first-fit decreasing
    lpt = _worst_fit(order, loads, [cw] * w)
    attempts.append((lpt, None))
    # 3. E big cores (Cw + B) and W - E plain cores, best fit decreasing
    big = [cw + (b if math.isfinite(b) else 1e18)] * e + [cw] * (w - e)
    bf = _best_fit(order, loads, big)
    if bf is not None:
        attempts.append((bf, None))
    for packed, given in attempts:
        if not _fill_nonempty(packed, loads):
            continue
        a = _bins_to_assignment(packed, n)
        paired = given
        if paired is None:
            g = [sum(loads[s] for s in bb) for bb in packed]
            over = [max(0.0, x - cw) for x in g]
            paired = _pack_overflow(over, e, b)
            if paired is None:
                continue
        if placement_ok(a, paired, loads, w, e, caps):
            return finish(a, paired, loads, w, e, caps)
    return None


def max_loads(plan: Plan, loads: Sequence[float], params: Params) -> tuple[float, float]:
    from dyssect_ctrl.model import core_loads

    work, offl = core_loads(plan, list(loads), params)
    return (max(work) if work else 0.0, max(offl) if offl else 0.0)


def balance_plan(
    loads: Sequence[float],
    params: Params,
    cores: int,
    pairs: Sequence[tuple[int, int]] | None = None,
    deadline: float = math.inf,
) -> Plan:
    """Best-balance plan on all cores: bisect the common load cap z, keep the smallest that packs.

    `deadline` (time.perf_counter): past it, the bisection stops with the best plan so far (and
    the growth phase jumps to a cap every construction meets), so a plan always comes back.

    Used when no plan meets the caps with every core: W + E as large as allowed (all M cores
    unless there are fewer shards), the largest core load (working or offloading) as small as
    the constructions make it. `pairs` restricts the (W, E) tried (the short model's fixed pair).
    """
    n = len(loads)
    if pairs is None:
        allp = valid_pairs(params, cores, n)
        most = max(ww + ee for ww, ee in allp)
        pairs = [(w, e) for (w, e) in allp if w + e == most]
    # a pair no construction can fill (W > S, E > W) would keep the growth loop below going
    pairs = sorted({keepable_pair(w, e, n, max(cores, w + e)) for w, e in pairs})
    total = float(sum(loads))
    vmax = max(loads, default=0.0)
    sigma = params.sigma

    def z_bound(p: tuple[int, int]) -> float:
        """Fractional lower bound on the largest core load with this (W, E)."""
        w, e = p
        if e == 0:
            return max(total / w, vmax)
        if sigma <= 0.0:
            return 0.0
        return max(total / (w + e / sigma), vmax / (1.0 + 1.0 / sigma))

    # the two pairs with the lowest bound: the others would only be tried for a few percent
    ranked = sorted(pairs, key=z_bound)[:2]

    def attempt(z: float) -> Plan | None:
        caps = Caps(z, z, sigma)
        for w, e in ranked:
            found = construct(loads, w, e, caps)
            if found is not None:
                return found
        return None

    lo = min(z_bound(p) for p in ranked)
    # a cap above the whole load (x 1/sigma for the offloaded part): every construction fits
    safe = (total + vmax) * (1.0 + (1.0 / sigma if sigma > 0.0 else 0.0)) + 1.0
    hi = max(lo, 1e-9) if time.perf_counter() <= deadline else max(lo, safe)
    best = attempt(hi)
    while best is None:  # grow until a construction fits, then bisect
        if hi >= safe:  # cannot happen for a keepable pair; a shape-only plan ends the loop
            w, e = ranked[0]
            shape = spread(n, w, e)
            return finish(shape.assignment, shape.pairing, loads, w, e, Caps(hi, hi, sigma))
        lo = hi
        hi = hi * 1.25 + 1e-9
        if hi >= safe or time.perf_counter() > deadline:
            hi = max(hi, safe)
        best = attempt(hi)
    for _ in range(30):
        if hi - lo <= 1e-4 * hi or time.perf_counter() > deadline:
            break
        z = (lo + hi) / 2.0
        found = attempt(z)
        if found is not None:
            best, hi = found, z
        else:
            lo = z
    return best


# ---------------------------------------------------------------------------------------------
# Exact packing search for a fixed (W, E) and group sizes (used when the constructions miss).


class SearchTimeout(Exception):
    pass


def pack_search(
    loads: Sequence[float], parts: Sequence[int], w: int, caps: Caps, deadline: float
) -> list[int] | None:
    """Depth-first packing of shards (largest first) onto W cores split into groups `parts`
    (one offloading core each; empty `parts` means no offloading). Returns an assignment, None
    when none exists (proven), or raises SearchTimeout.

    Pruning: a shard goes only where its core and group stay within caps; the remaining load
    must fit in the remaining room (sum of Cw - G_i below Cw plus B - group overflow); empty
    cores must not outnumber the shards left; cores in the same state inside a group, groups in
    the same state, and equal shards placed in non-decreasing core order are tried once.
    """
    n = len(loads)
    order = sorted(range(n), key=lambda s: -loads[s])
    v = [float(loads[s]) for s in order]
    suffix = [0.0] * (n + 1)
    for k in range(n - 1, -1, -1):
        suffix[k] = suffix[k + 1] + v[k]
    cw = caps.working
    e = len(parts)
    b = caps.offload_room if e else 0.0
    group_of: list[int] = []
    for j, p in enumerate(parts):
        group_of.extend([j] * p)
    if not e:
        group_of = [0] * w
    first = [group_of.index(j) for j in range(max(e, 1))]
    g = [0.0] * w
    cnt = [0] * w
    gover = [0.0] * max(e, 1)
    where = [-1] * n
    empty = [w]
    nodes = [0]

    neg = [-x for x in v]  # ascending, for bisect
    # every subset sum of the shards from k on (sorted), while there are few: a room can only
    # be filled up to the largest of them that fits
    sums: list[list[float] | None] = [None] * (n + 1)
    sums[n] = [0.0]
    for kk in range(n - 1, -1, -1):
        nxt = sums[kk + 1]
        if nxt is None:
            break
        if time.perf_counter() > deadline:  # this table alone can take 60 ms at S=256
            raise SearchTimeout
        # deduplicated on rounded values, the exact sums kept (rounding would accumulate)
        keyed = {round(x, 9): x for x in nxt}
        for x in nxt:
            y = x + v[kk]
            keyed.setdefault(round(y, 9), y)
        if len(keyed) > 2048:
            break
        sums[kk] = sorted(keyed.values())

    def fits_sum(k: int, x: float) -> float:
        """Total of the shards from k on that are no larger than x."""
        p = bisect.bisect_left(neg, -x - EPS, k, n)
        return suffix[p]

    def room(k: int) -> float:
        """Load the remaining shards can still add: per group (per core without offloading), its
        room, but no more than the remaining shards small enough to fit in it."""
        total = 0.0
        same = v[k] == v[n - 1]  # the rest are equal: a room takes whole shards only

        sk = sums[k]

        def usable(r: float, absorb: float) -> float:
            u = min(r, fits_sum(k, absorb))
            if same and v[k] > 0 and math.isfinite(r):
                u = min(u, math.floor(r / v[k] + EPS) * v[k])
            if sk is not None and math.isfinite(r):
                u = min(u, sk[bisect.bisect_right(sk, r + 1e-7) - 1])
            return u

        if not e:
            for x in g:
                if x < cw:
                    total += usable(cw - x, cw - x)
            return total
        for j in range(e):
            mem = range(first[j], first[j] + parts[j])
            local = [cw - g[i] for i in mem if g[i] < cw]
            r = sum(local) + (b - gover[j])
            absorb = (max(local) if local else 0.0) + (b - gover[j])
            total += usable(r, absorb)
        return total

    def rec(k: int) -> bool:
        nodes[0] += 1
        if nodes[0] % 32 == 0 and time.perf_counter() > deadline:
            raise SearchTimeout
        if k == n:
            return empty[0] == 0
        if empty[0] > n - k:
            return False
        if suffix[k] > room(k) + EPS:
            return False
        vk = v[k]
        lo = where[k - 1] if k > 0 and v[k - 1] == vk else 0
        seen: set[tuple[int, float]] = set()
        for i in range(lo, w):
            j = group_of[i]
            key_core = (j, round(g[i], 12))
            if key_core in seen:
                continue
            if e:
                # groups of equal size in equal state are interchangeable
                p = parts[j]
                if j > 0 and parts[j - 1] == p:
                    a0, b0 = first[j - 1], first[j]
                    if sorted(g[a0 : a0 + p]) == sorted(g[b0 : b0 + p]) and i >= b0:
                        continue
            seen.add(key_core)
            old_o = g[i] - cw if g[i] > cw else 0.0
            ng = g[i] + vk
            new_o = ng - cw if ng > cw else 0.0
            if e:
                if gover[j] - old_o + new_o > b + EPS:
                    continue
            elif new_o > EPS:
                continue
            g[i] = ng
            gover[j] += new_o - old_o
            cnt[i] += 1
            if cnt[i] == 1:
                empty[0] -= 1
            where[k] = i
            if rec(k + 1):
                return True
            where[k] = -1
            if cnt[i] == 1:
                empty[0] += 1
            cnt[i] -= 1
            gover[j] -= new_o - old_o
            g[i] -= vk
        return False

    if not rec(0):
        return None
    a = [0] * n
    for k, s in enumerate(order):
        a[s] = where[k]
    return a
