"""`dyssect-ctrl run` as systemd runs it: a real process, a real NOTIFY_SOCKET, real signals."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dyssect_ctrl.config import parse_config
from dyssect_ctrl.dataplane.base import plan_problem
from dyssect_ctrl.decision_log import read_decisions
from dyssect_ctrl.model import Plan
from dyssect_ctrl.status import main as status_main
from tests.controller_process import ROOT, Controller
from tests.replay_helpers import config_dict, write_config, write_replay


@pytest.fixture
def replay(tmp_path: Path) -> Path:
    loads = [0.4] * 10 + [2.2] * 30 + [0.6] * 30
    return write_replay(tmp_path / "snaps.jsonl", loads)


@pytest.fixture
def controller(tmp_path: Path, replay: Path) -> Iterator[Controller]:
    c = Controller(tmp_path, config_dict(tmp_path, replay))
    yield c
    c.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ready_watchdog_and_status_over_notify_socket(controller: Controller) -> None:
    ready = controller.notify.wait_for("READY", "1")
    assert "STATUS" in ready
    controller.notify.wait_for("WATCHDOG", "1")
    time.sleep(1.0)
    # WATCHDOG_USEC=0.4 s: a ping every tick (0.1 s), never a gap of half the interval.
    pings = [t for t, m in controller.notify.messages if "WATCHDOG" in m]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    # systemd needs one within WATCHDOG_USEC; each tick sends one, so most gaps are 0.1 s.
    assert len(pings) >= 5 and max(gaps) < 0.4 and min(gaps) >= 0.05
    assert sorted(gaps)[len(gaps) // 2] < 0.15
    statuses = [m["STATUS"] for _, m in controller.notify.messages if "STATUS" in m]
    assert "W=1 E=0 (1/4 cores)" in statuses[0]  # sent with READY=1
    assert "last solve" in statuses[-1]
    # Logs carry syslog priorities for the journal.
    assert "<6>dyssect_ctrl" in controller.stderr
    assert "<4>dyssect_ctrl.dataplane: data plane: replay" in controller.stderr


def test_sigterm_stops_cleanly_and_leaves_a_whole_plan(controller: Controller) -> None:
    controller.notify.wait_for("READY", "1")
    controller.wait_log("W=3", timeout=15)  # scaled up under the 2.2-core load
    rc = controller.stop()
    assert rc == 0
    assert controller.notify.count("STOPPING") == 1
    applied = controller.tmp / "state" / "replay-applied.jsonl"
    records = [json.loads(x) for x in applied.read_text().splitlines()]
    last = Plan.from_json(records[-1]["plan"])
    assert plan_problem(last, 16, 4) is None
    decisions = read_decisions(controller.tmp / "state" / "decisions.jsonl")
    assert decisions[-1]["plan"] == records[-1]["plan"]
    assert decisions[-1]["plan_id"] == records[-1]["plan_id"]
    assert "stopped; the data plane keeps plan" in controller.stderr


def test_sighup_with_a_bad_config_keeps_the_old_one(controller: Controller) -> None:
    controller.notify.wait_for("READY", "1")
    good = controller.config_path.read_text()
    controller.config_path.write_text(good + "shards: 48\n")  # duplicate key and bad value
    controller.proc.send_signal(signal.SIGHUP)
    controller.wait_log("reload rejected, the running config stays")
    assert "RELOADING" in controller.notify.wait_for("RELOADING")
    time.sleep(0.5)
    assert controller.proc.poll() is None
    n = len(controller.notify.messages)
    time.sleep(0.5)
    assert any("WATCHDOG" in m for _, m in controller.notify.messages[n:])  # still looping
    # Now a good change: only that key takes effect.
    cfg = dict(controller.cfg)
    cfg["model"] = {"sigma": 1.25}
    write_config(controller.config_path, cfg)
    controller.proc.send_signal(signal.SIGHUP)
    controller.wait_log("config reloaded: model.sigma")
    assert controller.stop() == 0


def test_status_command_reads_the_running_service(controller: Controller, capsys) -> None:
    controller.notify.wait_for("READY", "1")
    time.sleep(0.5)
    sock = controller.cfg["status_socket"]
    assert status_main(["--socket", sock, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ready"] and doc["dataplane"]["kind"] == "replay"
    assert doc["pid"] == controller.proc.pid
    assert doc["plan"]["working"] >= 1
    assert status_main(["--config", str(controller.config_path)]) == 0
    out = capsys.readouterr().out
    assert "dyssect-controller: running" in out and "working" in out and "plan " in out


def test_metrics_endpoint_answers(tmp_path: Path, replay: Path) -> None:
    port = free_port()
    c = Controller(tmp_path, config_dict(tmp_path, replay, metrics={"port": port}))
    try:
        c.notify.wait_for("READY", "1")
        time.sleep(0.5)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        text = body.decode()
        assert 'dyssect_cores{role="working"}' in text
        assert "dyssect_solve_seconds_bucket" in text
        assert "dyssect_epochs_total" in text
        # status falls back to the metrics endpoint when the socket is not there
        os.unlink(c.cfg["status_socket"])
        assert (
            status_main(
                [
                    "--socket",
                    str(tmp_path / "none.sock"),
                    "--metrics",
                    f"http://127.0.0.1:{port}/metrics",
                    "--json",
                ]
            )
            == 0
        )
    finally:
        assert c.stop() == 0


def test_bad_config_exits_non_zero_with_the_key(tmp_path: Path, replay: Path) -> None:
    cfg = config_dict(tmp_path, replay, shards=48)
    path = write_config(tmp_path / "bad.yml", cfg)
    r = subprocess.run(
        [sys.executable, "-m", "dyssect_ctrl", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 1
    assert "shards: must be a power of two" in r.stderr
    parse_config(config_dict(tmp_path, replay))  # the good one parses


def test_status_without_a_controller_fails_clearly(tmp_path: Path, capsys) -> None:
    assert status_main(["--socket", str(tmp_path / "nothing.sock")]) == 1
    assert "cannot reach the controller" in capsys.readouterr().err
