"""Phase spans and the run's plot file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dyssect_ctrl.traffic.plot import class_names, phase_spans, plot


def sample(t: float, phase: str, p50: float | None = 70.0) -> dict[str, Any]:
    lat = {"count": 5, "p50_us": p50, "p99_us": 90.0, "p999_us": 120.0, "max_us": 130.0}
    return {
        "t_s": t,
        "phase": phase,
        "rate_set_pps": 1000.0,
        "offered_pps": 990.0,
        "delivered_pps": 980.0,
        "lost": 10,
        "gaps": 10,
        "reordered": 0,
        "latency": lat,
    }


def test_phase_spans_follow_the_samples() -> None:
    samples = [sample(1, "a"), sample(2, "a"), sample(3, "b"), sample(4.5, "c")]
    assert phase_spans(samples) == [("a", 0.0, 2.0), ("b", 2.0, 3.0), ("c", 3.0, 4.5)]
    assert phase_spans([]) == []


def test_plot_writes_a_png_even_with_empty_seconds(tmp_path: Path) -> None:
    samples = [sample(1, "base"), sample(2, "base", None), sample(3, "step")]
    out = tmp_path / "traffic.png"
    plot(samples, out, "a run")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000


def test_plot_draws_a_p99_line_per_class_when_the_samples_have_classes(tmp_path: Path) -> None:
    plain = [sample(1, "base"), sample(2, "base")]
    assert class_names(plain) == []
    classed = [dict(s) for s in plain]
    lat = {"count": 2, "p50_us": 9.0, "p99_us": 40.0, "p999_us": 50.0, "max_us": 60.0}
    none = {"count": 0, "p50_us": None, "p99_us": None, "p999_us": None, "max_us": None}
    classed[0]["by_class"] = {"working": lat, "offloaded": none}
    classed[1]["by_class"] = {"working": lat, "offloaded": lat}
    assert class_names(classed) == ["working", "offloaded"]
    out, base = tmp_path / "classes.png", tmp_path / "plain.png"
    plot(classed, out, "run")
    plot(plain, base, "run")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.read_bytes() != base.read_bytes()
