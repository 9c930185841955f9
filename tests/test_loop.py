"""The control loop against the replay data plane and the real planner, with injected faults."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from dyssect_ctrl.config import Config, parse_config
from dyssect_ctrl.dataplane.base import DataplaneError, PlanRejected, plan_problem
from dyssect_ctrl.dataplane.replay import ReplayDataplane
from dyssect_ctrl.decision_log import DecisionLog, read_decisions
from dyssect_ctrl.loop import ControlLoop, fallback_reason, fits, make_planner
from dyssect_ctrl.metrics import Metrics
from dyssect_ctrl.model import Plan
from tests.replay_helpers import config_dict, write_replay


class FaultyPlanner:
    """The real planner with a fault in front of it (the injected solver failure)."""

    def __init__(self, inner: Any, fault: str, delay_s: float = 0.0) -> None:
        self.inner = inner
        self.fault = fault
        self.delay_s = delay_s
        self.calls = 0

    def _hit(self) -> None:
        self.calls += 1
        if self.fault == "raise":
            raise RuntimeError("backend crashed (injected)")
        if self.fault == "sleep":
            time.sleep(self.delay_s)

    @property
    def backend(self) -> str:
        return self.inner.backend

    def warm_up(self) -> float:
        return self.inner.warm_up()

    def long(self, loads, current):
        self._hit()
        return self.inner.long(loads, current)

    def short(self, loads, current):
        self._hit()
        return self.inner.short(loads, current)


class FlakyReplay(ReplayDataplane):
    """Replay whose 'bessd' can go away: reads fail while down, then it comes back fresh."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.down = 0
        self.reads = 0
        self.refuse = 0  # plans refused after a restart (a pipeline still being built)

    def apply(self, plan):
        if self.refuse:
            self.refuse -= 1
            raise PlanRejected("working slot 0 has no DyssectWorkingCore (injected)")
        return super().apply(plan)

    def read(self):
        self.reads += 1
        if self.down:
            raise DataplaneError("connection reset (injected)")
        return super().read()

    def connect(self) -> None:
        if self.down:
            self.down -= 1
            raise DataplaneError("connection refused (injected)")
        restarted = self.health.connected is False and self.applied
        super().connect()
        if restarted:
            self._current = Plan.initial(self.config.shards)  # a restarted pipeline


class Rig:
    def __init__(
        self,
        tmp_path: Path,
        loads: list[float],
        *,
        fault: str | None = None,
        delay_s: float = 0.0,
        overrides=None,
        cfg: dict | None = None,
    ) -> None:
        replay = write_replay(tmp_path / "snaps.jsonl", loads, overrides=overrides)
        self.config: Config = parse_config(cfg or config_dict(tmp_path, replay))
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.decisions = DecisionLog(tmp_path / "state", 1 << 20, 1)
        self.dp = FlakyReplay(self.config, replay, record_path=tmp_path / "applied.jsonl")
        self.faulty: list[FaultyPlanner] = []

        def factory(config: Config, solver: str):
            planner = make_planner(config, solver)
            if fault is None or solver == "greedy":
                return planner
            wrapped = FaultyPlanner(planner, fault, delay_s)
            self.faulty.append(wrapped)
            return wrapped

        self.loop = ControlLoop(
            self.config, self.dp, self.metrics, self.decisions, planner_factory=factory
        )

    def ticks(self, n: int) -> list[Plan | None]:
        plans = []
        for _ in range(n):
            self.loop.tick()
            plans.append(self.loop.current)
        return plans

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def assert_valid_and_fitting(rig: Rig, plans: list[Plan | None]) -> None:
    for plan in plans:
        assert plan is not None
        assert plan_problem(plan, rig.config.shards, rig.config.core_count) is None


def test_starts_from_w1_when_the_data_plane_has_no_plan(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [0.3] * 5)
    rig.ticks(1)
    assert rig.loop.ready
    assert rig.dp.applied == [Plan.initial(16)]


def test_adopts_the_running_plan_instead_of_resetting(tmp_path: Path) -> None:
    running = {"working": 3, "offloading": 0, "assignment": [0, 1, 2, 0] * 4}
    rig = Rig(tmp_path, [1.5] * 5, overrides={0: {"current": running}})
    rig.ticks(1)
    assert rig.loop.current == Plan.from_json(running)
    assert Plan.initial(16) not in rig.dp.applied  # never reset to W=1


def test_scales_up_at_once_and_down_only_after_hysteresis(tmp_path: Path) -> None:
    loads = [0.4] * 6 + [2.2] * 12 + [0.4] * 40
    rig = Rig(tmp_path, loads)
    plans = rig.ticks(len(loads))
    assert_valid_and_fitting(rig, plans)
    cores = [p.working + p.offloading for p in plans]
    assert cores[0] == 1
    # The overload appears at tick 7; a short solve finds W=1 infeasible and forces the long
    # model on the next tick, so scaling up does not wait for the next long epoch.
    assert max(cores[6:9]) >= 3
    up = max(cores)
    # Scale-down: hysteresis 2 long epochs of 5 ticks, so never earlier than 10 ticks after.
    first_down = next(i for i in range(18, len(cores)) if cores[i] < up)
    assert first_down >= 18 + 5
    assert cores[-1] < up
    # From the tick after the overload appears, every plan keeps each core under its cap for
    # the per-shard loads it was planned on (the replay's line of that tick).
    lines = [json.loads(line) for line in (tmp_path / "snaps.jsonl").read_text().splitlines()]
    t_us = rig.config.params.working_us
    for i in range(7, 18):
        shard_loads = [
            s["packets"] * t_us * 1e-6 / lines[i]["window_s"] for s in lines[i]["shards"]
        ]
        assert fits(plans[i], shard_loads, rig.config.params), f"tick {i}: {plans[i]}"


def test_solver_failure_gives_greedy_plan_every_epoch_and_is_counted(tmp_path: Path) -> None:
    loads = [0.4] * 3 + [2.5] * 10
    rig = Rig(tmp_path, loads, fault="raise")
    plans = rig.ticks(len(loads))
    assert_valid_and_fitting(rig, plans)
    assert rig.faulty and all(f.calls > 0 for f in rig.faulty[:1])
    assert rig.metric("dyssect_fallbacks_total", reason="solver_error") == len(loads)
    # Once the load outgrows W=1, the current plan no longer fits: greedy must take over.
    last = rig.loop.last_reading
    assert last is not None
    assert fits(plans[-1], last.snapshot.loads(), rig.config.params)
    assert plans[-1].working + plans[-1].offloading >= 3
    kinds = {d["kind"] for d in read_decisions(tmp_path / "state" / "decisions.jsonl")}
    assert "fallback" in kinds
    assert all(
        d["backend"] == "greedy"
        for d in read_decisions(tmp_path / "state" / "decisions.jsonl")
        if d["kind"] == "fallback"
    )


def test_late_solver_never_blocks_measurement(tmp_path: Path) -> None:
    loads = [0.4] * 3 + [2.5] * 30
    rig = Rig(tmp_path, loads, fault="sleep", delay_s=0.35)
    stop = threading.Event()
    t0 = time.monotonic()
    rig.loop.run(stop, max_ticks=20)
    elapsed = time.monotonic() - t0
    # 20 ticks of 100 ms, each reading the data plane: about 2 s. Had the loop waited for the
    # 0.35 s solves it would have taken 7 s. (A tick or two may be skipped on a loaded machine.)
    assert rig.dp.reads == 20
    assert rig.metric("dyssect_epochs_missed_total") <= 2
    assert elapsed < 20 * 0.1 + 0.2 * 2 + 0.3
    late = rig.metric("dyssect_fallbacks_total", reason="late")
    busy = rig.metric("dyssect_fallbacks_total", reason="solver_busy")
    assert late >= 1 and late + busy >= 5
    last = rig.loop.last_reading
    assert last is not None
    assert fits(rig.loop.current, last.snapshot.loads(), rig.config.params)
    rig.loop.close()


def test_impossible_snapshots_are_rejected_never_applied(tmp_path: Path) -> None:
    huge = 3.6  # would force a scale-up if anyone planned on it
    loads = [0.3, 0.3, huge, 0.3, huge, 0.3, huge, 0.3, 0.3, huge, 0.3]

    def negative(o):
        o["shards"][0]["packets"] = -1
        return o

    def extra_shard(o):
        o["shards"].append({"packets": 1, "bytes": 1})
        return o

    overrides = {
        0: {"timestamp": 10.0, "epoch": 1},
        1: {"timestamp": 10.1, "epoch": 2},
        2: negative,
        3: {"timestamp": 10.3, "epoch": 4},
        4: extra_shard,
        5: {"timestamp": 10.5, "epoch": 6},
        6: {"timestamp": 10.2, "epoch": 7},  # time going backwards
        7: {"timestamp": 10.7, "epoch": 8},
        8: {"timestamp": 10.8, "epoch": 9},
        9: {"drops": {"ring_full": -7}, "timestamp": 10.9, "epoch": 10},
        10: {"timestamp": 11.0, "epoch": 11},
    }
    rig = Rig(tmp_path, loads, overrides=overrides)
    plans = rig.ticks(len(loads))
    assert_valid_and_fitting(rig, plans)
    assert all(p.working + p.offloading == 1 for p in plans)
    assert rig.metric("dyssect_snapshots_rejected_total", reason="negative_counter") == 2
    assert rig.metric("dyssect_snapshots_rejected_total", reason="shard_count_mismatch") == 1
    assert rig.metric("dyssect_snapshots_rejected_total", reason="time_backwards") == 1
    assert rig.loop.counts["rejected"] == 4


def test_reconnects_and_reapplies_its_plan_after_a_restart(tmp_path: Path) -> None:
    loads = [2.2] * 40
    rig = Rig(tmp_path, loads)
    rig.ticks(12)
    ours = rig.loop.current
    assert ours is not None and ours.working + ours.offloading >= 3
    rig.dp.down = 1  # bessd goes away: one read and one connect attempt fail
    applied_before = len(rig.dp.applied)
    rig.ticks(1)
    assert not rig.loop.connected
    assert rig.metric("dyssect_dataplane_connected") == 0
    back = None
    for n in range(1, 6):
        rig.ticks(1)
        if rig.loop.connected:
            back = n
            break
    assert back is not None and back <= 2  # within two short epochs of answering again
    assert rig.dp.applied[applied_before] == ours  # the re-applied plan is ours, not W=1
    kinds = [d["kind"] for d in read_decisions(tmp_path / "state" / "decisions.jsonl")]
    assert "reapply" in kinds
    assert rig.metric("dyssect_dataplane_reconnects_total") == 2


def test_reload_takes_live_keys_and_keeps_the_rest(tmp_path: Path, caplog) -> None:
    rig = Rig(tmp_path, [0.5] * 5)
    rig.ticks(2)
    cfg = config_dict(tmp_path, tmp_path / "snaps.jsonl")
    cfg["model"] = {"sigma": 1.5}
    cfg["shards"] = 32
    live = rig.loop.reload(parse_config(cfg))
    assert live == {"model.sigma"}
    assert rig.loop.config.params.sigma == 1.5
    assert rig.loop.config.shards == 16
    assert "shards changed: takes effect after a restart" in caplog.text
    # The loop goes on planning, with a planner built from the new parameters.
    assert rig.loop.planner.params.sigma == 1.5
    epochs = rig.metric("dyssect_epochs_total", kind="short")
    plans = rig.ticks(2)
    assert_valid_and_fitting(rig, plans)
    assert rig.metric("dyssect_epochs_total", kind="short") > epochs


def test_a_slow_read_counts_missed_epochs(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [0.4] * 20)
    orig = rig.dp.read
    slow = {"n": 0}

    def read():
        slow["n"] += 1
        if slow["n"] == 3:
            time.sleep(0.36)
        return orig()

    rig.dp.read = read  # type: ignore[method-assign]
    rig.loop.run(threading.Event(), max_ticks=8)
    # 0.36 s late: 3 ticks skipped (4 or 5 if the machine adds its own delay).
    assert 3 <= rig.metric("dyssect_epochs_missed_total") <= 5
    assert rig.loop.loop_epoch == 8 + rig.metric("dyssect_epochs_missed_total")


def test_a_connect_that_overruns_its_epoch_gives_the_solve_its_time(tmp_path: Path) -> None:
    # Connecting (pybess import, gRPC channel) measured ~240 ms, over a 100 ms epoch. The solve
    # planned on that first read used to get a deadline already past: a "late" fallback at
    # every start and every reconnect.
    rig = Rig(tmp_path, [2.5] * 6)
    orig = rig.dp.connect

    def slow_connect() -> None:
        time.sleep(0.15)
        orig()

    rig.dp.connect = slow_connect  # type: ignore[method-assign]
    plans = rig.ticks(4)
    assert rig.metric("dyssect_fallbacks_total", reason="late") == 0
    assert plans[-1] is not None and plans[-1].working + plans[-1].offloading >= 3
    rig.loop.close()


def test_wedged_solver_stops_the_watchdog(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [0.4] * 5)
    rig.ticks(1)
    assert rig.loop.healthy()
    rig.loop.solver.busy_since = time.monotonic() - 3600
    assert not rig.loop.healthy()


def test_status_document(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [1.2] * 10)
    rig.ticks(6)
    doc = rig.loop.status()
    assert doc["ready"] and doc["dataplane"]["kind"] == "replay"
    assert doc["plan"]["working"] >= 2
    assert {c["role"] for c in doc["cores"]} >= {"working"}
    assert all(c["load"] <= c["cap"] + 1e-9 for c in doc["cores"])
    assert doc["last_solve"]["backend"] in ("highs", "greedy")


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("highs: long time limit 0.5 s used up at W+E=3", "timeout"),
        ("gurobi unavailable", "unavailable"),
        ("highs: kError", "backend_error"),
    ],
)
def test_fallback_reason_labels(text: str, label: str) -> None:
    assert fallback_reason(text) == label


def test_reapply_is_retried_while_the_pipeline_is_rebuilt(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [2.2] * 40)
    rig.ticks(12)
    ours = rig.loop.current
    assert ours is not None and ours.working >= 3
    rig.dp.down = 1
    rig.dp.refuse = 3  # the restarted pipeline refuses plans for three ticks
    rig.ticks(1)
    for _ in range(8):
        rig.ticks(1)
        if rig.dp.applied and rig.dp.applied[-1] == ours and rig.dp.refuse == 0:
            break
    assert rig.dp.refuse == 0
    assert rig.dp.applied[-1] == ours  # put back once the pipeline takes it, nothing in between
    assert rig.metric("dyssect_plans_refused_total", reason="rejected") == 3


def test_a_replay_keeps_the_service_time_its_snapshots_name(tmp_path: Path) -> None:
    # Replayed lines measure no busy time: a line's own t_working_us is planned on (its loads
    # doubled here), a line without one gets the value in force (the default, 1 us).
    rig = Rig(tmp_path, [0.5, 0.5], overrides={0: {"params": {"t_working_us": 2.0}}})
    rig.ticks(1)
    first = rig.loop.last_reading
    assert first is not None and first.snapshot.params.t_working_us == 2.0
    loads_named = sum(rig.loop.st.last_loads)
    rig.ticks(1)
    second = rig.loop.last_reading
    assert second is not None and second.snapshot.params.t_working_us == 1.0
    assert loads_named == pytest.approx(2 * 0.5, rel=0.05)
    assert sum(rig.loop.st.last_loads) == pytest.approx(0.5, rel=0.05)
    assert rig.loop.status()["service_time"]["working"]["source"] == "default"
