"""Session fixtures for the BESS-layer tests: build the plugin, run one bessd, reset per test."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bess import harness


@pytest.fixture(scope="session")
def bess_tree() -> Path:
    src = harness.bess_src()
    if not (src / "core" / "bessd").exists():
        pytest.fail(f"{src}/core/bessd not found: build BESS first (docs/dataplane.md)")
    return src


@pytest.fixture(scope="session")
def plugin(bess_tree: Path) -> Path:
    return harness.build_plugin(bess_tree)


@pytest.fixture(scope="session")
def daemon(
    bess_tree: Path, plugin: Path, request: pytest.FixtureRequest
) -> Iterator[harness.Daemon]:
    log = Path(tempfile.mkstemp(prefix="dyssect-bessd-", suffix=".log")[1])
    d = harness.start_bessd(bess_tree, plugin.parent, log)
    try:
        yield d
    finally:
        d.stop()  # by PID, the process this fixture started
        # DPDK lists every 4 KiB memory segment at start (15 MB a run): keep the log only
        # when something failed.
        Path(f"{log}.pid").unlink(missing_ok=True)
        if request.session.testsfailed == 0:
            log.unlink(missing_ok=True)
        else:
            print(f"bessd log kept: {log}")


@pytest.fixture()
def bess(bess_tree: Path, daemon: harness.Daemon) -> Iterator[Any]:
    b = harness.connect(harness.import_pybess(bess_tree), daemon)
    b.pause_all()
    b.reset_all()
    try:
        yield b
    finally:
        try:
            b.pause_all()
            b.reset_all()
        finally:
            b.disconnect()
