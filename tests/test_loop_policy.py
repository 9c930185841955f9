"""The control loop runs the planner of the config's policy, and a reload can change it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prometheus_client import CollectorRegistry

from dyssect_ctrl.config import parse_config
from dyssect_ctrl.dataplane.replay import ReplayDataplane
from dyssect_ctrl.decision_log import FILE_NAME, DecisionLog, read_decisions
from dyssect_ctrl.loop import ControlLoop
from dyssect_ctrl.metrics import Metrics
from tests.replay_helpers import config_dict, write_replay


def rig(tmp_path: Path, loads: list[float], policy: str) -> tuple[ControlLoop, Path]:
    replay = write_replay(tmp_path / "snaps.jsonl", loads)
    config = parse_config(config_dict(tmp_path, replay, policy=policy))
    dp = ReplayDataplane(config, replay)
    state = tmp_path / "state"
    loop = ControlLoop(config, dp, Metrics(CollectorRegistry()), DecisionLog(state, 1 << 20, 1))
    return loop, state


def backends(state: Path) -> set[str]:
    return {
        d["backend"] for d in read_decisions(state / FILE_NAME) if d["kind"] in ("long", "short")
    }


def test_static_spreads_over_every_core_and_holds(tmp_path: Path) -> None:
    loop, state = rig(tmp_path, [0.3, 0.3, 2.5, 2.5, 0.3, 0.3], "static")
    for _ in range(6):
        loop.tick()
    assert loop.current is not None
    assert loop.current.working == 4 and loop.current.offloading == 0
    assert loop.current.assignment == tuple(s % 4 for s in range(16))
    assert backends(state) == {"static"}


def test_rsspp_scales_with_working_cores_only(tmp_path: Path) -> None:
    loop, state = rig(tmp_path, [0.3, 0.3, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5], "rsspp")
    seen = []
    for _ in range(8):
        loop.tick()
        assert loop.current is not None
        seen.append(loop.current.working)
        assert loop.current.offloading == 0
    assert max(seen) > 1  # 2.5 cores of load: RSS++ adds cores
    assert backends(state) == {"rsspp"}


def test_a_reload_switches_the_policy(tmp_path: Path) -> None:
    loop, state = rig(tmp_path, [0.3] * 8, "dyssect")
    for _ in range(3):
        loop.tick()
    assert loop.current is not None and loop.current.working == 1
    live = loop.reload(replace(loop.config, policy="static"))
    assert "policy" in live
    for _ in range(3):
        loop.tick()
    assert loop.current.working == 4
    assert "static" in backends(state)


def test_status_names_the_policy_in_force_after_a_reload(tmp_path: Path) -> None:
    loop, _ = rig(tmp_path, [0.3] * 8, "dyssect")
    for _ in range(3):
        loop.tick()
    doc = loop.status()
    assert doc["policy"] == "dyssect" and "policy dyssect" in doc["status"]
    loop.reload(replace(loop.config, policy="static"))
    for _ in range(2):
        loop.tick()
    doc = loop.status()
    assert doc["policy"] == "static" and "policy static" in doc["status"]
