"""Drive a profile through a running generator pipeline: phases, rates, samples, the summary.

The pipeline must be built (pipeline.py) and its workers running. Each phase sets the rate and
the hot-set/churn periods, samples every `period_s`, then reads its own latency percentiles. At
the end the generator stops, what is in flight drains, and the counters are reconciled with the
drops the caller can count (ports, queues, dut's own counters).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from dyssect_ctrl.traffic import pipeline
from dyssect_ctrl.traffic.pipeline import DEFAULT_NAMES, GenNames
from dyssect_ctrl.traffic.profile import Profile
from dyssect_ctrl.traffic.sampler import (
    Counters,
    Latency,
    Reconciliation,
    Sample,
    Sampler,
    reconcile,
)

Drops = Callable[[], Mapping[str, int]]


@dataclass(frozen=True)
class PhaseSummary:
    name: str
    seconds: float
    sent: int
    received: int
    offered_pps: float
    delivered_pps: float
    latency: Latency
    by_class: dict[str, Latency] = field(default_factory=dict)  # empty without a class mark


@dataclass(frozen=True)
class RunRecord:
    samples: tuple[Sample, ...]
    phases: tuple[PhaseSummary, ...]
    reconciliation: Reconciliation

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": [s.to_dict() for s in self.samples],
            "phases": [asdict(p) for p in self.phases],
            "reconciliation": self.reconciliation.to_dict(),
        }


def _no_drops() -> Mapping[str, int]:
    return {}


def run_profile(
    b: Any,
    profile: Profile,
    *,
    names: GenNames = DEFAULT_NAMES,
    drops: Drops = _no_drops,
    period_s: float = 1.0,
    drain_s: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_sample: Callable[[Sample], None] | None = None,
) -> RunRecord:
    sampler = Sampler(b, names, clock, profile.classes)
    samples: list[Sample] = []
    phases: list[PhaseSummary] = []
    for phase in profile.phases:
        rate = phase.rate_at(0.0)
        pipeline.set_rate(b, rate, names)
        pipeline.set_intervals(b, profile, rate, names)
        sampler.clear_phase()
        begin = sampler.counters()
        end_at = begin.at + phase.seconds
        tick = begin.at
        while True:
            tick = min(tick + period_s, end_at)
            wait = tick - clock()
            if wait > 0:
                sleep(wait)
            sample = sampler.sample(phase.name, rate)
            samples.append(sample)
            if on_sample is not None:
                on_sample(sample)
            if tick >= end_at:
                break
            if phase.kind == "ramp":
                rate = phase.rate_at(tick - begin.at)
                pipeline.set_rate(b, rate, names)
        done = sampler.counters()
        latency = sampler.phase_latency()
        phases.append(_summary(phase.name, begin, done, latency, sampler.phase_by_class()))
    final = stop_and_drain(b, sampler, names, drain_s, clock, sleep)
    return RunRecord(tuple(samples), tuple(phases), reconcile(final, drops()))


def _summary(
    name: str, begin: Counters, end: Counters, latency: Latency, by_class: dict[str, Latency]
) -> PhaseSummary:
    seconds = end.at - begin.at
    sent = end.sent - begin.sent
    received = end.received - begin.received
    per_s = 1.0 / seconds if seconds > 0 else 0.0
    return PhaseSummary(
        name, seconds, sent, received, sent * per_s, received * per_s, latency, by_class
    )


def stop_and_drain(
    b: Any,
    sampler: Sampler,
    names: GenNames,
    drain_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Counters:
    """Stop the generator, then wait until everything sent arrived or nothing has arrived for
    `quiet` polls (the rest was dropped), at most `drain_s`."""
    b.run_module_command(names.gen, "stop", "DyssectTrafficGenCommandStopArg", {})
    deadline = clock() + drain_s
    last = sampler.counters()
    still = 0
    while last.received < last.sent and still < _QUIET_POLLS and clock() < deadline:
        sleep(_POLL_S)
        now = sampler.counters()
        still = still + 1 if now.received == last.received else 0
        last = now
    return last


_POLL_S = 0.05
_QUIET_POLLS = 4
