"""The exact search: is there a placement with fewer migrations than the best known one?

Iterative deepening over moves and re-pointings, k = lower bound, lower bound + 1, ..., for the
steady state only (every shard on a slot < W, every slot used, pairing valid and serving every
offloading core), where migrations = moves + re-pointings and no shard or core needs to change
twice.

Complete: a broken group t stays broken unless some action removes load from one of its cores
that is over now (a move off it, or re-pointing it), and the actions of a plan commute, so trying
every such action first loses no plan. Hence no check on an action's intermediate state: only the
last action must leave every cap kept. On the way a core may be left empty, or a group without
members, until a later action fills it. Shards of equal load on one core, and destinations that
differ only by name, are tried once; at the last level a move or re-pointing is checked
arithmetically instead of recursing.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Sequence
from typing import NamedTuple

from dyssect_ctrl.model import Plan
from dyssect_ctrl.planner.core import EPS, Caps
from dyssect_ctrl.planner.short.bounds import min_removals
from dyssect_ctrl.planner.short.groups import GroupLoads


class Verdict(enum.Enum):
    FOUND = "found"  # a placement with k migrations, k proven minimal
    NONE = "none"  # nothing below the upper bound exists
    UNKNOWN = "unknown"  # the deadline came first (or not the steady state)


class SearchResult(NamedTuple):
    verdict: Verdict
    placement: tuple[list[int], dict[int, int]] | None  # (assignment, pairing) when FOUND
    k: int  # FOUND: its migrations; otherwise every smaller count is ruled out


class _Budget(Exception):
    pass


class ExactSearch:
    def __init__(
        self,
        loads: Sequence[float],
        w: int,
        e: int,
        caps: Caps,
        cur: Plan,
        deadline: float,
    ) -> None:
        """`deadline` is a time.perf_counter() value, checked every 16 nodes."""
        self.loads = loads
        self.w, self.e = w, e
        self.caps = caps
        self.cur = cur
        self.deadline = deadline

    def run(self, lb: int, ub: float) -> SearchResult:
        """Try k = lb, lb + 1, ... below `ub` migrations."""
        loads, w, e, cur = self.loads, self.w, self.e, self.cur
        if any(a >= w for a in cur.assignment):
            return SearchResult(Verdict.UNKNOWN, None, lb)
        if e and any(cur.pairing.get(i) is None or cur.pairing[i] >= e for i in range(w)):
            return SearchResult(Verdict.UNKNOWN, None, lb)
        pairing = dict(cur.pairing) if e else {}
        gl = GroupLoads(
            loads, w, e, self.caps, list(cur.assignment), [pairing[i] if e else 0 for i in range(w)]
        )
        if min(gl.cnt) == 0:
            return SearchResult(Verdict.UNKNOWN, None, lb)
        if e and len(set(pairing.values())) != e:
            return SearchResult(Verdict.UNKNOWN, None, lb)
        self.gl = gl
        n = len(loads)
        self.moved = [False] * n
        self.repointed = [False] * w
        self.by_core: list[list[int]] = [[] for _ in range(w)]
        for s in sorted(range(n), key=lambda x: -loads[x]):
            self.by_core[gl.where[s]].append(s)
        self.nodes = 0
        self.size_key = [round(float(x), 12) for x in loads]
        k = lb
        try:
            while k < ub:
                if self._dfs(k):
                    return SearchResult(Verdict.FOUND, (list(gl.where), gl.pairing()), k)
                k += 1
        except _Budget:
            return SearchResult(Verdict.UNKNOWN, None, k)
        return SearchResult(Verdict.NONE, None, k)

    # -- the caps --------------------------------------------------------------------------

    def _violated(self) -> list[int]:
        """Groups (E > 0) or cores (E = 0) breaking a cap."""
        gl = self.gl
        g, cw = gl.g, gl.cw
        if self.e == 0:
            return [i for i in range(self.w) if g[i] > cw + EPS]
        b, gsum, grp, core_cap = gl.b, gl.gsum, gl.grp, gl.core_cap
        bad = [j for j in range(self.e) if gsum[j] > b + EPS]
        for i in range(self.w):
            if g[i] > core_cap + EPS and grp[i] not in bad:
                bad.append(grp[i])
        return bad

    def _excess(self, t: int) -> float:
        gl = self.gl
        if self.e == 0:
            return gl.g[t] - gl.cw
        g, grp, core_cap = gl.g, gl.grp, gl.core_cap
        x = gl.gsum[t] - gl.b
        for i in range(self.w):
            if grp[i] == t and g[i] - core_cap > x:
                x = g[i] - core_cap
        return x

    def _sources(self, t: int) -> list[int]:
        """The cores an action must take load from to mend broken group (or core) t."""
        if self.e == 0:
            return [t]
        g, grp, cw = self.gl.g, self.gl.grp, self.gl.cw
        return [i for i in range(self.w) if grp[i] == t and g[i] > cw]

    def _need(self, bad: list[int], k: int) -> int:
        """A lower bound on the actions left (stops counting past k)."""
        gl = self.gl
        loads, moved, by_core, repointed = self.loads, self.moved, self.by_core, self.repointed
        total = 0
        for t in bad:
            cands = []
            for i in self._sources(t):
                oi = gl.over(i)
                if self.e and not repointed[i]:
                    cands.append(oi)
                for s in by_core[i]:
                    if not moved[s]:
                        cands.append(min(loads[s], oi))
                        if len(cands) > 2 * (k + 1):
                            break
            total += min_removals(cands, self._excess(t))
            if total > k:
                return total
        return total

    def _last_move_fixes(self, s: int, i: int, d: int, t: int) -> bool:
        """With one action left and only `t` broken: does moving s from i to d fix every cap?"""
        gl = self.gl
        g, cw, b, grp, gsum = gl.g, gl.cw, gl.b, gl.grp, gl.gsum
        v = self.loads[s]
        gi2 = g[i] - v
        gd2 = g[d] + v
        if self.e == 0:
            return gi2 <= cw + EPS and gd2 <= cw + EPS
        if gd2 > gl.core_cap + EPS:
            return False
        for c in range(self.w):
            if c != i and grp[c] == t and g[c] > gl.core_cap + EPS:
                return False
        di = (gi2 - cw if gi2 > cw else 0.0) - gl.over(i)
        dd = (gd2 - cw if gd2 > cw else 0.0) - gl.over(d)
        ji, jd = grp[i], grp[d]
        if ji == jd:
            return gsum[ji] + di + dd <= b + EPS
        return gsum[ji] + di <= b + EPS and gsum[jd] + dd <= b + EPS

    def _holes(self) -> int:
        """Working cores left without a shard and offloading cores left serving nothing: a plan
        may pass through them on the way (a core's last shard leaves before another comes, a
        group's last member is re-pointed before another joins) but may not end with one."""
        gl = self.gl
        n_holes = sum(1 for i in range(self.w) if gl.cnt[i] == 0)
        if self.e:
            n_holes += sum(1 for j in range(self.e) if gl.members[j] == 0)
        return n_holes

    def _ok_now(self) -> bool:
        return not self._violated() and self._holes() == 0

    # -- actions and their undo --------------------------------------------------------------

    def _move(self, s: int, d: int) -> tuple[int, int]:
        by_core = self.by_core
        i = self.gl.move(s, d)
        self.moved[s] = True
        pos = by_core[i].index(s)
        del by_core[i][pos]
        by_core[d].append(s)
        return i, pos

    def _unmove(self, s: int, back: tuple[int, int]) -> None:
        i, pos = back  # moves are undone last first: the shard goes back to its place
        d = self.gl.move(s, i)
        self.moved[s] = False
        self.by_core[d].pop()
        self.by_core[i].insert(pos, s)

    def _repoint(self, i: int, j2: int) -> int:
        self.repointed[i] = True
        return self.gl.regroup(i, j2)

    def _unrepoint(self, i: int, old: int) -> None:
        self.gl.regroup(i, old)
        self.repointed[i] = False

    # -- the search ----------------------------------------------------------------------------

    def _tick(self) -> None:
        # every node and every last-level check counts: a check costs O(W), a node O(S + W)
        self.nodes += 1
        if self.nodes % 16 == 0 and time.perf_counter() > self.deadline:
            raise _Budget

    def _fill(self, k: int) -> bool:
        """Every completion fills each hole with an action of its own: branch on the first."""
        gl = self.gl
        d = next((i for i in range(self.w) if gl.cnt[i] == 0), None)
        if d is not None:
            tried = set()
            for s in range(len(self.loads)):
                key = (self.size_key[s], gl.where[s])
                if self.moved[s] or key in tried:
                    continue
                tried.add(key)
                back = self._move(s, d)
                if self._dfs(k - 1):
                    return True
                self._unmove(s, back)
            return False
        j = next(j for j in range(self.e) if gl.members[j] == 0)
        for i in range(self.w):
            if self.repointed[i]:
                continue
            old = self._repoint(i, j)
            if self._dfs(k - 1):
                return True
            self._unrepoint(i, old)
        return False

    def _dfs(self, k: int) -> bool:
        """Can k more actions leave every cap kept and no hole? (See the module docstring.)"""
        self._tick()
        gl = self.gl
        w, e = self.w, self.e
        bad = self._violated()
        n_holes = self._holes()
        if not bad and n_holes == 0:
            return True
        if k < max(n_holes, 1) or (bad and self._need(bad, k) > k):
            return False
        if n_holes:
            return self._fill(k)
        if k == 1 and len(bad) > 1:
            return False
        t = max(bad, key=self._excess)
        # with one action left it must remove the whole excess by itself
        last_need = self._excess(t) - EPS if k == 1 else -math.inf
        g, grp, gsum, cnt, b = gl.g, gl.grp, gl.gsum, gl.cnt, gl.b
        loads, moved, by_core, size_key = self.loads, self.moved, self.by_core, self.size_key
        repointed = self.repointed
        for i in self._sources(t):
            if (
                e
                and not repointed[i]
                and (k > 1 or gl.members[grp[i]] >= 2)
                and gl.over(i) >= last_need
            ):
                oi = gl.over(i)
                for j2 in range(e):
                    if j2 == grp[i] or (k == 1 and gsum[j2] + oi > b + EPS):
                        continue
                    old = self._repoint(i, j2)
                    if k == 1:
                        self._tick()
                    if self._ok_now() if k == 1 else self._dfs(k - 1):
                        return True
                    self._unrepoint(i, old)
            if k == 1 and cnt[i] < 2:
                continue
            tried = set()
            cap_i = gl.over(i) if e else math.inf
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
                        self._tick()
                        if self._last_move_fixes(s, i, d, t):
                            self._move(s, d)
                            return True
                        continue
                    old_i = self._move(s, d)
                    if self._dfs(k - 1):
                        return True
                    self._unmove(s, old_i)
        return False
