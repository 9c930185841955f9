"""The decision log: one JSON line per plan applied, in the state directory, rotated by size.

decisions.jsonl is the live file; decisions.jsonl.1 .. .N are older ones (N = backups, 0 keeps
none). A line is written with one write() of the whole line, so a reader never sees half of one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dyssect_ctrl.model import Plan, Snapshot
from dyssect_ctrl.snapshot import dump_snapshot

log = logging.getLogger(__name__)

FILE_NAME = "decisions.jsonl"


def snapshot_digest(snapshot: Snapshot) -> str:
    """sha256 of the snapshot's canonical JSON: the same inputs give the same digest."""
    text = json.dumps(dump_snapshot(snapshot), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Decision:
    epoch: int  # the data plane's epoch counter of the snapshot decided on
    loop_epoch: int  # the controller's short-epoch counter
    kind: str  # short | long | reapply | fallback
    snapshot_digest: str | None
    plan: Plan
    plan_id: int
    backend: str
    solve_ms: float | None
    fallback: str | None
    migrations: int
    feasible: bool = True
    time: float | None = None  # Unix time; now when None

    def to_json(self) -> dict[str, Any]:
        when = time.time() if self.time is None else self.time
        return {
            "epoch": self.epoch,
            "loop_epoch": self.loop_epoch,
            "time": round(when, 6),
            "kind": self.kind,
            "snapshot_digest": self.snapshot_digest,
            "plan": self.plan.to_json(),
            "plan_id": self.plan_id,
            "backend": self.backend,
            "solve_ms": None if self.solve_ms is None else round(self.solve_ms, 3),
            "fallback": self.fallback,
            "migrations": self.migrations,
            "feasible": self.feasible,
        }


class DecisionLog:
    def __init__(self, directory: str | Path, max_bytes: int, backups: int) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self.max_bytes = max_bytes
        self.backups = backups
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def configure(self, max_bytes: int, backups: int) -> None:
        self.max_bytes = max_bytes
        self.backups = backups

    def write(self, decision: Decision) -> None:
        data = (json.dumps(decision.to_json(), separators=(",", ":")) + "\n").encode()
        try:
            size = os.fstat(self._fd).st_size
            if size and size + len(data) > self.max_bytes:
                self._rotate()
            os.write(self._fd, data)
        except OSError as e:
            # A full disk must not stop the controller; the plan is already applied.
            log.error("decision log %s: %s", self.path, e)

    def _rotate(self) -> None:
        os.close(self._fd)
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            for n in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{FILE_NAME}.{n}")
                if older.exists():
                    older.replace(self.path.with_name(f"{FILE_NAME}.{n + 1}"))
            self.path.replace(self.path.with_name(f"{FILE_NAME}.1"))
        self._fd = self._open()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_decisions(path: str | Path) -> list[dict[str, Any]]:
    """All lines of one decision-log file (for tests and tools)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
