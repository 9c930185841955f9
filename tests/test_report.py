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


def test_report_with_a_generator_run_reconciles_and_plots(tmp_path: Path, capsys) -> None:
    t0 = 5000.0
    samples = [sample(t0 + i, 0.5 + 0.1 * i, 1 + i // 3, drops=i) for i in range(6)]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (tmp_path / "decisions.jsonl").write_text(json.dumps({"time": t0 + 3.5, "migrations": 4}))
    gen = tmp_path / "traffic"
    gen.mkdir()
    lat = {"count": 10, "p50_us": 40.0, "p99_us": 90.0, "p999_us": 95.0, "max_us": 99.0}
    gen_samples = [
        {"t_s": float(i), "phase": "base" if i < 3 else "step", "rate_set_pps": 100.0,
         "offered_pps": 100.0, "delivered_pps": 100.0, "lost": 0, "gaps": 0, "reordered": 0,
         "latency": lat}
        for i in range(1, 5)
    ]  # fmt: skip
    (gen / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in gen_samples))
    (gen / "summary.json").write_text(
        json.dumps(
            {"started_unix": t0 + 0.5,
             "phases": [{"name": "base", "seconds": 4.0, "sent": 400, "received": 395,
                         "offered_pps": 100.0, "delivered_pps": 100.0,
                         "latency_us": {"p50": 40.0, "p99": 90.0, "p99.9": 95.0, "max": 99.0}}],
             "reconciliation": {"sent": 400, "received": 395, "drops": {}}}
        )
    )  # fmt: skip
    before = {"port0": {"rx_packets": 10, "rx_dropped": 0, "tx_packets": 10, "tx_dropped": 0}}
    after = {"port0": {"rx_packets": 410, "rx_dropped": 0, "tx_packets": 405, "tx_dropped": 0}}
    (tmp_path / "before.json").write_text(json.dumps(before))
    (tmp_path / "after.json").write_text(json.dumps(after))
    out = tmp_path / "out"
    rc = main(
        ["--samples", str(tmp_path / "samples.jsonl"),
         "--decisions", str(tmp_path / "decisions.jsonl"), "--out", str(out),
         "--traffic", str(gen), "--ports", str(tmp_path / "before.json"),
         str(tmp_path / "after.json")]
    )  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "traffic: base: offered 100 delivered 100 pps, p50 40 us p99 90 us" in printed
    summary = json.loads((out / "summary.json").read_text())
    rec = summary["traffic"]["reconciliation"]
    # the record's drops over the run (5) are the DUT's: 400 in, 395 out, 5 dropped
    assert rec["drops"] == {"gen_port": 0, "dut_port": 0, "dut_ring_full": 5}
    assert rec["unexplained"] == 0 and rec["link_to_dut"] == 0 and rec["link_to_gen"] == 0
    assert (out / "timeline.png").stat().st_size > 10_000
    assert len((out / "series.csv").read_text().splitlines()) == 5
    # the experiment runner's per-point figures
    figures = json.loads((out / "traffic.json").read_text())
    assert figures["delivered_pps"]["mean"] == 395 / 4.0 and figures["loss_ratio"] == 5 / 400
    assert figures["latency_us"] == {"p50": 40.0, "p99": 90.0, "p999": 95.0, "max": 99.0}


def test_summary_keeps_the_planned_and_the_measured_service_time() -> None:
    samples = [
        {**sample(float(t), 1.0, 1), "service_time": {
            "working": {"us": 20.0, "measured_us": 20.0 + t, "source": "measured"},
            "offloading": {"us": 1.0, "measured_us": None, "source": "default"}}}
        for t in range(3)
    ]  # fmt: skip
    s = summarize(samples, [])["service_time_us"]
    assert s["working"] == {"planned_mean": 20.0, "measured_mean": 21.0, "sources": ["measured"]}
    assert s["offloading"] == {"planned_mean": 1.0, "measured_mean": None, "sources": ["default"]}
    assert summarize([sample(0.0, 1.0, 1)], [])["service_time_us"] == {}
