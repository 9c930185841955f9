"""What the loop's parts share: the config and plan in force and what was last measured."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dyssect_ctrl.config import Config
from dyssect_ctrl.dataplane.base import Dataplane, Reading
from dyssect_ctrl.metrics import Metrics
from dyssect_ctrl.model import Params, Plan
from dyssect_ctrl.service_time import ServiceTimes
from dyssect_ctrl.systemd import Notifier


def _counts() -> dict[str, int]:
    return {
        "fallbacks": 0,
        "rejected": 0,
        "missed": 0,
        "migrations": 0,
        "applied": 0,
        "reconnects": 0,
    }


@dataclass
class LoopState:
    """Written by the loop thread only; the parts read each other's facts here."""

    config: Config
    dataplane: Dataplane
    metrics: Metrics
    notifier: Notifier
    clock: Callable[[], float]
    loop_epoch: int = 0
    ready: bool = False
    connected: bool = False
    state: str = "starting"
    current: Plan | None = None  # the plan the data plane runs, as far as the loop knows
    plan_id: int = 0
    last_reading: Reading | None = None
    last_loads: list[float] = field(default_factory=list)
    last_solve: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=_counts)
    # Data-plane drops by reason since this controller started (the status document's).
    drops_total: dict[str, int] = field(default_factory=dict)
    epoch_end: float = 0.0  # clock() at the end of the epoch being served
    # The data plane's measured service times, smoothed over epochs.
    service: ServiceTimes = field(default_factory=ServiceTimes)

    @property
    def params(self) -> Params:
        """The config's model with the service times in force (override, measured or default)."""
        return self.service.params(self.config.params)

    @property
    def short_s(self) -> float:
        return self.config.epochs.short_ms / 1000.0

    @property
    def ratio(self) -> int:
        """Short epochs per long epoch."""
        return self.config.epochs.long_ms // self.config.epochs.short_ms
