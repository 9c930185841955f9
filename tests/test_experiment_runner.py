"""The experiment runner against a fake ansible_runner.run (the edge): what it asks Ansible to
run, the cache, the records, and the outputs."""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from dyssect_ctrl.experiment.runner import Experiment, dry_run, point_key
from dyssect_ctrl.experiment.spec import parse_spec

PHASES = [{"seconds": 10, "load": 0.5}, {"seconds": 10, "load": 1.0}]


def spec_dict(rates: list[int], policies: list[str] | None = None) -> dict[str, Any]:
    return {
        "name": "cmp",
        "repetitions": 2,
        "factors": {
            "policy": policies or ["static", "dyssect"],
            "profile": ["steps"],
            "rate": rates,
        },
        "profiles": {"steps": {"phases": PHASES}},
    }


class FakeAnsible:
    """Stands in for ansible_runner.run: records the call, sends two events, and writes the
    summary.json the playbook's report step would have fetched."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = fail or set()
        self.lock = threading.Lock()
        self.busy: set[str] = set()
        self.overlap = False

    def __call__(self, **kw: Any) -> Any:
        host = kw["limit"].split(",")[0]  # the dut host (and its generator)
        with self.lock:
            self.calls.append(kw)
            if host in self.busy:
                self.overlap = True
            self.busy.add(host)
        ev = kw["extravars"]
        kw["event_handler"]({"event": "playbook_on_start", "stdout": "PLAY"})
        kw["event_handler"](
            {
                "event": "runner_on_ok",
                "stdout": "ok: [dut]",
                "event_data": {"res": {"ansible_facts": {"ansible_processor_nproc": 2}}},
            }
        )
        status = "failed" if kw["ident"] in self.fail else "successful"
        if status == "successful":
            out = Path(ev["experiment_results_dir"]) / ev["experiment_name"] / host
            out.mkdir(parents=True, exist_ok=True)
            rate = ev["experiment_point"]["rate_pps"]
            cores = 1.0 if ev["experiment_setup"]["policy"] == "dyssect" else 3.0
            (out / "summary.json").write_text(
                json.dumps(
                    {
                        "cores": {"mean": cores, "core_seconds": cores * 20},
                        "migrations": rate // 1000,
                        "plans": 4,
                        "solve": {"long": {"p99_ms": 0.5}, "short": {"p99_ms": None}},
                        "drops": {"ring_full": 0},
                    }
                )
            )
        with self.lock:
            self.busy.discard(host)
        return SimpleNamespace(status=status, rc=0 if status == "successful" else 2)


def experiment(tmp_path: Path, spec: dict[str, Any], fake: FakeAnsible, **kw: Any) -> Experiment:
    return Experiment(
        parse_spec(spec),
        results_root=tmp_path,
        inventory=tmp_path / "inv",
        playbook=tmp_path / "experiment.yml",
        hosts=kw.pop("hosts", ["dut"]),
        run_fn=fake,
        show_progress=False,
        **kw,
    )


def test_each_point_is_one_playbook_run_with_its_variables(tmp_path: Path) -> None:
    fake = FakeAnsible()
    exp = experiment(tmp_path, spec_dict([2000]), fake)
    records = exp.run()
    assert len(fake.calls) == 4 and len(records) == 4
    idents = {c["ident"] for c in fake.calls}
    assert len(idents) == 4
    call = next(c for c in fake.calls if c["extravars"]["experiment_setup"]["policy"] == "static")
    ev = call["extravars"]
    assert call["limit"] == "dut" and call["playbook"].endswith("experiment.yml")
    assert ev["experiment_phases"] == [
        {"seconds": 10, "rate_pps": 1000},
        {"seconds": 10, "rate_pps": 2000},
    ]
    assert ev["experiment_point"]["profile"] == "steps"
    assert "experiment_traffic" not in ev  # no generator: the test source offers the phases
    assert ev["experiment_name"] == call["ident"]
    rec = json.loads((tmp_path / "cmp" / "points" / f"{call['ident']}.json").read_text())
    assert rec["status"] == "successful"
    assert rec["host_facts"] == {"ansible_processor_nproc": 2}
    assert rec["results"]["summary"]["plans"] == 4
    assert rec["spec"]["name"] == "cmp" and "project_commit" in rec and rec["bess_commit"]
    assert rec["packages"]["ansible-runner"]
    log = (tmp_path / "cmp" / "logs" / f"{call['ident']}.events.jsonl").read_text().splitlines()
    assert [json.loads(x)["event"] for x in log] == ["playbook_on_start", "runner_on_ok"]


def test_rerun_with_one_level_added_runs_only_the_new_points(tmp_path: Path) -> None:
    first = FakeAnsible()
    experiment(tmp_path, spec_dict([2000]), first).run()
    assert len(first.calls) == 4
    second = FakeAnsible()
    exp = experiment(tmp_path, spec_dict([2000, 4000]), second)
    exp.run()
    assert len(second.calls) == 4
    assert {c["extravars"]["experiment_point"]["rate_pps"] for c in second.calls} == {4000}
    # Nothing left: a third run asks Ansible for nothing; --force asks for everything.
    third = FakeAnsible()
    experiment(tmp_path, spec_dict([2000, 4000]), third).run()
    assert third.calls == []
    forced = FakeAnsible()
    experiment(tmp_path, spec_dict([2000, 4000]), forced, force=True).run()
    assert len(forced.calls) == 8


def test_a_changed_profile_or_a_failed_point_runs_again(tmp_path: Path) -> None:
    s = spec_dict([2000])
    fake = FakeAnsible()
    exp = experiment(tmp_path, s, fake)
    failing = exp.spec.points()[0].ident
    fake.fail = {failing}
    exp.run()
    again = FakeAnsible()
    experiment(tmp_path, s, again).run()
    assert [c["ident"] for c in again.calls] == [failing]
    s["profiles"]["steps"]["phases"] = [{"seconds": 10, "load": 0.6}, *PHASES[1:]]
    changed = FakeAnsible()
    experiment(tmp_path, s, changed).run()
    assert len(changed.calls) == 4
    assert point_key(exp.spec, exp.spec.points()[0]) != point_key(
        parse_spec(s), parse_spec(s).points()[0]
    )


def test_points_spread_over_the_dut_hosts_one_at_a_time(tmp_path: Path) -> None:
    fake = FakeAnsible()
    exp = experiment(tmp_path, spec_dict([1000, 2000, 3000]), fake, hosts=["dut1", "dut2"])
    exp.run()
    assert len(fake.calls) == 12
    assert {c["limit"] for c in fake.calls} == {"dut1", "dut2"}
    assert not fake.overlap


def test_csv_per_metric_with_a_column_per_series(tmp_path: Path) -> None:
    fake = FakeAnsible()
    exp = experiment(tmp_path, spec_dict([2000, 4000]), fake)
    exp.run()
    metrics = exp.write_outputs()
    out = tmp_path / "cmp"
    # The generator's metrics are not in these records: no file for them (yet).
    assert "cores_mean" in metrics and "migrations" in metrics
    assert "latency_p99_us" not in metrics and not (out / "latency_p99_us.csv").exists()
    rows = list(csv.reader((out / "migrations.csv").open()))
    assert rows[0] == [
        "profile",
        "rate",
        "static",
        "static_sd",
        "static_n",
        "dyssect",
        "dyssect_sd",
        "dyssect_n",
    ]
    assert rows[1] == ["steps", "2000", "2.0", "0.0", "2", "2.0", "0.0", "2"]
    assert rows[2] == ["steps", "4000", "4.0", "0.0", "2", "4.0", "0.0", "2"]
    cores = list(csv.reader((out / "cores_mean.csv").open()))
    assert cores[1][2] == "3.0" and cores[1][5] == "1.0"
    assert (out / "cores_mean.png").stat().st_size > 0
    assert len(list(csv.reader((out / "points.csv").open()))) == 1 + 8


def test_generator_metrics_are_picked_up_when_they_appear(tmp_path: Path) -> None:
    fake = FakeAnsible()
    exp = experiment(tmp_path, spec_dict([2000]), fake)
    exp.run()
    for path in (tmp_path / "cmp" / "runs").glob("*/dut"):
        (path / "traffic.json").write_text(json.dumps({"latency_us": {"p99": 42.0}}))
    exp2 = experiment(tmp_path, spec_dict([2000]), FakeAnsible(), force=True)
    # The fake rewrites summary.json; traffic.json stays and is read into the record.
    exp2.run()
    assert "latency_p99_us" in exp2.write_outputs()


def test_dry_run_prints_commands_and_runs_nothing(tmp_path: Path) -> None:
    fake = FakeAnsible()
    exp = experiment(tmp_path, spec_dict([2000]), fake)
    buf = io.StringIO()
    dry_run(exp, buf)
    text = buf.getvalue()
    assert fake.calls == []
    assert text.startswith("cmp: 4 point(s) to run, 0 cached")
    assert text.count("ansible-playbook -i") == 4
    assert "experiment_setup:" in text and "policy: static" in text


def test_the_real_ansible_runner_runs_a_point_on_localhost(tmp_path: Path) -> None:
    """The runner's call of ansible_runner.run, for real: a local playbook standing in for
    experiment.yml gets the point's variables and its summary lands in the record."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  children:\n    dut:\n      hosts:\n        local-dut:\n"
        "          ansible_connection: local\n"
        "          ansible_python_interpreter: '{{ ansible_playbook_python }}'\n"
    )
    playbook = tmp_path / "point.yml"
    playbook.write_text(
        """- hosts: dut
  gather_facts: false
  vars:
    out: "{{ experiment_results_dir }}/{{ experiment_name }}/{{ inventory_hostname }}"
  tasks:
    - ansible.builtin.setup:
        gather_subset: [min]
    - ansible.builtin.file:
        path: "{{ out }}"
        state: directory
        mode: "0755"
    - ansible.builtin.copy:
        dest: "{{ out }}/summary.json"
        content: '{{ {"plans": experiment_phases | length,
                      "policy": experiment_setup.policy} | to_json }}'
        mode: "0644"
"""
    )
    # In a fresh interpreter, as `dyssect-ctrl experiment run` is: ansible_runner forks from a
    # worker thread, and a fork after other tests loaded gRPC into this process crashes the child.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        rec, todo = pool.apply(_run_one_point, (tmp_path, inventory, playbook))
    assert rec["status"] == "successful", rec.get("error")
    assert rec["results"]["summary"] == {"plans": 2, "policy": "rsspp"}
    assert rec["host_facts"].get("ansible_system") == "Linux"
    assert todo == []  # cached now


def _run_one_point(tmp_path: Path, inventory: Path, playbook: Path) -> tuple[dict, list]:
    s = spec_dict([2000], policies=["rsspp"])
    s["repetitions"] = 1
    exp = Experiment(
        parse_spec(s),
        results_root=tmp_path / "results",
        inventory=inventory,
        playbook=playbook,
        hosts=["local-dut"],
        show_progress=False,
    )
    (rec,) = exp.run()
    return rec, exp.todo()[0]


def test_a_dut_with_a_generator_runs_with_it_and_gets_a_generator_profile(
    tmp_path: Path,
) -> None:
    fake = FakeAnsible()
    exp = experiment(tmp_path, spec_dict([2000], ["static"]), fake, generators={"dut": "gen"})
    exp.run()
    assert {c["limit"] for c in fake.calls} == {"dut,gen"}
    ev = fake.calls[0]["extravars"]
    assert ev["experiment_traffic"]["phases"] == [
        {"name": "p1", "seconds": 10, "rate_pps": 1000},
        {"name": "p2", "seconds": 10, "rate_pps": 2000},
    ]
    seeds = sorted(c["extravars"]["experiment_traffic"]["seed"] for c in fake.calls)
    assert seeds == [1, 2]  # no seed factor: the repetition number
