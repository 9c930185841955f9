"""ControlLoop: the epoch scheduler (run, tick) and config reload, over the loop's parts."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from dyssect_ctrl.config import Config, changed_keys, live_keys, with_live_keys
from dyssect_ctrl.dataplane.base import Dataplane, Reading
from dyssect_ctrl.decision_log import DecisionLog
from dyssect_ctrl.loop.applying import Applier
from dyssect_ctrl.loop.link import Link
from dyssect_ctrl.loop.solver_thread import SolverThread
from dyssect_ctrl.loop.solving import PlannerFactory, Solving, make_planner
from dyssect_ctrl.loop.state import LoopState
from dyssect_ctrl.loop.status import Status
from dyssect_ctrl.metrics import Metrics
from dyssect_ctrl.model import Plan
from dyssect_ctrl.policy import Policy
from dyssect_ctrl.systemd import Notifier

log = logging.getLogger("dyssect_ctrl.loop")

# A tick starting more than this fraction of an epoch late is skipped and counted as missed.
LATE_TOLERANCE = 0.5


class ControlLoop:
    def __init__(
        self,
        config: Config,
        dataplane: Dataplane,
        metrics: Metrics,
        decisions: DecisionLog | None,
        *,
        notifier: Notifier | None = None,
        planner_factory: PlannerFactory = make_planner,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.st = LoopState(config, dataplane, metrics, notifier or Notifier({}), clock)
        self.decisions = decisions
        self.status_out = Status(self.st, healthy=lambda: self.solving.healthy())
        self.link = Link(self.st, self.status_out, on_lost=lambda: self.solving.drop_pending())
        self.applier = Applier(self.st, decisions, self.link)
        self.solving = Solving(self.st, planner_factory, self.applier)
        # CPU time of the loop thread (the solver threads not included).
        self.loop_cpu_s = 0.0
        self._next_long = self.st.ratio
        self._reload: Config | None = None
        self._reload_lock = threading.Lock()

    # -- scheduling ------------------------------------------------------------------------

    def run(self, stop: threading.Event, max_ticks: int | None = None) -> None:
        """Tick every short epoch until `stop` is set (or max_ticks ticks ran)."""
        st = self.st
        self.solving.warm_up()
        next_tick = st.clock()
        ticks = 0
        while not stop.is_set():
            self._take_reload()
            self.tick(next_tick)
            ticks += 1
            if max_ticks is not None and ticks >= max_ticks:
                break
            next_tick += st.short_s
            now = st.clock()
            late = now - next_tick
            if late > LATE_TOLERANCE * st.short_s:
                skipped = math.ceil(late / st.short_s - LATE_TOLERANCE)
                next_tick += skipped * st.short_s
                st.loop_epoch += skipped
                st.counts["missed"] += skipped
                st.metrics.epochs_missed.inc(skipped)
                log.warning("loop ran late: %d epoch(s) skipped", skipped)
            stop.wait(max(0.0, next_tick - st.clock()))
        st.state = "stopped"

    def tick(self, started: float | None = None) -> None:
        """One short epoch: (re)connect if needed, read, plan, apply, report."""
        st = self.st
        self.solving.warm_up()
        started = st.clock() if started is None else started
        cpu0 = time.thread_time()
        st.loop_epoch += 1
        # A short epoch whose cores could not hold the load asks for the long model now:
        # scaling up cannot wait for the next long epoch (scaling down still has hysteresis).
        # A long epoch skipped by a late loop runs at the next tick instead.
        is_long = st.loop_epoch >= self._next_long or self.solving.force_long
        self.solving.force_long = False
        if is_long:
            self._next_long = (st.loop_epoch // st.ratio + 1) * st.ratio
        st.metrics.epochs.labels(kind="long" if is_long else "short").inc()
        epoch_end = started + st.short_s
        st.epoch_end = epoch_end
        try:
            if not st.connected and not self.link.connect():
                return
            reading = self._read()
            if reading is None:
                return
            self.solving.plan(reading, is_long, epoch_end)
        finally:
            self.status_out.report()
            self.loop_cpu_s += time.thread_time() - cpu0

    def _read(self) -> Reading | None:
        st = self.st
        reading = self.link.read()
        if reading is None:
            return None
        self.applier.take_over(reading)
        self.status_out.became_ready()
        if not self.link.idle(reading):
            return None
        st.metrics.observe_service_time(st.service.in_force(st.config.params))
        self.solving.follow_service_time()
        if st.current is not None:
            st.metrics.observe_loads(st.last_loads, st.current, st.params, st.config.core_count)
        return reading

    # -- reload ----------------------------------------------------------------------------

    def request_reload(self, new: Config) -> None:
        """Hand a validated config to the loop; it takes effect at the next tick."""
        with self._reload_lock:
            self._reload = new

    def _take_reload(self) -> None:
        with self._reload_lock:
            new, self._reload = self._reload, None
        if new is not None:
            self.reload(new)

    def reload(self, new: Config) -> set[str]:
        """Take the keys that can change live; the others wait for a restart (logged)."""
        st = self.st
        changed = changed_keys(st.config, new)
        live = changed & live_keys()
        for key in sorted(changed - live):
            log.warning("config %s changed: takes effect after a restart (old value kept)", key)
        merged = with_live_keys(st.config, new)
        st.config = merged
        replan = ("model.", "solver.", "epochs.scale_down", "policy")
        if any(k.startswith(replan) for k in live):
            self.solving.replan(merged)
        if self.decisions is not None and any(k.startswith("decision_log.") for k in live):
            self.decisions.configure(merged.decision_log.max_bytes, merged.decision_log.backups)
        if "epochs.short_ms" in live and st.connected:
            self.link.set_window()
        if "log_level" in live:
            logging.getLogger().setLevel(merged.log_level.upper())
        log.info("config reloaded: %s", ", ".join(sorted(live)) or "no live changes")
        return live

    # -- for the service, the benchmark and the tests ---------------------------------------

    def status(self) -> dict[str, Any]:
        """The last status document (built by the loop thread; safe to read from any thread)."""
        return self.status_out.document()

    def healthy(self) -> bool:
        return self.solving.healthy()

    def close(self) -> None:
        """Stop solving; nothing is sent to the data plane (it keeps the last applied plan)."""
        self.solving.close()

    @property
    def config(self) -> Config:
        return self.st.config

    @property
    def current(self) -> Plan | None:
        return self.st.current

    @property
    def plan_id(self) -> int:
        return self.st.plan_id

    @property
    def connected(self) -> bool:
        return self.st.connected

    @property
    def ready(self) -> bool:
        return self.st.ready

    @property
    def loop_epoch(self) -> int:
        return self.st.loop_epoch

    @property
    def counts(self) -> dict[str, int]:
        return self.st.counts

    @property
    def last_reading(self) -> Reading | None:
        return self.st.last_reading

    @property
    def planner(self) -> Policy:
        return self.solving.planner

    @property
    def solver(self) -> SolverThread:
        return self.solving.solver

    @property
    def latencies(self) -> deque[float]:
        return self.applier.latencies

    @property
    def apply_latencies(self) -> deque[float]:
        return self.applier.apply_latencies

    @property
    def apply_overheads(self) -> deque[float]:
        return self.applier.apply_overheads

    @property
    def apply_rpc(self) -> deque[float]:
        return self.applier.apply_rpc
