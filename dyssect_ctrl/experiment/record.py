"""`dyssect-ctrl record`: sample a running controller's status into JSON lines, for a while.

One line per sample: the time, the offered load the controller measured (in cores), the plan's
core counts, the cumulative counters and the service times (modelled, measured). The experiment
playbook runs it on the server under test while the load changes, and `dyssect-ctrl report`
turns the lines into figures and plots. A sample the controller could not answer is written as
an error line (never skipped silently), so gaps in the record show.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from dyssect_ctrl.config import ConfigError, load_config
from dyssect_ctrl.status import DEFAULT_CONFIG, query_socket

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1


def sample_of(doc: dict[str, Any], now: float) -> dict[str, Any]:
    """The part of a status document an experiment keeps."""
    plan = doc.get("plan") or {}
    return {
        "t": round(now, 3),
        "state": doc.get("state"),
        "total_load": doc.get("total_load"),
        "working": plan.get("working"),
        "offloading": plan.get("offloading"),
        "plan_id": doc.get("plan_id"),
        "core_loads": [c.get("load") for c in doc.get("cores") or []],
        "counts": doc.get("counts") or {},
        "drops_total": doc.get("drops_total") or {},
        "last_solve": doc.get("last_solve") or {},
        # per kind: the service time the model used (us, source) and the measurement beside it
        "service_time": doc.get("service_time") or {},
    }


def record(
    query: Callable[[], dict[str, Any]],
    out: TextIO,
    seconds: float,
    interval: float,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, int]:
    """Sample every `interval` seconds for `seconds`; returns (samples, errors)."""
    start = clock()
    n = errors = 0
    k = 0
    while True:
        due = start + k * interval
        if due > start + seconds + 1e-9:
            break
        wait = due - clock()
        if wait > 0:
            sleep(wait)
        try:
            line = sample_of(query(), wall())
        except (OSError, ValueError) as e:
            line = {"t": round(wall(), 3), "error": str(e)}
            errors += 1
        out.write(json.dumps(line, sort_keys=True) + "\n")
        out.flush()
        n += 1
        k += 1
    return n, errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dyssect-ctrl record",
        description="Sample the running controller's status into JSON lines.",
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"default: {DEFAULT_CONFIG}")
    parser.add_argument("--seconds", type=float, required=True, help="how long to record")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--out", required=True, metavar="FILE", help="JSON lines, appended")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.interval <= 0:
        print("record: --seconds and --interval must be positive", file=sys.stderr)
        return EXIT_ERROR
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"record: {e}", file=sys.stderr)
        return EXIT_ERROR
    path = config.status_socket
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a", encoding="utf-8") as out:
        n, errors = record(lambda: query_socket(path), out, args.seconds, args.interval)
    print(f"record: {n} samples ({errors} unanswered) from {path} into {args.out}")
    return EXIT_OK if errors < n else EXIT_ERROR
