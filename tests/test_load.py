"""`dyssect-ctrl load`: what can be checked without bessd (the real one: tests/bess)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from dyssect_ctrl.experiment.load import main
from tests.replay_helpers import write_config


def _config(tmp_path: Path, port: int) -> Path:
    # pybess from a directory that has none: the stand-in of the fast checks below is grpc's own
    # connectivity probe, which runs before pybess is used.
    pkg = tmp_path / "bess" / "pybess"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "bess.py").write_text("class BESS:\n    Error = RuntimeError\n")
    return write_config(
        tmp_path / "c.yml",
        {
            "dataplane": {
                "kind": "bess",
                "grpc_url": f"127.0.0.1:{port}",
                "pybess_path": str(tmp_path / "bess"),
                "connect_timeout_ms": 300,
            }
        },
    )


def test_rate_below_one_is_refused_because_bess_reads_zero_as_unlimited(capsys) -> None:
    assert main(["--config", "/nonexistent.yml", "--rate", "0"]) == 1
    assert "BESS takes a limit of 0 as unlimited" in capsys.readouterr().err


def test_bad_config_is_reported(tmp_path: Path, capsys) -> None:
    assert main(["--config", str(tmp_path / "missing.yml"), "--rate", "1000"]) == 1
    assert "missing.yml" in capsys.readouterr().err


def test_unreachable_bessd_fails_fast_with_the_address(tmp_path: Path, capsys) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = _config(tmp_path, port)
    t0 = time.monotonic()
    assert main(["--config", str(conf), "--rate", "1000"]) == 1
    assert time.monotonic() - t0 < 3.0
    assert f"bessd at 127.0.0.1:{port} not reachable" in capsys.readouterr().err
