"""A data plane made of recorded snapshots (JSON lines), for offline runs and tests.

Each read() returns the next line. Lines without a timestamp or epoch get one (the previous plus
one window); at the end of the file it starts again, shifting time forward so it never runs
backwards. The `current` plan it reports is the one it was last given (or the first line's, which
the controller adopts). Applied plans are kept in memory and, when a path is given, appended as
JSON lines, so a test can check what the "data plane" received (the last KEEP_APPLIED in
memory; the file is rotated past record_max_bytes, one older file kept as <name>.1). It is only
used when the config says dataplane.kind: replay, and it says so in every log line that
describes it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from dyssect_ctrl import inputs
from dyssect_ctrl.config import Config
from dyssect_ctrl.dataplane.base import (
    WRAPPED,
    ApplyResult,
    Dataplane,
    DataplaneError,
    PlanRejected,
    Reading,
    SnapshotRejected,
    plan_problem,
)
from dyssect_ctrl.model import Plan, Snapshot
from dyssect_ctrl.snapshot import SnapshotError, decode_json, parse_snapshot

log = logging.getLogger(__name__)

KEEP_APPLIED = 1000
RECORD_MAX_BYTES = 16 << 20


class ReplayDataplane(Dataplane):
    kind = "replay"

    def __init__(
        self,
        config: Config,
        path: str | Path,
        *,
        record_path: str | Path | None = None,
        cycle: bool = True,
        record_max_bytes: int = RECORD_MAX_BYTES,
    ) -> None:
        super().__init__()
        self.config = config
        self.path = Path(path)
        self.record_path = Path(record_path) if record_path is not None else None
        self.cycle = cycle
        self.record_max_bytes = record_max_bytes
        self.applied: list[Plan] = []
        self.plan_id = 0
        self._lines: list[str] = []
        self._pos = 0
        self._cycles = 0
        self._time_shift = 0.0
        self._epoch_shift = 0
        self._last_time = 0.0
        self._last_epoch = 0
        self._current: Plan | None = None
        self._fresh = False

    def describe(self) -> str:
        return f"replay of {self.path} (recorded snapshots, not a live data plane)"

    def connect(self) -> None:
        try:
            text = inputs.read_text(self.path, inputs.MAX_REPLAY_BYTES)
        except inputs.InputError as e:
            raise DataplaneError(inputs.one_line(f"replay file {self.path}: {e}")) from None
        self._lines = [line for line in text.splitlines() if line.strip()]
        if not self._lines:
            raise DataplaneError(f"replay file {self.path} has no snapshots")
        self._fresh = True
        self.health.connected = True
        self.health.reason = "replaying"

    def read(self) -> Reading:
        if not self._lines:
            raise DataplaneError("replay not connected")
        if self._pos >= len(self._lines):
            if not self.cycle:
                raise DataplaneError(f"replay file {self.path} exhausted")
            self._cycles += 1
            # Time continues from the last window so the loop never sees it go backwards.
            self._time_shift = self._last_time
            self._epoch_shift = self._last_epoch + 1
            self._pos = 0
            log.info("replay: end of %s, starting again (pass %d)", self.path, self._cycles + 1)
        line_no = self._pos + 1
        line = self._lines[self._pos]
        self._pos += 1
        fresh, self._fresh = self._fresh, False
        try:
            obj = decode_json(line)
            _check_raw_counters(obj)
            snap = parse_snapshot(obj, self.config)
        except SnapshotError as e:
            raise SnapshotRejected("malformed", f"{self.path}:{line_no}: {e}") from None
        except SnapshotRejected as e:
            raise SnapshotRejected(e.reason, f"{self.path}:{line_no}: {e}") from None
        snap = self._timed(obj, snap)
        # Until it is given a plan, it reports the recorded one (which the controller adopts).
        if self._current is not None:
            snap = replace(snap, current=self._current)
        return Reading(
            snapshot=snap,
            plan_id=self.plan_id,
            migrating=False,
            packets_in=sum(s.packets for s in snap.shards),
            packets_out=sum(s.packets for s in snap.shards),
            owners=snap.current.assignment if snap.current is not None else (),
            fresh=fresh,
        )

    def _timed(self, obj: dict[str, Any], snap: Snapshot) -> Snapshot:
        if "timestamp" in obj:
            ts = snap.timestamp + self._time_shift
        else:
            ts = self._last_time + snap.window_s
        epoch = snap.epoch + self._epoch_shift if "epoch" in obj else self._last_epoch + 1
        # Recorded values are passed on as they are (a bad one must reach the validator).
        self._last_time = max(self._last_time, ts)
        self._last_epoch = max(self._last_epoch, epoch)
        return replace(snap, timestamp=ts, epoch=epoch)

    def apply(self, plan: Plan) -> ApplyResult:
        problem = plan_problem(plan, self.config.shards, self.config.core_count)
        if problem is not None:
            raise PlanRejected(problem)
        old = self._current or Plan.initial(self.config.shards)
        migrations = plan.migrations(old)
        self.plan_id += 1
        self._current = plan
        self.applied.append(plan)
        if len(self.applied) > KEEP_APPLIED:
            del self.applied[: len(self.applied) - KEEP_APPLIED]
        if self.record_path is not None:
            line = json.dumps({"plan_id": self.plan_id, "plan": plan.to_json()})
            self._record(line + "\n")
        return ApplyResult(plan_id=self.plan_id, migrations=migrations)

    def _record(self, line: str) -> None:
        path = self.record_path
        assert path is not None
        try:
            if path.exists() and path.stat().st_size + len(line) > self.record_max_bytes:
                os.replace(path, path.with_name(path.name + ".1"))
            # One write of a whole line: a reader never sees half a plan.
            with path.open("a", encoding="utf-8") as f:
                f.write(line)
        except OSError as e:  # a full disk must not stop the replay; the plan is applied
            log.error("replay record %s: %s", path, e)

    @property
    def current(self) -> Plan | None:
        return self._current

    def close(self) -> None:
        self.health.connected = False
        self.health.reason = "closed"


def _check_raw_counters(obj: Any) -> None:
    """Negative counters get their own reason (the parser would call them malformed)."""
    if not isinstance(obj, dict):
        return
    shards = obj.get("shards")
    if isinstance(shards, list):
        for n, s in enumerate(shards):
            if not isinstance(s, dict):
                continue
            for key in ("packets", "bytes"):
                v = s.get(key)
                if _negative(v):
                    raise SnapshotRejected("negative_counter", f"shards[{n}].{key} = {v}")
    drops = obj.get("drops")
    if isinstance(drops, dict):
        for reason, v in drops.items():
            if _negative(v):
                raise SnapshotRejected("negative_counter", f"drops.{reason} = {v}")


def _negative(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and (v < 0 or v >= WRAPPED)
