"""site.yml's preflight play against this machine (localhost, check mode, `--tags preflight`):
every bad value below is refused there, before any role changes a host, with a message that
names the variable. Each case starts from a set of values this machine accepts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PREFLIGHT_PLAY = "Preflight every host before changing any"

# Values that fit this machine (2 CPUs): workers 1 and 2 on CPU 1, the controller on CPU 0.
# The controller's cores are spelled out (they default to dyssect_cores) so that the same
# values also pass the checks of roles that do not default them.
GOOD: dict[str, Any] = {
    "dyssect_cores": [1, 2],
    "dyssect_worker_cpus": {2: 1},
    "dyssect_dispatcher_core": 1,
    "dyssect_controller_cores": [1, 2],
    "dyssect_controller_core": 0,
    "hugepages_2m_count": 0,
    "hugepages_reserved_memory_mb": 0,
}


def run_preflight(tmp_path: Path, extra: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    inventory = {
        "all": {
            "children": {
                "dut": {
                    "hosts": {
                        "localhost": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": sys.executable,
                        }
                    }
                },
                "gen": {"hosts": {}},
            }
        }
    }
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "vars.yml").write_text(yaml.safe_dump({**GOOD, **extra}))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "DYSSECT_BESS_SRC": "",
    }
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "site.yml",
            "-i",
            str(tmp_path / "inventory.yml"),
            "--check",
            "--tags",
            "preflight",
            "-e",
            f"@{tmp_path / 'vars.yml'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout
    # The timer callback (ansible.cfg) prints a line after the JSON report.
    report, _ = json.JSONDecoder().raw_decode(out[out.index("{") :])
    return proc.returncode, report


def first_failure(report: dict[str, Any]) -> tuple[str, str]:
    """(play name, failure messages) of the first failed task."""
    for play in report["plays"]:
        for task in play["tasks"]:
            result = task["hosts"].get("localhost", {})
            if result.get("failed"):
                msgs = [str(result.get("msg", ""))]
                items = result.get("results", [])
                msgs += [str(r.get("msg", "")) for r in items if r.get("failed")]
                return play["play"]["name"], "\n".join(msgs)
    return "", ""


def test_the_good_values_pass(tmp_path: Path) -> None:
    rc, report = run_preflight(tmp_path, {})
    assert first_failure(report) == ("", "")
    assert rc == 0


NOT_AN_ARCHIVE = "not-an-archive.tar.gz"

CASES = [
    # Core 1 for the controller: a list the checks turned into [0] would then pass them.
    pytest.param(
        {"dyssect_controller_cores": ["2-5"], "dyssect_controller_core": 1},
        "dyssect_controller_cores",
        id="cores-range",
    ),
    pytest.param({"hugepages_2m_count": "lots"}, "hugepages_2m_count", id="pages-word"),
    pytest.param({"dyssect_controller_user": "root"}, "dyssect_controller_user", id="user-root"),
    pytest.param(
        {"dyssect_controller_watchdog_sec": -5}, "dyssect_controller_watchdog_sec", id="watchdog"
    ),
    pytest.param(
        {"dyssect_controller_metrics_listen": "0.0.0.0"},
        "dyssect_controller_metrics_listen",
        id="metrics-any",
    ),
    pytest.param(
        {"hugepages_reserved_memory_mb": -1}, "hugepages_reserved_memory_mb", id="reserve"
    ),
    pytest.param(
        {"dyssect_controller_environment": {"A": "1\nLD_PRELOAD=/tmp/x.so"}},
        "dyssect_controller_environment",
        id="env-newline",
    ),
    pytest.param(
        {"bess_extra_args": ["-d\nExecStartPre=/bin/true"]}, "bess_extra_args", id="args-newline"
    ),
    pytest.param(
        {
            "hugepages_mounts": [
                {"path": "/mnt/h", "pagesize": "2M", "options": "mode=1770\nWhat=/"}
            ]
        },
        "hugepages_mounts",
        id="mount-options-newline",
    ),
    pytest.param({"bess_grpc_url": "127.0.0.1:99999"}, "bess_grpc_url", id="grpc-port"),
    pytest.param({"bess_source": NOT_AN_ARCHIVE}, "bess_source", id="not-an-archive"),
    pytest.param(
        {"dpdk_nics": [{"pci": "0000:00:00.0", "driver": "bogus"}]}, "driver", id="nic-driver"
    ),
    pytest.param(
        {"dyssect_shards": 64, "dyssect_controller_shards": 128},
        "dyssect_controller_shards",
        id="shards-mismatch",
    ),
    pytest.param(
        {"dyssect_controller_cores": [2, 1]}, "dyssect_controller_cores", id="cores-mismatch"
    ),
    pytest.param({"dyssect_shards": 1024}, "dyssect_shards", id="shards-limit"),
]


@pytest.mark.parametrize(("extra", "variable"), CASES)
def test_a_bad_value_is_refused_in_preflight_naming_the_variable(
    tmp_path: Path, extra: dict[str, Any], variable: str
) -> None:
    if extra.get("bess_source") == NOT_AN_ARCHIVE:
        fake = tmp_path / NOT_AN_ARCHIVE
        fake.write_text("<html>404 Not Found</html>\n")
        extra = {"bess_source": str(fake)}
    rc, report = run_preflight(tmp_path, extra)
    play, message = first_failure(report)
    assert rc != 0
    assert play == PREFLIGHT_PLAY, f"refused only in {play!r}: {message}"
    assert variable in message
