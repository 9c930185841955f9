"""Metrics on a private registry, and the HTTP endpoint."""

from __future__ import annotations

import math
import urllib.request

from prometheus_client import CollectorRegistry

from dyssect_ctrl.metrics import Metrics, MetricsServer
from dyssect_ctrl.model import Params, Plan


def value(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return reg.get_sample_value(name, labels)


def test_loads_give_per_shard_and_per_core_values() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    params = Params()
    plan = Plan(2, 1, (0, 0, 1, 1), {0: 0}, (0.5, 0.0, 0.0, 0.0))
    m.observe_loads([0.4, 0.2, 0.3, 0.3], plan, params, cores=4)
    assert value(reg, "dyssect_cores", role="working") == 2
    assert value(reg, "dyssect_cores", role="offloading") == 1
    assert value(reg, "dyssect_cores_available") == 4
    assert value(reg, "dyssect_shard_load", shard="0") == 0.4
    assert math.isclose(value(reg, "dyssect_core_load", role="working", slot="0"), 0.4)
    assert math.isclose(value(reg, "dyssect_core_load", role="offloading", slot="0"), 0.2)
    # Kingman: rho / (1 - rho) * K * T with K = 1, T = 1 us.
    assert math.isclose(value(reg, "dyssect_core_delay_us", role="working", slot="1"), 0.6 / 0.4)
    assert value(reg, "dyssect_core_slo_us", role="working") == params.slo_priority_us
    assert value(reg, "dyssect_core_load_cap", role="working") == params.rho_max_working
    # Fewer cores and shards later: the stale series go away.
    m.observe_loads([0.1, 0.1], Plan(1, 0, (0, 0), {}, (0.0, 0.0)), params, cores=4)
    assert value(reg, "dyssect_core_load", role="working", slot="1") is None
    assert value(reg, "dyssect_core_load", role="offloading", slot="0") is None
    assert value(reg, "dyssect_shard_load", shard="3") is None


def test_saturated_core_reports_infinite_delay() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.observe_loads([1.5], Plan(1, 0, (0,), {}, (0.0,)), Params(), cores=1)
    assert value(reg, "dyssect_core_delay_us", role="working", slot="0") == math.inf


def test_dataplane_counters_accumulate_windows() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.observe_dataplane({"table_full": 3, "ring_full": 0}, 100, 97)
    m.observe_dataplane({"table_full": 2}, 50, 50)
    assert value(reg, "dyssect_dataplane_drops_total", reason="table_full") == 5
    assert value(reg, "dyssect_dataplane_drops_total", reason="ring_full") is None
    assert value(reg, "dyssect_dataplane_packets_total", direction="in") == 150
    assert value(reg, "dyssect_dataplane_packets_total", direction="out") == 147


def test_two_registries_do_not_share_state() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    Metrics(a).epochs_missed.inc(3)
    Metrics(b)
    assert value(a, "dyssect_epochs_missed_total") == 3
    assert value(b, "dyssect_epochs_missed_total") == 0


def test_endpoint_serves_the_registry_on_loopback() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.fallbacks.labels(reason="timeout").inc()
    m.solve.labels(backend="highs", mode="short").observe(0.004)
    server = MetricsServer(reg, "127.0.0.1", 0)
    try:
        assert server.port == 0  # port 0 in the config disables the endpoint
    finally:
        server.close()
    # A real ephemeral port: bind through the server with an explicit free port.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = MetricsServer(reg, "127.0.0.1", port)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.close()
    assert 'dyssect_fallbacks_total{reason="timeout"} 1.0' in body
    assert 'dyssect_solve_seconds_bucket{backend="highs",le="0.005",mode="short"} 1.0' in body
