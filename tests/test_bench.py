"""bench: instance generator, percentiles, and a tiny end-to-end run in JSON."""

from __future__ import annotations

import json
import random

import pytest

from dyssect_ctrl import bench
from dyssect_ctrl.planner import milp
from tests.plan_checker import violations


def test_instances_follow_the_recipe():
    for s, m in ((16, 8), (64, 16), (256, 32)):
        for k in range(6):
            loads = bench.instance(s, m, k)
            assert loads == bench.instance(s, m, k)  # seeded
            assert len(loads) == s
            assert max(loads) <= bench.SHARD_CAP + 1e-9
            assert sum(loads) <= 0.45 * m + 1e-9
            if k % 2 == 0:
                assert max(loads) - min(loads) < 1e-12  # uniform
    assert bench.instance(16, 8, 1) != bench.instance(16, 8, 1, seed=1)


def test_random_current_is_a_valid_structure():
    from dyssect_ctrl.model import Params

    rng = random.Random(0)
    for _ in range(50):
        s = rng.randint(4, 40)
        w = rng.randint(1, s)
        e = rng.randint(0, (w + 1) // 2)
        cur = bench.random_current(s, w, e, rng)
        assert not violations(cur, [0.0] * s, Params(), w + e, check_caps=False)


def test_percentile_interpolates():
    assert bench.pct([], 50) is None
    assert bench.pct([3.0], 99) == 3.0
    assert bench.pct([0.0, 10.0], 50) == pytest.approx(5.0)
    assert bench.pct([float(x) for x in range(101)], 99) == pytest.approx(99.0)


def test_bad_sizes_are_rejected(capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--sizes", "64by16"])
    assert exc.value.code == 2
    assert "bad size '64by16'" in capsys.readouterr().err


def test_tiny_bench_in_json(capsys):
    rc = bench.main(
        [
            "--json",
            "--sizes",
            "8x4",
            "--instances",
            "3",
            "--baseline-sizes",
            "8x4",
            "--baseline-instances",
            "2",
            "--miqcp-sizes",
            "8x4",
            "--backends",
            "highs,greedy",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    rows = {(r["size"], r["model"], r["method"]): r for r in out["rows"]}
    for model in ("long", "short"):
        ours = rows[("8x4", model, "highs")]
        assert ours["n"] == 3 and ours["optimal"] == 3 and ours["infeasible"] == 0
        assert ours["p50_ms"] > 0 and ours["cpu_p99_ms"] is not None
        plain = rows[("8x4", model, "plain MILP/highs")]
        assert plain["n"] == 2
        assert plain["agree_with_ours"] == f"{plain['optimal']}/{plain['optimal']}"
        if milp.gurobi_available():
            mi = rows[("8x4", model, "MIQCP/gurobi")]
            assert mi["n"] + mi["errors"] == 3
    assert {r["against"] for r in out["ratios"]} >= {"plain MILP/highs"}
    assert out["backends"] == ["highs", "greedy"]


def test_table_output(capsys):
    rc = bench.main(
        [
            "--sizes",
            "8x4",
            "--instances",
            "2",
            "--baseline-sizes",
            "",
            "--miqcp-sizes",
            "",
            "--backends",
            "greedy",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "planner bench" in text and "greedy" in text and "wall time" in text
