"""A traffic profile: what the generator sends, as data, strictly validated.

Errors are ConfigError (the controller config's own type) whose text starts with the dotted path
of the offending key. The schema is documented in docs/traffic.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dyssect_ctrl import inputs
from dyssect_ctrl.config import (
    Check,
    ConfigError,
    check_fields,
    closed_unit,
    int_range,
    load_yaml_text,
    non_negative,
    number_range,
    one_of,
    word,
)

MAX_FLOWS = 1 << 20  # the module's limit
MIN_FRAME = 62  # stamp offset 54 + flow id + sequence number
STAMP_OFFSET = 54  # after the longest L4 header (TCP, 20 bytes)
TIMESTAMP_OFFSET = STAMP_OFFSET + 8  # BESS Timestamp's marker + ns go here
# The DUT's class mark (DyssectOffloadingCore class_mark_offset) goes after the timestamp; its
# byte value is the index of the class here (the generator sends 0).
CLASS_MARK_MIN_OFFSET = TIMESTAMP_OFFSET + 12
CLASSES = ("working", "offloaded")
MAX_FRAME = 1514
MAX_SIZES = 16
MAX_PHASES = 1000
MAX_RATE_PPS = 100_000_000
MAX_PHASE_S = 86_400.0
PHASE_KINDS = ("constant", "ramp")
# Buckets of one latency histogram at most (BESS Measure allocates them all): 8 MB.
LATENCY_BUCKETS = 1_000_000


@dataclass(frozen=True)
class Size:
    bytes: int = 128  # frame without FCS
    weight: int = 1


@dataclass(frozen=True)
class Phase:
    """`seconds` at `rate_pps` (constant) or from `rate_pps` to `to_pps` (ramp, linear)."""

    name: str = "run"
    kind: str = "constant"
    seconds: float = 10.0
    rate_pps: float = 10_000.0
    to_pps: float | None = None

    def rate_at(self, t: float) -> float:
        """The rate `t` seconds into the phase."""
        if self.kind == "constant" or self.to_pps is None:
            return self.rate_pps
        x = min(max(t / self.seconds, 0.0), 1.0)
        return self.rate_pps + (self.to_pps - self.rate_pps) * x


@dataclass(frozen=True)
class HotSet:
    shift_every_s: float = 0.0  # 0: the popular flows never move
    stride: int = 0  # ranks the hot set moves by; 0: half the flows


@dataclass(frozen=True)
class Churn:
    new_flows_per_s: float = 0.0  # 0: the flows live for the whole run


@dataclass(frozen=True)
class Profile:
    seed: int = 1
    flows: int = 1024
    zipf_alpha: float = 0.0
    hot_set: HotSet = field(default_factory=HotSet)
    churn: Churn = field(default_factory=Churn)
    tcp_fraction: float = 0.0
    sizes: tuple[Size, ...] = (Size(),)
    phases: tuple[Phase, ...] = (Phase(),)
    class_mark_offset: int | None = None  # None: latency is not split by class
    # The latency histograms' range: longer needs coarser buckets (at most 1M per histogram).
    latency_max_ms: float = 100.0

    @property
    def latency_resolution_ns(self) -> int:
        return max(100, math.ceil(self.latency_max_ms * 1e6 / LATENCY_BUCKETS))

    @property
    def classes(self) -> tuple[str, ...]:
        """The latency classes the receiver splits by (none without a class mark)."""
        return CLASSES if self.class_mark_offset is not None else ()

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.phases)

    def module_arg(self, packets: int = 0, burst: int = 32) -> dict[str, Any]:
        """DyssectTrafficGenArg for this profile (the per-phase intervals start at phase 0)."""
        first = self.phases[0]
        return {
            "seed": self.seed,
            "flows": self.flows,
            "zipf_alpha": self.zipf_alpha,
            "shift_stride": self.hot_set.stride,
            "tcp_fraction": self.tcp_fraction,
            "sizes": [s.bytes for s in self.sizes],
            "size_weights": [s.weight for s in self.sizes],
            "stamp_offset": STAMP_OFFSET,
            "packets": packets,
            "burst": burst,
            **self.intervals(first.rate_pps),
        }

    def intervals(self, rate_pps: float) -> dict[str, int]:
        """The module counts moves in packets; at `rate_pps` these are the profile's seconds."""
        shift = self.hot_set.shift_every_s
        churn = self.churn.new_flows_per_s
        return {
            "shift_every_packets": max(1, round(rate_pps * shift)) if shift > 0 else 0,
            "churn_every_packets": max(1, round(rate_pps / churn)) if churn > 0 else 0,
        }


def _list(key: str, value: Any, limit: int, item: Check) -> tuple[Any, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(key, "must be a non-empty list")
    if len(value) > limit:
        raise ConfigError(key, f"must have at most {limit} items (got {len(value)})")
    return tuple(item(f"{key}[{i}]", v) for i, v in enumerate(value))


def _size(key: str, value: Any) -> Size:
    return Size(
        **check_fields(
            key,
            value,
            {"bytes": int_range(MIN_FRAME, MAX_FRAME), "weight": int_range(0, 1_000_000)},
        )
    )


_RATE = number_range(0.0, MAX_RATE_PPS)


def _phase(key: str, value: Any) -> Phase:
    values = check_fields(
        key,
        value,
        {
            "name": word,
            "kind": one_of(*PHASE_KINDS),
            "seconds": number_range(0.0, MAX_PHASE_S, lo_open=True),
            "rate_pps": _RATE,
            "to_pps": _RATE,
        },
    )
    phase = Phase(**values)
    if phase.kind == "ramp" and phase.to_pps is None:
        raise ConfigError(f"{key}.to_pps", "a ramp needs to_pps")
    if phase.kind == "constant" and phase.to_pps is not None:
        raise ConfigError(f"{key}.to_pps", "only a ramp has to_pps")
    return phase


def _sizes(key: str, value: Any) -> tuple[Size, ...]:
    sizes = _list(key, value, MAX_SIZES, _size)
    if sum(s.weight for s in sizes) == 0:
        raise ConfigError(key, "the weights must not all be zero")
    return sizes


def _phases(key: str, value: Any) -> tuple[Phase, ...]:
    return _list(key, value, MAX_PHASES, _phase)


_CHECKS: dict[str, Check] = {
    "seed": int_range(0, (1 << 64) - 1),
    "flows": int_range(1, MAX_FLOWS),
    "zipf_alpha": number_range(0.0, 10.0),
    "hot_set": lambda k, v: HotSet(
        **check_fields(
            k,
            v,
            {"shift_every_s": non_negative, "stride": int_range(0, MAX_FLOWS - 1)},
        )
    ),
    "churn": lambda k, v: Churn(**check_fields(k, v, {"new_flows_per_s": non_negative})),
    "tcp_fraction": closed_unit,
    "sizes": _sizes,
    "phases": _phases,
    "class_mark_offset": int_range(CLASS_MARK_MIN_OFFSET, MAX_FRAME - 1),
    "latency_max_ms": number_range(1.0, 10_000.0),
}


def parse_profile(obj: object, key: str = "") -> Profile:
    """Build a Profile from parsed YAML (None means every default); `key` prefixes error paths."""
    profile = Profile(**check_fields(key, obj, _CHECKS))
    if profile.hot_set.stride >= profile.flows and profile.hot_set.stride:
        raise ConfigError(_join(key, "hot_set.stride"), f"must be < flows ({profile.flows})")
    if profile.seconds > MAX_PHASE_S:
        raise ConfigError(_join(key, "phases"), f"must last at most {MAX_PHASE_S:g} s in total")
    mark = profile.class_mark_offset
    for i, size in enumerate(profile.sizes):
        if mark is not None and size.bytes <= mark:
            raise ConfigError(
                _join(key, f"sizes[{i}].bytes"),
                f"must be > class_mark_offset ({mark}) to carry the class mark",
            )
    return profile


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def load_profile(path: str | Path) -> Profile:
    """Read and validate a profile file; every error names the file."""
    source = str(path)
    try:
        text = inputs.read_text(path, inputs.MAX_CONFIG_BYTES)
        return parse_profile(load_yaml_text(text))
    except inputs.InputError as e:
        raise ConfigError("", str(e), source) from None
    except ConfigError as e:
        raise ConfigError(e.key, e.reason, source) from None
