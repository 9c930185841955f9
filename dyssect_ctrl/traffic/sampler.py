"""What the traffic got, read from the generator pipeline once a sample and once a phase.

Offered and delivered packets per second come from counter deltas over the time between two
reads; latency percentiles from BESS Measure's histogram, cleared on every read so each sample
and each phase has its own (overall, and per class when the DUT marks the class); loss from the
generator's and the sequence checker's counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from dyssect_ctrl.traffic.pipeline import DEFAULT_NAMES, GenNames

PERCENTILES = (50.0, 99.0, 99.9)


@dataclass(frozen=True)
class Latency:
    """Microseconds; None when no stamped packet came back."""

    count: int = 0
    p50_us: float | None = None
    p99_us: float | None = None
    p999_us: float | None = None
    max_us: float | None = None


@dataclass(frozen=True)
class Counters:
    at: float  # clock seconds of the read
    sent: int
    received: int
    gaps: int  # sequence numbers never seen: packets lost before the checker
    reordered: int


@dataclass(frozen=True)
class Sample:
    t_s: float  # since the run started
    phase: str
    rate_set_pps: float
    offered_pps: float
    delivered_pps: float
    lost: int  # sent - received over the sample: loss plus what is in flight
    gaps: int
    reordered: int
    latency: Latency
    by_class: dict[str, Latency] = field(default_factory=dict)  # empty without a class mark

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def latency_of(summary: Any) -> Latency:
    """A Latency from MeasureCommandGetSummaryResponse (asked for PERCENTILES)."""
    hist = summary.latency
    if not hist.count:
        return Latency()
    values = [v / 1000.0 for v in hist.percentile_values_ns]
    if len(values) != len(PERCENTILES):
        raise ValueError(f"Measure returned {len(values)} percentiles, asked {len(PERCENTILES)}")
    return Latency(int(hist.count), values[0], values[1], values[2], hist.max_ns / 1000.0)


def rate(before: int, after: int, seconds: float) -> float:
    return (after - before) / seconds if seconds > 0 else 0.0


class Sampler:
    """Reads one generator pipeline; `sample` and `phase_latency` clear what they read."""

    def __init__(
        self,
        b: Any,
        names: GenNames = DEFAULT_NAMES,
        clock: Callable[[], float] = time.monotonic,
        classes: tuple[str, ...] = (),
    ) -> None:
        self._b = b
        self._names = names
        self._classes = classes
        self._clock = clock
        self._start = clock()
        self._last = self.counters()

    def counters(self) -> Counters:
        gen = self._b.run_module_command(
            self._names.gen, "get", "DyssectTrafficGenCommandGetArg", {}
        )
        check = self._b.run_module_command(
            self._names.check, "get", "DyssectSeqCheckCommandGetArg", {}
        )
        return Counters(
            self._clock(),
            int(gen.sent),
            # only stamped packets of this generator: a link also carries the kernel's own
            int(check.received) - int(check.bad),
            int(check.gaps),
            int(check.reordered),
        )

    def _latency(self, module: str) -> Latency:
        summary = self._b.run_module_command(
            module,
            "get_summary",
            "MeasureCommandGetSummaryArg",
            {"clear": True, "latency_percentiles": list(PERCENTILES)},
        )
        return latency_of(summary)

    def clear_phase(self) -> None:
        self.phase_latency()
        self.phase_by_class()

    def sample(self, phase: str, rate_set_pps: float) -> Sample:
        latency = self._latency(self._names.per_sample)
        by_class = {k: self._latency(self._names.per_sample_of(k)) for k in self._classes}
        now = self.counters()
        last, self._last = self._last, now
        dt = now.at - last.at
        return Sample(
            t_s=round(now.at - self._start, 6),
            phase=phase,
            rate_set_pps=rate_set_pps,
            offered_pps=rate(last.sent, now.sent, dt),
            delivered_pps=rate(last.received, now.received, dt),
            lost=(now.sent - last.sent) - (now.received - last.received),
            gaps=now.gaps - last.gaps,
            reordered=now.reordered - last.reordered,
            latency=latency,
            by_class=by_class,
        )

    def phase_latency(self) -> Latency:
        return self._latency(self._names.per_phase)

    def phase_by_class(self) -> dict[str, Latency]:
        return {k: self._latency(self._names.per_phase_of(k)) for k in self._classes}


@dataclass(frozen=True)
class Reconciliation:
    """sent = received + counted drops + unexplained; a clean run has unexplained == 0."""

    sent: int
    received: int
    drops: dict[str, int]

    @property
    def unexplained(self) -> int:
        return self.sent - self.received - sum(self.drops.values())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "unexplained": self.unexplained}


def reconcile(final: Counters, drops: Mapping[str, int]) -> Reconciliation:
    return Reconciliation(final.sent, final.received, {k: int(v) for k, v in drops.items()})
