"""`metron`: Metron's core scaling as rsspp/fastclick implements it (MethodMetron::rebalance in
vendor/nicscheduler/methods/metron.cc, with DeviceBalancer's defaults: UNDERLOAD 0.25,
OVERLOAD 0.75, MIN_MOVEMENT 3 s, DEFLATION_FACTOR 2).

Per round, a core that moved less than MIN_MOVEMENT ago is left alone. The others are overloaded
when their load, or its linear forecast (load + (load - last load)), is above OVERLOAD, and
underloaded when the load, the forecast and the last load are all below UNDERLOAD. Each
overloaded core, most loaded first, gives 1/DEFLATION_FACTOR of its rules (at least one) to a new
core while one is left, else to the least-loaded underloaded core. Then, two by two, the two
least-loaded underloaded cores merge (the second least loaded is removed) unless together they
reach OVERLOAD.

Metron's rules are NIC flow rules, each steering a traffic class to a queue; here a rule is a
shard. The rules moved are the last ones of the core's list (the source takes the last entries
of its rule map); here, the highest-numbered shards of the core. As for rsspp, a removed slot in
the middle is filled by the last slot's shards (docs/policies.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dyssect_ctrl.model import Params
from dyssect_ctrl.policy.base import RoundPolicy

UNDERLOAD = 0.25
OVERLOAD = 0.75
MIN_MOVEMENT_S = 3.0
DEFLATION_FACTOR = 2


class MetronPolicy(RoundPolicy):
    backend = "metron"

    def __init__(
        self,
        params: Params,
        cores: int,
        shards: int,
        *,
        autoscale: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(params, cores, shards)
        self.autoscale = autoscale
        self.clock = clock
        start = clock()
        # Per working slot: the load seen last round and the time of its last movement (the
        # source starts every core's clock at initialisation).
        self.past = [0.0] * self.max_working
        self.last_movement = [start] * self.max_working

    def rebalance(
        self, loads: list[float], working: int, table: list[int]
    ) -> tuple[int, list[int]]:
        now = self.clock()
        load = [0.0] * working
        for s, v in enumerate(loads):
            load[table[s]] += v
        over: list[tuple[int, float]] = []
        under: list[tuple[int, float]] = []
        for i in range(working):
            cur, past = load[i], self.past[i]
            future = cur + (cur - past)
            self.past[i] = cur
            if now - self.last_movement[i] < MIN_MOVEMENT_S:
                continue
            if future > OVERLOAD or cur > OVERLOAD:
                over.append((i, cur))
            elif future < UNDERLOAD and cur < UNDERLOAD and past < UNDERLOAD:
                under.append((i, cur))
        over.sort(key=lambda c: c[1])  # most loaded last
        under.sort(key=lambda c: -c[1])  # least loaded last
        n = working
        while over:
            o, _ = over.pop()
            if self.autoscale and n < self.max_working:
                a = n
                n += 1
                self.past[a] = 0.0
            elif under:
                a, _ = under.pop()
            else:
                break  # no core to deflate to
            self.last_movement[o] = self.last_movement[a] = now
            rules = [s for s in range(len(table)) if table[s] == o]
            move = max(1, len(rules) // DEFLATION_FACTOR)
            for s in rules[len(rules) - move :]:
                table[s] = a
        while len(under) >= 2 and self.autoscale:
            r, load_r = under[-2]
            w, load_w = under[-1]
            self.last_movement[r] = self.last_movement[w] = now
            del under[-2:]
            if load_r + load_w >= OVERLOAD:
                continue
            table = self._remove(table, n, r, w)
            # The last slot took r's place: keep the lists of cores to come in step.
            last = n - 1
            n -= 1
            under = [(r if c == last else c, x) for c, x in under]
            over = [(r if c == last else c, x) for c, x in over]
            self.past[r], self.last_movement[r] = self.past[last], self.last_movement[last]
        return n, table

    def _remove(self, table: list[int], n: int, gone: int, into: int) -> list[int]:
        """Core `gone`'s shards go to `into`; the last slot's shards take `gone`'s slot."""
        last = n - 1
        table = [into if a == gone else a for a in table]
        return [gone if a == last else a for a in table]
