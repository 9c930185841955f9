"""An experiment's outputs: metrics pulled out of the point records, CSVs and comparison plots.

Each finished point has a JSON record (runner.py) whose `results` holds every JSON file the
experiment playbook brought back for it, by file stem: `summary` (dyssect-ctrl report: cores,
migrations, solve times, drops) today, and the traffic generator's summary under its own stem
once it writes one. A metric is a JMESPath expression over the record, so the generator's
throughput, loss and latency become columns and plots as soon as its file is there; a metric
no point has yet is left out.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jmespath

from dyssect_ctrl.experiment.spec import Spec

DEFAULT_METRICS: dict[str, str] = {
    "cores_mean": "results.summary.cores.mean",
    "core_seconds": "results.summary.cores.core_seconds",
    "migrations": "results.summary.migrations",
    "plans": "results.summary.plans",
    "scale_events": "sum([results.summary.scale_ups, results.summary.scale_downs])",
    "solve_p99_ms": "max(values(results.summary.solve)[?p99_ms != null].p99_ms)",
    "drops": "sum(values(results.summary.drops))",
    "load_mean_cores": "results.summary.load_cores.mean",
    # The traffic generator's summary (traffic.json), when it exists.
    "throughput_pps": "results.traffic.delivered_pps.mean",
    "offered_pps": "results.traffic.offered_pps.mean",
    "loss_ratio": "results.traffic.loss_ratio",
    "latency_p50_us": "results.traffic.latency_us.p50",
    "latency_p99_us": "results.traffic.latency_us.p99",
    "latency_p999_us": "results.traffic.latency_us.p999",
}


def metric_queries(spec: Spec) -> dict[str, jmespath.parser.ParsedResult]:
    merged = {**DEFAULT_METRICS, **spec.metrics}
    return {name: jmespath.compile(q) for name, q in merged.items()}


def value_of(query: jmespath.parser.ParsedResult, record: Mapping[str, Any]) -> float | None:
    """The metric of one record; None when the record does not have it (yet)."""
    try:
        v = query.search(record)
    except jmespath.exceptions.JMESPathError:
        return None  # e.g. values() of a missing object
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def _level(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def table(
    spec: Spec, records: Sequence[Mapping[str, Any]], metric: str, query: Any
) -> tuple[list[str], list[list[Any]]]:
    """One metric: a row per combination of the other factors, mean/sd/n per series level."""
    others = [f for f in spec.factors if f != spec.series]
    levels = spec.factors[spec.series]
    cells: dict[tuple[Any, ...], dict[Any, list[float]]] = {}
    for r in records:
        factors = r["point"]["factors"]
        v = value_of(query, r)
        if v is None:
            continue
        row = tuple(factors[f] for f in others)
        cells.setdefault(row, {}).setdefault(factors[spec.series], []).append(v)
    header = list(others)
    for lv in levels:
        name = _level(lv)
        header += [name, f"{name}_sd", f"{name}_n"]
    rows = []
    for row in sorted(cells, key=lambda t: [(isinstance(x, str), x) for x in t]):
        out: list[Any] = list(row)
        for lv in levels:
            vals = cells[row].get(lv, [])
            mean = statistics.fmean(vals) if vals else ""
            sd = statistics.stdev(vals) if len(vals) > 1 else (0.0 if vals else "")
            out += [_round(mean), _round(sd), len(vals)]
        rows.append(out)
    return header, rows


def _round(v: Any) -> Any:
    return round(v, 6) if isinstance(v, float) else v


def write_tables(spec: Spec, records: Sequence[Mapping[str, Any]], out: Path) -> list[str]:
    """<metric>.csv for every metric some record has; returns the metrics written."""
    written = []
    for metric, query in metric_queries(spec).items():
        header, rows = table(spec, records, metric, query)
        if not rows:
            continue
        with (out / f"{metric}.csv").open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
        written.append(metric)
    return written


def plot_metric(
    spec: Spec, records: Sequence[Mapping[str, Any]], metric: str, query: Any, path: Path
) -> None:
    """Mean and standard deviation over the repetitions, one line per series level, against x.

    Points that differ in a factor other than the series and x get lines of their own.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = spec.factors[spec.x]
    numeric = all(isinstance(v, int | float) for v in xs)
    rest = [f for f in spec.factors if f not in (spec.series, spec.x) and len(spec.factors[f]) > 1]
    groups: dict[tuple[Any, ...], dict[Any, list[float]]] = {}
    for r in records:
        f = r["point"]["factors"]
        v = value_of(query, r)
        if v is not None:
            key = (f[spec.series], *[f[k] for k in rest])
            groups.setdefault(key, {}).setdefault(f[spec.x], []).append(v)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key in sorted(groups, key=lambda t: [str(x) for x in t]):
        by_x = groups[key]
        order = [x for x in xs if x in by_x]
        pos = order if numeric else [xs.index(x) for x in order]
        means = [statistics.fmean(by_x[x]) for x in order]
        sds = [statistics.stdev(by_x[x]) if len(by_x[x]) > 1 else 0.0 for x in order]
        label = _level(key[0]) + "".join(
            f", {k}={_level(v)}" for k, v in zip(rest, key[1:], strict=True)
        )
        ax.errorbar(pos, means, yerr=sds, marker="o", capsize=3, label=label)
    if not numeric:
        ax.set_xticks(range(len(xs)), [_level(x) for x in xs])
    ax.set_xlabel(spec.x)
    ax.set_ylabel(metric)
    ax.set_title(f"{spec.name}: {metric} (mean and sd over {spec.repetitions} repetitions)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(
    spec: Spec, records: Sequence[Mapping[str, Any]], metrics: Sequence[str], out: Path
) -> list[Path]:
    queries = metric_queries(spec)
    paths = []
    for metric in metrics:
        path = out / f"{metric}.png"
        plot_metric(spec, records, metric, queries[metric], path)
        paths.append(path)
    return paths
