"""`dyssect-ctrl calibrate`: the measured service time over a window of the data plane."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from dyssect_ctrl import calibrate
from dyssect_ctrl.model import Plan
from tests.test_dataplane_bess import rig  # noqa: F401 (the fixture: BessDataplane on a stand-in)


def test_measure_divides_the_window_busy_cycles_by_its_packets(rig: Any) -> None:  # noqa: F811
    rig.daemon.busy_us = {"working": 2.5, "offloading": 4.0}
    rig.daemon.plan = Plan(2, 1, (0, 1) * 4, {0: 0}, (0.5, 0.0) * 4)
    rig.dp.connect()
    rig.dp.read()  # everything before: not in the measurement
    rig.daemon.busy_us["working"] = 3.0
    slept: list[float] = []
    doc = calibrate.measure(rig.dp, 2.0, sleep=slept.append)
    assert slept == [2.0]
    assert doc["tsc_hz"] == 2.0e9
    assert doc["working"]["us"] == pytest.approx(3.0)
    assert doc["working"]["packets"] == 2000
    assert [s["slot"] for s in doc["working"]["slots"]] == [0, 1]
    assert doc["offloading"]["us"] == pytest.approx(4.0)
    assert [s["slot"] for s in doc["offloading"]["slots"]] == [0]
    text = calibrate.render(doc)
    assert "working: 3.000 us/packet (2000 packets)" in text
    assert "slot 1: 3.000 us/packet" in text


def test_a_kind_without_packets_has_no_figure(rig: Any) -> None:  # noqa: F811
    rig.dp.connect()  # the initial plan: one working core, no offloading
    doc = calibrate.measure(rig.dp, 0.5, sleep=lambda s: None)
    assert doc["offloading"] == {"us": None, "packets": 0, "slots": []}
    assert "offloading: no packets" in calibrate.render(doc)


def test_main_prints_json(rig: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "dataplane": {
                    "grpc_url": rig.config.dataplane.grpc_url,
                    "pybess_path": rig.config.dataplane.pybess_path,
                    "connect_timeout_ms": 500,
                },
                "cores": {"list": [2, 3, 4, 5], "controller": 1},
                "shards": 8,
            }
        )
    )
    rig.dp.connect()  # hands the stand-in pybess its daemon
    rig.daemon.busy_us["working"] = 1.5
    assert calibrate.main(["--config", str(cfg), "--seconds", "0.01", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["working"]["us"] == pytest.approx(1.5)
    assert calibrate.main(["--config", str(cfg), "--seconds", "0"]) == 1


def test_main_fails_on_a_data_plane_it_cannot_reach(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "dataplane: {grpc_url: '127.0.0.1:1', pybess_path: /nonexistent, connect_timeout_ms: 200}\n"
        "cores: {list: [2], controller: 1}\n"
    )
    assert calibrate.main(["--config", str(cfg), "--seconds", "0.01"]) == 1
