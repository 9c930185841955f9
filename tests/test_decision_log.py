"""The decision log: JSON lines, digest, size rotation."""

from __future__ import annotations

import json
from pathlib import Path

from dyssect_ctrl.decision_log import Decision, DecisionLog, read_decisions, snapshot_digest
from dyssect_ctrl.model import Params, Plan, ShardStats, Snapshot


def snap(packets: int = 10) -> Snapshot:
    return Snapshot(cores=4, window_s=0.1, params=Params(), shards=(ShardStats(packets, 1),) * 4)


def decision(n: int) -> Decision:
    plan = Plan(2, 1, (0, 1, 0, 1), {0: 0}, (0.5, 0.0, 0.0, 0.0))
    return Decision(
        epoch=n,
        loop_epoch=n + 1,
        kind="short",
        snapshot_digest=snapshot_digest(snap(n)),
        plan=plan,
        plan_id=n,
        backend="highs",
        solve_ms=1.23456,
        fallback=None,
        migrations=2,
        time=1000.0 + n,
    )


def test_one_json_line_per_decision_with_every_field(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "state", max_bytes=1 << 20, backups=2)
    log.write(decision(1))
    log.write(decision(2))
    log.close()
    lines = read_decisions(tmp_path / "state" / "decisions.jsonl")
    assert [d["epoch"] for d in lines] == [1, 2]
    first = lines[0]
    assert set(first) == {
        "epoch",
        "loop_epoch",
        "time",
        "kind",
        "snapshot_digest",
        "plan",
        "plan_id",
        "backend",
        "solve_ms",
        "fallback",
        "migrations",
        "feasible",
    }
    assert first["plan"] == {
        "working": 2,
        "offloading": 1,
        "assignment": [0, 1, 0, 1],
        "pairing": {"0": 0},
        "offload": [0.5, 0.0, 0.0, 0.0],
    }
    assert Plan.from_json(first["plan"]) == decision(1).plan
    assert first["solve_ms"] == 1.235 and first["time"] == 1001.0
    assert first["snapshot_digest"].startswith("sha256:")


def test_digest_depends_on_inputs_only() -> None:
    assert snapshot_digest(snap(5)) == snapshot_digest(snap(5))
    assert snapshot_digest(snap(5)) != snapshot_digest(snap(6))


def test_rotation_by_size_keeps_the_configured_backups(tmp_path: Path) -> None:
    line_len = len(json.dumps(decision(0).to_json(), separators=(",", ":"))) + 1
    log = DecisionLog(tmp_path, max_bytes=line_len * 3, backups=2)
    for n in range(10):
        log.write(decision(n))
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["decisions.jsonl", "decisions.jsonl.1", "decisions.jsonl.2"]
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= line_len * 3
    live = [d["epoch"] for d in read_decisions(tmp_path / "decisions.jsonl")]
    older = [d["epoch"] for d in read_decisions(tmp_path / "decisions.jsonl.1")]
    oldest = [d["epoch"] for d in read_decisions(tmp_path / "decisions.jsonl.2")]
    assert live == [9] and older == [6, 7, 8] and oldest == [3, 4, 5]


def test_no_backups_means_truncate(tmp_path: Path) -> None:
    line_len = len(json.dumps(decision(0).to_json(), separators=(",", ":"))) + 1
    log = DecisionLog(tmp_path, max_bytes=line_len * 2, backups=0)
    for n in range(5):
        log.write(decision(n))
    log.configure(max_bytes=1 << 20, backups=0)
    log.write(decision(5))
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decisions.jsonl"]
    assert [d["epoch"] for d in read_decisions(tmp_path / "decisions.jsonl")] == [4, 5]
