"""Snapshot validation and plan checks shared by every data plane."""

from __future__ import annotations

import pytest

from dyssect_ctrl.dataplane.base import (
    Reading,
    SnapshotRejected,
    SnapshotValidator,
    plan_problem,
    same_plan,
)
from dyssect_ctrl.model import Params, Plan, ShardStats, Snapshot


def reading(
    *,
    shards: int = 4,
    cores: int = 4,
    t: float = 1.0,
    epoch: int = 1,
    packets: int = 10,
    drops: dict[str, int] | None = None,
    window_s: float = 0.1,
    current: Plan | None = None,
    packets_in: int = 0,
) -> Reading:
    snap = Snapshot(
        cores=cores,
        window_s=window_s,
        params=Params(),
        shards=tuple(ShardStats(packets, packets * 64) for _ in range(shards)),
        current=current,
        timestamp=t,
        epoch=epoch,
        drops=drops or {},
    )
    return Reading(snapshot=snap, packets_in=packets_in)


def rejected(v: SnapshotValidator, r: Reading) -> str:
    with pytest.raises(SnapshotRejected) as e:
        v.check(r)
    return e.value.reason


def test_good_snapshots_pass_and_move_time_forward() -> None:
    v = SnapshotValidator(shards=4, cores=4)
    v.check(reading(t=1.0, epoch=1))
    v.check(reading(t=1.1, epoch=2))
    assert rejected(v, reading(t=1.1, epoch=3)) == "time_backwards"  # did not advance
    assert rejected(v, reading(t=1.05, epoch=3)) == "time_backwards"
    assert rejected(v, reading(t=1.2, epoch=1)) == "time_backwards"
    v.check(reading(t=1.2, epoch=3))  # a rejection does not move the reference


def test_reset_starts_a_new_session() -> None:
    v = SnapshotValidator(shards=4, cores=4)
    v.check(reading(t=5.0, epoch=100))
    v.reset()  # bessd restarted: its epoch counter starts again
    v.check(reading(t=5.1, epoch=1))


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"shards": 8}, "shard_count_mismatch"),
        ({"cores": 3}, "core_count_mismatch"),
        ({"packets": -1}, "negative_counter"),
        ({"packets": (1 << 64) - 5}, "negative_counter"),  # a wrapped uint64
        ({"drops": {"table_full": -3}}, "negative_counter"),
        ({"packets_in": (1 << 63) + 1}, "negative_counter"),
        ({"window_s": 0.0}, "bad_window"),
        ({"t": float("nan")}, "time_backwards"),
        ({"current": Plan(2, 0, (0, 1, 2, 0), {}, (0.0,) * 4)}, "bad_plan"),
    ],
)
def test_impossible_values_are_rejected(kwargs: dict, reason: str) -> None:
    assert rejected(SnapshotValidator(shards=4, cores=4), reading(**kwargs)) == reason


@pytest.mark.parametrize(
    ("plan", "text"),
    [
        (Plan(0, 0, (0, 0), {}, (0.0, 0.0)), "working = 0"),
        (Plan(2, 3, (0, 1), {}, (0.0, 0.0)), "outside 1..4"),
        (Plan(1, 0, (0,), {}, (0.0,)), "assignment has 1 entries"),
        (Plan(1, 0, (0, 1), {}, (0.0, 0.0)), "shard 1 on working slot 1"),
        (Plan(1, 1, (0, 0), {0: 1}, (0.0, 0.0)), "pairing 0 -> 1"),
        (Plan(1, 1, (0, 0), {0: 0}, (1.5, 0.0)), "offload of shard 0"),
        (Plan(2, 1, (0, 1), {0: 0}, (0.0, 0.5)), "unpaired working slot 1"),
        (Plan(1, 1, (0, 0), {0: 0}, (0.2,)), "offload has 1 entries"),
    ],
)
def test_plan_problems(plan: Plan, text: str) -> None:
    problem = plan_problem(plan, shards=2, cores=4)
    assert problem is not None and text in problem


def test_valid_plan_has_no_problem() -> None:
    assert plan_problem(Plan(2, 1, (0, 1), {0: 0, 1: 0}, (0.3, 0.1)), shards=2, cores=4) is None


def test_same_plan_compares_offload_to_the_data_planes_precision() -> None:
    a = Plan(2, 1, (0, 1), {0: 0}, (0.33139499128779915, 0.0))
    assert same_plan(a, Plan(2, 1, (0, 1), {0: 0}, (0.331395, 0.0)))
    assert not same_plan(a, Plan(2, 1, (0, 1), {0: 0}, (0.3314, 0.0)))
    assert not same_plan(a, Plan(2, 1, (1, 1), {0: 0}, (0.331395, 0.0)))
    assert not same_plan(a, Plan(2, 1, (0, 1), {}, (0.331395, 0.0)))
    assert not same_plan(a, None) and same_plan(None, None)
