"""`dyssect` and `dyssect-no-offload`: the long and short models of dyssect_ctrl.planner.

Without offload the models are the same with no offloading core allowed (the offloading ratio
set to 0), so every plan is working cores only and every shard is processed by its owner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dyssect_ctrl.planner import Planner

if TYPE_CHECKING:
    from dyssect_ctrl.config import Config


def dyssect_planner(config: Config, solver: str, *, offload: bool) -> Planner:
    params = config.params if offload else config.params.with_values({"max_offloading_ratio": 0.0})
    s = config.solver
    return Planner(
        params,
        config.core_count,
        config.shards,
        solver=solver,
        long_time_limit_s=s.long_time_limit_s,
        short_time_limit_s=s.short_time_limit_s,
        greedy_deadline_s=s.greedy_deadline_s,
        scale_down_hysteresis=config.epochs.scale_down_hysteresis,
    )
