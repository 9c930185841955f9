"""`dyssect-ctrl record` against a status socket: real sockets, a scripted provider at the edge."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

from dyssect_ctrl.experiment.record import main, record, sample_of
from dyssect_ctrl.status import StatusServer, query_socket
from tests.replay_helpers import config_dict, write_config

DOC = {
    "state": "running",
    "total_load": 1.75,
    "plan": {"working": 2, "offloading": 1, "assignment": [0, 1]},
    "plan_id": 7,
    "cores": [{"load": 0.8}, {"load": 0.7}, {"load": 0.25}],
    "counts": {"migrations": 3},
    "drops_total": {"ring_full": 4},
    "last_solve": {"mode": "short", "solve_ms": 1.5},
    "service_time": {"working": {"us": 3.2, "source": "measured", "measured_us": 3.2}},
}


def test_sample_keeps_what_an_experiment_needs() -> None:
    s = sample_of(DOC, 1000.0)
    assert s["t"] == 1000.0 and s["total_load"] == 1.75
    assert (s["working"], s["offloading"], s["plan_id"]) == (2, 1, 7)
    assert s["core_loads"] == [0.8, 0.7, 0.25]
    assert s["drops_total"] == {"ring_full": 4}
    assert s["service_time"]["working"] == {"us": 3.2, "source": "measured", "measured_us": 3.2}
    assert sample_of({"state": "starting"}, 1.0)["working"] is None


def test_record_samples_on_the_interval_and_writes_unanswered_ones(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    served = {"n": 0}

    def provider() -> dict:
        served["n"] += 1
        return {**DOC, "plan_id": served["n"]}

    server = StatusServer(path, provider)
    out = io.StringIO()
    try:
        n, errors = record(lambda: query_socket(path), out, seconds=0.3, interval=0.1)
    finally:
        server.close()
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert n == len(lines) == 4 and errors == 0
    assert [x["plan_id"] for x in lines] == [1, 2, 3, 4]
    ts = [x["t"] for x in lines]
    assert all(b > a for a, b in itertools.pairwise(ts))
    # the controller gone: every sample becomes an error line, none is dropped
    out = io.StringIO()
    n, errors = record(lambda: query_socket(path), out, seconds=0.1, interval=0.1)
    assert n == errors == 2
    assert all("error" in json.loads(x) for x in out.getvalue().splitlines())


def test_record_command_reads_the_socket_from_the_config(tmp_path: Path, capsys) -> None:
    cfg = config_dict(tmp_path, tmp_path / "unused.jsonl")
    conf = write_config(tmp_path / "c.yml", cfg)
    server = StatusServer(cfg["status_socket"], lambda: DOC)
    try:
        rc = main(
            [
                "--config",
                str(conf),
                "--seconds",
                "0.2",
                "--interval",
                "0.1",
                "--out",
                str(tmp_path / "run" / "samples.jsonl"),
            ]
        )
    finally:
        server.close()
    assert rc == 0
    assert "3 samples (0 unanswered)" in capsys.readouterr().out
    assert len((tmp_path / "run" / "samples.jsonl").read_text().splitlines()) == 3
    # nobody answering at all is a failure
    rc = main(
        [
            "--config",
            str(conf),
            "--seconds",
            "0.1",
            "--interval",
            "0.1",
            "--out",
            str(tmp_path / "run" / "none.jsonl"),
        ]
    )
    assert rc == 1
    assert main(["--config", str(tmp_path / "missing.yml"), "--seconds", "1", "--out", "x"]) == 1
