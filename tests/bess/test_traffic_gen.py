"""The traffic generator against a real bessd: repeatable packets, rate, latency, loss.

Bounded: every test sends at most a few hundred thousand packets and runs a few seconds.
"""

from __future__ import annotations

import json
import os
import statistics
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dyssect_ctrl.traffic import cli, pipeline
from dyssect_ctrl.traffic.pipeline import GenNames
from dyssect_ctrl.traffic.profile import STAMP_OFFSET, Profile, parse_profile
from dyssect_ctrl.traffic.run import run_profile
from tests.bess import harness

pytestmark = [
    pytest.mark.bess,
    pytest.mark.timeout(120, func_only=True),  # the session setup builds the plugin
]

MIX = {
    "flows": 64,
    "zipf_alpha": 1.0,
    "hot_set": {"shift_every_s": 0.1, "stride": 7},
    "churn": {"new_flows_per_s": 50},
    "tcp_fraction": 0.3,
    "sizes": [{"bytes": 128, "weight": 3}, {"bytes": 512, "weight": 1}],
    "phases": [{"rate_pps": 2000, "seconds": 1}],
}


def capture(b: Any, profile: Profile, count: int) -> list[bytes]:
    """The first `count` packets the generator makes (its own packet limit), no timestamp."""
    b.add_worker(0, 0)
    sock = harness.unix_port(b, "tg0")
    b.add_tc("tg_rate", policy="rate_limit", wid=0, resource="packet", limit={"packet": 20000})
    b.create_module("DyssectTrafficGen", "tg_gen", profile.module_arg(packets=count))
    b.create_module("PortOut", "tg_out", {"port": "tg0"})
    b.connect_modules("tg_gen", "tg_out")
    b.attach_task("tg_gen", parent="tg_rate")
    with harness.running(b):
        got = harness.recv_all(sock, count, timeout_s=20)
    sock.close()
    b.pause_all()
    b.reset_all()
    return got


def test_same_seed_same_packets(bess: Any) -> None:
    count = 600
    first = capture(bess, parse_profile({**MIX, "seed": 7}), count)
    again = capture(bess, parse_profile({**MIX, "seed": 7}), count)
    other = capture(bess, parse_profile({**MIX, "seed": 8}), count)
    assert len(first) == len(again) == len(other) == count
    assert first == again
    assert first != other

    # And they are the profile's packets: valid headers, its sizes and mix, skewed popularity.
    sizes = Counter(len(p) for p in first)
    assert set(sizes) == {128, 512}
    assert 0.65 < sizes[128] / count < 0.85  # weight 3 of 4
    flows: Counter[tuple[str, str, int, int, int]] = Counter()
    slots: Counter[int] = Counter()
    for frame in first:
        p = harness.parse(frame)
        assert p.ip_ok
        assert p.proto in (6, 17)
        assert frame[STAMP_OFFSET + 8 :] == bytes(len(frame) - STAMP_OFFSET - 8)
        slot, _seq = struct.unpack_from("=II", frame, STAMP_OFFSET)
        assert slot < 64
        slots[slot] += 1
        flows[(p.src, p.dst, p.proto, p.sport, p.dport)] += 1
    assert len(flows) > 64  # churn started new flows in the slots
    # Zipf alpha 1 over 64 ranks: the top rank draws ~21 % of the packets; the hot set moves,
    # so count per slot within one 100-packet shift period.
    top = Counter(struct.unpack_from("=I", f, STAMP_OFFSET)[0] for f in first[:100])
    assert top.most_common(1)[0][1] >= 10
    tcp = sum(1 for f in first if f[23] == 6)
    assert 0.1 < tcp / count < 0.6


def test_per_flow_sequence_counts_up(bess: Any) -> None:
    frames = capture(bess, parse_profile({**MIX, "seed": 3}), 400)
    last: dict[int, int] = {}
    for frame in frames:
        slot, seq = struct.unpack_from("=II", frame, STAMP_OFFSET)
        assert seq == last.get(slot, 0) + 1
        last[slot] = seq


def loop_pipeline(
    b: Any,
    profile: Profile,
    link: tuple[str, dict[str, Any]] = ("Bypass", {}),
    drain_pps: int | None = None,
) -> GenNames:
    """Generator -> `link` module (tg_link) -> receiver, all on worker 0 (one busy thread:
    the machine is shared). A link that is a task runs on worker 0 too, under a rate limit
    when `drain_pps` is given."""
    names = GenNames()
    b.add_worker(0, 0)
    cls, arg = link
    b.create_module(cls, "tg_link", arg)
    pipeline.build_sender(b, profile, out="tg_link", wid=0, names=names)
    if drain_pps is not None:
        b.add_tc(
            "tg_drain", policy="rate_limit", wid=0, resource="packet", limit={"packet": drain_pps}
        )
        b.attach_task("tg_link", parent="tg_drain")
    elif cls != "Bypass":
        b.attach_task("tg_link", wid=0)
    pipeline.build_receiver(b, profile, head="tg_link", names=names)
    return names


def test_measured_rate_within_2_percent(bess: Any) -> None:
    rate = 100_000
    profile = parse_profile({"flows": 256, "phases": [{"rate_pps": rate, "seconds": 3}]})
    loop_pipeline(bess, profile)
    with harness.running(bess):
        record = run_profile(bess, profile, period_s=1.0)
    offered = [s.offered_pps for s in record.samples]
    delivered = [s.delivered_pps for s in record.samples]
    print(f"set {rate} pps; offered {offered}; delivered {delivered}")
    phase = record.phases[0]
    assert abs(phase.offered_pps - rate) / rate < 0.02
    assert abs(phase.delivered_pps - rate) / rate < 0.02
    assert record.reconciliation.unexplained == 0
    assert record.reconciliation.sent == record.reconciliation.received


def test_changed_rate_takes_effect(bess: Any) -> None:
    profile = parse_profile(
        {
            "flows": 64,
            "phases": [
                {"name": "low", "rate_pps": 20_000, "seconds": 1},
                {"name": "high", "rate_pps": 60_000, "seconds": 1},
            ],
        }
    )
    loop_pipeline(bess, profile)
    with harness.running(bess):
        record = run_profile(bess, profile, period_s=0.5)
    low, high = record.phases
    assert abs(low.offered_pps - 20_000) / 20_000 < 0.05
    assert abs(high.offered_pps - 60_000) / 60_000 < 0.05


@pytest.mark.parametrize("delay_us", [300, 1000])
def test_known_added_delay_measured_within_5_percent(bess: Any, delay_us: int) -> None:
    profile = parse_profile({"flows": 16, "phases": [{"rate_pps": 2000, "seconds": 1.5}]})
    loop_pipeline(bess, profile, ("DyssectTrafficDelay", {"delay_ns": delay_us * 1000}))
    with harness.running(bess):
        record = run_profile(bess, profile, period_s=0.5)
    lat = record.phases[0].latency
    print(f"added {delay_us} us: p50 {lat.p50_us} p99 {lat.p99_us} max {lat.max_us} us")
    assert lat.count > 2000
    assert lat.p50_us is not None
    assert abs(lat.p50_us - delay_us) / delay_us < 0.05
    held = bess.run_module_command("tg_link", "get", "DyssectTrafficDelayCommandGetArg", {})
    assert held.held == record.reconciliation.received
    # per-sample percentiles read the same histogram source
    p50s = [s.latency.p50_us for s in record.samples if s.latency.p50_us is not None]
    assert abs(statistics.median(p50s) - delay_us) / delay_us < 0.05


def test_loss_reconciled_with_counted_drops(bess: Any) -> None:
    # Offer 80 kpps into a queue drained at 40 kpps: about half is dropped, by the queue.
    profile = parse_profile({"flows": 32, "phases": [{"rate_pps": 80_000, "seconds": 1.5}]})
    loop_pipeline(bess, profile, ("Queue", {"size": 256}), drain_pps=40_000)

    def drops() -> dict[str, int]:
        q = bess.run_module_command("tg_link", "get_status", "QueueCommandGetStatusArg", {})
        return {"queue_full": int(q.dropped)}

    with harness.running(bess):
        record = run_profile(bess, profile, period_s=0.5, drops=drops, drain_s=5.0)
    rec = record.reconciliation
    print(f"sent {rec.sent} received {rec.received} drops {rec.drops}")
    assert rec.drops["queue_full"] > rec.sent // 4
    assert rec.unexplained == 0
    # The receiver counts the same loss from the sequence numbers alone, up to each flow's
    # tail: packets lost after a flow's last delivered one leave no gap (a few per flow).
    gaps = sum(s.gaps for s in record.samples)
    check = bess.run_module_command("tg_check", "get", "DyssectSeqCheckCommandGetArg", {})
    assert check.reordered == 0
    assert 0 <= rec.drops["queue_full"] - check.gaps <= 8 * profile.flows
    assert gaps <= check.gaps


def test_unknown_profile_values_are_refused_by_the_module(bess: Any) -> None:
    bess.add_worker(0, 0)
    with pytest.raises(Exception, match="size"):
        bess.create_module("DyssectTrafficGen", "bad", {"sizes": [40]})
    with pytest.raises(Exception, match="stamp_offset"):
        bess.create_module("DyssectTrafficGen", "bad2", {"stamp_offset": 20})


def test_cli_records_a_loopback_run(bess: Any, daemon: harness.Daemon, tmp_path: Path) -> None:
    profile = tmp_path / "p.yml"
    profile.write_text(
        "flows: 64\nphases:\n  - {name: a, rate_pps: 5000, seconds: 1}\n"
        "  - {name: b, rate_pps: 10000, seconds: 1}\n"
    )
    src = os.environ.get("DYSSECT_BESS_SRC") or str(harness.bess_src())
    args = ["--profile", str(profile), "--grpc-url", daemon.url, "--pybess-path", src]
    assert cli.main([*args, "--out", str(tmp_path / "rec"), "--loopback"]) == 0
    samples = [json.loads(x) for x in (tmp_path / "rec" / "samples.jsonl").read_text().splitlines()]
    assert [s["phase"] for s in samples] == ["a", "b"]
    summary = json.loads((tmp_path / "rec" / "summary.json").read_text())
    a, b = summary["phases"]
    assert abs(a["offered_pps"] - 5000) / 5000 < 0.05
    assert abs(b["offered_pps"] - 10000) / 10000 < 0.05
    assert summary["reconciliation"]["unexplained"] == 0
    assert a["latency_us"]["p50"] is not None
    assert (tmp_path / "rec" / "traffic.png").stat().st_size > 10_000
