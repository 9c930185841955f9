"""The service time per packet the model uses: measured by the data plane, smoothed over epochs,
unless the config fixes it.

The working and offloading cores count busy TSC cycles and packets per batch (docs/dataplane.md);
each reading carries one window of them. Smoothing is an exponentially weighted moving average
(EWMA) over epochs of the busy seconds and of the packets, kind by kind; their ratio is the
measured time per packet, so a busy epoch weighs more than a quiet one. An epoch without packets
of a kind leaves that kind's estimate as it was.

Per kind, the value in force is, in order: `model.t_working_us` / `model.t_offloading_us` when
the config sets it (source "override"), the measurement once there is one ("measured"), else
`model.service_time_default_us` ("default").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dyssect_ctrl.model import Params

KINDS = ("working", "offloading")
SOURCES = ("override", "measured", "default")
# Weight of the newest epoch: about the last 1 / ALPHA epochs count (half a second at 100 ms).
ALPHA = 0.2
# The planners are rebuilt when a value in force moves by more than this fraction.
REPLAN_CHANGE = 0.05


@dataclass(frozen=True)
class Busy:
    """One slot's busy time over a window: TSC cycles and the packets of those batches."""

    cycles: int
    packets: int


def busy_us(busy: Sequence[Busy], tsc_hz: float) -> float | None:
    """Microseconds per packet over the given slots' windows; None without packets."""
    packets = sum(b.packets for b in busy)
    if packets <= 0 or tsc_hz <= 0:
        return None
    return sum(b.cycles for b in busy) / tsc_hz / packets * 1e6


@dataclass(frozen=True)
class InForce:
    """A kind's service time as the model uses it, and the measurement beside it."""

    us: float
    source: str  # one of SOURCES
    measured_us: float | None

    def to_json(self) -> dict[str, Any]:
        return {"us": self.us, "source": self.source, "measured_us": self.measured_us}


class ServiceTimes:
    """The smoothed measurement per kind (written by the loop thread only)."""

    def __init__(self, alpha: float = ALPHA) -> None:
        assert 0.0 < alpha <= 1.0
        self.alpha = alpha
        self._seconds: dict[str, float] = {}
        self._packets: dict[str, float] = {}

    def observe(self, busy: Mapping[str, Sequence[Busy]], tsc_hz: float) -> None:
        """Fold one window in (per kind, the slots' busy counts)."""
        if tsc_hz <= 0:
            return
        for kind in KINDS:
            slots = busy.get(kind, ())
            packets = sum(b.packets for b in slots)
            if packets <= 0:
                continue
            seconds = sum(b.cycles for b in slots) / tsc_hz
            if kind not in self._packets:
                self._seconds[kind], self._packets[kind] = seconds, float(packets)
                continue
            a = self.alpha
            self._seconds[kind] += a * (seconds - self._seconds[kind])
            self._packets[kind] += a * (packets - self._packets[kind])

    def measured_us(self, kind: str) -> float | None:
        """The smoothed time per packet of `kind`, None before any packet was timed."""
        packets = self._packets.get(kind)
        if not packets:
            return None
        return self._seconds[kind] / packets * 1e6

    def in_force(self, params: Params) -> dict[str, InForce]:
        """Per kind: the value the model uses under `params` (the config's) and its source."""
        out = {}
        fixed_of = {"working": params.t_working_us, "offloading": params.t_offloading_us}
        for kind, fixed in fixed_of.items():
            measured = self.measured_us(kind)
            if fixed is not None:
                out[kind] = InForce(fixed, "override", measured)
            elif measured is not None:
                out[kind] = InForce(measured, "measured", measured)
            else:
                out[kind] = InForce(params.service_time_default_us, "default", None)
        return out

    def params(self, params: Params) -> Params:
        """`params` with the service times in force filled in."""
        f = self.in_force(params)
        return params.with_values(
            {"t_working_us": f["working"].us, "t_offloading_us": f["offloading"].us}
        )


def moved(old: Params, new: Params, change: float = REPLAN_CHANGE) -> bool:
    """True when a service time the model uses differs by more than `change` (a fraction)."""
    for a, b in ((old.working_us, new.working_us), (old.offloading_us, new.offloading_us)):
        if abs(b - a) > change * a:
            return True
    return False
