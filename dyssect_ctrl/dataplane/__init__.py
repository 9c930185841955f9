"""The data plane as the controller sees it: `open_dataplane(config)` picks the configured kind."""

from __future__ import annotations

import logging
from pathlib import Path

from dyssect_ctrl.config import Config
from dyssect_ctrl.dataplane.base import (
    ApplyResult,
    Dataplane,
    DataplaneError,
    PipelineAbsent,
    PlanDeferred,
    PlanRejected,
    Reading,
    SnapshotRejected,
    SnapshotValidator,
    plan_problem,
)

__all__ = [
    "ApplyResult",
    "Dataplane",
    "DataplaneError",
    "PipelineAbsent",
    "PlanDeferred",
    "PlanRejected",
    "Reading",
    "SnapshotRejected",
    "SnapshotValidator",
    "open_dataplane",
    "plan_problem",
]

log = logging.getLogger(__name__)


def open_dataplane(config: Config) -> Dataplane:
    """The data plane the config names; replay only when kind is replay, and it says so."""
    dp = config.dataplane
    if dp.kind == "replay":
        from dyssect_ctrl.dataplane.replay import ReplayDataplane

        assert dp.replay_file is not None  # the config requires it for kind replay
        record = Path(config.state_dir) / "replay-applied.jsonl"
        plane: Dataplane = ReplayDataplane(config, dp.replay_file, record_path=record)
        log.warning("data plane: %s (dataplane.kind is replay)", plane.describe())
        return plane
    from dyssect_ctrl.dataplane.bess import BessDataplane

    plane = BessDataplane(config)
    log.info("data plane: %s", plane.describe())
    return plane
