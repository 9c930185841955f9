"""`rsspp`: RSS++ (Barbette et al., CoNEXT'19) as rsspp/fastclick implements it.

Followed: MethodRSSPP::rebalance in vendor/nicscheduler/methods/rsspp.cc (DeviceBalancer in
elements/userlevel/devicebalancer.cc calls it every TIMER ms with the per-core loads), with the
solvers of rsspp_solver. One call here is one rebalance round:

1. per-core load, the machine's mean load (its target), and the spare capacity
   suppload = sum(TARGET_LOAD - load);
2. autoscaling: remove the least-loaded core when suppload > 1 + (1 - TARGET_LOAD) + var_protect
   (its buckets spread over the others, nothing else changes this round), add one when
   suppload < -0.1 (then balance with the new, empty core);
3. imbalance = mean - load per core; a core that received buckets last round sits this round out;
   cores above +threshold are underloaded, below -threshold overloaded (if they own more than one
   loaded bucket), and the buckets of the overloaded ones go to the underloaded ones
   (rsspp_solver.solve_target).

Buckets are Dyssect's shards and a bucket's load is the shard's load V_s. The data plane runs
working slots 0..W-1, so where RSS++ removes a core in the middle, the last slot's shards take
its place (docs/policies.md lists this and the other departures).
"""

from __future__ import annotations

from collections.abc import Sequence

from dyssect_ctrl.model import Params, Plan, PlanResult
from dyssect_ctrl.policy.base import RoundPolicy
from dyssect_ctrl.policy.rsspp_solver import solve_target, spread

# DeviceBalancer's defaults for METHOD rsspp (TARGET_LOAD, IMBALANCE_THRESHOLD).
TARGET_LOAD = 0.8
THRESHOLD = 0.02
# MethodRSSPP::rebalance: add a core when the cores together lack this much.
ADD_BELOW = -0.1


class RssppPolicy(RoundPolicy):
    backend = "rsspp"

    def __init__(
        self,
        params: Params,
        cores: int,
        shards: int,
        *,
        target_load: float = TARGET_LOAD,
        threshold: float = THRESHOLD,
        autoscale: bool = True,
    ) -> None:
        super().__init__(params, cores, shards)
        self.target_load = target_load
        self.threshold = threshold
        self.autoscale = autoscale
        # Working slots that received buckets in the last round (RSS++'s _moved flags).
        self.moved: set[int] = set()
        self.last: Plan | None = None
        # What the last round did, for the tests and the logs.
        self.last_action = ""

    def decide(self, loads: Sequence[float], current: Plan) -> PlanResult:
        if self.last is None or current != self.last:
            # The plan in force is not the one this policy chose last (not applied, or another
            # planner's): the flags describe moves that did not happen.
            self.moved.clear()
        res = super().decide(loads, current)
        self.last = res.plan
        return res

    def rebalance(
        self, loads: list[float], working: int, table: list[int]
    ) -> tuple[int, list[int]]:
        """One round of MethodRSSPP::rebalance on bucket loads and the bucket -> core table."""
        core_load = [0.0] * working
        loaded = [0] * working  # nbuckets_nz: buckets that saw traffic
        for s, v in enumerate(loads):
            core_load[table[s]] += v
            if v > 0.0:
                loaded[table[s]] += 1
        n = working
        total = sum(core_load)
        suppload = sum(self.target_load - x for x in core_load)
        # The least-loaded core: the first one below min_core_load, which starts at 1.
        min_core, min_core_load = -1, 1.0
        for i, x in enumerate(core_load):
            if x < min_core_load:
                min_core, min_core_load = i, x
        max_core_load = max([0.0, *core_load])
        var_protect = (n + 1) * max(0.05, max_core_load - self.target_load)
        self.last_action = "balance"
        if self.autoscale:
            if suppload > 1 + (1 - self.target_load) + var_protect and n > 1 and min_core >= 0:
                self.last_action = f"remove core {min_core}"
                return n - 1, self._remove(loads, table, n, min_core)
            if suppload < ADD_BELOW:
                if n < self.max_working:
                    core_load.append(0.0)
                    loaded.append(0)
                    n += 1
                    self.last_action = f"add core {n - 1}"
                else:
                    self.last_action = "add core: none left"
        target = total / n
        under: list[int] = []
        over: list[int] = []
        imbalance = [0.0] * n
        for i in range(n):
            if i in self.moved:
                self.moved.discard(i)  # its load still shows last round's buckets
                continue
            imbalance[i] = target - core_load[i]
            if imbalance[i] > self.threshold:
                under.append(i)
            elif imbalance[i] < -self.threshold and loaded[i] > 1:
                over.append(i)
        if not over or not under:
            return n, table
        slot_of = {core: k for k, core in enumerate(over)}
        buckets = [s for s, v in enumerate(loads) if v > 0.0 and table[s] in slot_of]
        if not buckets:
            return n, table
        transfer = solve_target(
            [loads[s] for s in buckets],
            [slot_of[table[s]] for s in buckets],
            [imbalance[u] for u in under],
            [-imbalance[o] for o in over],
        )
        for s, to in zip(buckets, transfer, strict=True):
            if to >= 0:
                table[s] = under[to]
                self.moved.add(under[to])
        return n, table

    def _remove(self, loads: list[float], table: list[int], n: int, gone: int) -> list[int]:
        """Remove core `gone`: its buckets spread over the other cores (rsspp_solver.spread).

        RSS++ puts its last core in the removed core's place in its load array; here the slot
        numbers are the data plane's, so the last slot's shards move to slot `gone`.
        """
        last = n - 1
        # The remaining cores in RSS++'s order: the load array with the last moved into `gone`.
        remaining = [last if i == gone else i for i in range(n - 1)]
        mine = [s for s in range(len(table)) if table[s] == gone]
        transfer = spread([loads[s] for s in mine], n - 1)
        for s, to in zip(mine, transfer, strict=True):
            table[s] = remaining[to]
        self.moved = {gone if m == last else m for m in self.moved if m != gone}
        return [gone if a == last else a for a in table]
