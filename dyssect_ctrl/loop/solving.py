"""Solves against the epoch's deadline: submit the epoch's model, collect the result in time, and
hand anything late, failed, stale or invalid to the fallback.

The loop waits for a short solve until the end of its own epoch and for a long solve until the
next long epoch, measuring meanwhile (the guard keeps the cap on the epochs in between).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout

from dyssect_ctrl import service_time
from dyssect_ctrl.config import Config
from dyssect_ctrl.dataplane.base import Reading, plan_problem, same_plan
from dyssect_ctrl.loop.applying import Applier
from dyssect_ctrl.loop.fallback import DEADLINE_SLACK, Fallback
from dyssect_ctrl.loop.solver_thread import Pending, SolverThread
from dyssect_ctrl.loop.state import LoopState
from dyssect_ctrl.loop.status import WEDGED_LONG_EPOCHS
from dyssect_ctrl.model import PlanResult
from dyssect_ctrl.planner import Planner
from dyssect_ctrl.policy import Policy, make_policy

log = logging.getLogger("dyssect_ctrl.loop")

PlannerFactory = Callable[[Config, str], Policy]


def make_planner(config: Config, solver: str) -> Policy:
    """The planner of the config's policy (docs/policies.md); `dyssect` is the Planner."""
    return make_policy(config, solver)


def fallback_reason(text: str) -> str:
    """A metric label for the planner's free-text fallback reason."""
    t = text.lower()
    if "time limit" in t or "timeout" in t or "time_limit" in t or "deadline" in t:
        return "timeout"
    if "unavailable" in t or "licen" in t:
        return "unavailable"
    return "backend_error"


class Solving:
    def __init__(self, st: LoopState, planner_factory: PlannerFactory, applier: Applier) -> None:
        self.st = st
        self.planner_factory = planner_factory
        self.applier = applier
        # The planners see the service times in force (loop/state.py) as of their building.
        self.built = dataclasses.replace(st.config, params=st.params)
        self.planner = planner_factory(self.built, st.config.solver.backend)
        self.fallback = Fallback(st, applier, planner_factory(self.built, "greedy"))
        self.solver = SolverThread()
        self.pending: Pending | None = None
        # A short solve found no plan on the cores it had: the long model runs at the next tick.
        self.force_long = False
        self._infeasible_logged = False
        self._warm: Policy | None = None  # the planner whose backend is warmed up
        self._followed_at = -(1 << 30)  # loop epoch of the last rebuild for a service time

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

    def replan(self, config: Config) -> None:
        """New planners for a reloaded model or solver; solves under way are dropped."""
        self.built = dataclasses.replace(config, params=self.st.params)
        self.planner = self.planner_factory(self.built, config.solver.backend)
        self.fallback.greedy = self.planner_factory(self.built, "greedy")
        self.drop_pending()
        self.warm_up()

    def follow_service_time(self) -> None:
        """New planners when a service time in force moved by more than REPLAN_CHANGE since
        they were built (a measurement that settles, an override set or removed): at most once
        per long epoch and never while a solve is under way, so a noisy measurement cannot keep
        dropping solves. The epoch's loads use the value in force at once either way."""
        st = self.st
        if self.pending is not None or self.solver.busy:
            return
        if st.loop_epoch - self._followed_at < st.ratio:
            return
        params = st.params
        if service_time.moved(self.built.params, params):
            self._followed_at = st.loop_epoch
            log.info(
                "service time in force now %.3f us working, %.3f us offloading: new planners",
                params.working_us,
                params.offloading_us,
            )
            earlier = self.planner
            self.replan(self.st.config)
            if isinstance(self.planner, Planner):
                self.planner.carry_over(earlier)

    def drop_pending(self) -> None:
        self.pending = None
        self.fallback.pending = None

    def healthy(self) -> bool:
        """False when a solve has been stuck so long that a restart is the better cure."""
        limit = WEDGED_LONG_EPOCHS * self.st.config.epochs.long_ms / 1000.0
        now = time.monotonic()
        for thread in (self.solver, self.fallback.solver):
            since = thread.busy_since
            if since is not None and now - since >= limit:
                return False
        return True

    def close(self) -> None:
        self.drop_pending()
        self.solver.close()
        self.fallback.solver.close()

    def plan(self, reading: Reading, is_long: bool, epoch_end: float) -> None:
        st = self.st
        read_done = time.perf_counter()
        loads = st.last_loads
        assert st.current is not None
        if self.applier.reapply_plan is not None:
            return  # our plan goes back first (next tick); no planning on a half-built pipeline
        if reading.migrating and self.pending is None:
            # The last plan is still being carried out (shards moving, rings handing over): a
            # new plan would be refused (EBUSY). Measure only; plan on the next epoch.
            st.metrics.epochs_migrating.inc()
            return
        if self.pending is not None and not self._collect(
            reading, loads, read_done, wait_until=epoch_end
        ):
            return  # still solving: this epoch measured, the guard ran
        if self.solver.busy:
            # A late solve is still running (its result will be dropped): no new solve now.
            self.fallback.guard(loads, reading, read_done, reason="solver_busy")
            return
        mode = "long" if is_long else "short"
        planner, base = self.planner, st.current
        fn = (
            (lambda: planner.long(loads, base)) if is_long else (lambda: planner.short(loads, base))
        )
        # The epoch's deadline: the solver's own time limit plus the greedy deadline and a
        # little slack, never past the end of the epoch the plan is for.
        s = st.config.solver
        limit = s.long_time_limit_s if is_long else s.short_time_limit_s
        slack = DEADLINE_SLACK * st.short_s
        # An epoch whose connect or read overran it (the first after a (re)connect) still gives
        # the solve its time: the result is collected next tick, the guard covers this one.
        epoch_limit = max(epoch_end, st.clock() + st.short_s)
        if is_long:
            epoch_limit += (st.config.epochs.long_ms - st.config.epochs.short_ms) / 1000.0
        deadline = min(epoch_limit, st.clock() + limit + s.greedy_deadline_s + slack)
        self.pending = Pending(
            mode, self.solver.submit(fn), base, deadline, reading, loads, read_done
        )
        self._collect(reading, loads, read_done, wait_until=epoch_end)

    def _collect(
        self, reading: Reading, loads: list[float], read_done: float, wait_until: float
    ) -> bool:
        """Wait for the pending solve until `wait_until`; True when it is settled."""
        st = self.st
        p = self.pending
        assert p is not None
        margin = min(0.002, st.short_s / 10)
        timeout = max(0.0, min(wait_until, p.deadline) - st.clock() - margin)
        try:
            result = p.future.result(timeout=timeout)
        except FutureTimeout:
            if st.clock() < p.deadline - margin:
                # A long solve may take several short epochs; until then keep the cap.
                self.fallback.guard(loads, reading, read_done, reason=None)
                return False
            self.pending = None
            self.fallback.fall_back(
                f"{p.mode} solve late (deadline passed)", "late", loads, reading, read_done
            )
            return True
        except Exception as e:
            self.pending = None
            log.debug("planner failed on the %s model", p.mode, exc_info=e)
            self.fallback.fall_back(
                f"{p.mode} solve failed: {e}", "solver_error", loads, reading, read_done
            )
            return True
        self.pending = None
        if not same_plan(p.base, st.current):
            self.fallback.fall_back(
                "solve result stale (plan changed meanwhile)", "stale", loads, reading, read_done
            )
            return True
        self._solved(p, result, loads, reading)
        return True

    def _solved(self, p: Pending, result: PlanResult, loads: list[float], reading: Reading) -> None:
        st = self.st
        backend = result.solver
        st.metrics.solve.labels(backend=backend, mode=p.mode).observe(result.solve_ms / 1000.0)
        st.metrics.last_solve.labels(mode=p.mode).set(result.solve_ms / 1000.0)
        st.metrics.infeasible.set(0 if result.feasible else 1)
        st.last_solve = {
            "mode": p.mode,
            "backend": backend,
            "solve_ms": round(result.solve_ms, 3),
            "fallback": result.fallback,
            "feasible": result.feasible,
            "optimal": result.optimal,
            "loop_epoch": st.loop_epoch,
        }
        if not result.feasible:
            if p.mode == "short" and p.base.working + p.base.offloading < st.config.core_count:
                self.force_long = True
            elif not self._infeasible_logged:
                log.warning(
                    "no plan meets the SLOs on all %d cores: best balance (%s)",
                    st.config.core_count,
                    result.message,
                )
                self._infeasible_logged = True
        elif p.mode == "long":
            self._infeasible_logged = False
        if result.fallback:
            self.fallback.count(fallback_reason(result.fallback), result.fallback)
        problem = plan_problem(result.plan, st.config.shards, st.config.core_count)
        if problem is not None:
            self.fallback.fall_back(
                f"planner returned an invalid plan: {problem}",
                "invalid_plan",
                loads,
                reading,
                p.read_done,
            )
            return
        # The decision is logged with the snapshot it was computed from.
        self.applier.send(result.plan, p.reading, kind=p.mode, result=result, read_done=p.read_done)
