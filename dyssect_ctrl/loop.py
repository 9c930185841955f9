"""The epoch scheduler: measure every short epoch, plan, apply, and keep going through faults.

Every short epoch (tick) the loop reads the data plane's stats on schedule. Every
long_ms / short_ms ticks the long model runs (core counts), otherwise the short one (placement).
Solves run on a separate solver thread, so a slow solve never delays a measurement: the loop
waits for a short solve until the end of its own epoch and for a long solve until the next long
epoch, measuring meanwhile. A solve that fails, is late, or comes back invalid is a fallback:
the current plan stays if it still fits the capacity cap with the new loads, otherwise the greedy
plan (hard deadline, computed on the loop thread) is applied. Every fallback is counted by reason.

Snapshots are validated before use (dataplane.base.SnapshotValidator); a rejected one is
counted and never planned on. After (re)connecting, the loop adopts the data plane's plan when
it has none of its own (a restarted controller), or re-applies its own (a restarted bessd).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import Any

from dyssect_ctrl.config import Config
from dyssect_ctrl.dataplane.base import (
    Dataplane,
    DataplaneError,
    PipelineAbsent,
    PlanDeferred,
    PlanRejected,
    Reading,
    SnapshotRejected,
    SnapshotValidator,
    plan_problem,
    same_plan,
)
from dyssect_ctrl.decision_log import Decision, DecisionLog, snapshot_digest
from dyssect_ctrl.metrics import Metrics
from dyssect_ctrl.model import Params, Plan, PlanResult, core_loads
from dyssect_ctrl.planner import Planner
from dyssect_ctrl.systemd import Notifier

log = logging.getLogger(__name__)

FIT_SLACK = 1e-9
# Reconnect: retry on the next tick, then every second tick, so a restarted bessd is found
# within two short epochs of answering again.
RECONNECT_MAX_TICKS = 2
# A solve running this many long epochs is wedged: the loop stops feeding the watchdog so
# systemd restarts the controller (which then adopts the running plan).
WEDGED_LONG_EPOCHS = 10
# A tick starting more than this fraction of an epoch late is skipped and counted as missed.
LATE_TOLERANCE = 0.5
# A re-apply after a reconnect that the data plane refuses (a pipeline still being built) is
# retried on this many ticks before the controller continues from the data plane's plan.
REAPPLY_TRIES = 50
# Slack past the solver's time limit (plus greedy deadline) before a solve counts as late,
# as a fraction of the short epoch.
DEADLINE_SLACK = 0.1
# How long the loop waits for a greedy fallback plan, in greedy deadlines (at least the slack).
GREEDY_WAIT_FACTOR = 4

PlannerFactory = Callable[[Config, str], Planner]


def make_planner(config: Config, solver: str) -> Planner:
    s = config.solver
    return Planner(
        config.params,
        config.core_count,
        config.shards,
        solver=solver,
        long_time_limit_s=s.long_time_limit_s,
        short_time_limit_s=s.short_time_limit_s,
        greedy_deadline_s=s.greedy_deadline_s,
        scale_down_hysteresis=config.epochs.scale_down_hysteresis,
    )


def fits(plan: Plan, loads: list[float], params: Params) -> bool:
    """Does `plan` keep every core under its load cap with these loads?"""
    work, offl = core_loads(plan, loads, params)
    return all(x <= params.rho_max_working + FIT_SLACK for x in work) and all(
        x <= params.rho_max_offloading + FIT_SLACK for x in offl
    )


def fallback_reason(text: str) -> str:
    """A metric label for the planner's free-text fallback reason."""
    t = text.lower()
    if "time limit" in t or "timeout" in t or "time_limit" in t or "deadline" in t:
        return "timeout"
    if "unavailable" in t or "licen" in t:
        return "unavailable"
    return "backend_error"


class SolverThread:
    """One daemon thread running solves in order; a wedged solve cannot block exit."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._jobs: deque[tuple[Future[Any], Callable[[], Any]]] = deque()
        self.busy_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="solver", daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        fut: Future[Any] = Future()
        with self._cv:
            self._jobs.append((fut, fn))
            self._cv.notify()
        return fut

    @property
    def busy(self) -> bool:
        with self._cv:
            return self.busy_since is not None or bool(self._jobs)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._jobs and not self._closed:
                    self._cv.wait()
                if self._closed and not self._jobs:
                    return
                fut, fn = self._jobs.popleft()
                self.busy_since = time.monotonic()
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as e:  # handed to the loop, which falls back
                    fut.set_exception(e)
            with self._cv:
                self.busy_since = None

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()


@dataclass
class Pending:
    """A solve handed to the solver thread."""

    mode: str
    future: Future[PlanResult]
    base: Plan  # the plan it starts from; stale once another plan is applied
    deadline: float  # monotonic
    reading: Reading
    loads: list[float]
    read_done: float  # perf_counter at the end of the stats read it plans on


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
        self.config = config
        self.dataplane = dataplane
        self.metrics = metrics
        self.decisions = decisions
        self.notifier = notifier or Notifier({})
        self.planner_factory = planner_factory
        self.clock = clock
        self.validator = SnapshotValidator(config.shards, config.core_count)
        self.planner = planner_factory(config, config.solver.backend)
        self.greedy = planner_factory(config, "greedy")
        self.solver = SolverThread()
        self.fallback_solver = SolverThread()
        self.pending: Pending | None = None
        self.greedy_pending: Pending | None = None
        self._epoch_end = 0.0
        self.current: Plan | None = None
        self.plan_id = 0
        self.loop_epoch = 0
        self.ready = False
        self.connected = False
        self.state = "starting"
        self.last_reading: Reading | None = None
        self.last_loads: list[float] = []
        self.last_solve: dict[str, Any] = {}
        self.counts: dict[str, int] = {
            "fallbacks": 0,
            "rejected": 0,
            "missed": 0,
            "migrations": 0,
            "applied": 0,
            "reconnects": 0,
        }
        # End of stats read -> plan applied, seconds (the benchmark reads these).
        self.latencies: deque[float] = deque(maxlen=100_000)
        # The same, only for epochs that sent a plan to the data plane.
        self.apply_latencies: deque[float] = deque(maxlen=100_000)
        # ...minus the solve itself: the loop's own share (read to submit, collect, apply, log).
        self.apply_overheads: deque[float] = deque(maxlen=100_000)
        # Time of the data plane's apply call alone (resume cores + apply_plan).
        self.apply_rpc: deque[float] = deque(maxlen=100_000)
        # CPU time of the loop thread (the solver threads not included).
        self.loop_cpu_s = 0.0
        self._retry_at_tick = 0
        self._failures = 0
        self._last_error = ""
        self._reload: Config | None = None
        self._force_long = False
        self._next_long = self.ratio
        self._reject_reason = ""
        self._reject_streak = 0
        self._reapply_plan: Plan | None = None
        self._reapply_tries = 0
        self._infeasible_logged = False
        self._reload_lock = threading.Lock()
        self._status: dict[str, Any] = {}
        self._last_status_line = ""
        self._last_status_at = -1e18
        self.on_ready: Callable[[], None] | None = None
        self._warm: Planner | None = None  # the planner whose backend is warmed up
        # Data-plane drops by reason since this controller started (the status document's).
        self.drops_total: dict[str, int] = {}

    # -- scheduling ------------------------------------------------------------------------

    @property
    def short_s(self) -> float:
        return self.config.epochs.short_ms / 1000.0

    @property
    def ratio(self) -> int:
        return self.config.epochs.long_ms // self.config.epochs.short_ms

    def run(self, stop: threading.Event, max_ticks: int | None = None) -> None:
        """Tick every short epoch until `stop` is set (or max_ticks ticks ran)."""
        self.warm_up()
        next_tick = self.clock()
        ticks = 0
        while not stop.is_set():
            self._take_reload()
            self.tick(next_tick)
            ticks += 1
            if max_ticks is not None and ticks >= max_ticks:
                break
            next_tick += self.short_s
            now = self.clock()
            late = now - next_tick
            if late > LATE_TOLERANCE * self.short_s:
                skipped = math.ceil(late / self.short_s - LATE_TOLERANCE)
                next_tick += skipped * self.short_s
                self.loop_epoch += skipped
                self.counts["missed"] += skipped
                self.metrics.epochs_missed.inc(skipped)
                log.warning("loop ran late: %d epoch(s) skipped", skipped)
            stop.wait(max(0.0, next_tick - self.clock()))
        self.state = "stopped"

    def tick(self, started: float | None = None) -> None:
        """One short epoch: (re)connect if needed, read, plan, apply, report."""
        self.warm_up()
        started = self.clock() if started is None else started
        cpu0 = time.thread_time()
        self.loop_epoch += 1
        # A short epoch whose cores could not hold the load asks for the long model now:
        # scaling up cannot wait for the next long epoch (scaling down still has hysteresis).
        # A long epoch skipped by a late loop runs at the next tick instead.
        is_long = self.loop_epoch >= self._next_long or self._force_long
        self._force_long = False
        if is_long:
            self._next_long = (self.loop_epoch // self.ratio + 1) * self.ratio
        self.metrics.epochs.labels(kind="long" if is_long else "short").inc()
        epoch_end = started + self.short_s
        self._epoch_end = epoch_end
        try:
            if not self.connected and not self._connect():
                return
            reading = self._read()
            if reading is None:
                return
            self._plan(reading, is_long, epoch_end)
        finally:
            self._report()
            self.loop_cpu_s += time.thread_time() - cpu0

    def warm_up(self) -> None:
        """Pay the solver backend's first-use costs before an epoch starts (once per planner).

        Otherwise the first solve of the process pays them inside its epoch and comes back late.
        """
        if self._warm is self.planner:
            return
        try:
            secs = self.planner.warm_up()
        except Exception as e:  # a broken backend shows up (and falls back) at its first solve
            log.warning("solver warm-up failed: %s", e)
        else:
            log.info("solver %s warmed up in %.1f ms", self.planner.backend, secs * 1e3)
        self._warm = self.planner

    # -- connection ------------------------------------------------------------------------

    def _connect(self) -> bool:
        if self.loop_epoch < self._retry_at_tick:
            return False
        try:
            self.dataplane.connect()
        except DataplaneError as e:
            self._failures += 1
            self._retry_at_tick = self.loop_epoch + min(self._failures, RECONNECT_MAX_TICKS)
            text = str(e)
            self.state = (
                "pipeline absent" if isinstance(e, PipelineAbsent) else "waiting for data plane"
            )
            self.dataplane.health.reason = text
            # The first failure and every change are logged; repeats every 100 tries.
            if text != self._last_error or self._failures % 100 == 1:
                log.warning("data plane: %s (retrying)", text)
            self._last_error = text
            self.metrics.dataplane_errors.labels(
                kind="absent" if isinstance(e, PipelineAbsent) else "connect"
            ).inc()
            return False
        try:
            self.dataplane.set_window(self.short_s)
        except DataplaneError as e:
            self._lost(e, "set_params")
            return False
        self.connected = True
        self._failures = 0
        self._last_error = ""
        self.validator.reset()
        self.counts["reconnects"] += 1
        self.metrics.reconnects.inc()
        self.metrics.connected.set(1)
        self.state = "running"
        log.info("data plane connected: %s", self.dataplane.describe())
        return True

    def _lost(self, e: Exception, what: str) -> None:
        self.connected = False
        self.dataplane.close()
        self.metrics.connected.set(0)
        self.metrics.dataplane_errors.labels(kind=what).inc()
        self.state = "waiting for data plane"
        self._failures = 0
        self._retry_at_tick = self.loop_epoch + 1
        self._last_error = str(e)
        self.dataplane.health.reason = str(e)
        log.error("data plane lost during %s: %s", what, e)
        if self.pending is not None:
            self.pending = None  # planned on a session that is gone
        self.greedy_pending = None

    # -- measurement -----------------------------------------------------------------------

    def _read(self) -> Reading | None:
        try:
            reading = self.dataplane.read()
        except SnapshotRejected as e:
            self._rejected(e)
            self._became_ready()
            return None
        except DataplaneError as e:
            self._lost(e, "read")
            return None
        try:
            self.validator.check(reading)
        except SnapshotRejected as e:
            self._rejected(e)
            self._became_ready()
            return None
        self.last_reading = reading
        self._reject_streak = 0
        snap = reading.snapshot
        self.last_loads = snap.loads()
        self.metrics.observe_dataplane(snap.drops, reading.packets_in, reading.packets_out)
        for reason, n in snap.drops.items():
            self.drops_total[reason] = self.drops_total.get(reason, 0) + n
        if self.current is None:
            self._adopt(reading)
        elif reading.fresh or self._reapply_plan is not None:
            self._reapply(reading)
        self._became_ready()
        try:
            self.dataplane.idle(reading)
        except DataplaneError as e:
            self._lost(e, "idle")
            return None
        if self.current is not None:
            self.metrics.observe_loads(
                self.last_loads, self.current, self.config.params, self.config.core_count
            )
        return reading

    def _rejected(self, e: SnapshotRejected) -> None:
        self.counts["rejected"] += 1
        self.metrics.rejected.labels(reason=e.reason).inc()
        # Every rejection is counted; the log gets each new reason and then one in 100 repeats.
        self._reject_streak = self._reject_streak + 1 if e.reason == self._reject_reason else 1
        self._reject_reason = e.reason
        if self._reject_streak % 100 == 1:
            more = f" ({self._reject_streak} in a row)" if self._reject_streak > 1 else ""
            log.warning(
                "snapshot rejected, not planned on (epoch %d)%s: %s", self.loop_epoch, more, e
            )

    def _became_ready(self) -> None:
        if self.ready:
            return
        self.ready = True
        self.notifier.ready(self._status_line())
        log.info("first stats read: ready")
        if self.on_ready is not None:
            self.on_ready()

    def _adopt(self, reading: Reading) -> None:
        plan = reading.snapshot.current
        if plan is None:
            plan = Plan.initial(self.config.shards)
            log.info("data plane reports no plan: starting from W=1 E=0")
            self._send(plan, reading, kind="initial", result=None, read_done=None)
            return
        self.current = plan
        self.plan_id = reading.plan_id
        log.info(
            "adopted the data plane's plan %d: W=%d E=%d (not reset)",
            reading.plan_id,
            plan.working,
            plan.offloading,
        )

    def _reapply(self, reading: Reading) -> None:
        """After a reconnect, put our plan back; retried while the pipeline is being rebuilt."""
        theirs = reading.snapshot.current
        assert self.current is not None
        if reading.fresh:
            # A reconnect in the middle of re-applying keeps the plan we were putting back.
            self._reapply_plan, self._reapply_tries = self._reapply_plan or self.current, 0
        ours = self._reapply_plan
        assert ours is not None
        if same_plan(theirs, ours):
            if self._reapply_tries == 0:
                log.info("reconnected: the data plane still runs plan %d", reading.plan_id)
            self._reapply_plan = None
            self.current = ours
            return
        if self._reapply_tries == 0:
            log.warning(
                "reconnected: the data plane runs W=%s E=%s, not ours (W=%d E=%d): re-applying",
                getattr(theirs, "working", "-"),
                getattr(theirs, "offloading", "-"),
                ours.working,
                ours.offloading,
            )
        self.current = theirs if theirs is not None else Plan.initial(self.config.shards)
        self._reapply_tries += 1
        if self._send(ours, reading, kind="reapply", result=None, read_done=None):
            self._reapply_plan = None
        elif self._reapply_tries >= REAPPLY_TRIES:
            log.error(
                "re-applying our plan failed %d times: continuing from the data plane's plan",
                self._reapply_tries,
            )
            self._reapply_plan = None

    # -- planning --------------------------------------------------------------------------

    def _plan(self, reading: Reading, is_long: bool, epoch_end: float) -> None:
        read_done = time.perf_counter()
        loads = self.last_loads
        assert self.current is not None
        if self._reapply_plan is not None:
            return  # our plan goes back first (next tick); no planning on a half-built pipeline
        if reading.migrating and self.pending is None:
            # The last plan is still being carried out (shards moving, rings handing over): a
            # new plan would be refused (EBUSY). Measure only; plan on the next epoch.
            self.metrics.epochs_migrating.inc()
            return
        if self.pending is not None and not self._collect(
            reading, loads, read_done, wait_until=epoch_end
        ):
            return  # still solving: this epoch measured, the guard ran
        if self.solver.busy:
            # A late solve is still running (its result will be dropped): no new solve now.
            self._guard(loads, reading, read_done, reason="solver_busy")
            return
        mode = "long" if is_long else "short"
        planner, base = self.planner, self.current
        fn = (
            (lambda: planner.long(loads, base)) if is_long else (lambda: planner.short(loads, base))
        )
        # The epoch's deadline: the solver's own time limit plus the greedy deadline and a
        # little slack, never past the end of the epoch the plan is for.
        s = self.config.solver
        limit = s.long_time_limit_s if is_long else s.short_time_limit_s
        slack = DEADLINE_SLACK * self.short_s
        # An epoch whose connect or read overran it (the first after a (re)connect) still gives
        # the solve its time: the result is collected next tick, the guard covers this one.
        epoch_limit = max(epoch_end, self.clock() + self.short_s)
        if is_long:
            epoch_limit += (self.config.epochs.long_ms - self.config.epochs.short_ms) / 1000.0
        deadline = min(epoch_limit, self.clock() + limit + s.greedy_deadline_s + slack)
        self.pending = Pending(
            mode, self.solver.submit(fn), base, deadline, reading, loads, read_done
        )
        self._collect(reading, loads, read_done, wait_until=epoch_end)

    def _collect(
        self, reading: Reading, loads: list[float], read_done: float, wait_until: float
    ) -> bool:
        """Wait for the pending solve until `wait_until`; True when it is settled."""
        p = self.pending
        assert p is not None
        margin = min(0.002, self.short_s / 10)
        timeout = max(0.0, min(wait_until, p.deadline) - self.clock() - margin)
        try:
            result = p.future.result(timeout=timeout)
        except FutureTimeout:
            if self.clock() < p.deadline - margin:
                # A long solve may take several short epochs; until then keep the cap.
                self._guard(loads, reading, read_done, reason=None)
                return False
            self.pending = None
            self._fallback(
                f"{p.mode} solve late (deadline passed)", "late", loads, reading, read_done
            )
            return True
        except Exception as e:
            self.pending = None
            log.debug("planner failed on the %s model", p.mode, exc_info=e)
            self._fallback(f"{p.mode} solve failed: {e}", "solver_error", loads, reading, read_done)
            return True
        self.pending = None
        if not same_plan(p.base, self.current):
            self._fallback(
                "solve result stale (plan changed meanwhile)", "stale", loads, reading, read_done
            )
            return True
        self._solved(p, result, loads, reading)
        return True

    def _solved(self, p: Pending, result: PlanResult, loads: list[float], reading: Reading) -> None:
        backend = result.solver
        self.metrics.solve.labels(backend=backend, mode=p.mode).observe(result.solve_ms / 1000.0)
        self.metrics.last_solve.labels(mode=p.mode).set(result.solve_ms / 1000.0)
        self.metrics.infeasible.set(0 if result.feasible else 1)
        self.last_solve = {
            "mode": p.mode,
            "backend": backend,
            "solve_ms": round(result.solve_ms, 3),
            "fallback": result.fallback,
            "feasible": result.feasible,
            "optimal": result.optimal,
            "loop_epoch": self.loop_epoch,
        }
        if not result.feasible:
            if p.mode == "short" and p.base.working + p.base.offloading < self.config.core_count:
                self._force_long = True
            elif not self._infeasible_logged:
                log.warning(
                    "no plan meets the SLOs on all %d cores: best balance (%s)",
                    self.config.core_count,
                    result.message,
                )
                self._infeasible_logged = True
        elif p.mode == "long":
            self._infeasible_logged = False
        if result.fallback:
            self._count_fallback(fallback_reason(result.fallback), result.fallback)
        problem = plan_problem(result.plan, self.config.shards, self.config.core_count)
        if problem is not None:
            self._fallback(
                f"planner returned an invalid plan: {problem}",
                "invalid_plan",
                loads,
                reading,
                p.read_done,
            )
            return
        # The decision is logged with the snapshot it was computed from.
        self._send(result.plan, p.reading, kind=p.mode, result=result, read_done=p.read_done)

    def _count_fallback(self, reason: str, text: str) -> None:
        self.counts["fallbacks"] += 1
        self.metrics.fallbacks.labels(reason=reason).inc()
        log.warning("fallback (%s): %s", reason, text)

    def _guard(
        self, loads: list[float], reading: Reading, read_done: float, reason: str | None
    ) -> None:
        """No solve result this epoch: act only if the current plan breaks the cap."""
        assert self.current is not None
        if fits(self.current, loads, self.config.params):
            return
        self._fallback(
            "current plan over the capacity cap while a solve is pending",
            reason or "over_cap_pending",
            loads,
            reading,
            read_done,
        )

    def _fallback(
        self, text: str, reason: str, loads: list[float], reading: Reading, read_done: float
    ) -> None:
        """Keep the current plan if it fits the cap, else apply the greedy plan.

        The greedy planner runs on its own thread too: the loop waits for it only briefly (a
        planner bug must not stop the measurements). A greedy plan that comes late is applied at
        a later tick if the plan it started from is still in force and still over the cap.
        """
        assert self.current is not None
        self._count_fallback(reason, text)
        if fits(self.current, loads, self.config.params):
            return
        g = self.greedy_pending
        if g is not None:
            if not g.future.done():
                return  # still computing; the current plan stays meanwhile
            self.greedy_pending = None
            if same_plan(g.base, self.current):
                self._greedy_result(g, reason)
                return
        base, greedy, params = self.current, self.greedy, self.config.params

        def solve() -> PlanResult:
            result = greedy.short(loads, base)
            if not result.feasible or not fits(result.plan, loads, params):
                result = greedy.long(loads, base)
            return result

        pending = Pending(
            "fallback", self.fallback_solver.submit(solve), base, 0.0, reading, loads, read_done
        )
        wait = max(
            GREEDY_WAIT_FACTOR * self.config.solver.greedy_deadline_s, DEADLINE_SLACK * self.short_s
        )
        wait = min(wait, max(0.0, self._epoch_end - self.clock()))
        try:
            pending.future.result(timeout=wait)
        except FutureTimeout:
            self.greedy_pending = pending
            self.metrics.fallbacks.labels(reason="greedy_late").inc()
            log.warning(
                "greedy plan not ready after %.1f ms: the current plan stays for now", wait * 1e3
            )
            return
        except Exception:
            pass  # reported by _greedy_result
        self._greedy_result(pending, reason)

    def _greedy_result(self, g: Pending, reason: str) -> None:
        try:
            result = g.future.result(timeout=0)
        except Exception as e:
            log.error("greedy planner failed (%s): the current plan stays", e)
            return
        self.metrics.solve.labels(backend="greedy", mode="fallback").observe(
            result.solve_ms / 1000.0
        )
        self.last_solve = {
            "mode": "fallback",
            "backend": "greedy",
            "solve_ms": round(result.solve_ms, 3),
            "fallback": reason,
            "feasible": result.feasible,
            "optimal": False,
            "loop_epoch": self.loop_epoch,
        }
        self.metrics.infeasible.set(0 if result.feasible else 1)
        problem = plan_problem(result.plan, self.config.shards, self.config.core_count)
        if problem is not None:
            log.error("greedy plan invalid (%s): the current plan stays", problem)
            return
        self._send(
            result.plan,
            g.reading,
            kind="fallback",
            result=result,
            read_done=g.read_done,
            fallback=reason,
        )

    # -- applying --------------------------------------------------------------------------

    def _send(
        self,
        plan: Plan,
        reading: Reading,
        *,
        kind: str,
        result: PlanResult | None,
        read_done: float | None,
        fallback: str | None = None,
    ) -> bool:
        """Apply `plan` (one command, whole or not at all); True when the data plane runs it."""
        old = self.current
        if same_plan(plan, old):
            if read_done is not None:
                self.latencies.append(time.perf_counter() - read_done)
            return True
        problem = plan_problem(plan, self.config.shards, self.config.core_count)
        if problem is not None:
            self.metrics.plans_refused.labels(reason="invalid").inc()
            log.error("not applying an invalid plan (%s)", problem)
            return False
        t_apply = time.perf_counter()
        try:
            applied = self.dataplane.apply(plan)
            self.apply_rpc.append(time.perf_counter() - t_apply)
        except PlanDeferred as e:
            # Busy with the previous plan's migrations: the next epoch plans again.
            self.metrics.plans_refused.labels(reason="busy").inc()
            log.info("the data plane is busy, %s plan not applied this epoch: %s", kind, e)
            return False
        except PlanRejected as e:
            self.metrics.plans_refused.labels(reason="rejected").inc()
            log.error("the data plane refused the %s plan: %s", kind, e)
            return False
        except DataplaneError as e:
            self._lost(e, "apply")
            return False
        if read_done is not None:
            latency = time.perf_counter() - read_done
            self.latencies.append(latency)
            self.apply_latencies.append(latency)
            if result is not None:
                self.apply_overheads.append(max(0.0, latency - result.solve_ms / 1000.0))
            self.metrics.decision_latency.observe(latency)
        base = old or Plan.initial(self.config.shards)
        offload_changes = sum(
            1 for a, b in zip(plan.offload, base.offload, strict=False) if abs(a - b) > 1e-12
        )
        self.current = plan
        self.plan_id = applied.plan_id
        self.counts["applied"] += 1
        self.counts["migrations"] += applied.migrations
        self.metrics.plans_applied.labels(kind=kind).inc()
        self.metrics.migrations.inc(applied.migrations)
        self.metrics.offload_changes.inc(offload_changes)
        self.metrics.observe_loads(
            self.last_loads or [0.0] * self.config.shards,
            plan,
            self.config.params,
            self.config.core_count,
        )
        if old is None or (old.working, old.offloading) != (plan.working, plan.offloading):
            log.info(
                "plan %d (%s): W=%d E=%d, %d migrations",
                applied.plan_id,
                kind,
                plan.working,
                plan.offloading,
                applied.migrations,
            )
        if self.decisions is not None:
            self.decisions.write(
                Decision(
                    epoch=reading.snapshot.epoch,
                    loop_epoch=self.loop_epoch,
                    kind=kind,
                    snapshot_digest=snapshot_digest(reading.snapshot),
                    plan=plan,
                    plan_id=applied.plan_id,
                    backend=result.solver if result is not None else "none",
                    solve_ms=result.solve_ms if result is not None else None,
                    fallback=fallback or (result.fallback if result is not None else None),
                    migrations=applied.migrations,
                    feasible=result.feasible if result is not None else True,
                )
            )
        return True

    # -- health, status, reload ------------------------------------------------------------

    def healthy(self) -> bool:
        """False when a solve has been stuck so long that a restart is the better cure."""
        limit = WEDGED_LONG_EPOCHS * self.config.epochs.long_ms / 1000.0
        now = time.monotonic()
        for thread in (self.solver, self.fallback_solver):
            since = thread.busy_since
            if since is not None and now - since >= limit:
                return False
        return True

    def _status_line(self) -> str:
        if not self.connected or self.current is None:
            return f"{self.state}: {self.dataplane.health.reason}"
        p = self.current
        line = (
            f"W={p.working} E={p.offloading} ({p.working + p.offloading}/"
            f"{self.config.core_count} cores), plan {self.plan_id}"
        )
        if self.last_solve:
            line += (
                f", last solve {self.last_solve['solve_ms']:.1f} ms "
                f"{self.last_solve['mode']}/{self.last_solve['backend']}"
            )
        return line

    def _report(self) -> None:
        if self.healthy():
            self.notifier.watchdog()
        elif self.loop_epoch % self.ratio == 0:
            log.error(
                "a solve has run for over %d long epochs: watchdog pings stopped",
                WEDGED_LONG_EPOCHS,
            )
        line = self._status_line()
        now = self.clock()
        # STATUS= at most once a second: systemd keeps only the latest anyway.
        if line != self._last_status_line and now - self._last_status_at >= 1.0:
            self.notifier.status(line)
            self._last_status_line = line
            self._last_status_at = now
        self._status = self._build_status(line)

    def _build_status(self, line: str) -> dict[str, Any]:
        p = self.current
        params = self.config.params
        cores: list[dict[str, Any]] = []
        if p is not None and self.last_loads:
            work, offl = core_loads(p, self.last_loads, params)
            core_list = self.config.cores.list
            m = len(core_list)
            for role, loads, k, t, slo, cap, cpu_of in (
                (
                    "working",
                    work,
                    params.k_priority,
                    params.t_working_us,
                    params.slo_priority_us,
                    params.rho_max_working,
                    lambda i: core_list[i],
                ),
                (
                    "offloading",
                    offl,
                    params.k_regular,
                    params.t_offloading_us,
                    params.slo_regular_us,
                    params.rho_max_offloading,
                    lambda j: core_list[m - 1 - j],
                ),
            ):
                for i, rho in enumerate(loads):
                    delay = Params.kingman_delay_us(rho, k, t)
                    cores.append(
                        {
                            "role": role,
                            "slot": i,
                            "cpu": cpu_of(i),
                            "load": round(rho, 4),
                            "cap": round(cap, 4),
                            "delay_us": round(delay, 3) if math.isfinite(delay) else None,
                            "slo_us": slo,
                            "shards": sum(1 for a in p.assignment if a == i)
                            if role == "working"
                            else None,
                        }
                    )
        reading = self.last_reading
        return {
            "state": self.state,
            "status": line,
            "ready": self.ready,
            "healthy": self.healthy(),
            "dataplane": {
                "kind": self.dataplane.kind,
                "describe": self.dataplane.describe(),
                "connected": self.connected,
                "reason": self.dataplane.health.reason,
            },
            "loop_epoch": self.loop_epoch,
            "dataplane_epoch": reading.snapshot.epoch if reading else None,
            "epochs": {
                "short_ms": self.config.epochs.short_ms,
                "long_ms": self.config.epochs.long_ms,
            },
            "cores_total": self.config.core_count,
            "plan": p.to_json() if p is not None else None,
            "plan_id": self.plan_id,
            "migrating": reading.migrating if reading else None,
            "total_load": round(sum(self.last_loads), 4) if self.last_loads else 0.0,
            "cores": cores,
            "last_solve": dict(self.last_solve),
            "counts": dict(self.counts),
            "drops": dict(reading.snapshot.drops) if reading else {},
            "drops_total": dict(self.drops_total),
            "solver_backend": self.config.solver.backend,
        }

    def status(self) -> dict[str, Any]:
        """The last status document (built by the loop thread; safe to read from any thread)."""
        return self._status

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
        from dyssect_ctrl.config import changed_keys

        old = self.config
        changed = changed_keys(old, new)
        live_prefixes = ("model.", "solver.", "epochs.", "decision_log.", "log_level")
        live = {k for k in changed if k.startswith(live_prefixes)}
        later = changed - live
        for key in sorted(later):
            log.warning("config %s changed: takes effect after a restart (old value kept)", key)
        merged = replace(
            old,
            params=new.params,
            solver=new.solver,
            epochs=new.epochs,
            decision_log=new.decision_log,
            log_level=new.log_level,
        )
        self.config = merged
        if any(k.startswith(("model.", "solver.", "epochs.scale_down")) for k in live):
            self.planner = self.planner_factory(merged, merged.solver.backend)
            self.greedy = self.planner_factory(merged, "greedy")
            self.pending = None
            self.greedy_pending = None
            self.warm_up()
        if self.decisions is not None and any(k.startswith("decision_log.") for k in live):
            self.decisions.configure(merged.decision_log.max_bytes, merged.decision_log.backups)
        if "epochs.short_ms" in live and self.connected:
            try:
                self.dataplane.set_window(self.short_s)
            except DataplaneError as e:
                self._lost(e, "set_params")
        if "log_level" in live:
            logging.getLogger().setLevel(merged.log_level.upper())
        log.info("config reloaded: %s", ", ".join(sorted(live)) or "no live changes")
        return live

    def close(self) -> None:
        """Stop solving; nothing is sent to the data plane (it keeps the last applied plan)."""
        self.pending = None
        self.greedy_pending = None
        self.solver.close()
        self.fallback_solver.close()
