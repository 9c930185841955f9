"""Putting plans on the data plane: adopt its plan or re-apply ours after a connect, apply a new
one as one command, and keep the books (counts, metrics, latencies, the decision log)."""

from __future__ import annotations

import logging
import time
from collections import deque

from dyssect_ctrl.dataplane.base import (
    DataplaneError,
    PlanDeferred,
    PlanRejected,
    Reading,
    plan_problem,
    same_plan,
)
from dyssect_ctrl.decision_log import Decision, DecisionLog, snapshot_digest
from dyssect_ctrl.loop.link import Link
from dyssect_ctrl.loop.state import LoopState
from dyssect_ctrl.model import Plan, PlanResult

log = logging.getLogger("dyssect_ctrl.loop")

# A re-apply after a reconnect that the data plane refuses (a pipeline still being built) is
# retried on this many ticks before the controller continues from the data plane's plan.
REAPPLY_TRIES = 50


class Applier:
    def __init__(self, st: LoopState, decisions: DecisionLog | None, link: Link) -> None:
        self.st = st
        self.decisions = decisions
        self.link = link
        # End of stats read -> plan applied, seconds (the benchmark reads these).
        self.latencies: deque[float] = deque(maxlen=100_000)
        # The same, only for epochs that sent a plan to the data plane.
        self.apply_latencies: deque[float] = deque(maxlen=100_000)
        # ...minus the solve itself: the loop's own share (read to submit, collect, apply, log).
        self.apply_overheads: deque[float] = deque(maxlen=100_000)
        # Time of the data plane's apply call alone (resume cores + apply_plan).
        self.apply_rpc: deque[float] = deque(maxlen=100_000)
        self.reapply_plan: Plan | None = None  # ours, still to be put back after a reconnect
        self._reapply_tries = 0

    def take_over(self, reading: Reading) -> None:
        """After a read: adopt the data plane's plan if we have none, re-apply ours if needed."""
        if self.st.current is None:
            self._adopt(reading)
        elif reading.fresh or self.reapply_plan is not None:
            self._reapply(reading)

    def _adopt(self, reading: Reading) -> None:
        st = self.st
        plan = reading.snapshot.current
        if plan is None:
            plan = Plan.initial(st.config.shards)
            log.info("data plane reports no plan: starting from W=1 E=0")
            self.send(plan, reading, kind="initial", result=None, read_done=None)
            return
        st.current = plan
        st.plan_id = reading.plan_id
        log.info(
            "adopted the data plane's plan %d: W=%d E=%d (not reset)",
            reading.plan_id,
            plan.working,
            plan.offloading,
        )

    def _reapply(self, reading: Reading) -> None:
        """After a reconnect, put our plan back; retried while the pipeline is being rebuilt."""
        st = self.st
        theirs = reading.snapshot.current
        assert st.current is not None
        if reading.fresh:
            # A reconnect in the middle of re-applying keeps the plan we were putting back.
            self.reapply_plan, self._reapply_tries = self.reapply_plan or st.current, 0
        ours = self.reapply_plan
        assert ours is not None
        if same_plan(theirs, ours):
            if self._reapply_tries == 0:
                log.info("reconnected: the data plane still runs plan %d", reading.plan_id)
            self.reapply_plan = None
            st.current = ours
            return
        if self._reapply_tries == 0:
            log.warning(
                "reconnected: the data plane runs W=%s E=%s, not ours (W=%d E=%d): re-applying",
                getattr(theirs, "working", "-"),
                getattr(theirs, "offloading", "-"),
                ours.working,
                ours.offloading,
            )
        st.current = theirs if theirs is not None else Plan.initial(st.config.shards)
        self._reapply_tries += 1
        if self.send(ours, reading, kind="reapply", result=None, read_done=None):
            self.reapply_plan = None
        elif self._reapply_tries >= REAPPLY_TRIES:
            log.error(
                "re-applying our plan failed %d times: continuing from the data plane's plan",
                self._reapply_tries,
            )
            self.reapply_plan = None

    def send(
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
        st = self.st
        old = st.current
        if same_plan(plan, old):
            if read_done is not None:
                self.latencies.append(time.perf_counter() - read_done)
            return True
        problem = plan_problem(plan, st.config.shards, st.config.core_count)
        if problem is not None:
            st.metrics.plans_refused.labels(reason="invalid").inc()
            log.error("not applying an invalid plan (%s)", problem)
            return False
        t_apply = time.perf_counter()
        try:
            applied = st.dataplane.apply(plan)
            self.apply_rpc.append(time.perf_counter() - t_apply)
        except PlanDeferred as e:
            # Busy with the previous plan's migrations: the next epoch plans again.
            st.metrics.plans_refused.labels(reason="busy").inc()
            log.info("the data plane is busy, %s plan not applied this epoch: %s", kind, e)
            return False
        except PlanRejected as e:
            st.metrics.plans_refused.labels(reason="rejected").inc()
            log.error("the data plane refused the %s plan: %s", kind, e)
            return False
        except DataplaneError as e:
            self.link.lost(e, "apply")
            return False
        if read_done is not None:
            latency = time.perf_counter() - read_done
            self.latencies.append(latency)
            self.apply_latencies.append(latency)
            if result is not None:
                self.apply_overheads.append(max(0.0, latency - result.solve_ms / 1000.0))
            st.metrics.decision_latency.observe(latency)
        base = old or Plan.initial(st.config.shards)
        offload_changes = sum(
            1 for a, b in zip(plan.offload, base.offload, strict=False) if abs(a - b) > 1e-12
        )
        st.current = plan
        st.plan_id = applied.plan_id
        st.counts["applied"] += 1
        st.counts["migrations"] += applied.migrations
        st.metrics.plans_applied.labels(kind=kind).inc()
        st.metrics.migrations.inc(applied.migrations)
        st.metrics.offload_changes.inc(offload_changes)
        st.metrics.observe_loads(
            st.last_loads or [0.0] * st.config.shards,
            plan,
            st.params,
            st.config.core_count,
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
                    loop_epoch=st.loop_epoch,
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
