"""Prometheus metrics of the controller, on a registry passed in (no global state).

All names start with `dyssect_`. docs/service.md lists them with their meaning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from dyssect_ctrl.model import Params, Plan, core_loads
from dyssect_ctrl.service_time import InForce

log = logging.getLogger(__name__)

# Solve times from 0.1 ms to 2 s: the short model aims under 10 ms, the long one under 100 ms.
SOLVE_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.cores = Gauge("dyssect_cores", "Cores in use by role", ["role"], registry=r)
        self.cores_available = Gauge(
            "dyssect_cores_available", "Cores in the core list (M)", registry=r
        )
        self.shard_load = Gauge(
            "dyssect_shard_load", "Measured load of a shard, in cores", ["shard"], registry=r
        )
        self.core_load = Gauge(
            "dyssect_core_load",
            "Estimated load of a core slot under the current plan (utilisation 0..1+)",
            ["role", "slot"],
            registry=r,
        )
        self.core_delay = Gauge(
            "dyssect_core_delay_us",
            "Kingman estimate of a core slot's queueing delay (microseconds; +Inf if saturated)",
            ["role", "slot"],
            registry=r,
        )
        self.core_slo = Gauge("dyssect_core_slo_us", "Delay SLO of a role", ["role"], registry=r)
        self.core_load_cap = Gauge(
            "dyssect_core_load_cap", "Load cap rho_max of a role", ["role"], registry=r
        )
        self.solve = Histogram(
            "dyssect_solve_seconds",
            "Planner solve time by backend and model",
            ["backend", "mode"],
            buckets=SOLVE_BUCKETS,
            registry=r,
        )
        self.last_solve = Gauge(
            "dyssect_last_solve_seconds", "Time of the last solve", ["mode"], registry=r
        )
        self.fallbacks = Counter(
            "dyssect_fallbacks_total",
            "Plans not from the chosen backend, by reason",
            ["reason"],
            registry=r,
        )
        self.infeasible = Gauge(
            "dyssect_plan_infeasible",
            "1 when the last plan cannot meet the SLOs on M cores",
            registry=r,
        )
        self.migrations = Counter(
            "dyssect_migrations_total", "Shard moves and pairing changes applied", registry=r
        )
        self.offload_changes = Counter(
            "dyssect_offload_changes_total", "Shards whose offload fraction changed", registry=r
        )
        self.plans_applied = Counter(
            "dyssect_plans_applied_total", "Plans sent to the data plane", ["kind"], registry=r
        )
        self.plans_refused = Counter(
            "dyssect_plans_refused_total", "Plans not applied, by reason", ["reason"], registry=r
        )
        self.drops = Counter(
            "dyssect_dataplane_drops_total",
            "Data-plane packet drops by reason",
            ["reason"],
            registry=r,
        )
        self.packets = Counter(
            "dyssect_dataplane_packets_total",
            "Packets into and out of the data plane",
            ["direction"],
            registry=r,
        )
        self.connected = Gauge(
            "dyssect_dataplane_connected", "1 while the data plane answers", registry=r
        )
        self.reconnects = Counter(
            "dyssect_dataplane_reconnects_total", "Successful (re)connections", registry=r
        )
        self.dataplane_errors = Counter(
            "dyssect_dataplane_errors_total",
            "Failed data-plane calls by kind",
            ["kind"],
            registry=r,
        )
        self.epochs = Counter("dyssect_epochs_total", "Epochs run", ["kind"], registry=r)
        self.epochs_migrating = Counter(
            "dyssect_epochs_migrating_total",
            "Epochs not planned because the data plane was still migrating",
            registry=r,
        )
        self.epochs_missed = Counter(
            "dyssect_epochs_missed_total",
            "Epoch ticks skipped because the loop ran late",
            registry=r,
        )
        self.rejected = Counter(
            "dyssect_snapshots_rejected_total",
            "Snapshots rejected, by reason",
            ["reason"],
            registry=r,
        )
        self.decision_latency = Histogram(
            "dyssect_decision_latency_seconds",
            "From the end of an epoch's stats read to the plan applied",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.reloads = Counter(
            "dyssect_config_reloads_total", "SIGHUP reloads by result", ["result"], registry=r
        )
        self.service_time = Gauge(
            "dyssect_service_time_seconds",
            "Service time per packet of a core kind: the data plane's measurement, smoothed "
            "(source=measured), and the value the model uses (source=in_force)",
            ["kind", "source"],
            registry=r,
        )
        self._shards_seen = 0
        self._slots_seen: set[tuple[str, str]] = set()

    # -- updates from the loop -------------------------------------------------------------

    def observe_service_time(self, in_force: Mapping[str, InForce]) -> None:
        """Per kind: the smoothed measurement (NaN before one) and the value in force."""
        for kind, f in in_force.items():
            measured = math.nan if f.measured_us is None else f.measured_us * 1e-6
            self.service_time.labels(kind=kind, source="measured").set(measured)
            self.service_time.labels(kind=kind, source="in_force").set(f.us * 1e-6)

    def observe_loads(self, loads: list[float], plan: Plan, params: Params, cores: int) -> None:
        """Per-shard load and, for the plan in force, per-core load and delay against the SLO."""
        self.cores_available.set(cores)
        for s, v in enumerate(loads):
            self.shard_load.labels(shard=str(s)).set(v)
        for s in range(len(loads), self._shards_seen):
            self.shard_load.remove(str(s))
        self._shards_seen = len(loads)
        self.cores.labels(role="working").set(plan.working)
        self.cores.labels(role="offloading").set(plan.offloading)
        work, offl = core_loads(plan, loads, params)
        seen: set[tuple[str, str]] = set()
        roles: list[tuple[str, list[float], float, float, float]] = [
            ("working", work, params.k_priority, params.working_us, params.slo_priority_us),
            ("offloading", offl, params.k_regular, params.offloading_us, params.slo_regular_us),
        ]
        for role, slot_loads, k, t, slo in roles:
            self.core_slo.labels(role=role).set(slo)
            for i, rho in enumerate(slot_loads):
                key = (role, str(i))
                seen.add(key)
                self.core_load.labels(*key).set(rho)
                delay = Params.kingman_delay_us(rho, k, t)
                self.core_delay.labels(*key).set(delay if math.isfinite(delay) else math.inf)
        self.core_load_cap.labels(role="working").set(params.rho_max_working)
        self.core_load_cap.labels(role="offloading").set(params.rho_max_offloading)
        for key in self._slots_seen - seen:
            self.core_load.remove(*key)
            self.core_delay.remove(*key)
        self._slots_seen = seen

    def observe_dataplane(self, drops: dict[str, int], packets_in: int, packets_out: int) -> None:
        """Counts of the window just closed (the data plane swaps its counters on each read)."""
        for reason, n in drops.items():
            if n:
                self.drops.labels(reason=reason).inc(n)
        if packets_in:
            self.packets.labels(direction="in").inc(packets_in)
        if packets_out:
            self.packets.labels(direction="out").inc(packets_out)


class MetricsServer:
    """The HTTP endpoint; port 0 in the config means none."""

    def __init__(self, registry: CollectorRegistry, listen: str, port: int) -> None:
        self.listen = listen
        self.port = port
        self._server: Any = None
        if port:
            self._server, _thread = start_http_server(port, addr=listen, registry=registry)
            self.port = self._server.server_port
            log.info("metrics on http://%s:%d/metrics", _host(listen), self.port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _host(listen: str) -> str:
    return f"[{listen}]" if ":" in listen else listen
