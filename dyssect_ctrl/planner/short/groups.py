"""GroupLoads: the per-core loads g and per-group overflows of a placement while it changes.

The exact search and the repair's take-back both move shards and re-point cores one at a time,
checking the caps after each change; this structure keeps g, the shard counts and each group's
overflow sum up to date, and every change returns what its undo needs.
"""

from __future__ import annotations

from collections.abc import Sequence

from dyssect_ctrl.planner.core import Caps


class GroupLoads:
    """A complete placement: every shard on a working core, every working core in a group.

    where[s] is shard s's core (the list passed in, changed in place), grp[i] core i's group (0
    for every core when E = 0), g[i] core i's load, cnt[i] its shard count, members[j] the cores
    in group j and gsum[j] the sum of their overflows.
    """

    def __init__(
        self,
        loads: Sequence[float],
        w: int,
        e: int,
        caps: Caps,
        where: list[int],
        grp: list[int],
    ) -> None:
        self.loads = loads
        self.w, self.e = w, e
        self.cw = caps.working
        self.b = caps.offload_room if e else 0.0
        self.core_cap = self.cw + self.b  # one core's most: Cw, plus B when it offloads
        self.where = where
        self.grp = grp
        self.g = [0.0] * w
        self.cnt = [0] * w
        for s in range(len(loads)):
            self.g[where[s]] += loads[s]
            self.cnt[where[s]] += 1
        self.members = [0] * max(e, 1)
        self.gsum = [0.0] * max(e, 1)
        for i in range(w):
            self.members[grp[i]] += 1
            self.gsum[grp[i]] += max(0.0, self.g[i] - self.cw)

    def over(self, i: int) -> float:
        """Core i's overflow: its load above Cw, which its offloading core must take."""
        return self.g[i] - self.cw if self.g[i] > self.cw else 0.0

    def overflow_if(self, load: float) -> float:
        """The overflow of a core that would carry `load`."""
        return load - self.cw if load > self.cw else 0.0

    def _shift(self, i: int, dv: float) -> None:
        j = self.grp[i]
        self.gsum[j] -= self.over(i)
        self.g[i] += dv
        self.gsum[j] += self.over(i)

    def move(self, s: int, d: int) -> int:
        """Move shard s to core d; returns the core it left (the undo: move it back)."""
        i = self.where[s]
        self.where[s] = d
        self._shift(i, -self.loads[s])
        self._shift(d, self.loads[s])
        self.cnt[i] -= 1
        self.cnt[d] += 1
        return i

    def regroup(self, i: int, j2: int) -> int:
        """Point core i at offloading core j2; returns its old group (the undo: regroup back)."""
        old = self.grp[i]
        o = self.over(i)
        self.gsum[old] -= o
        self.gsum[j2] += o
        self.members[old] -= 1
        self.members[j2] += 1
        self.grp[i] = j2
        return old

    def pairing(self) -> dict[int, int]:
        """Working core -> offloading core (empty when E = 0)."""
        return {i: self.grp[i] for i in range(self.w)} if self.e else {}
