"""`dyssect-ctrl calibrate`: read the data plane's busy time for a while and print the measured
service time per packet, per core kind and per slot.

It reads the stats twice, `--seconds` apart, and divides the busy cycles counted in between by
the packets of those batches. Each read closes the data plane's stats window, so a controller
running meanwhile sees one short window; nothing else changes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from dyssect_ctrl.config import ConfigError, load_config
from dyssect_ctrl.dataplane import Dataplane, DataplaneError, SnapshotRejected, open_dataplane
from dyssect_ctrl.dataplane.base import Reading
from dyssect_ctrl.service_time import KINDS, busy_us
from dyssect_ctrl.status import DEFAULT_CONFIG

EXIT_OK = 0
EXIT_ERROR = 1


def measure(
    plane: Dataplane, seconds: float, sleep: Callable[[float], None] = time.sleep
) -> dict[str, Any]:
    """The service times over `seconds` of a connected data plane, as a JSON-ready document."""
    plane.read()  # starts the window (its counts are since the last read)
    sleep(seconds)
    return summary(plane.read(), seconds)


def summary(reading: Reading, seconds: float) -> dict[str, Any]:
    """Per kind: microseconds per packet over all slots and per slot (null without packets)."""
    out: dict[str, Any] = {"seconds": seconds, "tsc_hz": reading.tsc_hz}
    for kind in KINDS:
        slots = reading.busy.get(kind, ())
        out[kind] = {
            "us": busy_us(slots, reading.tsc_hz),
            "packets": sum(b.packets for b in slots),
            "slots": [
                {"slot": i, "us": busy_us([b], reading.tsc_hz), "packets": b.packets}
                for i, b in enumerate(slots)
                if b.packets
            ],
        }
    return out


def _us(value: float | None) -> str:
    return "no packets" if value is None else f"{value:.3f} us/packet"


def render(doc: dict[str, Any]) -> str:
    lines = [f"over {doc['seconds']:g} s (TSC {doc['tsc_hz'] / 1e9:.3f} GHz):"]
    for kind in KINDS:
        k = doc[kind]
        lines.append(f"  {kind}: {_us(k['us'])} ({k['packets']} packets)")
        for s in k["slots"]:
            lines.append(f"    slot {s['slot']}: {_us(s['us'])} ({s['packets']} packets)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dyssect-ctrl calibrate",
        description="Print the service time per packet the data plane measures.",
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"default: {DEFAULT_CONFIG}")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to measure")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 3600:
        print("calibrate: --seconds must be in (0, 3600]", file=sys.stderr)
        return EXIT_ERROR
    logging.basicConfig(level=logging.WARNING)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"calibrate: {e}", file=sys.stderr)
        return EXIT_ERROR
    plane = open_dataplane(config)
    try:
        plane.connect()
        doc = measure(plane, args.seconds)
    except (DataplaneError, SnapshotRejected) as e:
        print(f"calibrate: {e}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        plane.close()
    if doc["tsc_hz"] <= 0:
        print("calibrate: the data plane does not measure busy time", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(doc, indent=2, sort_keys=True) if args.json else render(doc))
    return EXIT_OK
