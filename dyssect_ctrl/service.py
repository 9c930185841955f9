"""`dyssect-ctrl run --config FILE`: the controller as a systemd service.

Type=notify: READY=1 after the first successful stats read, WATCHDOG=1 from the loop while it is
healthy, STATUS= with cores in use and the last solve. SIGHUP reloads the config file (a bad one
is rejected and logged and the running config stays; only changed keys take effect, see
ControlLoop.reload). SIGTERM/SIGINT stop after the current epoch: nothing more is sent to the
data plane, which keeps the last plan applied in full.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from dyssect_ctrl import __version__
from dyssect_ctrl.config import Config, ConfigError, load_config
from dyssect_ctrl.dataplane import open_dataplane
from dyssect_ctrl.decision_log import DecisionLog
from dyssect_ctrl.loop import ControlLoop
from dyssect_ctrl.metrics import Metrics, MetricsServer
from dyssect_ctrl.status import StatusServer
from dyssect_ctrl.systemd import Notifier, setup_logging

log = logging.getLogger("dyssect_ctrl.service")

EXIT_OK = 0
EXIT_CONFIG = 1
EXIT_STARTUP = 3


class Service:
    def __init__(self, config_path: str, config: Config) -> None:
        self.config_path = config_path
        self.config = config
        self.started = time.time()
        self.stop = threading.Event()
        self.notifier = Notifier()
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        Path(config.state_dir).mkdir(parents=True, exist_ok=True)
        self.decisions = DecisionLog(
            config.state_dir, config.decision_log.max_bytes, config.decision_log.backups
        )
        self.dataplane = open_dataplane(config)
        self.loop = ControlLoop(
            config, self.dataplane, self.metrics, self.decisions, notifier=self.notifier
        )
        self.metrics_server: MetricsServer | None = None
        self.status_server: StatusServer | None = None

    def start_endpoints(self) -> None:
        m = self.config.metrics
        if m.port:
            self.metrics_server = MetricsServer(self.registry, m.listen, m.port)
        try:
            self.status_server = StatusServer(self.config.status_socket, self.status)
        except OSError as e:
            # Status also comes from the metrics endpoint; not worth failing the service for.
            log.error(
                "status socket %s: %s (dyssect-ctrl status will use metrics)",
                self.config.status_socket,
                e,
            )

    def status(self) -> dict[str, Any]:
        doc = dict(self.loop.status())
        doc.update(
            {
                "pid": os.getpid(),
                "version": __version__,
                "config_file": self.config_path,
                "uptime_s": round(time.time() - self.started, 1),
                "metrics": f"{self.config.metrics.listen}:{self.metrics_server.port}"
                if self.metrics_server
                else None,
            }
        )
        return doc

    def on_signal(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGHUP:
            self.reload()
            return
        log.info("%s: stopping after the current epoch", signal.Signals(signum).name)
        self.notifier.stopping()
        self.stop.set()

    def reload(self) -> None:
        self.notifier.reloading()
        try:
            new = load_config(self.config_path)
        except ConfigError as e:
            self.metrics.reloads.labels(result="rejected").inc()
            log.error("reload rejected, the running config stays: %s", e)
            self.notifier.ready(f"reload rejected: {e}")
            return
        self.metrics.reloads.labels(result="accepted").inc()
        self.loop.request_reload(new)
        self.config = new
        log.info("reload of %s accepted: takes effect at the next epoch", self.config_path)
        self.notifier.ready()

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.on_signal)
        try:
            self.loop.run(self.stop)
        finally:
            self.close()
        log.info("stopped; the data plane keeps plan %d", self.loop.plan_id)
        return EXIT_OK

    def close(self) -> None:
        self.loop.close()
        self.dataplane.close()
        if self.metrics_server is not None:
            self.metrics_server.close()
        if self.status_server is not None:
            self.status_server.close()
        self.decisions.close()
        self.notifier.close()


def pin(cpu: int) -> None:
    """Run on cores.controller, away from the data-plane cores (systemd's CPUAffinity agrees)."""
    try:
        allowed = os.sched_getaffinity(0)
        if allowed == {cpu}:
            return  # already (systemd's CPUAffinity= does it, and may forbid the syscall)
        if cpu not in allowed:
            log.warning(
                "cores.controller %d is not in this process's CPU set %s: not pinned",
                cpu,
                sorted(allowed),
            )
            return
        os.sched_setaffinity(0, {cpu})
    except OSError as e:
        log.warning("cannot pin to CPU %d: %s", cpu, e)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dyssect-ctrl run", description="Run the Dyssect controller (systemd Type=notify)."
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="controller config")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        config = load_config(args.config)
    except ConfigError as e:
        setup_logging("info")
        log.error("%s", e)
        return EXIT_CONFIG
    setup_logging(config.log_level)
    log.info("dyssect-ctrl %s starting with %s", __version__, args.config)
    pin(config.cores.controller)
    try:
        service = Service(args.config, config)
        service.start_endpoints()
    except OSError as e:
        log.error("cannot start: %s", e)
        return EXIT_STARTUP
    return service.run()
