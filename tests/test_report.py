"""`dyssect-ctrl report`, and the whole experiment path: a real controller process on the replay
data plane, recorded through its status socket while the load rises and falls, then reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dyssect_ctrl.experiment.record import main as record_main
from dyssect_ctrl.experiment.report import ReportError, main, read_lines, summarize
from tests.controller_process import Controller
from tests.replay_helpers import config_dict, write_config, write_replay


def sample(t: float, load: float, w: int, e: int = 0, drops: int = 0) -> dict:
    return {
        "t": t,
        "total_load": load,
        "working": w,
        "offloading": e,
        "drops_total": {"ring_full": drops},
    }


def test_summary_figures_from_samples_and_decisions() -> None:
    samples = [
        sample(0.0, 0.5, 1, drops=5),
        {"t": 1.0, "error": "connection refused"},
        sample(2.0, 2.5, 3, 1, drops=5),
        sample(3.0, 2.5, 3, 1, drops=9),
        sample(4.0, 0.5, 1, drops=9),
    ]
    decisions = [
        {"time": 2.0, "kind": "long", "solve_ms": 4.0, "migrations": 6, "fallback": None},
        {"time": 2.1, "kind": "short", "solve_ms": 1.0, "migrations": 1, "fallback": "late"},
        {"time": 4.0, "kind": "long", "solve_ms": 2.0, "migrations": 5, "fallback": None},
    ]
    s = summarize(samples, decisions)
    assert s["duration_s"] == 4.0 and s["samples"] == 5 and s["unanswered"] == 1
    assert s["load_cores"] == {"min": 0.5, "mean": 1.5, "max": 2.5}
    # 1 core for 2 s, 4 cores for 1 s, 4 cores for 1 s
    assert s["cores"] == {"mean": 2.5, "max": 4, "core_seconds": 10.0}
    assert (s["scale_ups"], s["scale_downs"]) == (1, 1)
    assert (s["plans"], s["migrations"]) == (3, 12)
    assert s["fallbacks"] == {"late": 1}
    assert s["solve"]["long"] == {"plans": 2, "p50_ms": 2.0, "p99_ms": 4.0}
    assert s["drops"] == {"ring_full": 4}
    with pytest.raises(ReportError, match="nothing to report"):
        summarize([{"t": 0, "error": "x"}], [])


def test_bad_inputs_name_the_file_and_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "s.jsonl"
    bad.write_text('{"t": 1}\nnot json\n')
    with pytest.raises(ReportError, match=r"s\.jsonl:2: not JSON"):
        read_lines(bad)
    assert main(["--samples", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "r")]) == 1
    assert "nope.jsonl" in capsys.readouterr().err


def test_recorded_controller_run_gives_a_report_and_a_plot(tmp_path: Path) -> None:
    # 3 s at 0.4 cores, 5 s at 2.6, then back down: the controller must scale up and down.
    loads = [0.4] * 30 + [2.6] * 50 + [0.4] * 60
    replay = write_replay(tmp_path / "snaps.jsonl", loads)
    cfg = config_dict(tmp_path, replay, epochs={"scale_down_hysteresis": 1})
    controller = Controller(tmp_path, cfg)
    try:
        controller.notify.wait_for("READY", "1", timeout=30)
        conf = write_config(tmp_path / "rec.yml", cfg)
        out = tmp_path / "run" / "samples.jsonl"
        assert (
            record_main(
                ["--config", str(conf), "--seconds", "11", "--interval", "0.25", "--out", str(out)]
            )
            == 0
        )
    finally:
        controller.stop()
    result = tmp_path / "run" / "result"
    decisions = tmp_path / "state" / "decisions.jsonl"
    assert main(["--samples", str(out), "--decisions", str(decisions), "--out", str(result)]) == 0
    summary = json.loads((result / "summary.json").read_text())
    assert summary["unanswered"] == 0
    assert summary["load_cores"]["max"] > 2.0 and summary["load_cores"]["min"] < 0.6
    assert summary["cores"]["max"] >= 3 and summary["scale_ups"] >= 1
    assert summary["scale_downs"] >= 1
    assert summary["plans"] >= 2 and summary["migrations"] >= 1
    png = (result / "cores.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
