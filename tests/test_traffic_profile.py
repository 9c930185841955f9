"""Traffic profiles: defaults, a full profile, rates over a phase, and each bad input's message."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from dyssect_ctrl.config import ConfigError
from dyssect_ctrl.traffic.profile import (
    CLASS_MARK_MIN_OFFSET,
    STAMP_OFFSET,
    Phase,
    Profile,
    load_profile,
    parse_profile,
)

FULL = {
    "seed": 42,
    "flows": 4096,
    "zipf_alpha": 1.1,
    "hot_set": {"shift_every_s": 5, "stride": 100},
    "churn": {"new_flows_per_s": 200},
    "tcp_fraction": 0.25,
    "sizes": [{"bytes": 64, "weight": 7}, {"bytes": 1514, "weight": 1}],
    "phases": [
        {"name": "base", "rate_pps": 50_000, "seconds": 10},
        {"name": "up", "kind": "ramp", "rate_pps": 50_000, "to_pps": 150_000, "seconds": 20},
    ],
}


def test_defaults() -> None:
    assert parse_profile(None) == Profile()
    assert Profile().seconds == 10.0


def test_full_profile() -> None:
    p = parse_profile(FULL)
    assert p.seed == 42 and p.flows == 4096 and p.zipf_alpha == 1.1
    assert p.hot_set.stride == 100 and p.churn.new_flows_per_s == 200
    assert [s.bytes for s in p.sizes] == [64, 1514]
    assert p.seconds == 30
    arg = p.module_arg(packets=1000)
    assert arg["sizes"] == [64, 1514] and arg["size_weights"] == [7, 1]
    assert arg["stamp_offset"] == STAMP_OFFSET
    assert arg["packets"] == 1000
    # at the first phase's 50 kpps: a shift every 5 s = 250000 packets, a new flow every 250
    assert arg["shift_every_packets"] == 250_000
    assert arg["churn_every_packets"] == 250


def test_intervals_follow_the_rate_and_zero_means_never() -> None:
    p = parse_profile(FULL)
    assert p.intervals(100_000) == {"shift_every_packets": 500_000, "churn_every_packets": 500}
    assert p.intervals(0.0) == {"shift_every_packets": 1, "churn_every_packets": 1}
    assert Profile().intervals(1e6) == {"shift_every_packets": 0, "churn_every_packets": 0}


def test_ramp_rate_is_linear_and_clamped() -> None:
    ramp = Phase(kind="ramp", seconds=10, rate_pps=100, to_pps=200)
    assert ramp.rate_at(0) == 100
    assert ramp.rate_at(5) == 150
    assert ramp.rate_at(99) == 200
    assert Phase(rate_pps=7).rate_at(3) == 7


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"flows": 0}, "flows: must be >= 1 (got 0)"),
        ({"flows": True}, "flows: must be an integer"),
        ({"zipf_alpha": -1}, "zipf_alpha: must be >= 0"),
        ({"tcp_fraction": 2}, "tcp_fraction: must be in [0, 1]"),
        ({"sizes": []}, "sizes: must be a non-empty list"),
        ({"sizes": [{"bytes": 60}]}, "sizes[0].bytes: must be >= 62 (got 60)"),
        ({"sizes": [{"bytes": 128, "weight": 0}]}, "sizes: the weights must not all be zero"),
        ({"sizes": [{"bytes": 128, "colour": 1}]}, "sizes[0].colour: unknown key"),
        ({"phases": [{"kind": "ramp"}]}, "phases[0].to_pps: a ramp needs to_pps"),
        ({"phases": [{"to_pps": 5}]}, "phases[0].to_pps: only a ramp has to_pps"),
        ({"phases": [{"seconds": 0}]}, "phases[0].seconds: must be > 0"),
        ({"phases": [{"kind": "sine"}]}, "phases[0].kind: must be one of constant, ramp"),
        ({"phases": [{"rate_pps": -1}]}, "phases[0].rate_pps: must be >= 0"),
        ({"hot_set": {"stride": 5000}}, "hot_set.stride: must be < flows (4096)"),
        ({"churn": 3}, "churn: must be a mapping"),
        ({"speed": 1}, "speed: unknown key"),
        ({"class_mark_offset": 70}, "class_mark_offset: must be >= 74 (got 70)"),
        ({"class_mark_offset": 1514}, "class_mark_offset: must be <= 1513"),
        # the 64-byte frames cannot carry a mark at 74
        ({"class_mark_offset": 74}, "sizes[0].bytes: must be > class_mark_offset (74)"),
    ],
)
def test_bad_values_name_their_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_profile({**FULL, **change})
    assert str(e.value).startswith(message)


def test_class_mark_is_after_the_timestamp_and_splits_latency_in_two_classes() -> None:
    assert Profile().classes == ()
    sizes = [{"bytes": 75}, {"bytes": 1514}]
    p = parse_profile({**FULL, "sizes": sizes, "class_mark_offset": CLASS_MARK_MIN_OFFSET})
    assert p.class_mark_offset == 74 and p.classes == ("working", "offloaded")
    # the generator's own argument does not change: the DUT writes the mark, the receiver reads it
    assert "class_mark_offset" not in p.module_arg()
    with pytest.raises(ConfigError, match=r"^sizes\[0\]\.bytes: must be > class_mark_offset"):
        parse_profile({**FULL, "sizes": [{"bytes": 74}], "class_mark_offset": 74})


def test_load_profile_names_the_file(tmp_path: Path) -> None:
    good = tmp_path / "p.yml"
    good.write_text("seed: 3\nphases:\n  - {rate_pps: 1000, seconds: 2}\n")
    assert load_profile(good).seed == 3
    bad = tmp_path / "bad.yml"
    bad.write_text("flows: -3\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(bad))}: flows: must be >= 1"):
        load_profile(bad)
    with pytest.raises(ConfigError, match=r"missing\.yml"):
        load_profile(tmp_path / "missing.yml")


def test_the_documented_example_is_valid() -> None:
    p = load_profile(Path(__file__).resolve().parents[1] / "examples" / "traffic-step.yml")
    assert [ph.name for ph in p.phases] == ["base", "step", "ramp-down"]
    assert p.seconds == 9


def test_latency_range_keeps_the_histogram_at_most_a_million_buckets() -> None:
    assert parse_profile({}).latency_resolution_ns == 100  # 100 ms at 100 ns
    wide = parse_profile({"latency_max_ms": 1000})
    assert wide.latency_max_ms == 1000.0 and wide.latency_resolution_ns == 1000
    assert parse_profile({"latency_max_ms": 1}).latency_resolution_ns == 100
    with pytest.raises(ConfigError, match="latency_max_ms"):
        parse_profile({"latency_max_ms": 0.5})
