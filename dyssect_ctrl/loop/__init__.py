"""The epoch scheduler: measure every short epoch, plan, apply, and keep going through faults.

Every short epoch (tick) the loop reads the data plane's stats on schedule. Every
long_ms / short_ms ticks the long model runs (core counts), otherwise the short one (placement).
Solves run on a separate solver thread, so a slow solve never delays a measurement. A solve that
fails, is late, or comes back invalid is a fallback: the current plan stays if it still fits the
capacity cap with the new loads, otherwise the greedy plan is applied. Every fallback is counted
by reason.

Snapshots are validated before use (dataplane.base.SnapshotValidator); a rejected one is
counted and never planned on. After (re)connecting, the loop adopts the data plane's plan when
it has none of its own (a restarted controller), or re-applies its own (a restarted bessd).

The parts, each with one job:
- control: ControlLoop, the scheduler (run, tick) and config reload;
- link: the connection to the data plane (connect, backoff, loss, reading and vetting stats);
- solving: solves against the epoch's deadline, on a solver thread (solver_thread);
- fallback: keep the current plan if it fits the cap, else the greedy plan;
- applying: adopt, re-apply and apply plans, and keep the books;
- status: readiness, watchdog, the STATUS= line and the status document;
- state: what the parts share.
"""

from dyssect_ctrl.loop.control import ControlLoop
from dyssect_ctrl.loop.fallback import fits
from dyssect_ctrl.loop.solving import PlannerFactory, fallback_reason, make_planner

__all__ = ["ControlLoop", "PlannerFactory", "fallback_reason", "fits", "make_planner"]
