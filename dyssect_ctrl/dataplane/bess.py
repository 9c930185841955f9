"""The live data plane: the DyssectShardManager module in bessd, reached through pybess.

pybess comes from the BESS install (config dataplane.pybess_path, put on sys.path). Every RPC
has a deadline (dataplane.connect_timeout_ms) so a hung bessd cannot stall the loop. A broken
channel raises DataplaneError; the loop then calls connect() again, which opens a fresh channel
(gRPC's own reconnect backoff grows to minutes, far too slow for a restarted bessd), finds the
module again or raises PipelineAbsent, and maps CPU ids to BESS worker ids. Idle cores are paused
workers (PauseWorker/ResumeWorker, per the data-plane contract); if pausing fails the worker just
keeps running (correct, only wasteful) and that is logged once.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import importlib
import logging
import sys
import threading
from typing import Any

from dyssect_ctrl.config import Config
from dyssect_ctrl.dataplane.base import (
    ApplyResult,
    Dataplane,
    DataplaneError,
    PipelineAbsent,
    PlanDeferred,
    PlanRejected,
    Reading,
    plan_problem,
)
from dyssect_ctrl.model import Plan, ShardStats, Snapshot
from dyssect_ctrl.service_time import KINDS, Busy

log = logging.getLogger(__name__)

MCLASS = "DyssectShardManager"


class _NeverRaised(Exception):
    """Stands in for pybess's error class before pybess is imported."""


class _Deadline:
    """Wraps the generated gRPC stub so every call pybess makes carries a timeout."""

    def __init__(self, stub: Any, timeout_s: float) -> None:
        self._stub = stub
        self._timeout_s = timeout_s

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)
        wrapped = functools.partial(method, timeout=self._timeout_s)
        wrapped._method = getattr(method, "_method", name)  # type: ignore[attr-defined]
        return wrapped


def load_pybess(path: str) -> tuple[Any, Any]:
    """(BESS class, grpc module) from the BESS install at `path`."""
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        grpc = importlib.import_module("grpc")
        bess_mod = importlib.import_module("pybess.bess")
    except ImportError as e:
        raise DataplaneError(
            f"cannot import pybess from dataplane.pybess_path {path!r}: {e}"
        ) from None
    return bess_mod.BESS, grpc


def probe(grpc: Any, url: str, timeout_s: float) -> None:
    """Wait (bounded) until a channel to bessd is READY or fails; pybess's connect never times
    out, so every pybess connect is preceded by this."""
    channel = grpc.insecure_channel(url)
    done = threading.Event()
    seen: list[Any] = []
    final = {
        grpc.ChannelConnectivity.READY,
        grpc.ChannelConnectivity.TRANSIENT_FAILURE,
        grpc.ChannelConnectivity.SHUTDOWN,
    }

    def watch(state: Any) -> None:
        seen.append(state)
        if state in final:
            done.set()

    channel.subscribe(watch, try_to_connect=True)
    try:
        done.wait(timeout_s)
    finally:
        channel.unsubscribe(watch)
        channel.close()
    state = seen[-1] if seen else None
    if state != grpc.ChannelConnectivity.READY:
        name = getattr(state, "name", "no answer")
        raise DataplaneError(f"bessd at {url} not reachable ({name})")


class BessDataplane(Dataplane):
    kind = "bess"

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.url = config.dataplane.grpc_url
        self.module = config.dataplane.module
        self.timeout_s = config.dataplane.connect_timeout_ms / 1000.0
        self._bess_cls: Any = None
        self._grpc: Any = None
        self._b: Any = None
        self._errors: tuple[type[BaseException], ...] = ()
        # CPU id -> BESS worker id, and the workers this controller paused.
        self.workers: dict[int, int] = {}
        self.paused: set[int] = set()
        self._pause_broken = False
        self._fresh = False
        # The shard manager's instance id seen in this session (0: not seen yet, or an older
        # plugin that does not report one).
        self._instance = 0
        # The plugin's drop and in/out counters are cumulative; the loop wants windows.
        self._totals: dict[str, int] = {}

    def describe(self) -> str:
        return f"bessd at {self.url}, module {self.module!r} (pybess from {self._pybess_path})"

    @property
    def _pybess_path(self) -> str:
        return self.config.dataplane.pybess_path

    # -- connection ------------------------------------------------------------------------

    def connect(self) -> None:
        self.close()
        if self._bess_cls is None:
            self._bess_cls, self._grpc = load_pybess(self._pybess_path)
            b = self._bess_cls
            self._errors = (self._grpc.RpcError, b.RPCError, b.APIError)
        self._probe()
        b = self._bess_cls()
        try:
            b.connect(grpc_url=self.url)
        except self._errors as e:
            raise DataplaneError(f"bessd at {self.url}: {e}") from None
        b.stub = _Deadline(b.stub, self.timeout_s)
        self._b = b
        modules = self._call(b.list_modules).modules
        found = [m for m in modules if m.name == self.module]
        if not found:
            self._b = None
            b.disconnect()
            raise PipelineAbsent(
                f"bessd at {self.url} is up but has no module {self.module!r}: "
                "the Dyssect pipeline is not loaded"
            )
        if found[0].mclass != MCLASS:
            self._b = None
            b.disconnect()
            raise PipelineAbsent(
                f"module {self.module!r} in bessd is a {found[0].mclass}, not a {MCLASS}"
            )
        self._map_workers()
        self._fresh = True
        self._instance = 0
        self.health.connected = True
        self.health.reason = "connected"
        self.health.reconnects += 1

    def _probe(self) -> None:
        probe(self._grpc, self.url, self.timeout_s)

    def _map_workers(self) -> None:
        """CPU id -> worker id for the core list.

        The contract (and the dyssect role's pipeline) makes the core list the worker ids
        (wid = CPU id); a pipeline with other ids is matched by the worker's pinned core.
        """
        status = self._call(self._b.list_workers).workers_status
        by_core = {int(w.core): int(w.wid) for w in status}
        by_wid = {int(w.wid) for w in status}
        running = {int(w.wid): bool(w.running) for w in status}
        self.workers = {}
        for cpu in self.config.cores.list:
            if cpu in by_wid:
                self.workers[cpu] = cpu
            elif cpu in by_core:
                self.workers[cpu] = by_core[cpu]
        missing = [c for c in self.config.cores.list if c not in self.workers]
        if missing:
            log.warning(
                "bessd has no worker for cores %s: they cannot be paused or resumed", missing
            )
        # A paused worker found on connect was paused by us before (or by an earlier controller).
        self.paused = {cpu for cpu, wid in self.workers.items() if not running.get(wid, True)}

    def close(self) -> None:
        b, self._b = self._b, None
        if b is not None:
            try:
                b.disconnect()
            except Exception as e:  # pybess on a dead channel; nothing to keep
                log.debug("disconnect: %s", e)
        self.health.connected = False

    def _call(self, fn: Any, *args: Any) -> Any:
        if self._b is None:
            raise DataplaneError("not connected to bessd")
        try:
            return fn(*args)
        except self._errors as e:
            self.close()
            self.health.reason = f"connection lost: {_short(e)}"
            raise DataplaneError(f"bessd at {self.url}: {_short(e)}") from None
        except self._daemon_error as e:
            if getattr(e, "code", None) == errno.ENOENT:
                self.close()
                self.health.reason = "pipeline absent"
                raise PipelineAbsent(f"bessd at {self.url}: {getattr(e, 'errmsg', e)}") from None
            raise

    def _command(self, cmd: str, arg_type: str, arg: dict[str, Any]) -> Any:
        if self._b is None:
            raise DataplaneError("not connected to bessd")
        return self._call(self._b.run_module_command, self.module, cmd, arg_type, arg)

    @property
    def _daemon_error(self) -> type[BaseException]:
        """pybess's BESS.Error (the daemon answered with an error code)."""
        return self._bess_cls.Error if self._bess_cls is not None else _NeverRaised

    # -- stats -----------------------------------------------------------------------------

    def read(self) -> Reading:
        try:
            resp = self._command("get_stats", "DyssectCommandGetStatsArg", {})
        except self._daemon_error as e:
            raise DataplaneError(f"get_stats: {e}") from None
        instance = int(getattr(resp, "instance", 0))
        if self._instance and instance != self._instance:
            # Same bessd, rebuilt pipeline (dyssect-pipeline reloaded): its counters restarted and
            # its workers may differ. Drop the session so the loop reconnects and re-applies.
            self.close()
            raise DataplaneError(
                f"the Dyssect pipeline was rebuilt (instance {self._instance:x} -> "
                f"{instance:x}): reconnecting"
            )
        self._instance = instance
        fresh, self._fresh = self._fresh, False
        if fresh:
            self._totals = {}  # a new session: its cumulative counters start here
        reading, self._totals = reading_from_stats(resp, self.config, self._totals, fresh=fresh)
        return reading

    def set_window(self, window_s: float) -> None:
        """set_params with the short epoch as window_s (other fields 0: left as they are)."""
        try:
            self._command("set_params", "DyssectCommandSetParamsArg", {"window_s": window_s})
        except self._daemon_error as e:
            raise DataplaneError(f"set_params: {e}") from None

    # -- plans and cores -------------------------------------------------------------------

    def cores_of(self, plan: Plan) -> set[int]:
        cores = self.config.cores.list
        m = len(cores)
        used = {cores[i] for i in range(plan.working)}
        used |= {cores[m - 1 - j] for j in range(plan.offloading)}
        return used

    def apply(self, plan: Plan) -> ApplyResult:
        problem = plan_problem(plan, self.config.shards, self.config.core_count)
        if problem is not None:
            raise PlanRejected(problem)
        # Cores come back before any shard or offload is sent to them.
        for cpu in sorted(self.cores_of(plan) & self.paused):
            self._worker("resume", cpu)
        arg = {
            "working": plan.working,
            "offloading": plan.offloading,
            "assignment": list(plan.assignment),
            "pairing": [plan.pairing.get(i, -1) for i in range(plan.working)],
            "offload": list(plan.offload) or [0.0] * self.config.shards,
        }
        try:
            resp = self._command("apply_plan", "DyssectCommandApplyPlanArg", arg)
        except self._daemon_error as e:
            code = getattr(e, "code", None)
            if code == errno.EINVAL:
                raise PlanRejected(str(getattr(e, "errmsg", e))) from None
            if code == errno.EBUSY:
                # A migration or offload hand-off is under way; nothing was applied.
                raise PlanDeferred(str(getattr(e, "errmsg", e))) from None
            raise DataplaneError(f"apply_plan: {e}") from None
        return ApplyResult(plan_id=int(resp.plan_id), migrations=int(resp.migrations))

    def idle(self, reading: Reading) -> None:
        """Pause the workers of cores the data plane's plan no longer uses, once drained."""
        current = reading.snapshot.current
        if current is None or reading.migrating or self._pause_broken:
            return
        busy = self.cores_of(current)
        cores = self.config.cores.list
        busy |= {cores[o] for o in reading.owners if 0 <= o < len(cores)}
        for cpu in sorted(set(self.workers) - busy - self.paused):
            self._worker("pause", cpu)

    def _worker(self, action: str, cpu: int) -> None:
        wid = self.workers.get(cpu)
        if wid is None or self._b is None:
            return
        fn = self._b.pause_worker if action == "pause" else self._b.resume_worker
        try:
            self._call(fn, wid)
        except self._daemon_error as e:
            if action == "pause":
                # Fallback: leave idle workers running (they poll an empty queue).
                self._pause_broken = True
                log.error("PauseWorker(%d) failed (%s): idle cores keep running", wid, e)
                return
            raise DataplaneError(f"ResumeWorker({wid}) for core {cpu}: {e}") from None
        if action == "pause":
            self.paused.add(cpu)
            log.info("core %d (worker %d) idle: paused", cpu, wid)
        else:
            self.paused.discard(cpu)
            log.info("core %d (worker %d) needed: resumed", cpu, wid)


def reading_from_stats(
    resp: Any, config: Config, totals: dict[str, int], *, fresh: bool = False
) -> tuple[Reading, dict[str, int]]:
    """DyssectCommandGetStatsResponse -> (Reading, cumulative counters to pass next time).

    Per-shard packets and bytes are per window already; drops and packets in/out are cumulative
    in the plugin and become differences against `totals` (the previous reading's; empty on a
    new session, so the first reading carries everything counted so far). A counter that went
    backwards shows up negative, and the validator rejects the reading for it. No other
    validation here.
    """
    shards = []
    owners = []
    assignment = []
    offload = []
    for s in resp.shards:
        shares = tuple(float(x) for x in s.top_flow_shares)
        shards.append(ShardStats(packets=int(s.packets), bytes=int(s.bytes), flow_shares=shares))
        pending = int(s.pending_owner)
        target = pending if pending >= 0 else int(s.owner)
        owners.append(int(s.owner))
        assignment.append(target)
        offload.append(float(s.offload))
    working = int(resp.working)
    pairing = {i: int(j) for i, j in enumerate(resp.pairing) if i < working and int(j) >= 0}
    current = None
    if working >= 1:
        current = Plan(working, int(resp.offloading), tuple(assignment), pairing, tuple(offload))
    now = {"in": int(resp.packets_in), "out": int(resp.packets_out)}
    now.update({f"drop:{k}": int(v) for k, v in resp.drops.items()})
    busy: dict[str, tuple[Busy, ...]] = {}
    for kind in KINDS:
        # an older plugin has neither field: no busy time
        cycles = list(getattr(resp, f"{kind}_busy_cycles", ()))
        packets = list(getattr(resp, f"{kind}_busy_packets", ()))
        slots = []
        for i, (c, n) in enumerate(zip(cycles, packets, strict=False)):
            key = f"busy:{kind}:{i}"
            now[f"{key}:cycles"], now[f"{key}:packets"] = int(c), int(n)
            slots.append(
                Busy(
                    cycles=int(c) - totals.get(f"{key}:cycles", 0),
                    packets=int(n) - totals.get(f"{key}:packets", 0),
                )
            )
        busy[kind] = tuple(slots)
    snap = Snapshot(
        cores=config.core_count,
        window_s=float(resp.window_s),
        params=config.params,
        shards=tuple(shards),
        current=current,
        timestamp=float(resp.timestamp_s),
        epoch=int(resp.epoch),
        drops={k: now[f"drop:{k}"] - totals.get(f"drop:{k}", 0) for k in resp.drops},
    )
    reading = Reading(
        snapshot=snap,
        plan_id=int(resp.plan_id),
        migrating=bool(resp.migrating),
        packets_in=now["in"] - totals.get("in", 0),
        packets_out=now["out"] - totals.get("out", 0),
        owners=tuple(owners),
        fresh=fresh,
        busy=busy,
        tsc_hz=float(getattr(resp, "tsc_hz", 0.0)),
    )
    return reading, now


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    details = getattr(e, "details", None)
    if callable(details):
        with contextlib.suppress(Exception):  # grpc errors without a code
            text = f"{e.code().name}: {details()}"  # type: ignore[attr-defined]
    return text[:200]
