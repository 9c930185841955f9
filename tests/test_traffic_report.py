"""The generator run beside the DUT's record: the per-second series, the loss reconciliation
over the whole path and the timeline plot (dyssect_ctrl/experiment/traffic_report.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from dyssect_ctrl.experiment import traffic_report as tr

T0 = 1_000_000.0


def gen_sample(t: float, phase: str, offered: float, p99: float | None) -> dict:
    return {
        "t_s": t,
        "phase": phase,
        "rate_set_pps": offered,
        "offered_pps": offered,
        "delivered_pps": offered - 10,
        "lost": 10,
        "gaps": 0,
        "reordered": 0,
        "latency": {"count": 100, "p50_us": 50.0, "p99_us": p99, "p999_us": p99, "max_us": p99},
    }


def dut_sample(t: float, w: int, e: int, drops: int) -> dict:
    return {"t": T0 + t, "working": w, "offloading": e, "total_load": w * 0.8,
            "drops_total": {"ring_full": drops, "non_ip": 1},
            "service_time": {"working": {"us": 10.0 * w, "source": "measured"}}}  # fmt: skip


GEN = [gen_sample(1.0, "base", 1000, 80.0), gen_sample(2.0, "step", 5000, 900.0),
       gen_sample(3.0, "step", 5000, 120.0)]  # fmt: skip
GEN[2]["by_class"] = {"working": {"p99_us": 100.0}, "offloaded": {"p99_us": 300.0}}
DUT = [dut_sample(0.5, 1, 0, 0), {"t": T0 + 1.5, "error": "timeout"},
       dut_sample(1.9, 1, 0, 4), dut_sample(2.5, 2, 1, 7), dut_sample(3.5, 2, 1, 7)]  # fmt: skip
DECISIONS = [{"time": T0 + 2.2, "migrations": 6}, {"time": T0 + 2.9, "migrations": 2},
             {"time": T0 + 9.0, "migrations": 99}]  # fmt: skip


def test_series_lines_the_dut_up_with_each_generator_second() -> None:
    rows = tr.series(GEN, T0, DUT, DECISIONS)
    assert [r["phase"] for r in rows] == ["base", "step", "step"]
    # cores in force at each sample's end (T0+1, +2, +3): the errored sample is skipped
    assert [(r["working"], r["offloading"]) for r in rows] == [(1, 0), (1, 0), (2, 1)]
    # decisions in (T0+1, T0+2] none, (T0+2, T0+3] two with 8 migrations; T0+9 is after the run
    assert [r["plans"] for r in rows] == [0, 0, 2]
    assert [r["migrations"] for r in rows] == [0, 0, 8]
    # drops over each second, all reasons; the first second starts before the first record
    assert [r["drops"] for r in rows] == [None, 4, 3]
    assert [r.get("drop_ring_full") for r in rows] == [None, 4, 3]
    assert [r["p99_us"] for r in rows] == [80.0, 900.0, 120.0]
    assert [r["service_working_us"] for r in rows] == [10.0, 10.0, 20.0]
    assert {r["service_source"] for r in rows} == {"measured"}
    # per class only where the generator measured classes
    assert [r["p99_working_us"] for r in rows] == [None, None, 100.0]
    assert [r["p99_offloaded_us"] for r in rows] == [None, None, 300.0]


def test_series_before_any_dut_sample_has_no_cores() -> None:
    rows = tr.series(GEN[:1], T0 - 10, DUT, [])
    assert rows[0]["working"] is None and rows[0]["drops"] is None


def test_write_series_is_a_csv_with_every_field(tmp_path: Path) -> None:
    path = tmp_path / "series.csv"
    tr.write_series(tr.series(GEN, T0, DUT, DECISIONS), path)
    with path.open() as f:
        rows = list(csv.DictReader(f))
    # the fixed fields, then one column per reason that dropped anything (non_ip never did)
    assert list(rows[0]) == [*tr.SERIES_FIELDS, "drop_ring_full"]
    assert [r["drop_ring_full"] for r in rows] == ["", "4", "3"]
    assert rows[2]["migrations"] == "8" and rows[0]["working"] == "1"


def _summary(sent: int, received: int, **drops: int) -> dict:
    return {"reconciliation": {"sent": sent, "received": received, "drops": drops}}


def test_reconcile_places_every_packet() -> None:
    ports = {"port0": {"rx_packets": 990, "rx_dropped": 0, "tx_packets": 960, "tx_dropped": 5}}
    rec = tr.reconcile(
        _summary(1000, 950, port_tx_dropped=0, port_rx_dropped=2),
        {"ring_full": 25, "non_ip": 0},
        ports,
    )
    # 10 never reached dut's port, 8 left dut and never reached gen's
    assert rec["link_to_dut"] == 10 and rec["link_to_gen"] == 8
    assert rec["drops"] == {"gen_port": 2, "dut_port": 5, "dut_ring_full": 25}
    assert rec["lost"] == 50 and rec["unexplained"] == 0


def test_reconcile_says_what_the_dut_did_not_account_for() -> None:
    ports = {"port0": {"rx_packets": 1000, "rx_dropped": 0, "tx_packets": 990, "tx_dropped": 0}}
    rec = tr.reconcile(_summary(1000, 990), {}, ports)
    assert rec["link_to_dut"] == 0 and rec["link_to_gen"] == 0
    assert rec["unexplained"] == 10  # dut took 1000, sent 990, counted no drop


def test_read_run_refuses_a_folder_without_a_run(tmp_path: Path) -> None:
    with pytest.raises(tr.TrafficReportError, match="not a generator run"):
        tr.read_run(tmp_path)
    (tmp_path / "samples.jsonl").write_text(json.dumps(GEN[0]) + "\n")
    (tmp_path / "summary.json").write_text(json.dumps({"phases": []}))
    with pytest.raises(tr.TrafficReportError, match="no start time"):
        tr.read_run(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps({"phases": [], "started_unix": T0}))
    samples, summary = tr.read_run(tmp_path)
    assert samples == [GEN[0]] and summary["started_unix"] == T0


def test_timeline_plot_is_written(tmp_path: Path) -> None:
    path = tmp_path / "timeline.png"
    tr.plot_timeline(tr.series(GEN, T0, DUT, DECISIONS), path, "step")
    assert path.stat().st_size > 10_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_phases_line_names_each_phase() -> None:
    line = tr.phases_line(
        {"phases": [{"name": "base", "offered_pps": 999.6, "delivered_pps": 990.0,
                     "latency_us": {"p50": 40.0, "p99": 81.2, "p99.9": None}}]}
    )  # fmt: skip
    assert line == "base: offered 1000 delivered 990 pps, p50 40 us p99 81 us p99.9 -"


def test_phases_line_adds_each_class_that_carried_packets() -> None:
    line = tr.phases_line(
        {"phases": [{"name": "step", "offered_pps": 4000.0, "delivered_pps": 4000.0,
                     "latency_us": {"p50": 40.0, "p99": 90.0, "p99.9": 99.0},
                     "latency_us_by_class": {"working": {"count": 900, "p99": 80.0},
                                             "offloaded": {"count": 0, "p99": None}}}]}
    )  # fmt: skip
    assert line.endswith("p99.9 99 us, working p99 80 us (900)")
