"""`static`: what RSS does. The shards are spread evenly over a fixed set of cores and never move.

Shard s goes to working core s mod W with W = min(M, S): the round-robin table MethodRSS
(rsspp/fastclick, vendor/nicscheduler/methods/rss.cc, initialize) writes into the NIC's RETA.
No core is ever added or removed and nothing is offloaded, whatever the load.
"""

from __future__ import annotations

from dyssect_ctrl.model import Params
from dyssect_ctrl.policy.base import RoundPolicy, working_only


class StaticPolicy(RoundPolicy):
    backend = "static"

    def __init__(self, params: Params, cores: int, shards: int) -> None:
        super().__init__(params, cores, shards)
        self.cores = cores
        w = self.max_working
        self.plan = working_only(w, [s % w for s in range(shards)])

    def rebalance(
        self, loads: list[float], working: int, table: list[int]
    ) -> tuple[int, list[int]]:
        return self.plan.working, list(self.plan.assignment)
