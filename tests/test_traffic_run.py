"""The phase runner, the sampler and the pipeline builder against a fake pybess client (the
edge): a simulated generator whose counters move with the rate the runner sets."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from dyssect_ctrl.traffic import cli, pipeline
from dyssect_ctrl.traffic.pipeline import GenNames, build_receiver, build_sender
from dyssect_ctrl.traffic.profile import TIMESTAMP_OFFSET, parse_profile
from dyssect_ctrl.traffic.run import run_profile
from dyssect_ctrl.traffic.sampler import Counters, latency_of, reconcile


class FakeBess:
    """Counts what a generator at the set rate would have sent; `loss` of it never arrives."""

    def __init__(self, loss: float = 0.0) -> None:
        self.now = 100.0
        self.rate = 0.0
        self.sent = 0.0
        self.loss = loss
        self.calls: list[tuple[str, Any]] = []
        self.stopped = False
        self.summaries = 0

    # clock and sleep for the runner
    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        if not self.stopped:
            self.sent += self.rate * s
        self.now += s

    # pybess
    def add_tc(self, name: str, **kw: Any) -> None:
        self.calls.append(("add_tc", (name, kw)))

    def create_module(self, cls: str, name: str, arg: dict[str, Any]) -> None:
        self.calls.append(("create_module", (cls, name, arg)))

    def connect_modules(self, a: str, b: str, ogate: int = 0) -> None:
        self.calls.append(("connect", (a, b) if ogate == 0 else (a, b, ogate)))

    def attach_task(self, name: str, **kw: Any) -> None:
        self.calls.append(("attach_task", (name, kw)))

    def update_tc_params(self, name: str, **kw: Any) -> None:
        self.rate = kw["limit"]["packet"]
        self.calls.append(("update_tc_params", (name, kw)))

    def run_module_command(self, module: str, cmd: str, arg_type: str, arg: Any) -> Any:
        self.calls.append((cmd, (module, arg)))
        sent = int(self.sent)
        received = int(self.sent * (1 - self.loss))
        if cmd == "get" and module.endswith("_gen"):
            return SimpleNamespace(sent=sent)
        if cmd == "get" and module.endswith("_check"):
            return SimpleNamespace(received=received + 3, bad=3, gaps=sent - received, reordered=0)
        if cmd == "get_summary":
            self.summaries += 1
            # a class's histogram: a tenth of the packets (offloaded) at twice the latency
            k, n = (2, received // 10) if module.endswith("_offloaded") else (1, received)
            hist = SimpleNamespace(
                count=n,
                percentile_values_ns=[10_000 * k, 50_000 * k, 90_000 * k],
                max_ns=120_000 * k,
            )
            return SimpleNamespace(latency=hist)
        if cmd == "stop":
            self.stopped = True
        return None


PROFILE = parse_profile(
    {
        "hot_set": {"shift_every_s": 2},
        "phases": [
            {"name": "low", "rate_pps": 1000, "seconds": 2},
            {"name": "ramp", "kind": "ramp", "rate_pps": 1000, "to_pps": 3000, "seconds": 2},
        ],
    }
)


def test_builders_make_the_documented_pipeline() -> None:
    b = FakeBess()
    names = GenNames("g")
    build_sender(b, PROFILE, out="port_out", wid=3, names=names, packets=9)
    build_receiver(b, PROFILE, head="port_inc", names=names)
    made = {c[1][1]: c[1][0] for c in b.calls if c[0] == "create_module"}
    assert made == {
        "g_gen": "DyssectTrafficGen",
        "g_stamp": "Timestamp",
        "g_lat_s": "Measure",
        "g_lat_p": "Measure",
        "g_check": "DyssectSeqCheck",
        "g_sink": "Sink",
    }
    edges = [c[1] for c in b.calls if c[0] == "connect"]
    assert edges == [
        ("g_gen", "g_stamp"),
        ("g_stamp", "port_out"),
        ("port_inc", "g_lat_s"),
        ("g_lat_s", "g_lat_p"),
        ("g_lat_p", "g_check"),
        ("g_check", "g_sink"),
    ]
    tc = next(c[1] for c in b.calls if c[0] == "add_tc")
    assert tc == (
        "g_rate",
        {
            "policy": "rate_limit",
            "wid": 3,
            "resource": "packet",
            "limit": {"packet": 1000},
            "max_burst": {"packet": 64},
        },
    )
    stamp = next(c[1][2] for c in b.calls if c[0] == "create_module" and c[1][0] == "Timestamp")
    assert stamp == {"offset": TIMESTAMP_OFFSET}
    gen = next(c[1][2] for c in b.calls if c[0] == "create_module" and c[1][1] == "g_gen")
    assert gen["packets"] == 9 and gen["shift_every_packets"] == 2000


CLASSED = parse_profile(
    {
        "sizes": [{"bytes": 128}],
        "class_mark_offset": 80,
        "phases": [{"name": "low", "rate_pps": 1000, "seconds": 2}],
    }
)


def test_receiver_splits_by_the_class_mark() -> None:
    b = FakeBess()
    build_receiver(b, CLASSED, head="port_inc", names=GenNames("g"))
    made = {c[1][1]: (c[1][0], c[1][2]) for c in b.calls if c[0] == "create_module"}
    assert made["g_class"] == ("Split", {"size": 1, "offset": 80})
    assert made["g_lat_s_working"][0] == made["g_lat_p_offloaded"][0] == "Measure"
    assert made["g_lat_s_offloaded"][1]["offset"] == TIMESTAMP_OFFSET
    edges = [c[1] for c in b.calls if c[0] == "connect"]
    assert edges == [
        ("port_inc", "g_lat_s"),
        ("g_lat_s", "g_lat_p"),
        ("g_lat_p", "g_class"),
        ("g_class", "g_lat_s_working"),  # gate 0: byte 0, as the generator sent it
        ("g_lat_s_working", "g_lat_p_working"),
        ("g_lat_p_working", "g_check"),
        ("g_class", "g_lat_s_offloaded", 1),  # gate 1: marked by an offloading core
        ("g_lat_s_offloaded", "g_lat_p_offloaded"),
        ("g_lat_p_offloaded", "g_check"),
        ("g_check", "g_sink"),
    ]


def test_run_reads_each_class_per_sample_and_per_phase() -> None:
    b = FakeBess()
    record = run_profile(b, CLASSED, clock=b.clock, sleep=b.sleep, drain_s=0.5)
    first = record.samples[0]
    assert set(first.by_class) == {"working", "offloaded"}
    assert first.by_class["working"].p99_us == 50.0
    assert first.by_class["offloaded"].p99_us == 100.0
    assert first.by_class["offloaded"].count == first.by_class["working"].count // 10
    phase = record.phases[0]
    assert phase.by_class["offloaded"].max_us == 240.0
    # every class Measure is cleared at the phase's start and read once a sample and a phase
    reads = [c[1][0] for c in b.calls if c[0] == "get_summary"]
    assert reads.count("tg_lat_s_offloaded") == len(record.samples)
    assert reads.count("tg_lat_p_offloaded") == 2 * len(record.phases)
    out = cli.summary(record, 0.0)["phases"][0]
    assert out["latency_us"]["p99"] == 50.0
    assert out["latency_us_by_class"]["offloaded"] == {
        "count": phase.by_class["offloaded"].count,
        "p50": 20.0,
        "p99": 100.0,
        "p99.9": 180.0,
        "max": 240.0,
    }
    assert "| offloaded p99 100.0 us" in cli._line(first)
    assert first.to_dict()["by_class"]["working"]["p50_us"] == 10.0


def test_without_a_class_mark_nothing_is_split() -> None:
    b = FakeBess()
    record = run_profile(b, PROFILE, clock=b.clock, sleep=b.sleep, drain_s=0.5)
    assert record.samples[0].by_class == {} and record.phases[0].by_class == {}
    assert "latency_us_by_class" not in cli.summary(record, 0.0)["phases"][0]
    assert not any(c[1][0].endswith("_working") for c in b.calls if c[0] == "get_summary")


def test_rate_zero_is_one_pps_and_catch_up_grows_with_the_rate() -> None:
    assert pipeline.limit_pps(0) == 1
    assert pipeline.max_burst(10) == 64
    assert pipeline.max_burst(1_000_000) == 50_000


def test_run_samples_each_second_and_ramps() -> None:
    b = FakeBess()
    record = run_profile(b, PROFILE, clock=b.clock, sleep=b.sleep, drain_s=0.5)
    assert [s.phase for s in record.samples] == ["low", "low", "ramp", "ramp"]
    assert [s.rate_set_pps for s in record.samples] == [1000, 1000, 1000, 2000]
    assert record.samples[0].offered_pps == pytest.approx(1000)
    assert record.samples[3].offered_pps == pytest.approx(2000)
    assert record.samples[0].latency.p99_us == 50.0
    low, ramp = record.phases
    assert (low.sent, ramp.sent) == (2000, 3000)
    assert ramp.offered_pps == pytest.approx(1500)
    # each phase sets its intervals at its starting rate
    sets = [c[1][1] for c in b.calls if c[0] == "set"]
    assert sets == [PROFILE.intervals(1000), PROFILE.intervals(1000)]
    assert record.reconciliation.unexplained == 0
    assert ("stop", ("tg_gen", {})) in b.calls


def test_loss_is_reconciled_only_with_counted_drops() -> None:
    b = FakeBess(loss=0.1)
    record = run_profile(
        b, PROFILE, clock=b.clock, sleep=b.sleep, drain_s=0.5, drops=lambda: {"queue": 500}
    )
    rec = record.reconciliation
    assert rec.sent == 5000 and rec.received == 4500
    assert rec.unexplained == 0
    assert record.samples[0].lost == 100 and record.samples[0].gaps == 100

    b = FakeBess(loss=0.1)
    record = run_profile(b, PROFILE, clock=b.clock, sleep=b.sleep, drain_s=0.5)
    assert record.reconciliation.unexplained == 500
    assert record.to_dict()["reconciliation"]["unexplained"] == 500


def test_latency_of_empty_and_mismatched_summaries() -> None:
    empty = SimpleNamespace(latency=SimpleNamespace(count=0))
    assert latency_of(empty).p50_us is None
    bad = SimpleNamespace(latency=SimpleNamespace(count=3, percentile_values_ns=[1], max_ns=1))
    with pytest.raises(ValueError, match="1 percentiles"):
        latency_of(bad)


def test_reconcile_counts_every_reason() -> None:
    rec = reconcile(Counters(0.0, 100, 90, 0, 0), {"a": 4, "b": 6})
    assert rec.unexplained == 0
    assert reconcile(Counters(0.0, 100, 90, 0, 0), {}).unexplained == 10
