"""Controller faults against a real bessd with the Dyssect plugin (needs DYSSECT_BESS_SRC).

- the controller SIGKILLed under traffic and started again adopts the running plan, and no
  packet is lost because of it (sequence check: no gap, no reorder, no drop);
- bessd restarted: the controller reconnects within two short epochs of the pipeline being back
  and re-applies its own plan;
- the pipeline rebuilt in a running bessd (dyssect-pipeline reloaded): the controller notices
  and puts its plan back, rejecting none of the new pipeline's readings;
- the solver backend failing on every epoch: every epoch still ends with a valid plan that the
  data plane runs, and the fallbacks are counted.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from dyssect_ctrl.config import Config, parse_config
from dyssect_ctrl.dataplane.base import plan_problem, same_plan
from dyssect_ctrl.dataplane.bess import BessDataplane
from dyssect_ctrl.decision_log import DecisionLog, read_decisions
from dyssect_ctrl.loop import ControlLoop, make_planner
from dyssect_ctrl.metrics import Metrics
from dyssect_ctrl.model import Plan
from tests.bess import harness
from tests.controller_process import Controller

pytestmark = [
    pytest.mark.bess,
]

SHARDS = 16
# Slots 0..2 on BESS workers 1..3 (seq_pipeline's core list); worker 0 runs source and checker.
WORKERS = [(0, 0), (1, 1), (2, 0), (3, 1)]
CORES = [1, 2, 3]
START_PLAN = {
    "working": 2,
    "offloading": 1,
    "assignment": [i % 2 for i in range(SHARDS)],
    "pairing": [0, -1],
    "offload": [0.3 if i % 2 == 0 else 0.0 for i in range(SHARDS)],
}


def controller_config(tmp: Path, url: str, bess_tree: Path, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "dataplane": {
            "kind": "bess",
            "grpc_url": url,
            "pybess_path": str(bess_tree),
            "module": "dyssect",
            "connect_timeout_ms": 1000,
        },
        "cores": {"list": CORES, "controller": 0},
        "shards": SHARDS,
        # No scale-down during a test: what is checked is adoption, not the planner's taste.
        "epochs": {"short_ms": 100, "long_ms": 1000, "scale_down_hysteresis": 1000},
        "solver": {"backend": "highs"},
        "state_dir": str(tmp / "state"),
        "metrics": {"port": 0},
        "status_socket": str(tmp / "status.sock"),
    }
    cfg.update(extra)
    return cfg


def stop_source(b: Any) -> None:
    b.disconnect_modules("tmpl", 0)


def running_plan(st: Any) -> Plan:
    assignment = tuple(s.pending_owner if s.pending_owner >= 0 else s.owner for s in st.shards)
    pairing = {i: j for i, j in enumerate(st.pairing) if i < st.working and j >= 0}
    return Plan(st.working, st.offloading, assignment, pairing, tuple(s.offload for s in st.shards))


def test_sigkilled_controller_adopts_the_running_plan_and_loses_nothing(
    bess: Any, daemon: harness.Daemon, bess_tree: Path, tmp_path: Path
) -> None:
    harness.seq_pipeline(bess, SHARDS, 2, 1, flows=256, rate_pps=20000, workers=WORKERS)
    cfg = controller_config(tmp_path, daemon.url, bess_tree)
    with harness.running(bess):
        harness.apply_plan(bess, START_PLAN)
        assert harness.wait_not_migrating(bess, 10)
        first = Controller(tmp_path / "first", cfg)
        first.notify.wait_for("READY", "1", timeout=30)
        time.sleep(1.5)  # let it run a long epoch under traffic
        assert first.kill() == -9
        before = harness.get_stats(bess)
        second = Controller(tmp_path / "second", cfg)
        second.notify.wait_for("READY", "1", timeout=30)
        after = harness.get_stats(bess)
        # Adopted, not reset: the same core counts, and nothing sent until it planned (any plan,
        # the initial W=1 one included, would have moved the data plane's plan id).
        assert (after.working, after.offloading) == (before.working, before.offloading) == (2, 1)
        assert after.plan_id == before.plan_id, "a plan was sent before the controller planned"
        second.wait_log("adopted the data plane's plan")
        time.sleep(1.5)
        assert second.stop() == 0
        # Whatever it decided later (a steady load may need no decision), none was an initial plan.
        log = tmp_path / "second" / "state" / "decisions.jsonl"
        kinds = {d["kind"] for d in read_decisions(log)} if log.exists() else set()
        assert "initial" not in kinds
        stop_source(bess)
        sent, check, st = harness.wait_accounted(bess)
    assert sent > 0
    assert check.gaps == 0, "packets were lost"
    assert check.reordered == 0, "a flow was reordered"
    assert harness.total_drops(st) == 0
    assert sent == check.received


def test_bessd_restart_reconnects_within_two_epochs_and_reapplies(
    bess_tree: Path, plugin: Path, tmp_path: Path
) -> None:
    port = harness.free_port()  # the restart must reuse it
    url = f"127.0.0.1:{port}"
    log = Path(tempfile.mkstemp(prefix="dyssect-bessd-restart-", suffix=".log")[1])
    bess_cls = harness.import_pybess(bess_tree)
    bessd = harness.start_bessd(bess_tree, plugin.parent, log, port)
    stop = threading.Event()
    runner: threading.Thread | None = None
    b: Any = None
    try:
        b = harness.connect(bess_cls, bessd)
        harness.seq_pipeline(b, SHARDS, 2, 1, flows=64, rate_pps=5000, workers=WORKERS)
        b.resume_all()
        harness.apply_plan(b, START_PLAN)
        config: Config = parse_config(controller_config(tmp_path, url, bess_tree))
        decisions = DecisionLog(tmp_path / "state", 1 << 20, 1)
        loop = ControlLoop(config, BessDataplane(config), Metrics(CollectorRegistry()), decisions)
        runner = threading.Thread(target=loop.run, args=(stop,), daemon=True)
        runner.start()
        assert harness.wait_until(lambda: loop.ready and loop.current is not None, 30)
        ours = loop.current
        assert ours is not None and ours.working == 2
        # bessd goes away (by PID, the one this test started) and comes back empty.
        b.disconnect()
        bessd.stop()
        assert harness.wait_until(lambda: not loop.connected, 5)
        bessd = harness.start_bessd(bess_tree, plugin.parent, log, port)
        b = harness.connect(bess_cls, bessd)
        harness.seq_pipeline(b, SHARDS, 2, 1, flows=64, rate_pps=5000, workers=WORKERS)
        # Counted in ticks the loop ran: on a busy machine the loop can run late and skip
        # epochs, and those skipped epochs say nothing about the reconnect backoff.
        ran_at_pipeline = loop.loop_epoch - loop.st.counts["missed"]
        b.resume_all()
        assert harness.wait_until(lambda: loop.connected, 10)
        reconnect_ticks = loop.loop_epoch - loop.st.counts["missed"] - ran_at_pipeline
        assert reconnect_ticks <= 2, f"reconnected after {reconnect_ticks} short epochs"
        assert harness.wait_until(
            lambda: any(
                d["kind"] == "reapply"
                for d in read_decisions(tmp_path / "state" / "decisions.jsonl")
            ),
            2,
        )
        assert running_plan(harness.get_stats(b)).working == ours.working
    finally:
        stop.set()
        if runner is not None:
            runner.join(10)
        if b is not None:
            b.disconnect()
        bessd.stop()


def test_pipeline_rebuilt_under_the_controller_gets_its_plan_back(
    bess: Any, daemon: harness.Daemon, bess_tree: Path, tmp_path: Path
) -> None:
    # What `systemctl reload dyssect-pipeline` does: the same bessd, the modules torn down and
    # created again, every counter restarted. The controller must notice and put its plan back,
    # without rejecting the new pipeline's readings as impossible.
    harness.seq_pipeline(bess, SHARDS, 2, 1, flows=64, rate_pps=5000, workers=WORKERS)
    bess.resume_all()
    harness.apply_plan(bess, START_PLAN)
    config: Config = parse_config(controller_config(tmp_path, daemon.url, bess_tree))
    loop = ControlLoop(config, BessDataplane(config), Metrics(CollectorRegistry()), None)
    stop = threading.Event()
    runner = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    runner.start()
    try:
        assert harness.wait_until(lambda: loop.ready and loop.current is not None, 30)
        time.sleep(0.5)
        ours = loop.current
        assert ours is not None and ours.working == 2
        bess.pause_all()
        bess.reset_all()
        harness.seq_pipeline(bess, SHARDS, 2, 1, flows=64, rate_pps=5000, workers=WORKERS)
        bess.resume_all()
        assert running_plan(harness.get_stats(bess)).working == 1  # the new pipeline's start
        t0 = time.monotonic()
        assert harness.wait_until(
            lambda: same_plan(running_plan(harness.get_stats(bess)), ours), 5
        ), "the controller did not put its plan back on the rebuilt pipeline"
        took = time.monotonic() - t0
        assert took < 1.0, f"plan back after {took:.2f} s"
        assert loop.counts["rejected"] == 0
    finally:
        stop.set()
        runner.join(10)
        bess.pause_all()


class FailingPlanner:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def long(self, loads: Any, current: Any) -> Any:
        raise RuntimeError("backend failure (injected)")

    def short(self, loads: Any, current: Any) -> Any:
        raise RuntimeError("backend failure (injected)")


def test_solver_failure_every_epoch_still_ends_with_a_valid_applied_plan(
    bess: Any, daemon: harness.Daemon, bess_tree: Path, tmp_path: Path
) -> None:
    harness.seq_pipeline(bess, SHARDS, 2, 1, flows=256, rate_pps=20000, workers=WORKERS)
    # A per-packet cost that makes 20 kpps about 1.4 cores: W=1 cannot hold it.
    cfg = controller_config(tmp_path, daemon.url, bess_tree, model={"t_working_us": 70.0})
    config = parse_config(cfg)
    registry = CollectorRegistry()

    def factory(c: Config, solver: str) -> Any:
        planner = make_planner(c, solver)
        return planner if solver == "greedy" else FailingPlanner(planner)

    with harness.running(bess):
        harness.apply_plan(
            bess,
            {
                "working": 1,
                "offloading": 0,
                "assignment": [0] * SHARDS,
                "pairing": [-1],
                "offload": [0.0] * SHARDS,
            },
        )
        loop = ControlLoop(
            config, BessDataplane(config), Metrics(registry), None, planner_factory=factory
        )
        for _ in range(20):
            loop.tick()
            time.sleep(0.1)
            assert loop.current is not None
            assert plan_problem(loop.current, SHARDS, len(CORES)) is None
        assert registry.get_sample_value(
            "dyssect_fallbacks_total", {"reason": "solver_error"}
        ) == pytest.approx(20, abs=1)
        st = harness.get_stats(bess)
        assert same_plan(running_plan(st), loop.current)
        assert loop.current.working + loop.current.offloading >= 2  # greedy scaled up
        loop.close()
        stop_source(bess)
        sent, check, st = harness.wait_accounted(bess)
    assert check.gaps == 0 and check.reordered == 0
    assert sent == check.received + harness.total_drops(st)
