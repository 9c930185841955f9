"""The service time in force: smoothing of the data plane's busy time, override and default."""

from __future__ import annotations

import pytest

from dyssect_ctrl.model import Params
from dyssect_ctrl.service_time import ALPHA, Busy, ServiceTimes, busy_us, moved

HZ = 2.0e9


def window(us_per_packet: float, packets: int, slots: int = 1) -> tuple[Busy, ...]:
    """`slots` slots sharing `packets` packets at `us_per_packet` each."""
    each = packets // slots
    cycles = round(us_per_packet * 1e-6 * HZ * each)
    return tuple(Busy(cycles=cycles, packets=each) for _ in range(slots))


def test_busy_us_is_cycles_over_packets_at_the_tsc_rate() -> None:
    slots = (Busy(cycles=4_000, packets=2), Busy(cycles=16_000, packets=8))
    assert busy_us(slots, HZ) == pytest.approx(20_000 / HZ / 10 * 1e6)
    assert busy_us((Busy(0, 0),), HZ) is None
    assert busy_us(slots, 0.0) is None


def test_first_window_is_the_measurement_then_an_ewma_weighted_by_packets() -> None:
    st = ServiceTimes()
    assert st.measured_us("working") is None
    st.observe({"working": window(2.0, 1000, slots=2)}, HZ)
    assert st.measured_us("working") == pytest.approx(2.0)
    st.observe({"working": window(4.0, 1000)}, HZ)
    # EWMA of busy seconds and of packets, then their ratio
    secs = 2.0e-6 * 1000 + ALPHA * (4.0e-6 * 1000 - 2.0e-6 * 1000)
    assert st.measured_us("working") == pytest.approx(secs / 1000 * 1e6)
    # a busier epoch weighs more than a quiet one of the same time per packet
    heavy, light = ServiceTimes(), ServiceTimes()
    for s in (heavy, light):
        s.observe({"working": window(2.0, 1000)}, HZ)
    heavy.observe({"working": window(4.0, 10_000)}, HZ)
    light.observe({"working": window(4.0, 10)}, HZ)
    assert heavy.measured_us("working") > light.measured_us("working") > 2.0  # type: ignore[operator]


def test_the_estimate_converges_to_a_new_steady_cost() -> None:
    st = ServiceTimes()
    st.observe({"working": window(1.0, 500)}, HZ)
    for _ in range(60):
        st.observe({"working": window(3.0, 500)}, HZ)
    assert st.measured_us("working") == pytest.approx(3.0, rel=1e-3)


def test_an_epoch_without_packets_leaves_the_estimate_alone() -> None:
    st = ServiceTimes()
    st.observe({"working": window(2.5, 100), "offloading": window(7.0, 50)}, HZ)
    st.observe({"working": (Busy(0, 0),), "offloading": ()}, HZ)
    st.observe({}, HZ)
    st.observe({"working": window(9.0, 100)}, 0.0)  # no TSC rate: nothing to convert
    assert st.measured_us("working") == pytest.approx(2.5)
    assert st.measured_us("offloading") == pytest.approx(7.0)


def test_in_force_override_then_measured_then_default() -> None:
    st = ServiceTimes()
    params = Params(service_time_default_us=3.0)
    f = st.in_force(params)
    assert (f["working"].us, f["working"].source, f["working"].measured_us) == (
        3.0,
        "default",
        None,
    )
    st.observe({"working": window(5.0, 100)}, HZ)
    f = st.in_force(params)
    assert f["working"].source == "measured" and f["working"].us == pytest.approx(5.0)
    assert f["offloading"].source == "default" and f["offloading"].us == 3.0
    f = st.in_force(params.with_values({"t_working_us": 25.0}))
    assert f["working"].source == "override" and f["working"].us == 25.0
    assert f["working"].measured_us == pytest.approx(5.0)  # shown beside the override


def test_params_carry_the_values_in_force() -> None:
    st = ServiceTimes()
    st.observe({"working": window(5.0, 100), "offloading": window(8.0, 100)}, HZ)
    p = st.params(Params(t_offloading_us=30.0))
    assert p.t_working_us == pytest.approx(5.0) and p.working_us == pytest.approx(5.0)
    assert p.t_offloading_us == 30.0
    # the load of a shard follows: V = packets * t / window
    assert p.rho_max_working == pytest.approx(
        min(p.rho_cap, p.slo_priority_us / (p.slo_priority_us + p.k_priority * 5.0))
    )


def test_moved_is_relative_to_the_old_value() -> None:
    base = Params(t_working_us=10.0, t_offloading_us=10.0)
    assert not moved(base, base.with_values({"t_working_us": 10.4}))
    assert moved(base, base.with_values({"t_working_us": 10.6}))
    assert moved(base, base.with_values({"t_offloading_us": 9.4}))
