"""The status socket, the metrics fallback and the table."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from rich.console import Console

from dyssect_ctrl.metrics import Metrics, MetricsServer
from dyssect_ctrl.model import Params, Plan
from dyssect_ctrl.status import StatusServer, main, query_metrics, query_socket, render

DOC = {
    "state": "running",
    "status": "W=2 E=1 (3/4 cores), plan 7",
    "ready": True,
    "dataplane": {"kind": "bess", "connected": True, "reason": "connected"},
    "loop_epoch": 120,
    "cores_total": 4,
    "plan": {"working": 2, "offloading": 1},
    "plan_id": 7,
    "total_load": 1.5,
    "cores": [
        {
            "role": "working",
            "slot": 0,
            "cpu": 2,
            "load": 0.5,
            "cap": 0.9,
            "delay_us": 1.0,
            "slo_us": 10.0,
            "shards": 8,
        },
        {
            "role": "working",
            "slot": 1,
            "cpu": 3,
            "load": 0.95,
            "cap": 0.9,
            "delay_us": 19.0,
            "slo_us": 10.0,
            "shards": 8,
        },
        {
            "role": "offloading",
            "slot": 0,
            "cpu": 5,
            "load": 0.05,
            "cap": 0.9,
            "delay_us": None,
            "slo_us": 50.0,
            "shards": None,
        },
    ],
    "last_solve": {"mode": "short", "backend": "highs", "solve_ms": 1.5, "fallback": "late"},
    "policy": "rsspp",
    "solver_backend": "auto",
    "counts": {"fallbacks": 3, "rejected": 1},
    "drops": {"ring_full": 4, "table_full": 0},
    "service_time": {
        "working": {"us": 25.0, "source": "override", "measured_us": 21.5},
        "offloading": {"us": 1.0, "source": "default", "measured_us": None},
    },
}


def test_socket_round_trip(tmp_path: Path) -> None:
    path = str(tmp_path / "run" / "status.sock")
    server = StatusServer(path, lambda: DOC)
    try:
        assert query_socket(path) == json.loads(json.dumps(DOC))
        assert query_socket(path)["plan_id"] == 7  # one document per connection
    finally:
        server.close()
    assert not Path(path).exists()


def test_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "status.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    server = StatusServer(str(path), lambda: {"state": "running"})
    try:
        assert query_socket(str(path)) == {"state": "running"}
    finally:
        server.close()


def test_render_shows_plan_cores_and_slo_breaches() -> None:
    console = Console(record=True, width=100, color_system=None)
    render(DOC, console)
    text = console.export_text()
    assert "dyssect-controller: running" in text
    assert "plan 7: W=2 E=1 of 4 cores" in text
    assert "last solve: short highs 1.5 ms, fallback: late" in text
    assert "policy: rsspp, solver backend: auto" in text
    assert "working" in text and "offloading" in text and "inf" in text
    assert "19.00" in text  # the slot over its SLO is shown (in red on a terminal)
    assert "drops last window: ring_full 4" in text
    assert "table_full" not in text
    assert "service time working: 25.000 us (override); measured 21.500 us" in text
    assert "service time offloading: 1.000 us (default); not measured yet" in text


def test_metrics_fallback_builds_a_reduced_document() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.observe_loads([0.3, 0.3], Plan(2, 0, (0, 1), {}, (0.0, 0.0)), Params(), cores=4)
    m.connected.set(1)
    m.fallbacks.labels(reason="late").inc(2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = MetricsServer(reg, "127.0.0.1", port)
    try:
        doc = query_metrics(f"http://127.0.0.1:{port}/metrics")
    finally:
        server.close()
    assert doc["plan"] == {"working": 2, "offloading": 0}
    assert doc["cores_total"] == 4
    assert doc["dataplane"]["connected"] is True
    assert [c["slot"] for c in doc["cores"]] == [0, 1]
    assert doc["counts"]["fallbacks"] == 2


def test_main_json_and_unreachable(tmp_path: Path, capsys) -> None:
    path = str(tmp_path / "s.sock")
    server = StatusServer(path, lambda: DOC)
    try:
        assert main(["--socket", path, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["plan_id"] == 7
    finally:
        server.close()
    assert main(["--socket", path]) == 1
    assert "cannot reach the controller" in capsys.readouterr().err


def test_default_config_is_where_the_controller_role_installs_it() -> None:
    import yaml

    from dyssect_ctrl.status import DEFAULT_CONFIG

    role = Path(__file__).resolve().parents[1] / "roles" / "dyssect_controller"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    tasks = yaml.safe_load((role / "tasks" / "configure.yml").read_text())
    (dest,) = [
        t["ansible.builtin.template"]["dest"]
        for t in tasks
        if t.get("ansible.builtin.template", {}).get("src") == "controller.yaml.j2"
    ]
    path = dest.replace(
        "{{ dyssect_controller_config_dir }}", defaults["dyssect_controller_config_dir"]
    )
    assert path == DEFAULT_CONFIG


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_status_outside_the_service_group_says_so_without_a_traceback(tmp_path) -> None:
    locked = tmp_path / "etc"
    locked.mkdir(mode=0o750)
    (locked / "controller.yaml").write_text("shards: 16\n")
    tmp_path.chmod(0o755)
    code = (
        "import dyssect_ctrl.status as s; "
        f"s.DEFAULT_CONFIG = {str(locked / 'controller.yaml')!r}; "
        f"raise SystemExit(s.main(['--socket', {str(tmp_path / 'none.sock')!r}]))"
    )
    r = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "Permission denied (not in the service's group?)" in r.stderr
