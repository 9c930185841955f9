"""`python -m dyssect_ctrl.traffic`: run a profile on a bessd and record what the traffic got.

Builds the generator pipeline on the bessd at --grpc-url (which it resets: the generator owns
that daemon), sends through a DPDK port (--vdev, e.g. net_af_packet0,iface=veth0, out and back
in on the same port) or through an in-daemon loopback (--loopback, a self-test), prints one line
per sample, and writes samples.jsonl, summary.json and traffic.png (latency percentiles with the
phases shaded, offered vs delivered) into --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dyssect_ctrl.config import ConfigError
from dyssect_ctrl.traffic import pipeline
from dyssect_ctrl.traffic.pipeline import DEFAULT_NAMES
from dyssect_ctrl.traffic.plot import plot
from dyssect_ctrl.traffic.profile import Profile, load_profile
from dyssect_ctrl.traffic.run import RunRecord, run_profile
from dyssect_ctrl.traffic.sampler import Latency, Sample

PORT = "tg_port"


def _pybess(path: str) -> Any:
    if path not in sys.path:
        sys.path.insert(0, path)
    from pybess.bess import BESS  # type: ignore[import-not-found]

    return BESS


def build(b: Any, profile: Profile, port: Mapping[str, str] | None, wid: int, core: int) -> None:
    """The generator pipeline; `port` is the PMDPort's {vdev} or {pci}, None for a loopback."""
    b.pause_all()
    b.reset_all()
    b.add_worker(wid, core)
    if port is None:
        b.create_module("Bypass", "tg_link", {})
        out, head = "tg_link", "tg_link"
    else:
        b.create_port("PMDPort", PORT, dict(port))
        b.create_module("PortOut", "tg_out", {"port": PORT})
        b.create_module("PortInc", "tg_in", {"port": PORT})
        b.attach_task("tg_in", wid=wid)
        out, head = "tg_out", "tg_in"
    pipeline.build_sender(b, profile, out=out, wid=wid)
    pipeline.build_receiver(b, profile, head=head)


def port_drops(b: Any) -> Mapping[str, int]:
    stats = b.get_port_stats(PORT)
    return {"port_tx_dropped": int(stats.out.dropped), "port_rx_dropped": int(stats.inc.dropped)}


def _percentiles(lat: Latency) -> dict[str, Any]:
    return {"p50": lat.p50_us, "p99": lat.p99_us, "p99.9": lat.p999_us, "max": lat.max_us}


def summary(record: RunRecord, started_unix: float) -> dict[str, Any]:
    phases = []
    for p in record.phases:
        phase: dict[str, Any] = {
            "name": p.name,
            "seconds": round(p.seconds, 3),
            "sent": p.sent,
            "received": p.received,
            "offered_pps": round(p.offered_pps, 1),
            "delivered_pps": round(p.delivered_pps, 1),
            "latency_us": _percentiles(p.latency),
        }
        if p.by_class:
            phase["latency_us_by_class"] = {
                k: {"count": lat.count, **_percentiles(lat)} for k, lat in p.by_class.items()
            }
        phases.append(phase)
    return {
        # wall clock of the first sample's start, to line the run up with the DUT's record
        "started_unix": round(started_unix, 3),
        "phases": phases,
        "reconciliation": record.reconciliation.to_dict(),
    }


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _line(s: Sample) -> str:
    lat = s.latency
    line = (
        f"{s.t_s:7.1f}s {s.phase:<12} set {s.rate_set_pps:>10.0f} offered {s.offered_pps:>10.0f}"
        f" delivered {s.delivered_pps:>10.0f} lost {s.lost:>7}"
        f" p50 {_us(lat.p50_us):>8} p99 {_us(lat.p99_us):>8} us"
    )
    for k, c in s.by_class.items():
        line += f" | {k} p99 {_us(c.p99_us)} us ({c.count})"
    return line


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dyssect_ctrl.traffic", description=__doc__)
    ap.add_argument("--profile", required=True, help="profile YAML (docs/traffic.md)")
    ap.add_argument("--grpc-url", default="127.0.0.1:10514")
    ap.add_argument("--pybess-path", default="/opt/bess")
    ap.add_argument("--out", required=True, help="folder for samples.jsonl and summary.json")
    link = ap.add_mutually_exclusive_group(required=True)
    link.add_argument("--vdev", help="DPDK vdev the traffic leaves and returns on")
    link.add_argument("--pci", help="PCI address of the NIC the traffic leaves and returns on")
    link.add_argument("--loopback", action="store_true", help="no port: an in-daemon self-test")
    ap.add_argument("--wid", type=int, default=0, help="BESS worker id")
    ap.add_argument("--core", type=int, default=0, help="CPU core of that worker")
    args = ap.parse_args(argv)
    try:
        profile = load_profile(args.profile)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    b = _pybess(args.pybess_path)()
    b.connect(grpc_url=args.grpc_url)
    try:
        port = None if args.loopback else ({"pci": args.pci} if args.pci else {"vdev": args.vdev})
        build(b, profile, port, args.wid, args.core)
        with open(out / "samples.jsonl", "w", encoding="utf-8") as series:

            def on_sample(s: Sample) -> None:
                series.write(json.dumps(s.to_dict()) + "\n")
                series.flush()
                print(_line(s), flush=True)

            b.resume_all()
            started = time.time()
            record = run_profile(
                b,
                profile,
                names=DEFAULT_NAMES,
                drops=(lambda: {}) if args.loopback else (lambda: port_drops(b)),
                on_sample=on_sample,
            )
    finally:
        b.pause_all()
        b.reset_all()
        b.disconnect()
    result = summary(record, started)
    (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot([s.to_dict() for s in record.samples], out / "traffic.png", Path(args.profile).name)
    print(json.dumps(result, indent=2))
    return 0 if record.reconciliation.unexplained == 0 else 1
