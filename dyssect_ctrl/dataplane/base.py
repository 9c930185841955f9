"""What the loop needs from a data plane, and the checks every snapshot and plan must pass.

Two implementations: `bess` (the live plugin through pybess) and `replay` (recorded snapshots).
The loop only sees this interface; the checks live here so both kinds reject the same things.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from dyssect_ctrl.model import Plan, Snapshot
from dyssect_ctrl.service_time import Busy

# A uint64 counter at or above this has wrapped below zero in the data plane.
WRAPPED = 1 << 63

# Why a snapshot was rejected (label values of the rejected-snapshot metric).
REJECT_REASONS = (
    "malformed",
    "negative_counter",
    "shard_count_mismatch",
    "core_count_mismatch",
    "time_backwards",
    "bad_window",
    "bad_plan",
)


class DataplaneError(Exception):
    """The data plane cannot be reached or did not answer; the loop reconnects."""


class PipelineAbsent(DataplaneError):
    """bessd answers but the Dyssect module is not there (yet)."""


class PlanRejected(Exception):
    """The data plane refused a plan (it applies nothing in that case)."""


class PlanDeferred(PlanRejected):
    """The data plane is busy (a migration or ring hand-off under way): try again later."""


class SnapshotRejected(Exception):
    """A snapshot with impossible values; it is counted and never planned on."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in REJECT_REASONS, reason
        self.reason = reason
        super().__init__(f"{reason}: {message}")


@dataclass(frozen=True)
class Reading:
    """One get_stats answer: the snapshot plus the data plane's own bookkeeping."""

    snapshot: Snapshot
    plan_id: int = 0
    migrating: bool = False
    packets_in: int = 0
    packets_out: int = 0
    # Working slot owning each shard right now (pending owner if a move is under way).
    owners: tuple[int, ...] = ()
    # True on the first reading after (re)connecting: a new data-plane session.
    fresh: bool = False
    # Busy time over the window per kind ("working", "offloading"), one entry per slot, and
    # the TSC frequency its cycles count at (0: the data plane does not measure it).
    busy: dict[str, tuple[Busy, ...]] = field(default_factory=dict)
    tsc_hz: float = 0.0


@dataclass(frozen=True)
class ApplyResult:
    plan_id: int
    migrations: int


@dataclass
class Health:
    """Connection state as the loop and the status report see it."""

    connected: bool = False
    reason: str = "not connected yet"
    reconnects: int = 0
    extra: dict[str, str] = field(default_factory=dict)


class Dataplane(ABC):
    kind: str = "abstract"

    def __init__(self) -> None:
        self.health = Health()

    @abstractmethod
    def describe(self) -> str:
        """One line for logs: kind and address."""

    @abstractmethod
    def connect(self) -> None:
        """Reach the data plane and find the pipeline; raises DataplaneError."""

    @abstractmethod
    def read(self) -> Reading:
        """Close the current window and return it; DataplaneError or SnapshotRejected."""

    @abstractmethod
    def apply(self, plan: Plan) -> ApplyResult:
        """Apply a whole plan (cores first resumed); DataplaneError or PlanRejected."""

    def set_window(self, window_s: float) -> None:  # noqa: B027 (optional hook)
        """Tell the data plane the nominal measurement window (the short epoch)."""

    def idle(self, reading: Reading) -> None:  # noqa: B027 (optional hook)
        """Called after a reading that was accepted: stop cores that own nothing."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Drop the connection; leaves the data plane as it is."""


# The plugin stores offload fractions in millionths: what it reports back is rounded.
OFFLOAD_TOLERANCE = 2e-6


def same_plan(a: Plan | None, b: Plan | None) -> bool:
    """Equal plans, offload fractions compared to the data plane's precision."""
    if a is None or b is None:
        return a is b
    if (a.working, a.offloading, a.assignment) != (b.working, b.offloading, b.assignment):
        return False
    if {i: j for i, j in a.pairing.items() if i < a.working} != {
        i: j for i, j in b.pairing.items() if i < b.working
    }:
        return False
    ra = a.offload or (0.0,) * len(a.assignment)
    rb = b.offload or (0.0,) * len(b.assignment)
    return len(ra) == len(rb) and all(
        abs(x - y) <= OFFLOAD_TOLERANCE for x, y in zip(ra, rb, strict=True)
    )


def plan_problem(plan: Plan, shards: int, cores: int) -> str | None:
    """Why `plan` cannot be applied to a data plane of `shards` shards and `cores` cores."""
    w, e = plan.working, plan.offloading
    if w < 1:
        return f"working = {w} < 1"
    if e < 0 or w + e > cores:
        return f"working + offloading = {w + e} outside 1..{cores}"
    # every working core holds a shard and every offloading core serves a working core
    if w > shards:
        return f"working = {w} > {shards} shards"
    if e > w:
        return f"offloading = {e} > working = {w}"
    if len(plan.assignment) != shards:
        return f"assignment has {len(plan.assignment)} entries for {shards} shards"
    if plan.offload and len(plan.offload) != shards:
        return f"offload has {len(plan.offload)} entries for {shards} shards"
    for s, a in enumerate(plan.assignment):
        if not 0 <= a < w:
            return f"shard {s} on working slot {a} (W = {w})"
    for i, j in plan.pairing.items():
        if not 0 <= i < w or not 0 <= j < e:
            return f"pairing {i} -> {j} out of range (W = {w}, E = {e})"
    for s, r in enumerate(plan.offload):
        if not (math.isfinite(r) and 0.0 <= r <= 1.0):
            return f"offload of shard {s} is {r}"
        if r > 0.0 and plan.assignment[s] not in plan.pairing:
            return f"shard {s} offloads from unpaired working slot {plan.assignment[s]}"
    return None


class SnapshotValidator:
    """Rejects impossible snapshots: wrapped counters, wrong shapes, time going backwards."""

    def __init__(self, shards: int, cores: int) -> None:
        self.shards = shards
        self.cores = cores
        self._last_time: float | None = None
        self._last_epoch: int | None = None

    def reset(self) -> None:
        """A new data-plane session (reconnect): its epoch counter starts again."""
        self._last_time = None
        self._last_epoch = None

    def check(self, reading: Reading) -> None:
        s = reading.snapshot
        if len(s.shards) != self.shards:
            raise SnapshotRejected(
                "shard_count_mismatch", f"{len(s.shards)} shards, expected {self.shards}"
            )
        if s.cores != self.cores:
            raise SnapshotRejected("core_count_mismatch", f"{s.cores} cores, expected {self.cores}")
        if not (math.isfinite(s.window_s) and s.window_s > 0):
            raise SnapshotRejected("bad_window", f"window_s = {s.window_s}")
        for n, shard in enumerate(s.shards):
            if not (0 <= shard.packets < WRAPPED and 0 <= shard.bytes < WRAPPED):
                raise SnapshotRejected(
                    "negative_counter",
                    f"shard {n}: packets {_signed(shard.packets)} bytes {_signed(shard.bytes)}",
                )
        for reason, count in s.drops.items():
            if not 0 <= count < WRAPPED:
                raise SnapshotRejected("negative_counter", f"drops[{reason}] = {_signed(count)}")
        for name, value in (
            ("packets_in", reading.packets_in),
            ("packets_out", reading.packets_out),
        ):
            if not 0 <= value < WRAPPED:
                raise SnapshotRejected("negative_counter", f"{name} = {_signed(value)}")
        for kind, slots in reading.busy.items():
            for n, b in enumerate(slots):
                if not (0 <= b.cycles < WRAPPED and 0 <= b.packets < WRAPPED):
                    raise SnapshotRejected(
                        "negative_counter",
                        f"{kind} slot {n}: busy cycles {_signed(b.cycles)} "
                        f"packets {_signed(b.packets)}",
                    )
        if not math.isfinite(s.timestamp):
            raise SnapshotRejected("time_backwards", f"timestamp {s.timestamp}")
        if self._last_time is not None and s.timestamp <= self._last_time:
            raise SnapshotRejected(
                "time_backwards",
                f"timestamp {s.timestamp:.6f} not after the previous {self._last_time:.6f}",
            )
        if self._last_epoch is not None and s.epoch < self._last_epoch:
            raise SnapshotRejected(
                "time_backwards", f"epoch {s.epoch} before the previous {self._last_epoch}"
            )
        if s.current is not None:
            problem = plan_problem(s.current, self.shards, self.cores)
            if problem is not None:
                raise SnapshotRejected("bad_plan", f"the data plane reports a bad plan: {problem}")
        # Only an accepted snapshot moves the reference forward.
        self._last_time = s.timestamp
        self._last_epoch = s.epoch


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= WRAPPED else value
