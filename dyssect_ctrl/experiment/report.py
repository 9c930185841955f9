"""`dyssect-ctrl report`: an experiment's samples and decisions -> summary.json and plots.

Inputs: the JSON lines of `dyssect-ctrl record` (the controller's view every second) and,
optionally, its decision log (one line per plan applied). Outputs in the result directory:
- summary.json: duration, offered load (min/mean/max, in cores), cores used (mean, max,
  core-seconds), scale-ups and scale-downs, plans and migrations, fallbacks by reason, solve
  times by kind (p50/p99), data-plane drops by reason over the run, unanswered samples;
- cores.png: offered load and the working / working+offloading cores over time, with the
  decisions' migrations below.
Fields are pulled out of the records with JMESPath expressions, so a reader can run the same
queries on the raw files.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jmespath

from dyssect_ctrl.experiment import traffic_report
from dyssect_ctrl.experiment.ports import difference

EXIT_OK = 0
EXIT_ERROR = 1

# Answered samples taken while a plan was in force: the ones with figures to report.
Q_PLANNED = jmespath.compile("[?!error && working != null]")
Q_UNANSWERED = jmespath.compile("length([?error])")
Q_MIGRATIONS = jmespath.compile("sum([].migrations)")
Q_FALLBACKS = jmespath.compile("[?fallback].fallback")


class ReportError(ValueError):
    """An input that cannot be reported on (missing, malformed, empty)."""


def read_lines(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ReportError(f"{path}: {e.strerror or e}") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as e:
            raise ReportError(f"{path}:{n}: not JSON ({e.msg})") from None
        if not isinstance(doc, dict):
            raise ReportError(f"{path}:{n}: not a JSON object")
        out.append(doc)
    return out


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def _core_seconds(ts: list[float], cores: list[int]) -> float:
    """Each sample's core count held until the next sample."""
    return sum((t1 - t0) * c for t0, t1, c in zip(ts, ts[1:], cores, strict=False))


def summarize(samples: list[dict[str, Any]], decisions: list[dict[str, Any]]) -> dict[str, Any]:
    ok = Q_PLANNED.search(samples)
    if not ok:
        raise ReportError("no answered sample with a plan: nothing to report")
    ts = [float(s["t"]) for s in ok]
    loads = [float(s.get("total_load") or 0.0) for s in ok]
    cores = [int(s["working"]) + int(s.get("offloading") or 0) for s in ok]
    ups = sum(1 for a, b in itertools.pairwise(cores) if b > a)
    downs = sum(1 for a, b in itertools.pairwise(cores) if b < a)
    first, last = ok[0], ok[-1]
    # Cumulative since the controller started: the run's drops are last minus first.
    drops = {
        k: int(v) - int((first.get("drops_total") or {}).get(k, 0))
        for k, v in (last.get("drops_total") or {}).items()
    }
    solve: dict[str, dict[str, float | int | None]] = {}
    for kind in sorted({str(d.get("kind")) for d in decisions}):
        mine = [d for d in decisions if str(d.get("kind")) == kind]
        ms = [float(d["solve_ms"]) for d in mine if d.get("solve_ms") is not None]
        solve[kind] = {"plans": len(mine), "p50_ms": _pct(ms, 0.5), "p99_ms": _pct(ms, 0.99)}
    return {
        "duration_s": round(ts[-1] - ts[0], 3),
        "samples": len(samples),
        "unanswered": Q_UNANSWERED.search(samples),
        "load_cores": {
            "min": round(min(loads), 4),
            "mean": round(statistics.fmean(loads), 4),
            "max": round(max(loads), 4),
        },
        "cores": {
            "mean": round(statistics.fmean(cores), 3),
            "max": max(cores),
            "core_seconds": round(_core_seconds(ts, cores), 3),
        },
        "scale_ups": ups,
        "scale_downs": downs,
        "plans": len(decisions),
        "migrations": Q_MIGRATIONS.search(decisions) if decisions else 0,
        "fallbacks": dict(Counter(Q_FALLBACKS.search(decisions) or [])),
        "solve": solve,
        "drops": drops,
        "service_time_us": _service_times(ok),
    }


def _service_times(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Per kind: the service time the model planned with and the data plane's measurement,
    mean over the samples that had one (us), and where the planned one came from."""
    out: dict[str, Any] = {}
    for kind in ("working", "offloading"):
        seen = [(s.get("service_time") or {}).get(kind) or {} for s in samples]
        used = [float(x["us"]) for x in seen if x.get("us") is not None]
        measured = [float(x["measured_us"]) for x in seen if x.get("measured_us") is not None]
        if used or measured:
            out[kind] = {
                "planned_mean": round(statistics.fmean(used), 3) if used else None,
                "measured_mean": round(statistics.fmean(measured), 3) if measured else None,
                "sources": sorted({str(x.get("source")) for x in seen if x.get("source")}),
            }
    return out


def plot(
    samples: list[dict[str, Any]], decisions: list[dict[str, Any]], path: Path, title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on a server
    import matplotlib.pyplot as plt

    ok = Q_PLANNED.search(samples)
    t0 = float(ok[0]["t"])
    ts = [float(s["t"]) - t0 for s in ok]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(9, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot(ts, [float(s.get("total_load") or 0.0) for s in ok], label="offered load (cores)")
    top.step(ts, [int(s["working"]) for s in ok], where="post", label="working cores")
    top.step(
        ts,
        [int(s["working"]) + int(s.get("offloading") or 0) for s in ok],
        where="post",
        linestyle="--",
        label="working + offloading cores",
    )
    top.set_ylabel("cores")
    top.set_title(title)
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    dts = [float(d["time"]) - t0 for d in decisions if d.get("time") is not None]
    migs = [int(d.get("migrations") or 0) for d in decisions if d.get("time") is not None]
    bottom.bar(dts, migs, width=0.08)
    bottom.set_ylabel("migrations")
    bottom.set_xlabel("time (s)")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dyssect-ctrl report",
        description="Summarize and plot an experiment recorded with `dyssect-ctrl record`.",
    )
    parser.add_argument("--samples", required=True, metavar="FILE", help="record's JSON lines")
    parser.add_argument("--decisions", metavar="FILE", help="the controller's decisions.jsonl")
    parser.add_argument("--out", required=True, metavar="DIR", help="result directory")
    parser.add_argument("--title", default="Dyssect scaling experiment")
    parser.add_argument(
        "--traffic", metavar="DIR", help="a generator run (samples.jsonl, summary.json) beside it"
    )
    parser.add_argument(
        "--ports", nargs=2, metavar=("BEFORE", "AFTER"), help="`dyssect-ctrl ports` before/after"
    )
    args = parser.parse_args(argv)
    try:
        samples = read_lines(Path(args.samples))
        decisions = read_lines(Path(args.decisions)) if args.decisions else []
        if samples:
            t_first, t_last = float(samples[0]["t"]), float(samples[-1]["t"])
            # Only the decisions taken while recording (the log may span earlier runs).
            decisions = [d for d in decisions if t_first <= float(d.get("time", 0)) <= t_last]
        summary = summarize(samples, decisions)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        if args.traffic:
            summary["traffic"] = traffic(args, samples, decisions, summary["drops"], out)
    except (ReportError, traffic_report.TrafficReportError) as e:
        print(f"report: {e}", file=sys.stderr)
        return EXIT_ERROR
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    plot(samples, decisions, out / "cores.png", args.title)
    print(
        f"report: {summary['duration_s']} s, load {summary['load_cores']['min']}-"
        f"{summary['load_cores']['max']} cores, cores max {summary['cores']['max']} "
        f"(mean {summary['cores']['mean']}), {summary['plans']} plans, "
        f"{summary['migrations']} migrations -> {out}/summary.json, {out}/cores.png"
    )
    if "traffic" in summary:
        t = summary["traffic"]
        rec = t["reconciliation"]
        print(f"traffic: {t['phases_line']}")
        print(
            f"loss: sent {rec['sent']}, received {rec['received']}, lost {rec['lost']} = drops"
            f" {sum(rec['drops'].values())} {rec['drops']} + link to dut {rec['link_to_dut']}"
            f" + link to gen {rec['link_to_gen']} + unexplained {rec['unexplained']}"
            f" -> {out}/series.csv, {out}/timeline.png"
        )
    return EXIT_OK


def traffic(
    args: argparse.Namespace,
    samples: list[dict[str, Any]],
    decisions: list[dict[str, Any]],
    dut_drops: dict[str, int],
    out: Path,
) -> dict[str, Any]:
    """The generator run's part of the summary; writes series.csv and timeline.png."""
    gen_samples, gen_summary = traffic_report.read_run(Path(args.traffic))
    ports: dict[str, dict[str, int]] = {}
    if args.ports:
        before, after = (json.loads(Path(p).read_text(encoding="utf-8")) for p in args.ports)
        ports = difference(before, after)
    rows = traffic_report.series(
        gen_samples, float(gen_summary["started_unix"]), samples, decisions
    )
    traffic_report.write_series(rows, out / "series.csv")
    traffic_report.plot_timeline(rows, out / "timeline.png", args.title)
    rec = traffic_report.reconcile(gen_summary, dut_drops, ports)
    figures = traffic_report.point_figures(gen_summary, rec)
    (out / "traffic.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return {
        "phases": gen_summary.get("phases"),
        "phases_line": traffic_report.phases_line(gen_summary),
        "reconciliation": rec,
    }
