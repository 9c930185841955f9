"""What the traffic got, beside what the controller did: a generator run (dyssect-traffic's
samples.jsonl and summary.json, from gen) lined up second by second with the DUT's record
(`dyssect-ctrl record`, the decisions) and its port counters, into one series, a loss
reconciliation over the whole path, and a timeline plot (docs/experiments.md).
"""

from __future__ import annotations

import bisect
import csv
import json
from pathlib import Path
from typing import Any


class TrafficReportError(ValueError):
    """A generator run that cannot be read."""


SERIES_FIELDS = (
    "t_s",
    "phase",
    "rate_set_pps",
    "offered_pps",
    "delivered_pps",
    "lost",
    "p50_us",
    "p99_us",
    "p999_us",
    "max_us",
    "p99_working_us",
    "p99_offloaded_us",
    "working",
    "offloading",
    "load_cores",
    "service_working_us",
    "service_source",
    "plans",
    "migrations",
    "drops",
)


def read_run(folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(samples, summary) of one generator run."""
    try:
        samples = [
            json.loads(line)
            for line in (folder / "samples.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise TrafficReportError(f"{folder}: not a generator run ({e})") from None
    if "started_unix" not in summary or not samples:
        raise TrafficReportError(f"{folder}: the run has no samples or no start time")
    return samples, summary


def _drops(sample: dict[str, Any]) -> dict[str, int]:
    return {k: int(v) for k, v in (sample.get("drops_total") or {}).items()}


def series(
    gen: list[dict[str, Any]],
    started_unix: float,
    dut: list[dict[str, Any]],
    decisions: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """One row per generator sample: the traffic's figures, the DUT's cores in force at the
    sample's end, and the plans, migrations and drops (all reasons) within the sample."""
    answered = sorted(
        (s for s in dut if not s.get("error") and s.get("t") is not None),
        key=lambda s: float(s["t"]),
    )
    times = [float(s["t"]) for s in answered]
    made = sorted(
        (float(d["time"]), int(d.get("migrations") or 0))
        for d in decisions
        if d.get("time") is not None
    )
    made_t = [t for t, _ in made]

    def at(wall: float) -> dict[str, Any] | None:
        i = bisect.bisect_right(times, wall) - 1
        return answered[i] if i >= 0 else None

    rows = []
    prev_wall = started_unix
    for s in gen:
        wall = started_unix + float(s["t_s"])
        now, before = at(wall), at(prev_wall)
        lo, hi = bisect.bisect_right(made_t, prev_wall), bisect.bisect_right(made_t, wall)
        lat = s.get("latency") or {}
        by_reason: dict[str, int] | None = None
        if now is not None and before is not None:
            d0 = _drops(before)
            by_reason = {k: v - d0.get(k, 0) for k, v in _drops(now).items()}
        rows.append(
            {
                "t_s": round(float(s["t_s"]), 3),
                "phase": s.get("phase"),
                "rate_set_pps": s.get("rate_set_pps"),
                "offered_pps": s.get("offered_pps"),
                "delivered_pps": s.get("delivered_pps"),
                "lost": s.get("lost"),
                "p50_us": lat.get("p50_us"),
                "p99_us": lat.get("p99_us"),
                "p999_us": lat.get("p999_us"),
                "max_us": lat.get("max_us"),
                # per class when dut marks offloaded packets (docs/traffic.md)
                "p99_working_us": _class_p99(s, "working"),
                "p99_offloaded_us": _class_p99(s, "offloaded"),
                "working": None if now is None else now.get("working"),
                "offloading": None if now is None else now.get("offloading"),
                "load_cores": None if now is None else now.get("total_load"),
                # the per-packet service time the controller planned with, and where it came
                # from (measured by the data plane, or the config's override)
                "service_working_us": _service(now, "us"),
                "service_source": _service(now, "source"),
                "plans": hi - lo,
                "migrations": sum(m for _, m in made[lo:hi]),
                "drops": None if by_reason is None else sum(by_reason.values()),
                # one drop_<reason> column per reason that dropped anything in the run
                **{f"drop_{k}": v for k, v in (by_reason or {}).items()},
            }
        )
        prev_wall = wall
    return rows


def _service(sample: dict[str, Any] | None, key: str) -> Any:
    if sample is None:
        return None
    return ((sample.get("service_time") or {}).get("working") or {}).get(key)


def _class_p99(sample: dict[str, Any], name: str) -> float | None:
    value = ((sample.get("by_class") or {}).get(name) or {}).get("p99_us")
    return None if value is None else float(value)


def write_series(rows: list[dict[str, Any]], path: Path) -> None:
    """series.csv: the fixed fields, then a column per drop reason that dropped anything."""
    reasons = sorted(
        {k for r in rows for k, v in r.items() if k.startswith("drop_") and v},
    )
    fields = [*SERIES_FIELDS, *reasons]
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        out.writeheader()
        for row in rows:
            out.writerow({k: "" if row.get(k) is None else row[k] for k in fields})


def reconcile(
    gen_summary: dict[str, Any],
    dut_drops: dict[str, int],
    dut_ports: dict[str, dict[str, int]],
) -> dict[str, Any]:
    """Every packet the generator sent, placed: delivered back, dropped by a port or by the DUT
    (by reason), or lost on the link in either direction (port counters at both ends):

        sent = received + gen port drops + DUT port drops + DUT drops + link loss + unexplained

    The link loss is what one end's port sent and the other's never counted (a kernel socket
    ring overflowing, on af_packet); `unexplained` is then what the DUT took in and neither sent
    nor counted as a drop: zero on a clean run."""
    rec = gen_summary["reconciliation"]
    sent, received = int(rec["sent"]), int(rec["received"])
    gen_drops = {k: int(v) for k, v in (rec.get("drops") or {}).items()}
    gen_tx_drop = gen_drops.get("port_tx_dropped", 0)
    gen_rx_drop = gen_drops.get("port_rx_dropped", 0)
    dut_rx = sum(p["rx_packets"] for p in dut_ports.values())
    dut_tx = sum(p["tx_packets"] for p in dut_ports.values())
    dut_port_drops = sum(p["rx_dropped"] + p["tx_dropped"] for p in dut_ports.values())
    to_dut = (sent - gen_tx_drop) - (dut_rx + sum(p["rx_dropped"] for p in dut_ports.values()))
    to_gen = dut_tx - (received + gen_rx_drop)
    counted = {
        "gen_port": gen_tx_drop + gen_rx_drop,
        "dut_port": dut_port_drops,
        **{f"dut_{k}": v for k, v in sorted(dut_drops.items()) if v},
    }
    unexplained = sent - received - sum(counted.values()) - to_dut - to_gen
    return {
        "sent": sent,
        "received": received,
        "lost": sent - received,
        "drops": counted,
        "link_to_dut": to_dut,
        "link_to_gen": to_gen,
        "dut_rx": dut_rx,
        "dut_tx": dut_tx,
        "unexplained": unexplained,
    }


def point_figures(gen_summary: dict[str, Any], rec: dict[str, Any]) -> dict[str, Any]:
    """One point's traffic figures for the experiment runner's tables (traffic.json): mean
    offered and delivered rates over the run, the loss ratio, and the latency percentiles of
    the run's worst phase (the generator keeps one histogram per phase, not one per run)."""
    phases = gen_summary.get("phases") or []
    seconds = sum(float(p["seconds"]) for p in phases)
    worst: dict[str, float | None] = {}
    for key, name in (("p50", "p50"), ("p99", "p99"), ("p99.9", "p999"), ("max", "max")):
        values = [float(p["latency_us"][key]) for p in phases
                  if (p.get("latency_us") or {}).get(key) is not None]  # fmt: skip
        worst[name] = max(values) if values else None
    return {
        "offered_pps": {"mean": sum(p["sent"] for p in phases) / seconds if seconds else None},
        "delivered_pps": {
            "mean": sum(p["received"] for p in phases) / seconds if seconds else None
        },
        "loss_ratio": rec["lost"] / rec["sent"] if rec["sent"] else None,
        "unexplained": rec["unexplained"],
        "latency_us": worst,
    }


def phases_line(gen_summary: dict[str, Any]) -> str:
    parts = []
    for p in gen_summary.get("phases") or []:
        lat = p.get("latency_us") or {}
        classes = "".join(
            f", {name} p99 {_us(c.get('p99'))} ({c.get('count', 0)})"
            for name, c in (p.get("latency_us_by_class") or {}).items()
            if c.get("count")
        )
        parts.append(
            f"{p['name']}: offered {p['offered_pps']:.0f} delivered {p['delivered_pps']:.0f} pps,"
            f" p50 {_us(lat.get('p50'))} p99 {_us(lat.get('p99'))} p99.9 {_us(lat.get('p99.9'))}"
            + classes
        )
    return "; ".join(parts)


def _us(v: Any) -> str:
    return "-" if v is None else f"{float(v):.0f} us"


def plot_timeline(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Latency percentiles over time with the phases shaded, offered vs delivered, cores with
    the migrations of each second."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on a server
    import matplotlib.pyplot as plt

    t = [r["t_s"] for r in rows]
    fig, (lat, rate, cores) = plt.subplots(
        3, 1, figsize=(9, 8), sharex=True, gridspec_kw={"height_ratios": [3, 2, 2]}
    )
    start, shade = 0.0, False
    for i, r in enumerate(rows):
        last = i + 1 == len(rows) or rows[i + 1]["phase"] != r["phase"]
        if last:
            for ax in (lat, rate, cores):
                ax.axvspan(start, r["t_s"], color="0.9" if shade else "white", zorder=0)
            lat.text(
                (start + r["t_s"]) / 2,
                1.0,
                str(r["phase"]),
                ha="center",
                va="bottom",
                transform=lat.get_xaxis_transform(),
                fontsize=8,
            )
            start, shade = r["t_s"], not shade
    for key, label in (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")):
        lat.plot(t, [r[key] for r in rows], marker=".", label=label)
    for key, label in (("p99_working_us", "p99 working"), ("p99_offloaded_us", "p99 offloaded")):
        if any(r[key] is not None for r in rows):
            lat.plot(t, [r[key] for r in rows], linestyle="--", linewidth=1, label=label)
    lat.set_yscale("log")
    lat.set_ylabel("latency (us)")
    lat.legend(loc="upper left")
    lat.set_title(title, pad=14)
    rate.plot(t, [r["rate_set_pps"] for r in rows], linestyle=":", label="set")
    rate.plot(t, [r["offered_pps"] for r in rows], label="offered")
    rate.plot(t, [r["delivered_pps"] for r in rows], label="delivered")
    rate.set_ylabel("packets/s")
    rate.legend(loc="upper left")
    cores.step(t, [r["working"] for r in rows], where="post", label="working cores")
    cores.step(
        t,
        [None if r["working"] is None else r["working"] + (r["offloading"] or 0) for r in rows],
        where="post",
        linestyle="--",
        label="working + offloading",
    )
    cores.set_ylabel("cores")
    migrations = cores.twinx()
    migrations.bar(t, [r["migrations"] for r in rows], width=0.4, alpha=0.3, color="tab:red")
    migrations.set_ylabel("migrations", color="tab:red")
    cores.legend(loc="upper left")
    cores.set_xlabel("time (s)")
    for ax in (lat, rate, cores):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
