"""The replay data plane: recorded snapshots in, applied plans recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dyssect_ctrl.config import parse_config
from dyssect_ctrl.dataplane import open_dataplane
from dyssect_ctrl.dataplane.base import DataplaneError, PlanRejected, SnapshotRejected
from dyssect_ctrl.dataplane.replay import ReplayDataplane
from dyssect_ctrl.model import Plan
from tests.replay_helpers import config_dict, write_replay


def make(tmp_path: Path, loads: list[float], **kw) -> ReplayDataplane:
    replay = write_replay(tmp_path / "snaps.jsonl", loads, overrides=kw.pop("overrides", None))
    config = parse_config(config_dict(tmp_path, replay))
    dp = ReplayDataplane(config, replay, record_path=tmp_path / "applied.jsonl", **kw)
    dp.connect()
    return dp


def test_reads_lines_in_order_with_synthesised_time(tmp_path: Path) -> None:
    dp = make(tmp_path, [0.5, 1.0, 1.5])
    r = [dp.read() for _ in range(3)]
    assert r[0].fresh and not r[1].fresh
    assert [x.snapshot.epoch for x in r] == [1, 2, 3]
    assert [round(x.snapshot.timestamp, 3) for x in r] == [0.1, 0.2, 0.3]
    assert [round(sum(x.snapshot.loads()), 1) for x in r] == [0.5, 1.0, 1.5]
    assert r[0].snapshot.current is None  # nothing recorded, nothing applied yet


def test_cycles_with_time_moving_forward(tmp_path: Path) -> None:
    dp = make(tmp_path, [0.5, 0.6])
    stamps = [dp.read().snapshot.timestamp for _ in range(5)]
    assert stamps == sorted(stamps) and len(set(stamps)) == 5


def test_without_cycling_the_end_is_an_error(tmp_path: Path) -> None:
    dp = make(tmp_path, [0.5], cycle=False)
    dp.read()
    with pytest.raises(DataplaneError, match="exhausted"):
        dp.read()


def test_applied_plans_are_recorded_and_reported_back(tmp_path: Path) -> None:
    dp = make(tmp_path, [0.5, 0.5])
    dp.read()
    plan = Plan(2, 0, tuple([0, 1] * 8), {}, (0.0,) * 16)
    res = dp.apply(plan)
    assert res.plan_id == 1 and res.migrations == 8  # half the shards left slot 0
    assert dp.read().snapshot.current == plan
    rec = [json.loads(x) for x in (tmp_path / "applied.jsonl").read_text().splitlines()]
    assert rec == [{"plan_id": 1, "plan": plan.to_json()}]
    with pytest.raises(PlanRejected):
        dp.apply(Plan(5, 0, (0,) * 16, {}, (0.0,) * 16))
    assert dp.applied == [plan]


def test_recorded_current_plan_is_reported_until_one_is_applied(tmp_path: Path) -> None:
    current = {"working": 2, "offloading": 0, "assignment": [0, 1] * 8}
    dp = make(tmp_path, [0.5, 0.5], overrides={0: {"current": current}})
    assert dp.read().snapshot.current == Plan.from_json(current)


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        (
            lambda o: {**o, "shards": [{"packets": -4, "bytes": 0}, *o["shards"][1:]]},
            "negative_counter",
        ),
        ({"drops": {"ring_full": -1}}, "negative_counter"),
        ({"window_s": "soon"}, "malformed"),
        (lambda o: {**o, "shards": "none"}, "malformed"),
    ],
)
def test_bad_lines_are_rejected_with_a_reason(tmp_path: Path, patch, reason: str) -> None:
    dp = make(tmp_path, [0.5, 0.5], overrides={0: patch})
    with pytest.raises(SnapshotRejected) as e:
        dp.read()
    assert e.value.reason == reason
    assert "snaps.jsonl:1" in str(e.value)
    dp.read()  # the next line is fine


def test_garbage_line_is_malformed(tmp_path: Path) -> None:
    replay = tmp_path / "snaps.jsonl"
    write_replay(replay, [0.5])
    replay.write_text("{not json\n" + replay.read_text())
    dp = ReplayDataplane(parse_config(config_dict(tmp_path, replay)), replay)
    dp.connect()
    with pytest.raises(SnapshotRejected, match="malformed"):
        dp.read()


def test_missing_or_empty_file_cannot_connect(tmp_path: Path) -> None:
    replay = tmp_path / "none.jsonl"
    config = parse_config(config_dict(tmp_path, replay))
    with pytest.raises(DataplaneError):
        ReplayDataplane(config, replay).connect()
    replay.write_text("\n")
    with pytest.raises(DataplaneError, match="no snapshots"):
        ReplayDataplane(config, replay).connect()


def test_open_dataplane_uses_replay_only_when_asked(tmp_path: Path, caplog) -> None:
    replay = write_replay(tmp_path / "s.jsonl", [0.5])
    cfg = parse_config(config_dict(tmp_path, replay))
    dp = open_dataplane(cfg)
    assert dp.kind == "replay"
    assert "dataplane.kind is replay" in caplog.text
    bess_cfg = config_dict(tmp_path, replay)
    bess_cfg["dataplane"] = {"kind": "bess", "pybess_path": str(tmp_path / "nowhere")}
    assert open_dataplane(parse_config(bess_cfg)).kind == "bess"


def test_hostile_lines_are_rejected_and_the_replay_goes_on(tmp_path: Path) -> None:
    replay = write_replay(tmp_path / "snaps.jsonl", [0.5, 0.5])
    good = replay.read_text().splitlines()
    bad = [
        "[" * 100_000,
        '{"cores":4,"window_s":0.1,"shards":[{"packets":' + "9" * 5000 + ',"bytes":1}]}',
        '{"cores":4,"window_s":0.1,"shards":[{"packets":' + "9" * 400 + ',"bytes":1}]}',
        '{"\\u001b[31m":1}',
    ]
    replay.write_text("\n".join([good[0], *bad, good[1]]) + "\n")
    config = parse_config(config_dict(tmp_path, replay))
    dp = ReplayDataplane(config, replay)
    dp.connect()
    dp.read()
    for _ in bad:
        with pytest.raises(SnapshotRejected) as info:
            dp.read()
        line = str(info.value)
        assert line.startswith("malformed: ") and len(line) <= 500 and line.isascii()
    dp.read()  # the next good line


def test_a_replay_file_past_its_cap_is_refused(tmp_path: Path) -> None:
    config = parse_config(config_dict(tmp_path, tmp_path / "x"))
    dp = ReplayDataplane(config, "/dev/zero")
    with pytest.raises(DataplaneError, match="larger than 268435456 bytes"):
        dp.connect()


def test_the_applied_record_is_rotated_and_memory_bounded(tmp_path: Path) -> None:
    from dyssect_ctrl.dataplane import replay as replay_mod

    dp = make(tmp_path, [0.5], record_max_bytes=4096)
    plan = Plan(2, 0, tuple([0, 1] * 8), {}, (0.0,) * 16)
    for _ in range(replay_mod.KEEP_APPLIED + 50):
        dp.apply(plan)
    assert len(dp.applied) == replay_mod.KEEP_APPLIED
    assert (tmp_path / "applied.jsonl").stat().st_size <= 4096
    assert (tmp_path / "applied.jsonl.1").stat().st_size <= 4096
