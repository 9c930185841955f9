"""When no solve result is usable: keep the current plan if it fits the cap, else the greedy plan.

The greedy planner runs on its own thread too: the loop waits for it only briefly (a planner bug
must not stop the measurements). A greedy plan that comes late is applied at a later tick if the
plan it started from is still in force and still over the cap. Every fallback is counted by
reason.
"""

from __future__ import annotations

import logging
from concurrent.futures import TimeoutError as FutureTimeout

from dyssect_ctrl.dataplane.base import Reading, plan_problem, same_plan
from dyssect_ctrl.loop.applying import Applier
from dyssect_ctrl.loop.solver_thread import Pending, SolverThread
from dyssect_ctrl.loop.state import LoopState
from dyssect_ctrl.model import Params, Plan, PlanResult, core_loads
from dyssect_ctrl.policy import Policy

log = logging.getLogger("dyssect_ctrl.loop")

FIT_SLACK = 1e-9
# Slack past the solver's time limit (plus greedy deadline) before a solve counts as late,
# as a fraction of the short epoch.
DEADLINE_SLACK = 0.1
# How long the loop waits for a greedy fallback plan, in greedy deadlines (at least the slack).
GREEDY_WAIT_FACTOR = 4


def fits(plan: Plan, loads: list[float], params: Params) -> bool:
    """Does `plan` keep every core under its load cap with these loads?"""
    work, offl = core_loads(plan, loads, params)
    return all(x <= params.rho_max_working + FIT_SLACK for x in work) and all(
        x <= params.rho_max_offloading + FIT_SLACK for x in offl
    )


class Fallback:
    def __init__(self, st: LoopState, applier: Applier, greedy: Policy) -> None:
        self.st = st
        self.applier = applier
        self.greedy = greedy
        self.solver = SolverThread()
        self.pending: Pending | None = None  # a greedy plan still computing

    def count(self, reason: str, text: str) -> None:
        self.st.counts["fallbacks"] += 1
        self.st.metrics.fallbacks.labels(reason=reason).inc()
        log.warning("fallback (%s): %s", reason, text)

    def guard(
        self, loads: list[float], reading: Reading, read_done: float, reason: str | None
    ) -> None:
        """No solve result this epoch: act only if the current plan breaks the cap."""
        assert self.st.current is not None
        if fits(self.st.current, loads, self.st.params):
            return
        self.fall_back(
            "current plan over the capacity cap while a solve is pending",
            reason or "over_cap_pending",
            loads,
            reading,
            read_done,
        )

    def fall_back(
        self, text: str, reason: str, loads: list[float], reading: Reading, read_done: float
    ) -> None:
        """Keep the current plan if it fits the cap, else apply the greedy plan."""
        st = self.st
        assert st.current is not None
        self.count(reason, text)
        if fits(st.current, loads, st.params):
            return
        g = self.pending
        if g is not None:
            if not g.future.done():
                return  # still computing; the current plan stays meanwhile
            self.pending = None
            if same_plan(g.base, st.current):
                self._result(g, reason)
                return
        base, greedy, params = st.current, self.greedy, st.params

        def solve() -> PlanResult:
            result = greedy.short(loads, base)
            if not result.feasible or not fits(result.plan, loads, params):
                result = greedy.long(loads, base)
            return result

        pending = Pending(
            "fallback", self.solver.submit(solve), base, 0.0, reading, loads, read_done
        )
        wait = max(
            GREEDY_WAIT_FACTOR * st.config.solver.greedy_deadline_s, DEADLINE_SLACK * st.short_s
        )
        wait = min(wait, max(0.0, st.epoch_end - st.clock()))
        try:
            pending.future.result(timeout=wait)
        except FutureTimeout:
            self.pending = pending
            st.metrics.fallbacks.labels(reason="greedy_late").inc()
            log.warning(
                "greedy plan not ready after %.1f ms: the current plan stays for now", wait * 1e3
            )
            return
        except Exception:
            pass  # reported by _result
        self._result(pending, reason)

    def _result(self, g: Pending, reason: str) -> None:
        st = self.st
        try:
            result = g.future.result(timeout=0)
        except Exception as e:
            log.error("greedy planner failed (%s): the current plan stays", e)
            return
        st.metrics.solve.labels(backend="greedy", mode="fallback").observe(result.solve_ms / 1000.0)
        st.last_solve = {
            "mode": "fallback",
            "backend": "greedy",
            "solve_ms": round(result.solve_ms, 3),
            "fallback": reason,
            "feasible": result.feasible,
            "optimal": False,
            "loop_epoch": st.loop_epoch,
        }
        st.metrics.infeasible.set(0 if result.feasible else 1)
        problem = plan_problem(result.plan, st.config.shards, st.config.core_count)
        if problem is not None:
            log.error("greedy plan invalid (%s): the current plan stays", problem)
            return
        self.applier.send(
            result.plan,
            g.reading,
            kind="fallback",
            result=result,
            read_done=g.read_done,
            fallback=reason,
        )
