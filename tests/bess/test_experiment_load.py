"""`dyssect-ctrl load` against a real bessd: the traffic class's limit changes, and the source
then sends at that rate (needs DYSSECT_BESS_SRC)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from dyssect_ctrl.experiment.load import main
from tests.bess import harness
from tests.replay_helpers import write_config

pytestmark = [
    pytest.mark.bess,
]


def _limit(b: Any, tc: str) -> int:
    for c in b.list_tcs().classes_status:
        if getattr(c, "class").name == tc:
            return int(getattr(c, "class").limit["packet"])
    raise AssertionError(f"no traffic class {tc}")


def _sent(b: Any) -> int:
    return int(harness.cmd(b, "gen", "get", "DyssectSeqGenCommandGetArg").sent)


def test_load_sets_the_rate_the_source_then_sends_at(
    bess: Any, daemon: harness.Daemon, bess_tree: Path, tmp_path: Path, capsys
) -> None:
    workers = [(0, 0), (1, 1), (2, 0)]
    harness.seq_pipeline(bess, 16, 2, 0, flows=64, rate_pps=1000, workers=workers)
    conf = write_config(
        tmp_path / "c.yml",
        {"dataplane": {"kind": "bess", "grpc_url": daemon.url, "pybess_path": str(bess_tree)}},
    )
    with harness.running(bess):
        for rate in (2000, 6000):
            assert main(["--config", str(conf), "--tc", "rl", "--rate", str(rate)]) == 0
            assert f"rl limited to {rate} packets/s" in capsys.readouterr().out
            assert _limit(bess, "rl") == rate
            time.sleep(0.3)
            n0, t0 = _sent(bess), time.monotonic()
            time.sleep(1.5)
            sent = (_sent(bess) - n0) / (time.monotonic() - t0)
            assert 0.7 * rate < sent < 1.3 * rate, (rate, sent)
        # no such class: a clear error, nothing changed
        assert main(["--config", str(conf), "--tc", "nope", "--rate", "5"]) == 1
        assert "no traffic class 'nope'" in capsys.readouterr().err
        assert _limit(bess, "rl") == 6000
