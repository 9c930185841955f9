"""`dyssect-ctrl status`: the running controller's state as a short table.

The service answers on a unix stream socket (config status_socket) with one JSON document and
closes. When the socket cannot be reached, the status command falls back to the metrics endpoint
(config metrics.listen:port) and shows what the metrics carry.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import socket
import socketserver
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from dyssect_ctrl.config import Config, ConfigError, load_config

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "/etc/dyssect-controller/controller.yaml"  # where the role installs it
MAX_STATUS_BYTES = 16 << 20  # the status document is a few kB


# -- server side (used by the service) ----------------------------------------------------------


class StatusServer:
    """Serves `provider()` as JSON to every client of the unix socket at `path`."""

    def __init__(self, path: str, provider: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a stale socket of an earlier run

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                try:
                    body = json.dumps(provider(), default=str).encode() + b"\n"
                    self.wfile.write(body)
                except OSError:
                    pass  # client went away

        self._server = socketserver.ThreadingUnixStreamServer(path, Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="status", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


# -- client side ----------------------------------------------------------------------------------


def query_socket(path: str, timeout_s: float = 2.0) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(path)
        chunks = []
        size = 0
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
            size += len(data)
            if size > MAX_STATUS_BYTES:
                raise ValueError(f"status socket sent more than {MAX_STATUS_BYTES} bytes")
    doc = json.loads(b"".join(chunks))
    if not isinstance(doc, dict):
        raise ValueError("status socket did not answer with a JSON object")
    return doc


def query_metrics(url: str, timeout_s: float = 2.0) -> dict[str, Any]:
    """A reduced status document from the Prometheus endpoint."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout_s) as r:
        text = r.read().decode()
    cores: dict[tuple[str, str], dict[str, Any]] = {}
    doc: dict[str, Any] = {"source": url, "counts": {}, "cores": []}
    working = offloading = None
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            labels, value = sample.labels, sample.value
            if sample.name == "dyssect_cores":
                if labels.get("role") == "working":
                    working = int(value)
                else:
                    offloading = int(value)
            elif sample.name == "dyssect_cores_available":
                doc["cores_total"] = int(value)
            elif sample.name == "dyssect_dataplane_connected":
                doc["dataplane"] = {"connected": bool(value), "kind": "?", "reason": ""}
            elif sample.name in ("dyssect_core_load", "dyssect_core_delay_us"):
                key = (labels["role"], labels["slot"])
                item = cores.setdefault(key, {"role": key[0], "slot": int(key[1])})
                item["load" if sample.name == "dyssect_core_load" else "delay_us"] = value
            elif sample.name == "dyssect_fallbacks_total":
                doc["counts"]["fallbacks"] = doc["counts"].get("fallbacks", 0) + int(value)
            elif sample.name == "dyssect_snapshots_rejected_total":
                doc["counts"]["rejected"] = doc["counts"].get("rejected", 0) + int(value)
            elif sample.name == "dyssect_epochs_missed_total":
                doc["counts"]["missed"] = int(value)
            elif sample.name == "dyssect_migrations_total":
                doc["counts"]["migrations"] = int(value)
    if working is not None:
        doc["plan"] = {"working": working, "offloading": offloading or 0}
    doc["cores"] = sorted(cores.values(), key=lambda c: (c["role"] != "working", c["slot"]))
    doc["state"] = "running (from metrics)"
    return doc


def render(doc: dict[str, Any], console: Console) -> None:
    plan = doc.get("plan") or {}
    dp = doc.get("dataplane") or {}
    solve = doc.get("last_solve") or {}
    counts = doc.get("counts") or {}
    console.print(f"[bold]dyssect-controller[/bold]: {doc.get('state', '?')}")
    if dp:
        conn = "connected" if dp.get("connected") else f"NOT connected ({dp.get('reason', '')})"
        console.print(f"data plane: {dp.get('kind', '?')} {conn}")
    if doc.get("policy"):
        console.print(f"policy: {doc['policy']}, solver backend: {doc.get('solver_backend', '?')}")
    if plan:
        total = doc.get("cores_total", "?")
        console.print(
            f"plan {doc.get('plan_id', '?')}: W={plan.get('working')} "
            f"E={plan.get('offloading')} of {total} cores; load {doc.get('total_load', '?')} "
            f"cores; epoch {doc.get('loop_epoch', '?')}"
        )
    if solve:
        fb = f", fallback: {solve['fallback']}" if solve.get("fallback") else ""
        console.print(
            f"last solve: {solve.get('mode')} {solve.get('backend')} {solve.get('solve_ms')} ms{fb}"
        )
    table = Table(show_header=True, header_style="bold")
    for col in ("role", "slot", "cpu", "shards", "load", "cap", "delay us", "SLO us"):
        table.add_column(col, justify="right" if col not in ("role",) else "left")
    for c in doc.get("cores") or []:
        delay = c.get("delay_us")
        slo = c.get("slo_us")
        over = delay is None or (slo is not None and delay > slo)
        delay_text = "inf" if delay is None else f"{delay:.2f}"
        table.add_row(
            c.get("role", ""),
            str(c.get("slot", "")),
            str(c.get("cpu", "")),
            "" if c.get("shards") is None else str(c["shards"]),
            f"{c.get('load', 0.0):.3f}",
            "" if c.get("cap") is None else f"{c['cap']:.3f}",
            f"[red]{delay_text}[/red]" if over and slo is not None else delay_text,
            "" if slo is None else f"{slo:g}",
        )
    if doc.get("cores"):
        console.print(table)
    for kind, f in (doc.get("service_time") or {}).items():
        console.print(service_time_line(kind, f))
    if counts:
        console.print(", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    drops = {k: v for k, v in (doc.get("drops") or {}).items() if v}
    if drops:
        console.print("drops last window: " + ", ".join(f"{k} {v}" for k, v in drops.items()))


def service_time_line(kind: str, f: dict[str, Any]) -> str:
    """One kind's service time: the value the model uses, its source, and the measurement."""
    measured = f.get("measured_us")
    seen = "not measured yet" if measured is None else f"measured {measured:.3f} us"
    return f"service time {kind}: {f.get('us', 0.0):.3f} us ({f.get('source')}); {seen}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dyssect-ctrl status", description="Show the running controller's state."
    )
    parser.add_argument("--config", metavar="FILE", help=f"config file (default {DEFAULT_CONFIG})")
    parser.add_argument("--socket", metavar="PATH", help="status socket (default: from config)")
    parser.add_argument("--metrics", metavar="URL", help="metrics endpoint to fall back to")
    parser.add_argument("--json", action="store_true", help="print the raw JSON document")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))

    config: Config | None = None
    errors = []
    config_path = args.config
    if config_path is None:
        try:
            config_path = DEFAULT_CONFIG if Path(DEFAULT_CONFIG).exists() else None
        except OSError as e:  # its directory is 0750 root:<service group>
            errors.append(
                f"config {DEFAULT_CONFIG}: {e.strerror} (not in the service's group?); "
                f"default socket and metrics address tried"
            )
            config = Config()
    if config_path is not None:
        try:
            config = load_config(config_path)
        except ConfigError as e:
            print(f"dyssect-ctrl status: {e}", file=sys.stderr)
            return 1
    sock = args.socket or (config.status_socket if config else Config().status_socket)
    metrics_url = args.metrics
    if metrics_url is None and config is not None and config.metrics.port:
        host = config.metrics.listen
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        host = f"[{host}]" if ":" in host else host
        metrics_url = f"http://{host}:{config.metrics.port}/metrics"

    doc: dict[str, Any] | None = None
    try:
        doc = query_socket(sock)
    except (OSError, ValueError) as e:
        errors.append(f"cannot reach the controller: status socket {sock}: {e}")
    if doc is None and metrics_url:
        try:
            doc = query_metrics(metrics_url)
        except (OSError, ValueError) as e:
            errors.append(f"cannot reach the controller: metrics {metrics_url}: {e}")
    if doc is None:
        for line in errors:
            print(f"dyssect-ctrl status: {line}", file=sys.stderr)
        return 1
    doc.setdefault("queried_at", time.time())
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        render(doc, Console(highlight=False))
    return 0
