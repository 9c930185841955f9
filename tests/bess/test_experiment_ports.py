"""`dyssect-ctrl ports` against a real bessd: a net_null port's counters, read twice around
traffic sent through it, differ by what was sent (needs DYSSECT_BESS_SRC)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from dyssect_ctrl.experiment.ports import difference, main
from tests.bess import harness
from tests.replay_helpers import write_config

pytestmark = [
    pytest.mark.bess,
]


def _read(conf: Path, capsys: Any) -> dict[str, dict[str, int]]:
    assert main(["--config", str(conf)]) == 0
    return dict(json.loads(capsys.readouterr().out))


def test_ports_counts_what_a_port_sent_between_two_reads(
    bess: Any, daemon: harness.Daemon, bess_tree: Path, tmp_path: Path, capsys: Any
) -> None:
    bess.add_worker(0, 0)
    bess.create_port("PMDPort", "p0", {"vdev": "net_null0"})
    bess.create_module("Source", "src", {"pkt_size": 64})
    bess.create_module("PortOut", "out", {"port": "p0"})
    bess.connect_modules("src", "out")
    bess.add_tc("rl", policy="rate_limit", wid=0, resource="packet", limit={"packet": 5000})
    bess.attach_task("src", parent="rl")
    conf = write_config(
        tmp_path / "c.yml",
        {"dataplane": {"kind": "bess", "grpc_url": daemon.url, "pybess_path": str(bess_tree)}},
    )
    before = _read(conf, capsys)
    assert set(before) == {"p0"}
    assert before["p0"]["tx_packets"] == 0
    with harness.running(bess):
        time.sleep(1.0)
    after = _read(conf, capsys)
    sent = difference(before, after)["p0"]
    assert 2500 < sent["tx_packets"] < 7500, sent
    assert sent["tx_dropped"] == 0 and sent["rx_packets"] == 0

    # bessd gone: a clear error, no traceback
    bad = write_config(
        tmp_path / "bad.yml",
        {"dataplane": {"kind": "bess", "grpc_url": "unix:/nonexistent/x.sock",
                       "pybess_path": str(bess_tree), "connect_timeout_ms": 500}},
    )  # fmt: skip
    assert main(["--config", str(bad)]) == 1
    assert "ports: bessd at unix:/nonexistent/x.sock" in capsys.readouterr().err
