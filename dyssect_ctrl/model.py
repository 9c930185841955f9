"""Plain data types shared by the planner, the data plane and the loop.

Slots: working cores are numbered 0..W-1 and offloading cores 0..E-1, in two separate index
spaces. On the data plane, working slot i runs on core_list[i] and offloading slot j on
core_list[M-1-j], so a change of W never moves an offloading core and W + E <= M keeps them apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Params:
    """Cost-model knobs. Times in microseconds; CVs are coefficients of variation."""

    slo_priority_us: float = 10.0
    slo_regular_us: float = 50.0
    ca_priority: float = 1.0
    cs_priority: float = 1.0
    ca_regular: float = 1.0
    cs_regular: float = 1.0
    # Mean service time per packet: None = measured by the data plane (the controller fills in
    # the value in force, dyssect_ctrl/service_time.py); a number is a fixed override.
    t_working_us: float | None = None
    t_offloading_us: float | None = None
    # What a service time not set and not yet measured is taken to be.
    service_time_default_us: float = 1.0
    sigma: float = 1.0
    rho_cap: float = 0.9
    max_offloading_ratio: float = 0.5

    @property
    def working_us(self) -> float:
        """The working cores' service time the model uses."""
        t = self.t_working_us
        return self.service_time_default_us if t is None else t

    @property
    def offloading_us(self) -> float:
        """The offloading cores' service time the model uses."""
        t = self.t_offloading_us
        return self.service_time_default_us if t is None else t

    @property
    def k_priority(self) -> float:
        return (self.ca_priority**2 + self.cs_priority**2) / 2.0

    @property
    def k_regular(self) -> float:
        return (self.ca_regular**2 + self.cs_regular**2) / 2.0

    @property
    def rho_max_working(self) -> float:
        """Kingman G/G/1 wait <= SLO, solved for the load: a linear cap for fixed K, T, SLO."""
        slo = self.slo_priority_us
        return min(self.rho_cap, slo / (slo + self.k_priority * self.working_us))

    @property
    def rho_max_offloading(self) -> float:
        slo = self.slo_regular_us
        return min(self.rho_cap, slo / (slo + self.k_regular * self.offloading_us))

    def max_offloading(self, working: int) -> int:
        """Most offloading cores allowed with `working` working cores."""
        return math.ceil(working * self.max_offloading_ratio - 1e-9)

    @staticmethod
    def kingman_delay_us(rho: float, k: float, t_us: float) -> float:
        """Kingman estimate of the mean queueing delay; infinite at or above saturation."""
        if rho >= 1.0:
            return math.inf
        return rho / (1.0 - rho) * k * t_us

    def with_values(self, values: dict[str, Any]) -> Params:
        return replace(self, **values)


@dataclass(frozen=True)
class Plan:
    """W working cores, E offloading cores, shard->working slot A, working->offloading O, r."""

    working: int
    offloading: int
    assignment: tuple[int, ...]
    pairing: dict[int, int] = field(default_factory=dict)
    offload: tuple[float, ...] = ()

    @staticmethod
    def initial(shards: int) -> Plan:
        """The start state of the original: every shard on working core 0, no offloading."""
        return Plan(1, 0, tuple([0] * shards), {}, tuple([0.0] * shards))

    def to_json(self) -> dict[str, Any]:
        return {
            "working": self.working,
            "offloading": self.offloading,
            "assignment": list(self.assignment),
            "pairing": {str(k): v for k, v in sorted(self.pairing.items())},
            "offload": list(self.offload),
        }

    @staticmethod
    def from_json(obj: dict[str, Any]) -> Plan:
        return Plan(
            working=int(obj["working"]),
            offloading=int(obj.get("offloading", 0)),
            assignment=tuple(int(a) for a in obj["assignment"]),
            pairing={int(k): int(v) for k, v in (obj.get("pairing") or {}).items()},
            offload=tuple(float(r) for r in obj.get("offload") or [0.0] * len(obj["assignment"])),
        )

    def migrations(self, old: Plan) -> int:
        """Shards whose working slot changed plus working cores whose offloading core changed."""
        moved = sum(1 for a, b in zip(self.assignment, old.assignment, strict=True) if a != b)
        repaired = sum(1 for i in range(self.working) if self.pairing.get(i) != old.pairing.get(i))
        return moved + repaired


@dataclass(frozen=True)
class ShardStats:
    packets: int
    bytes: int
    # Byte share of each flow of the shard seen last window, largest first (may be empty).
    flow_shares: tuple[float, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    """One measurement window of the data plane."""

    cores: int
    window_s: float
    params: Params
    shards: tuple[ShardStats, ...]
    current: Plan | None = None
    # Monotonic time of the end of the window (seconds) and the data plane's epoch counter.
    timestamp: float = 0.0
    epoch: int = 0
    # Drop counters by reason, as the data plane reports them.
    drops: dict[str, int] = field(default_factory=dict)

    def loads(self) -> list[float]:
        """V_s in cores: packets * t_working / window."""
        t = self.params.working_us * 1e-6
        return [s.packets * t / self.window_s for s in self.shards]

    def current_or_initial(self) -> Plan:
        return self.current if self.current is not None else Plan.initial(len(self.shards))


@dataclass(frozen=True)
class PlanResult:
    """A plan and how it was obtained."""

    plan: Plan
    solver: str
    fallback: str | None
    solve_ms: float
    feasible: bool
    # True when the backend proved the objective optimal (core count or migrations).
    optimal: bool
    objective: float
    max_load_working: float
    max_load_offloading: float
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        out = self.plan.to_json()
        out.update(
            {
                "solver": self.solver,
                "fallback": self.fallback,
                "solve_ms": self.solve_ms,
                "max_load": {
                    "working": self.max_load_working,
                    "offloading": self.max_load_offloading,
                },
                "feasible": self.feasible,
                "optimal": self.optimal,
                "objective": self.objective,
            }
        )
        return out


def core_loads(plan: Plan, loads: list[float], params: Params) -> tuple[list[float], list[float]]:
    """Load of every working and offloading slot under `plan` (the cost model in one place)."""
    work = [0.0] * plan.working
    offl = [0.0] * plan.offloading
    for s, v in enumerate(loads):
        i = plan.assignment[s]
        r = plan.offload[s] if plan.offload else 0.0
        work[i] += v * (1.0 - r)
        if r > 0.0:
            offl[plan.pairing[i]] += params.sigma * v * r
    return work, offl
