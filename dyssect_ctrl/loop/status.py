"""What the loop tells the world: readiness and watchdog pings, the STATUS= line, the document."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from dyssect_ctrl.loop.state import LoopState
from dyssect_ctrl.model import Params, core_loads

log = logging.getLogger("dyssect_ctrl.loop")

# A solve running this many long epochs is wedged: the loop stops feeding the watchdog so
# systemd restarts the controller (which then adopts the running plan).
WEDGED_LONG_EPOCHS = 10


class Status:
    def __init__(self, st: LoopState, healthy: Callable[[], bool]) -> None:
        self.st = st
        self.healthy = healthy
        self.on_ready: Callable[[], None] | None = None
        self._doc: dict[str, Any] = {}
        self._last_line = ""
        self._last_at = -1e18

    def document(self) -> dict[str, Any]:
        """The last status document (built by the loop thread; safe to read from any thread)."""
        return self._doc

    def became_ready(self) -> None:
        """READY=1 at the first stats read, with or without a usable snapshot."""
        if self.st.ready:
            return
        self.st.ready = True
        self.st.notifier.ready(self.line())
        log.info("first stats read: ready")
        if self.on_ready is not None:
            self.on_ready()

    def line(self) -> str:
        st = self.st
        if not st.connected or st.current is None:
            return f"{st.state}: {st.dataplane.health.reason}"
        p = st.current
        line = (
            f"W={p.working} E={p.offloading} ({p.working + p.offloading}/"
            f"{st.config.core_count} cores), plan {st.plan_id}, policy {st.config.policy}"
        )
        if st.last_solve:
            line += (
                f", last solve {st.last_solve['solve_ms']:.1f} ms "
                f"{st.last_solve['mode']}/{st.last_solve['backend']}"
            )
        return line

    def report(self) -> None:
        """End of a tick: feed the watchdog (unless wedged), send STATUS=, rebuild the document."""
        st = self.st
        if self.healthy():
            st.notifier.watchdog()
        elif st.loop_epoch % st.ratio == 0:
            log.error(
                "a solve has run for over %d long epochs: watchdog pings stopped",
                WEDGED_LONG_EPOCHS,
            )
        line = self.line()
        now = st.clock()
        # STATUS= at most once a second: systemd keeps only the latest anyway.
        if line != self._last_line and now - self._last_at >= 1.0:
            st.notifier.status(line)
            self._last_line = line
            self._last_at = now
        self._doc = self._build(line)

    def _cores(self) -> list[dict[str, Any]]:
        st = self.st
        p = st.current
        params = st.params
        cores: list[dict[str, Any]] = []
        if p is None or not st.last_loads:
            return cores
        work, offl = core_loads(p, st.last_loads, params)
        core_list = st.config.cores.list
        m = len(core_list)
        for role, loads, k, t, slo, cap, cpu_of in (
            (
                "working",
                work,
                params.k_priority,
                params.working_us,
                params.slo_priority_us,
                params.rho_max_working,
                lambda i: core_list[i],
            ),
            (
                "offloading",
                offl,
                params.k_regular,
                params.offloading_us,
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
        return cores

    def _build(self, line: str) -> dict[str, Any]:
        st = self.st
        p = st.current
        reading = st.last_reading
        return {
            "state": st.state,
            "status": line,
            "ready": st.ready,
            "healthy": self.healthy(),
            "dataplane": {
                "kind": st.dataplane.kind,
                "describe": st.dataplane.describe(),
                "connected": st.connected,
                "reason": st.dataplane.health.reason,
            },
            "loop_epoch": st.loop_epoch,
            "dataplane_epoch": reading.snapshot.epoch if reading else None,
            "epochs": {
                "short_ms": st.config.epochs.short_ms,
                "long_ms": st.config.epochs.long_ms,
            },
            "cores_total": st.config.core_count,
            "plan": p.to_json() if p is not None else None,
            "plan_id": st.plan_id,
            "migrating": reading.migrating if reading else None,
            "total_load": round(sum(st.last_loads), 4) if st.last_loads else 0.0,
            "cores": self._cores(),
            "last_solve": dict(st.last_solve),
            "counts": dict(st.counts),
            "drops": dict(reading.snapshot.drops) if reading else {},
            "drops_total": dict(st.drops_total),
            "solver_backend": st.config.solver.backend,
            "policy": st.config.policy,
            "service_time": {
                k: v.to_json() for k, v in st.service.in_force(st.config.params).items()
            },
        }
