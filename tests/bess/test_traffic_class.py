"""Latency per class against a real bessd: the generator through the Dyssect modules (one
working and one offloading core), the offloading core marking its packets, the receiver
splitting its histograms by that mark.

One bessd, no port: generator -> dispatcher -> working slot 0 / offloading slot 0 -> NAT,
CPU NF, egress -> a queue -> the generator's receiver. A plan with an offloading core and an
offload ratio on every shard makes the working core offload its heaviest flows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dyssect_ctrl.traffic import pipeline
from dyssect_ctrl.traffic.pipeline import DEFAULT_NAMES
from dyssect_ctrl.traffic.profile import CLASS_MARK_MIN_OFFSET, Profile, parse_profile
from dyssect_ctrl.traffic.run import run_profile
from dyssect_ctrl.traffic.sampler import Sample, latency_of
from tests.bess import harness
from tests.bess.test_traffic_link import add_generator, link_dut, load_dut
from tests.bess.test_traffic_link import link_bessd as link_bessd  # the fixture

pytestmark = [
    pytest.mark.bess,
    pytest.mark.timeout(120, func_only=True),  # the session setup builds the plugin
]

SHARDS = 16


def dut(b: Any, mark: int | None) -> None:
    """The manager with one working (worker 1) and one offloading slot (worker 2), fed by a
    dispatcher on worker 0; both chains end in the queue `outq` (a task on worker 0)."""
    b.add_worker(0, 0)
    b.add_worker(1, 1)
    b.add_worker(2, 0)
    b.create_module("DyssectShardManager", "dyssect", {"shards": SHARDS, "cores": [1, 2]})
    b.create_module("DyssectDispatcher", "disp", {})
    b.attach_task("disp", wid=0)
    b.create_module("Queue", "outq", {"size": 16384})
    b.attach_task("outq", wid=0)
    b.create_module("DyssectWorkingCore", "w0", {"slot": 0})
    harness.chain(b, "w0", "w0", "outq")
    b.attach_task("w0", wid=1)
    o_arg: dict[str, Any] = {"slot": 0}
    if mark is not None:
        o_arg["class_mark_offset"] = mark
    b.create_module("DyssectOffloadingCore", "o0", o_arg)
    harness.chain(b, "o0", "o0", "outq")
    b.attach_task("o0", wid=2)


def offload_half(b: Any) -> None:
    harness.apply_plan(
        b,
        {
            "working": 1,
            "offloading": 1,
            "assignment": [0] * SHARDS,
            "pairing": [0],
            "offload": [0.5] * SHARDS,
        },
    )


def run(b: Any, profile: Profile, mark: int | None) -> tuple[Any, Any]:
    dut(b, mark)
    pipeline.build_sender(b, profile, out="disp", wid=0)
    pipeline.build_receiver(b, profile, head="outq")
    b.resume_all()
    offload_half(b)

    def drops() -> dict[str, int]:
        return {k: int(v) for k, v in harness.get_stats(b).drops.items()}

    record = run_profile(
        b, profile, period_s=0.5, drops=drops, drain_s=3.0, on_sample=rerank_every_sample(b)
    )
    return record, b.get_module_info("o0")


def class_profile(rate_pps: int) -> Profile:
    """3 s of 128-byte frames over 256 Zipf-ranked flows, the class mark read after the stamp."""
    return parse_profile(
        {
            "flows": 256,
            "zipf_alpha": 1.0,
            "sizes": [{"bytes": 128}],
            "class_mark_offset": CLASS_MARK_MIN_OFFSET,
            "phases": [{"rate_pps": rate_pps, "seconds": 3}],
        }
    )


def rerank_every_sample(b: Any) -> Any:
    def rerank(_: Sample) -> None:
        harness.get_stats(b)  # closes the window: the working core re-ranks and offloads

    return rerank


def rest(b: Any, module: str) -> int:
    """Packets a per-sample Measure counted after the last sample (the drain)."""
    summary = b.run_module_command(
        module,
        "get_summary",
        "MeasureCommandGetSummaryArg",
        {"clear": True, "latency_percentiles": [50.0, 99.0, 99.9]},
    )
    return latency_of(summary).count


def test_offloaded_packets_are_measured_as_their_own_class(bess: Any) -> None:
    profile = class_profile(20000)
    record, o0 = run(bess, profile, CLASS_MARK_MIN_OFFSET)
    rec = record.reconciliation
    totals = {
        k: sum(s.by_class[k].count for s in record.samples)
        + rest(bess, DEFAULT_NAMES.per_sample_of(k))
        for k in profile.classes
    }
    overall = sum(s.latency.count for s in record.samples) + rest(bess, DEFAULT_NAMES.per_sample)
    phase = record.phases[0]
    offloaded_out = int(o0.ogates[0].pkts)
    print(
        f"class: sent {rec.sent} received {rec.received} drops {rec.drops}; per class {totals},"
        f" offloading core out {offloaded_out}, desc {o0.desc!r};"
        f" phase working {phase.by_class['working']}, offloaded {phase.by_class['offloaded']}"
    )
    assert rec.sent > 40000
    assert rec.unexplained == 0
    assert offloaded_out > 0, "nothing was offloaded"
    working_out = rec.received - offloaded_out
    assert working_out > 0, "nothing stayed on the working core"
    # Measure misses the packets that arrive while a read clears it (BESS: between its summary
    # and its clear; a few percent here), so its counts are at most what passed each way: a
    # packet of the wrong class would push a count above what that class sent.
    assert totals["offloaded"] <= offloaded_out
    assert totals["working"] <= working_out
    assert overall <= rec.received
    assert totals["offloaded"] + totals["working"] >= 0.8 * rec.received
    # and the reads miss either class about as much: the measured share is near the counted one
    share = totals["offloaded"] / (totals["offloaded"] + totals["working"])
    assert share == pytest.approx(offloaded_out / rec.received, abs=0.02)
    for klass in profile.classes:
        lat = phase.by_class[klass]
        assert lat.count > 0 and lat.p99_us is not None and lat.max_us is not None
    assert o0.desc == f"slot 0, class mark at {CLASS_MARK_MIN_OFFSET}, 0 too short"


def test_per_class_latency_over_af_packet_through_the_role_loader(
    link_bessd: tuple[Any, harness.Daemon], bess_tree: Path, tmp_path: Path
) -> None:
    """test_traffic_link.py's wiring (a veth pair in a namespace, the role loader's pipeline on
    dut's end, two cores) with the loader's class mark and a plan that offloads."""
    b, daemon = link_bessd
    load_dut(
        tmp_path,
        **link_dut(bess_tree, daemon),
        class_mark_offset=CLASS_MARK_MIN_OFFSET,
        shards=SHARDS,
    )
    profile = class_profile(5000)
    drops = add_generator(b, profile)
    b.resume_all()
    offload_half(b)
    record = run_profile(
        b, profile, period_s=0.5, drops=drops, drain_s=3.0, on_sample=rerank_every_sample(b)
    )
    rec = record.reconciliation
    totals = {
        k: sum(s.by_class[k].count for s in record.samples)
        + rest(b, DEFAULT_NAMES.per_sample_of(k))
        for k in profile.classes
    }
    offloaded_out = int(b.get_module_info("dyssect_o0").ogates[0].pkts)
    phase = record.phases[0]
    print(
        f"link class: sent {rec.sent} received {rec.received} drops {rec.drops}; per class"
        f" {totals}, offloading core out {offloaded_out};"
        f" phase working {phase.by_class['working']}, offloaded {phase.by_class['offloaded']}"
    )
    assert rec.sent > 13000
    assert rec.unexplained == 0
    assert rec.received >= 0.95 * rec.sent
    assert offloaded_out > 0, "nothing was offloaded"
    assert 0 < totals["offloaded"] <= offloaded_out
    assert totals["working"] > 0
    share = totals["offloaded"] / (totals["offloaded"] + totals["working"])
    assert share == pytest.approx(offloaded_out / rec.received, abs=0.03)
    for klass in profile.classes:
        assert phase.by_class[klass].count > 0


def test_packets_too_short_for_the_mark_are_counted_and_left_unmarked(bess: Any) -> None:
    # The DUT marks byte 100; the generator's 80-byte frames cannot hold it, its 128-byte ones
    # can. The receiver reads no class here (no mark in the profile).
    profile = parse_profile(
        {
            "flows": 64,
            "sizes": [{"bytes": 80}, {"bytes": 128}],
            "phases": [{"rate_pps": 10000, "seconds": 2}],
        }
    )
    record, o0 = run(bess, profile, 100)
    short = int(o0.desc.split(", ")[2].split()[0])
    offloaded_out = int(o0.ogates[0].pkts)
    print(f"too short: {short} of {offloaded_out} offloaded; desc {o0.desc!r}")
    assert record.reconciliation.unexplained == 0
    assert record.samples[0].by_class == {}
    assert offloaded_out > 0
    # about half the offloaded frames are 80 bytes (equal weights)
    assert 0.3 * offloaded_out < short < 0.7 * offloaded_out


def test_a_mark_beyond_any_frame_is_refused(bess: Any) -> None:
    bess.create_module("DyssectShardManager", "dyssect", {"shards": SHARDS, "cores": [0, 1]})
    with pytest.raises(bess.Error, match="class_mark_offset"):
        bess.create_module("DyssectOffloadingCore", "o0", {"slot": 0, "class_mark_offset": 9001})


def test_the_role_loader_passes_the_mark_to_every_offloading_core(
    bess: Any, daemon: harness.Daemon, bess_tree: Path, tmp_path: Path
) -> None:
    load_dut(
        tmp_path,
        pybess_path=str(bess_tree),
        grpc_url=daemon.url,
        timeout_s=30,
        cores=[1, 2],
        worker_cpus={"2": 0},
        test_traffic={"rate_pps": 1000, "flows": 16},
        class_mark_offset=CLASS_MARK_MIN_OFFSET,
    )
    descs = {
        m.name: m.desc for m in bess.list_modules().modules if m.mclass == "DyssectOffloadingCore"
    }
    assert descs == {
        "dyssect_o0": f"slot 0, class mark at {CLASS_MARK_MIN_OFFSET}, 0 too short",
        "dyssect_o1": f"slot 1, class mark at {CLASS_MARK_MIN_OFFSET}, 0 too short",
    }
