"""`static`: what RSS does. The shards are spread evenly over a fixed set of cores and never move.

Shard s goes to working core s mod W with W = min(M, S): the round-robin table MethodRSS
(rsspp/fastclick, vendor/nicscheduler/methods/rss.cc, initialize) writes into the NIC's RETA.
No core is ever added or removed and nothing is offloaded, whatever the load.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from dyssect_ctrl.model import Params, Plan, PlanResult
from dyssect_ctrl.policy.base import check_inputs, result, working_only


class StaticPolicy:
    backend = "static"

    def __init__(self, params: Params, cores: int, shards: int) -> None:
        if cores < 1 or shards < 1:
            raise ValueError(f"static needs cores >= 1 and shards >= 1 (got {cores}, {shards})")
        self.params = params
        self.cores = cores
        self.shards = shards
        w = min(cores, shards)
        self.plan = working_only(w, [s % w for s in range(shards)])

    def warm_up(self) -> float:
        return 0.0

    def decide(self, loads: Sequence[float], current: Plan) -> PlanResult:
        t0 = time.perf_counter()
        values = check_inputs(loads, self.shards, current)
        return result(self.backend, self.plan, values, self.params, current, t0)

    def long(self, loads: Sequence[float], current: Plan) -> PlanResult:
        return self.decide(loads, current)

    def short(self, loads: Sequence[float], current: Plan) -> PlanResult:
        return self.decide(loads, current)
