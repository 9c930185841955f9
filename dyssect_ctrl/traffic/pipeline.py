"""The generator's BESS pipeline, built over a connected pybess client.

Sender:   DyssectTrafficGen (task under a rate_limit traffic class) -> Timestamp -> `out`
Receiver: `head` -> Measure (cleared every sample) -> Measure (cleared every phase)
          [-> Split on the class mark -> per class: Measure (sample) -> Measure (phase)]
          -> DyssectSeqCheck (per-flow sequence: gaps, reordering) -> Sink

`out` and `head` are modules the caller made: a PortOut/PortInc on a real port, or anything a
test puts in between. The module classes are BESS's own except DyssectTrafficGen and the
checker (native/modules/traffic_gen.cc, dyssect_testaid.cc).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dyssect_ctrl.traffic.profile import CLASSES, STAMP_OFFSET, TIMESTAMP_OFFSET, Profile


@dataclass(frozen=True)
class GenNames:
    """Module and traffic-class names of one generator pipeline."""

    prefix: str = "tg"

    @property
    def gen(self) -> str:
        return f"{self.prefix}_gen"

    @property
    def rate(self) -> str:
        return f"{self.prefix}_rate"

    @property
    def stamp(self) -> str:
        return f"{self.prefix}_stamp"

    @property
    def per_sample(self) -> str:
        return f"{self.prefix}_lat_s"

    @property
    def per_phase(self) -> str:
        return f"{self.prefix}_lat_p"

    def per_sample_of(self, klass: str) -> str:
        return f"{self.prefix}_lat_s_{klass}"

    def per_phase_of(self, klass: str) -> str:
        return f"{self.prefix}_lat_p_{klass}"

    @property
    def split(self) -> str:
        return f"{self.prefix}_class"

    @property
    def check(self) -> str:
        return f"{self.prefix}_check"

    @property
    def sink(self) -> str:
        return f"{self.prefix}_sink"


DEFAULT_NAMES = GenNames()


# Credit the rate limiter keeps while the generator's worker is not scheduled: without it every
# late wake-up is lost for good, and on a shared CPU the rate falls far below the set one.
CATCH_UP_S = 0.05


def limit_pps(rate_pps: float) -> int:
    """The traffic class limit for a rate: BESS reads a limit of 0 as "no limit", so a rate
    of 0 becomes 1 packet per second."""
    return max(1, round(rate_pps))


def max_burst(rate_pps: float) -> int:
    return max(64, round(rate_pps * CATCH_UP_S))


def build_sender(
    b: Any,
    profile: Profile,
    *,
    out: str,
    wid: int,
    names: GenNames = DEFAULT_NAMES,
    packets: int = 0,
    burst: int = 32,
) -> None:
    """Generator -> Timestamp -> `out`, its task on worker `wid` at the first phase's rate;
    `packets` > 0 stops it after that many."""
    b.add_tc(
        names.rate,
        policy="rate_limit",
        wid=wid,
        resource="packet",
        limit={"packet": limit_pps(profile.phases[0].rate_pps)},
        max_burst={"packet": max_burst(profile.phases[0].rate_pps)},
    )
    b.create_module("DyssectTrafficGen", names.gen, profile.module_arg(packets, burst))
    b.create_module("Timestamp", names.stamp, {"offset": TIMESTAMP_OFFSET})
    b.connect_modules(names.gen, names.stamp)
    b.connect_modules(names.stamp, out)
    b.attach_task(names.gen, parent=names.rate)


def build_receiver(b: Any, profile: Profile, *, head: str, names: GenNames = DEFAULT_NAMES) -> None:
    """`head` -> Measure (per sample) -> Measure (per phase) -> sequence check -> Sink; with a
    class mark, a Split on that byte between the overall Measures and the check sends class k
    (byte value k) through its own two Measures. Other values have no gate: BESS drops them
    (only a foreign packet can carry one; the check would not count it either)."""
    arg = {
        "offset": TIMESTAMP_OFFSET,
        # Measure's histogram: 100 ns buckets up to 100 ms by default (the profile's
        # latency_max_ms), one bucket array per module.
        "latency_ns_max": int(profile.latency_max_ms * 1_000_000),
        "latency_ns_resolution": profile.latency_resolution_ns,
    }
    b.create_module("Measure", names.per_sample, arg)
    b.create_module("Measure", names.per_phase, arg)
    b.create_module(
        "DyssectSeqCheck", names.check, {"flows": profile.flows, "seq_offset": STAMP_OFFSET}
    )
    b.create_module("Sink", names.sink, {})
    b.connect_modules(head, names.per_sample)
    b.connect_modules(names.per_sample, names.per_phase)
    if profile.class_mark_offset is None:
        b.connect_modules(names.per_phase, names.check)
    else:
        b.create_module("Split", names.split, {"size": 1, "offset": profile.class_mark_offset})
        b.connect_modules(names.per_phase, names.split)
        for gate, klass in enumerate(CLASSES):
            b.create_module("Measure", names.per_sample_of(klass), arg)
            b.create_module("Measure", names.per_phase_of(klass), arg)
            b.connect_modules(names.split, names.per_sample_of(klass), gate)
            b.connect_modules(names.per_sample_of(klass), names.per_phase_of(klass))
            b.connect_modules(names.per_phase_of(klass), names.check)
    b.connect_modules(names.check, names.sink)


def set_rate(b: Any, rate_pps: float, names: GenNames = DEFAULT_NAMES) -> None:
    """Change the running generator's rate (BESS pauses the workers for the update)."""
    b.update_tc_params(
        names.rate,
        resource="packet",
        limit={"packet": limit_pps(rate_pps)},
        max_burst={"packet": max_burst(rate_pps)},
    )


def set_intervals(
    b: Any, profile: Profile, rate_pps: float, names: GenNames = DEFAULT_NAMES
) -> None:
    """Hot-set and churn periods, in the packets they take at `rate_pps`."""
    b.run_module_command(
        names.gen, "set", "DyssectTrafficGenCommandSetArg", profile.intervals(rate_pps)
    )
