"""The bessd data plane against a stand-in pybess (the edge) and a real local gRPC server.

The gRPC server answers the connection probe exactly as bessd's does at the transport level; the
stand-in `pybess.bess.BESS` plays the daemon's RPCs. Tests against a real bessd live in
tests/bess/ (they need DYSSECT_BESS_SRC).
"""

from __future__ import annotations

import dataclasses
import errno
import sys
import textwrap
import time
from concurrent import futures
from pathlib import Path
from types import SimpleNamespace as NS
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from dyssect_ctrl.config import parse_config
from dyssect_ctrl.dataplane.base import (
    DataplaneError,
    PipelineAbsent,
    PlanDeferred,
    PlanRejected,
)
from dyssect_ctrl.dataplane.bess import BessDataplane, _Deadline
from dyssect_ctrl.loop import ControlLoop
from dyssect_ctrl.metrics import Metrics
from dyssect_ctrl.model import Plan

FAKE_PYBESS = textwrap.dedent(
    '''
    """Stand-in for pybess.bess: the RPCs the controller uses, played by DAEMON."""
    import errno

    DAEMON = None


    class BESS:
        class Error(Exception):
            def __init__(self, code, errmsg):
                super().__init__(errmsg)
                self.code = code
                self.errmsg = errmsg

        class RPCError(Exception):
            pass

        class APIError(Exception):
            pass

        def __init__(self):
            self.stub = object()
            self.connected = False

        def connect(self, grpc_url):
            if not DAEMON.up:
                raise self.RPCError("Connection to %s failed" % grpc_url)
            DAEMON.connects += 1
            self.connected = True
            self.session = DAEMON.session

        def disconnect(self):
            self.connected = False

        def _check(self):
            if not DAEMON.up or self.session != DAEMON.session:
                raise self.RPCError("Broken RPC channel")

        def list_modules(self):
            self._check()
            return DAEMON.list_modules()

        def list_workers(self):
            self._check()
            return DAEMON.list_workers()

        def pause_worker(self, wid):
            self._check()
            DAEMON.calls.append(("pause", wid))
            DAEMON.running[wid] = False

        def resume_worker(self, wid):
            self._check()
            DAEMON.calls.append(("resume", wid))
            DAEMON.running[wid] = True

        def run_module_command(self, name, cmd, arg_type, arg):
            self._check()
            if name not in DAEMON.modules:
                raise self.Error(errno.ENOENT, "No module '%s' found" % name)
            return DAEMON.command(self, cmd, arg_type, arg)
    '''
)


class Daemon:
    """The data plane's state as the plugin would keep it (contract of dataplane-contract.md)."""

    def __init__(self, shards: int = 8, cores: tuple[int, ...] = (2, 3, 4, 5)) -> None:
        self.up = True
        self.session = 1
        self.instance = 0x5EED0001  # the shard manager's id: new when the pipeline is rebuilt
        self.connects = 0
        self.shards = shards
        self.cores = cores
        self.modules = {"dyssect": "DyssectShardManager"}
        # Worker ids are the core list (the contract); `pinned` moves a worker to another CPU.
        self.running = dict.fromkeys(cores, True)
        self.pinned: dict[int, int] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.epoch = 0
        self.t = 100.0
        self.packets = 50_000  # per shard and window: 0.5 cores per shard at 1 us
        self.migrating = False
        self.window_s = 0.0
        self.busy = False
        # Busy time the cores measure: microseconds per packet per kind, at a 2 GHz TSC (1 us,
        # the model's default, unless a test sets another).
        self.busy_us = {"working": 1.0, "offloading": 1.0}
        self.tsc_hz = 2.0e9
        self.reset_plan()
        self.reset_counters()

    def reset_counters(self) -> None:
        self.drops = {"ring_full": 0, "table_full": 0}
        self.pin = 0
        self.pout = 0
        # per kind and slot: cumulative [cycles, packets]
        self.busy_counts = {k: [[0, 0] for _ in self.cores] for k in ("working", "offloading")}

    def reset_plan(self) -> None:
        self.plan = Plan.initial(self.shards)
        self.plan_id = 0
        self.pending: list[int] = [-1] * self.shards

    def restart(self) -> None:
        """bessd restarted: a new session, the pipeline rebuilt at its initial plan."""
        self.session += 1
        self.rebuild()

    def rebuild(self) -> None:
        """The pipeline torn down and loaded again in the same bessd (no connection loss)."""
        self.instance += 1
        self.reset_plan()
        self.reset_counters()
        self.epoch = 0
        self.running = {w: True for w in self.running}

    def list_modules(self) -> NS:
        return NS(modules=[NS(name=n, mclass=c) for n, c in self.modules.items()])

    def list_workers(self) -> NS:
        return NS(
            workers_status=[
                NS(wid=w, core=self.pinned.get(w, w), running=self.running[w]) for w in self.running
            ]
        )

    def command(self, b: Any, cmd: str, arg_type: str, arg: dict) -> NS:
        self.calls.append((cmd, arg_type, arg))
        if cmd == "get_stats":
            self.epoch += 1
            self.t += 0.1
            # The plugin's drops and in/out counters are cumulative.
            self.drops["ring_full"] += 2
            self.pin += self.packets * self.shards
            self.pout += self.packets * self.shards - 2
            p = self.plan
            for kind, used in (("working", p.working), ("offloading", p.offloading)):
                for slot in self.busy_counts[kind][:used]:
                    slot[0] += round(1000 * self.busy_us[kind] * 1e-6 * self.tsc_hz)
                    slot[1] += 1000
            shards = [
                NS(
                    packets=self.packets,
                    bytes=self.packets * 100,
                    owner=p.assignment[s],
                    pending_owner=self.pending[s],
                    offload=p.offload[s],
                    flows=10,
                    top_flow_shares=[0.5, 0.25],
                )
                for s in range(self.shards)
            ]
            return NS(
                epoch=self.epoch,
                timestamp_s=self.t,
                window_s=0.1,
                shards=shards,
                working=p.working,
                offloading=p.offloading,
                pairing=[p.pairing.get(i, -1) for i in range(p.working)],
                drops=dict(self.drops),
                packets_in=self.pin,
                packets_out=self.pout,
                migrating=self.migrating,
                plan_id=self.plan_id,
                instance=self.instance,
                **{
                    f"{kind}_busy_{what}": [c[i] for c in self.busy_counts[kind]]
                    for kind in ("working", "offloading")
                    for i, what in enumerate(("cycles", "packets"))
                },
                tsc_hz=self.tsc_hz,
            )
        if cmd == "apply_plan":
            if self.busy:
                raise b.Error(errno.EBUSY, "a migration is still in progress; retry")
            w = arg["working"]
            if len(arg["assignment"]) != self.shards or any(a >= w for a in arg["assignment"]):
                raise b.Error(errno.EINVAL, "bad plan")
            pairing = {i: j for i, j in enumerate(arg["pairing"]) if j >= 0}
            new = Plan(
                w, arg["offloading"], tuple(arg["assignment"]), pairing, tuple(arg["offload"])
            )
            migrations = new.migrations(self.plan)
            self.plan = new
            self.plan_id += 1
            return NS(plan_id=self.plan_id, migrations=migrations)
        if cmd == "set_params":
            self.window_s = arg.get("window_s", 0.0) or self.window_s
            return NS(window_s=self.window_s, flow_idle_timeout_ms=10000)
        raise b.Error(errno.ENOTSUP, cmd)


class GrpcPort:
    """A bare gRPC server: what the connection probe sees of bessd."""

    def __init__(self) -> None:
        self.port = 0
        self.server: Any = None
        self.start()

    def start(self) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
        self.port = self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(0).wait()


@pytest.fixture
def rig(tmp_path: Path, monkeypatch):
    pkg = tmp_path / "bess" / "pybess"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "bess.py").write_text(FAKE_PYBESS)
    for name in [m for m in sys.modules if m == "pybess" or m.startswith("pybess.")]:
        monkeypatch.delitem(sys.modules, name)
    server = GrpcPort()
    cfg = parse_config(
        {
            "dataplane": {
                "kind": "bess",
                "grpc_url": f"127.0.0.1:{server.port}",
                "pybess_path": str(tmp_path / "bess"),
                "connect_timeout_ms": 500,
            },
            "cores": {"list": [2, 3, 4, 5], "controller": 1},
            "shards": 8,
            "epochs": {"short_ms": 100, "long_ms": 500},
            "solver": {"backend": "highs", "long_time_limit_ms": 300},
            "state_dir": str(tmp_path / "state"),
        }
    )
    dp = BessDataplane(cfg)
    daemon = Daemon()
    # pybess is imported on the first connect; hand the stand-in its daemon then.
    orig = dp.connect

    def connect() -> None:
        import importlib

        if str(tmp_path / "bess") not in sys.path:
            sys.path.insert(0, str(tmp_path / "bess"))
        importlib.import_module("pybess.bess").DAEMON = daemon
        orig()

    dp.connect = connect  # type: ignore[method-assign]
    yield NS(dp=dp, daemon=daemon, server=server, config=cfg)
    dp.close()
    server.stop()
    while str(tmp_path / "bess") in sys.path:
        sys.path.remove(str(tmp_path / "bess"))


def test_reads_stats_into_a_reading(rig) -> None:
    rig.dp.connect()
    assert rig.dp.workers == {2: 2, 3: 3, 4: 4, 5: 5}
    rig.daemon.plan = Plan(2, 1, (0, 1) * 4, {0: 0}, (0.5, 0.0) * 4)
    rig.daemon.pending = [1, -1, -1, -1, -1, -1, -1, -1]  # shard 0 moving to slot 1
    r = rig.dp.read()
    s = r.snapshot
    assert r.fresh and not rig.dp.read().fresh
    assert s.cores == 4 and len(s.shards) == 8 and s.window_s == 0.1
    assert s.shards[0].flow_shares == (0.5, 0.25)
    assert s.current == Plan(2, 1, (1, 1, 0, 1, 0, 1, 0, 1), {0: 0}, (0.5, 0.0) * 4)
    assert r.owners[0] == 0
    assert abs(sum(s.loads()) - 8 * 0.5) < 1e-9
    # Cumulative counters become per-window differences (the first read above took two
    # windows' worth: everything since the pipeline started).
    assert s.drops == {"ring_full": 2, "table_full": 0}
    assert r.packets_in == 8 * 50_000 and r.packets_in - r.packets_out == 2
    assert rig.dp.read().snapshot.drops == {"ring_full": 2, "table_full": 0}


def test_busy_time_becomes_per_window_counts_per_slot(rig) -> None:
    rig.daemon.busy_us = {"working": 2.0, "offloading": 3.0}
    rig.dp.connect()
    rig.daemon.plan = Plan(2, 1, (0, 1) * 4, {0: 0}, (0.5, 0.0) * 4)
    rig.dp.read()
    r = rig.dp.read()
    assert r.tsc_hz == 2.0e9
    assert [b.packets for b in r.busy["working"]] == [1000, 1000, 0, 0]
    assert [b.packets for b in r.busy["offloading"]] == [1000, 0, 0, 0]
    assert r.busy["working"][1].cycles == 1000 * 2.0e-6 * 2.0e9
    assert r.busy["offloading"][0].cycles == 1000 * 3.0e-6 * 2.0e9


def test_busy_counters_going_backwards_are_rejected(rig) -> None:
    from dyssect_ctrl.dataplane.base import SnapshotRejected, SnapshotValidator

    v = SnapshotValidator(shards=8, cores=4)
    rig.dp.connect()
    v.check(rig.dp.read())
    rig.daemon.busy_counts["working"][0][0] -= 10**9
    with pytest.raises(SnapshotRejected, match="negative_counter: working slot 0"):
        v.check(rig.dp.read())


def test_counters_going_backwards_are_rejected(rig) -> None:
    from dyssect_ctrl.dataplane.base import SnapshotRejected, SnapshotValidator

    v = SnapshotValidator(shards=8, cores=4)
    rig.dp.connect()
    v.check(rig.dp.read())
    rig.daemon.drops["ring_full"] -= 10  # a cumulative counter that went back
    with pytest.raises(SnapshotRejected, match="negative_counter"):
        v.check(rig.dp.read())
    v.check(rig.dp.read())  # the next window is fine again


def test_apply_resumes_paused_cores_first_and_sends_the_whole_plan(rig) -> None:
    rig.dp.connect()
    reading = rig.dp.read()  # W=1: cores 3, 4, 5 idle
    rig.dp.idle(reading)
    assert rig.dp.paused == {3, 4, 5}
    assert [c for c in rig.daemon.calls if c[0] == "pause"] == [
        ("pause", 3),
        ("pause", 4),
        ("pause", 5),
    ]
    plan = Plan(2, 1, (0, 1) * 4, {0: 0}, (0.25, 0.0) * 4)
    rig.daemon.calls.clear()
    res = rig.dp.apply(plan)
    assert res.plan_id == 1 and res.migrations == 5  # 4 shards moved, 1 pairing set
    # Worker 3 (working slot 1) and worker 5 (offloading slot 0, the last core) come back
    # before the plan is sent; core 4 stays paused.
    assert rig.daemon.calls[0] == ("resume", 3) and rig.daemon.calls[1] == ("resume", 5)
    cmd, arg_type, arg = rig.daemon.calls[2]
    assert (cmd, arg_type) == ("apply_plan", "DyssectCommandApplyPlanArg")
    assert arg["pairing"] == [0, -1] and arg["assignment"] == [0, 1] * 4
    assert rig.dp.paused == {4}
    with pytest.raises(PlanRejected):
        rig.dp.apply(Plan(5, 0, (0,) * 8, {}, (0.0,) * 8))  # caught before sending


def test_data_plane_refusal_is_plan_rejected(rig) -> None:
    rig.dp.connect()
    rig.dp.config = parse_config({**_raw(rig), "shards": 16})  # controller thinks 16 shards
    with pytest.raises(PlanRejected, match="bad plan"):
        rig.dp.apply(Plan.initial(16))


def _raw(rig) -> dict:
    c = rig.config
    return {
        "dataplane": {
            "kind": "bess",
            "grpc_url": c.dataplane.grpc_url,
            "pybess_path": c.dataplane.pybess_path,
        },
        "cores": {"list": list(c.cores.list), "controller": 1},
        "solver": {"backend": "highs", "long_time_limit_ms": 300},
        "epochs": {"short_ms": 100, "long_ms": 500},
    }


def test_workers_with_other_ids_are_found_by_their_core(rig) -> None:
    rig.daemon.running = {0: True, 1: True, 7: True, 8: True}
    rig.daemon.pinned = {0: 2, 1: 3, 7: 4, 8: 5}
    rig.dp.connect()
    assert rig.dp.workers == {2: 0, 3: 1, 4: 7, 5: 8}


def test_no_pause_while_migrating(rig) -> None:
    rig.dp.connect()
    rig.daemon.migrating = True
    rig.dp.idle(rig.dp.read())
    assert rig.dp.paused == set()


def test_absent_pipeline_is_reported_clearly(rig) -> None:
    rig.daemon.modules = {}
    with pytest.raises(PipelineAbsent, match="no module 'dyssect'"):
        rig.dp.connect()
    rig.daemon.modules = {"dyssect": "Sink"}
    with pytest.raises(PipelineAbsent, match="is a Sink, not a DyssectShardManager"):
        rig.dp.connect()
    rig.daemon.modules = {"dyssect": "DyssectShardManager"}
    rig.dp.connect()
    rig.daemon.modules = {}  # pipeline torn down under us
    with pytest.raises(PipelineAbsent):
        rig.dp.read()
    assert not rig.dp.health.connected


def test_unreachable_bessd_fails_fast(rig) -> None:
    rig.server.stop()
    t0 = time.monotonic()
    with pytest.raises(DataplaneError, match="not reachable"):
        rig.dp.connect()
    assert time.monotonic() - t0 < 0.6


def test_broken_channel_is_a_dataplane_error(rig) -> None:
    rig.dp.connect()
    rig.daemon.up = False
    with pytest.raises(DataplaneError, match="Broken RPC channel"):
        rig.dp.read()
    assert not rig.dp.health.connected


def test_missing_pybess_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_config({"dataplane": {"pybess_path": str(tmp_path / "no-bess")}})
    # No pybess anywhere: not imported, and no BESS tree (the BESS-layer tests add theirs) on
    # the path.
    for name in [m for m in sys.modules if m == "pybess" or m.startswith("pybess.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not (Path(p) / "pybess").is_dir()])
    with pytest.raises(DataplaneError, match=r"cannot import pybess from dataplane\.pybess_path"):
        BessDataplane(cfg).connect()


def test_every_rpc_carries_a_deadline() -> None:
    seen = {}

    class Stub:
        def ModuleCommand(self, req, timeout=None):
            seen["timeout"] = timeout
            return "ok"

    assert _Deadline(Stub(), 0.25).ModuleCommand("req") == "ok"
    assert seen["timeout"] == 0.25


def test_loop_reconnects_within_two_epochs_and_reapplies_after_bessd_restart(rig) -> None:
    rig.daemon.packets = 120_000  # 8 x 1.2 cores: needs more than one core
    loop = ControlLoop(rig.config, rig.dp, Metrics(CollectorRegistry()), None)
    for _ in range(8):
        loop.tick()
    ours = loop.current
    assert ours is not None and ours.working >= 2
    assert rig.daemon.plan == ours
    assert rig.daemon.window_s == 0.1  # set_params: the short epoch
    # bessd dies...
    rig.server.stop()
    rig.daemon.up = False
    loop.tick()
    assert not loop.connected
    for _ in range(3):
        loop.tick()  # still down: retried, never blocks
    # ...and comes back with a fresh pipeline at W=1.
    rig.daemon.restart()
    rig.daemon.up = True
    rig.server.start()
    back_at = None
    for n in range(1, 5):
        loop.tick()
        if loop.connected:
            back_at = n
            break
    assert back_at is not None and back_at <= 2
    assert rig.daemon.plan == ours  # re-applied, not the restarted pipeline's W=1
    loop.close()


def test_pipeline_rebuilt_under_a_live_connection_is_found_and_our_plan_reapplied(rig) -> None:
    # dyssect-pipeline reloaded: bessd stays up, the modules are new, every counter restarts.
    # Before the plugin reported its instance, the loop rejected those readings (counters and
    # epoch going backwards) for seconds and never put its plan back.
    rig.daemon.packets = 120_000
    loop = ControlLoop(rig.config, rig.dp, Metrics(CollectorRegistry()), None)
    for _ in range(8):
        loop.tick()
    ours = loop.current
    assert ours is not None and ours.working >= 2 and rig.daemon.plan == ours
    rig.daemon.rebuild()
    assert rig.daemon.plan != ours
    for _ in range(3):
        loop.tick()
    assert loop.connected
    assert rig.daemon.plan == ours  # found the new pipeline and put our plan back
    assert loop.counts["rejected"] == 0
    loop.close()


def test_loop_plans_on_the_measured_service_time_unless_overridden(rig) -> None:
    rig.daemon.packets = 30_000  # 8 x 0.3 cores at 1 us
    rig.daemon.busy_us = {"working": 4.0, "offloading": 1.0}  # measured: 8 x 1.2 cores
    loop = ControlLoop(rig.config, rig.dp, Metrics(CollectorRegistry()), None)
    for _ in range(8):
        loop.tick()
    doc = loop.status()["service_time"]
    assert doc["working"]["source"] == "measured"
    assert doc["working"]["us"] == pytest.approx(4.0)
    assert loop.last_reading is not None
    assert loop.last_reading.snapshot.params.t_working_us == pytest.approx(4.0)
    assert sum(loop.st.last_loads) == pytest.approx(8 * 1.2)
    assert loop.current is not None and loop.current.working >= 2  # 9.6 cores of load
    # the planners were rebuilt once, on the first measurement (the default before: 1 us)
    assert loop.solving.built.params.t_working_us == pytest.approx(4.0)
    text = generate_latest(loop.st.metrics.registry).decode()
    assert 'dyssect_service_time_seconds{kind="working",source="measured"} 4e-06' in text
    loop.close()
    # the same data plane with the service time fixed in the config: the measurement is shown
    # beside the override and the plans follow the override
    fixed = dataclasses.replace(
        rig.config, params=rig.config.params.with_values({"t_working_us": 1.0})
    )
    loop = ControlLoop(fixed, rig.dp, Metrics(CollectorRegistry()), None)
    for _ in range(8):
        loop.tick()
    doc = loop.status()["service_time"]
    assert (doc["working"]["source"], doc["working"]["us"]) == ("override", 1.0)
    assert doc["working"]["measured_us"] == pytest.approx(4.0)
    assert sum(loop.st.last_loads) == pytest.approx(8 * 0.3)
    loop.close()


def test_a_noisy_measurement_rebuilds_the_planners_at_most_once_per_long_epoch(rig) -> None:
    from dyssect_ctrl.loop.solving import make_planner

    built: list[float] = []

    def factory(config, solver):
        if solver != "greedy":
            built.append(config.params.working_us)
        return make_planner(config, solver)

    rig.daemon.packets = 30_000
    loop = ControlLoop(
        rig.config, rig.dp, Metrics(CollectorRegistry()), None, planner_factory=factory
    )
    for n in range(20):  # 4 long epochs (long_ms 500, short_ms 100)
        rig.daemon.busy_us["working"] = 2.0 if n % 2 else 6.0  # the estimate swings every epoch
        loop.tick()
    assert built[0] == 1.0  # built before any measurement: the default
    assert 2 <= len(built) <= 1 + 20 // loop.st.ratio
    loop.close()


def test_restarted_controller_adopts_the_running_plan(rig) -> None:
    running = Plan(3, 1, (0, 1, 2) * 2 + (0, 1), {0: 0, 1: 0, 2: 0}, (0.0,) * 8)
    rig.daemon.plan = running
    rig.daemon.plan_id = 41
    rig.daemon.packets = 100_000
    loop = ControlLoop(rig.config, rig.dp, Metrics(CollectorRegistry()), None)
    loop.tick()
    assert loop.plan_id in (41, 42)
    # The first thing sent (if anything) is a plan derived from the running one, never W=1.
    applies = [c for c in rig.daemon.calls if c[0] == "apply_plan"]
    assert all(a[2]["working"] >= 2 for a in applies)
    loop.close()


def test_busy_data_plane_defers_the_plan_and_the_loop_waits_for_migrations(rig) -> None:
    rig.dp.connect()
    rig.daemon.busy = True
    with pytest.raises(PlanDeferred, match="migration is still in progress"):
        rig.dp.apply(Plan(2, 0, (0, 1) * 4, {}, (0.0,) * 8))
    assert rig.dp.health.connected  # busy is not a lost connection
    rig.daemon.busy = False
    rig.daemon.calls.clear()
    rig.daemon.packets = 120_000  # more than one core's worth
    registry = CollectorRegistry()
    loop = ControlLoop(rig.config, rig.dp, Metrics(registry), None)
    rig.daemon.migrating = True
    for _ in range(6):
        loop.tick()
    assert not [c for c in rig.daemon.calls if c[0] == "apply_plan"]  # waits while migrating
    assert registry.get_sample_value("dyssect_epochs_migrating_total") == 6
    rig.daemon.migrating = False
    for _ in range(6):
        loop.tick()
    assert loop.connected and rig.daemon.plan.working >= 2
    loop.close()


def test_a_moving_measurement_does_not_hold_a_scale_down_forever(rig) -> None:
    rig.daemon.packets = 30_000
    rig.daemon.busy_us = {"working": 4.0, "offloading": 1.0}  # 8 x 1.2 cores: more than one
    loop = ControlLoop(rig.config, rig.dp, Metrics(CollectorRegistry()), None)
    for _ in range(10):
        loop.tick()
    assert loop.current is not None and loop.current.working + loop.current.offloading >= 2
    rig.daemon.packets = 500  # a small fraction of one core, whatever the estimate
    for n in range(40):  # 8 long epochs (long_ms 500, short_ms 100); hysteresis 3
        # the estimate moves every epoch, so the planners are rebuilt every long epoch: the
        # scale-down votes must survive the rebuilds
        rig.daemon.busy_us["working"] = 2.0 if n % 2 else 6.0
        loop.tick()
    assert loop.current.working + loop.current.offloading == 1
    loop.close()
