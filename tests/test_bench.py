"""bench: the command, a tiny end-to-end run in JSON and in tables."""

from __future__ import annotations

import json

import pytest

from dyssect_ctrl import bench
from dyssect_ctrl.planner import milp


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
