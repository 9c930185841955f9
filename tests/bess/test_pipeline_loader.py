"""The dyssect role's pipeline loader against a real bessd (needs DYSSECT_BESS_SRC): it loads,
its test traffic reaches the shards, `dyssect-ctrl load` changes the offered load, and a worker
id mapped to another CPU runs there."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dyssect_ctrl.experiment.load import main as load_main
from tests.bess import harness
from tests.replay_helpers import write_config
from tests.test_dyssect_pipeline import LOADER
from tests.test_dyssect_pipeline import config as pipeline_config

pytestmark = [
    pytest.mark.bess,
]


def _window(b: Any, seconds: float) -> Any:
    """get_stats over a window of `seconds` (the call closes the window so far first)."""
    harness.get_stats(b)
    time.sleep(seconds)
    return harness.get_stats(b)


def _window_packets(b: Any, seconds: float) -> int:
    return sum(int(s.packets) for s in _window(b, seconds).shards)


def test_loader_builds_the_pipeline_and_its_test_traffic_reaches_the_shards(
    bess: Any, daemon: harness.Daemon, bess_tree: Path, tmp_path: Path, capsys
) -> None:
    cfg = pipeline_config(
        pybess_path=str(bess_tree),
        grpc_url=daemon.url,
        timeout_s=30,
        cores=[1, 2],
        chain=[
            {"kind": "nat", "ext_addrs": ["192.0.2.1"]},
            {"kind": "cpu", "cost_per_byte": 0.0},
            {"kind": "macswap"},
        ],
        worker_cpus={"2": 0},
        test_traffic={"rate_pps": 2000, "flows": 256},
    )
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(cfg))
    done = subprocess.run(
        [sys.executable, str(LOADER), str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "dyssect-pipeline: loaded" in done.stdout
    workers = {int(w.wid): int(w.core) for w in bess.list_workers().workers_status}
    assert workers[1] == 1 and workers[2] == 0  # worker 2 mapped to CPU 0
    st = _window(bess, 1.0)
    n = sum(int(s.packets) for s in st.shards)
    assert 0.6 * 2000 < n < 1.4 * 2000, n
    assert st.steering == "software"
    assert sum(1 for s in st.shards if s.packets > 0) >= 8  # 256 flows over 16 shards
    assert harness.total_drops(st) == 0
    conf = write_config(
        tmp_path / "c.yml",
        {"dataplane": {"kind": "bess", "grpc_url": daemon.url, "pybess_path": str(bess_tree)}},
    )
    assert load_main(["--config", str(conf), "--rate", "6000"]) == 0
    assert "dyssect_traffic limited to 6000 packets/s" in capsys.readouterr().out
    time.sleep(0.3)
    n = _window_packets(bess, 1.0)
    assert 0.6 * 6000 < n < 1.4 * 6000, n
