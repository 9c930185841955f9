"""Plots of a generator run: latency percentiles over time with the phases shaded (and each
class's p99 when the DUT marks the class), and offered vs delivered packets per second (from
samples.jsonl's dicts)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def phase_spans(samples: Sequence[dict[str, Any]]) -> list[tuple[str, float, float]]:
    """(phase, start s, end s) per run of samples of one phase; a sample covers the period
    that ends at its t_s."""
    spans: list[tuple[str, float, float]] = []
    start = 0.0
    for i, s in enumerate(samples):
        end = float(s["t_s"])
        if i + 1 == len(samples) or samples[i + 1]["phase"] != s["phase"]:
            spans.append((str(s["phase"]), start, end))
            start = end
    return spans


def class_names(samples: Sequence[dict[str, Any]]) -> list[str]:
    """The classes the samples have latency for, in first-seen order (none without a mark)."""
    names: dict[str, None] = {}
    for s in samples:
        names.update(dict.fromkeys(s.get("by_class", {})))
    return list(names)


def plot(samples: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on a server
    import matplotlib.pyplot as plt

    ts = [float(s["t_s"]) for s in samples]
    fig, (lat, rate) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for k, (name, a, b) in enumerate(phase_spans(samples)):
        for ax in (lat, rate):
            ax.axvspan(a, b, color="grey", alpha=0.12 if k % 2 else 0.0, lw=0)
        lat.text((a + b) / 2, 1.0, name, transform=lat.get_xaxis_transform(), ha="center",
                 va="bottom", fontsize=8)  # fmt: skip
    for key, label in (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")):
        points = [(t, s["latency"][key]) for t, s in zip(ts, samples, strict=True)]
        shown = [(t, v) for t, v in points if v is not None and v > 0]
        lat.plot([t for t, _ in shown], [v for _, v in shown], marker=".", label=label)
    for klass in class_names(samples):
        points = [(t, s["by_class"][klass]["p99_us"]) for t, s in zip(ts, samples, strict=True)]
        shown = [(t, v) for t, v in points if v is not None and v > 0]
        lat.plot([t for t, _ in shown], [v for _, v in shown], ls="--", label=f"p99 {klass}")
    lat.set_yscale("log")
    lat.set_ylabel("latency (us)")
    lat.set_title(title, pad=14)
    lat.legend(loc="upper left")
    lat.grid(alpha=0.3)
    rate.plot(ts, [s["rate_set_pps"] for s in samples], drawstyle="steps-pre", label="set")
    rate.plot(ts, [s["offered_pps"] for s in samples], marker=".", label="offered")
    rate.plot(ts, [s["delivered_pps"] for s in samples], marker=".", label="delivered")
    rate.set_ylabel("packets/s")
    rate.set_xlabel("time (s)")
    rate.legend(loc="upper left")
    rate.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
