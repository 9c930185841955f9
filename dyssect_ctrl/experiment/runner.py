"""`dyssect-ctrl experiment run SPEC.yml [--dry-run] [--force]`: a spec's points through Ansible.

Every point (a level of every factor, one repetition) is one run of playbooks/experiment.yml
through the ansible_runner Python API, limited to one dut host of the inventory: N dut hosts run
N points at once, each host one at a time. Its events stream to results/<name>/logs/<ident>.*,
a progress bar shows the ETA. A point whose record says it finished with the same inputs is not
run again (--force runs it anyway), so adding a level runs only the new points. At the end the
records of the spec's points become results/<name>/<metric>.csv and <metric>.png (results.py).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from dyssect_ctrl.experiment.results import (
    metric_queries,
    value_of,
    write_plots,
    write_tables,
)
from dyssect_ctrl.experiment.spec import Point, Spec, SpecError, load_spec

EXIT_OK = 0
EXIT_ERROR = 1
REPO = Path(__file__).resolve().parents[2]
PACKAGES = (
    "dyssect-ctrl",
    "ansible-core",
    "ansible-runner",
    "highspy",
    "gurobipy",
    "jmespath",
    "matplotlib",
    "numpy",
)
RunFn = Callable[..., Any]


class ExperimentError(RuntimeError):
    """Something outside the spec stops the experiment (no dut host, unreadable inventory)."""


def extravars(spec: Spec, point: Point, runs_dir: Path, generator: bool = False) -> dict[str, Any]:
    """The playbook's variables for one point (docs/experiments.md lists them). With a
    generator the point's traffic is a generator profile (experiment_traffic); without one the
    pipeline's test source offers the rates of experiment_phases."""
    f = point.factors
    profile = spec.profiles[f["profile"]]
    setup: dict[str, Any] = {"policy": f["policy"], "settle_s": spec.settle_s}
    for k in ("cores", "shards", "nf_cost"):
        if k in f:
            setup[k] = f[k]
    seed = int(f.get("seed", point.repetition))
    ev: dict[str, Any] = {
        "experiment_name": point.ident,
        "experiment_results_dir": str(runs_dir),
        # What the point offers, for its record (the plots' x axis, the series).
        "experiment_point": {
            "profile": profile.name,
            "rate_pps": f["rate"],
            "seed": seed,
            **({"skew": f["skew"]} if "skew" in f else {}),
        },
        "experiment_phases": [
            {"seconds": p.seconds, "rate_pps": max(1, round(p.load * f["rate"]))}
            for p in profile.phases
        ],
        "experiment_setup": setup,
    }
    if generator:
        ev["experiment_traffic"] = profile.generator(int(f["rate"]), seed, f.get("skew"))
    return ev


def point_key(spec: Spec, point: Point) -> str:
    """What a finished point's record must match to be reused: every input of the run."""
    ev = extravars(spec, point, Path("."))
    ev.pop("experiment_results_dir")
    text = json.dumps(
        {"factors": point.factors, "rep": point.repetition, "vars": ev}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()


def provenance(repo: Path = REPO) -> dict[str, Any]:
    """Project commit, BESS commit and package versions, for every record."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    bess = ""
    try:
        defaults = yaml.safe_load((repo / "roles/bess/defaults/main.yml").read_text()) or {}
        bess = str(defaults.get("bess_git_version", ""))
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "project_commit": commit,
        "bess_commit": bess,
        "packages": versions,
        "python": sys.version.split()[0],
    }


def dut_generators(inventory: Path) -> dict[str, str]:
    """The dut hosts of the inventory, each with its generator ('' for none): the host's
    experiment_generator variable, else the gen host at the same position (as
    playbooks/experiment.yml pairs them). ansible-inventory through ansible_runner."""
    import ansible_runner

    try:
        out, err = ansible_runner.get_inventory(
            action="list", inventories=[str(inventory)], response_format="json", quiet=True
        )
    except ansible_runner.exceptions.AnsibleRunnerException as e:
        raise ExperimentError(f"{inventory}: cannot list the inventory ({e})") from None
    if not isinstance(out, dict):
        raise ExperimentError(f"{inventory}: cannot list the inventory ({str(err).strip()[:200]})")
    hosts = list(out.get("dut", {}).get("hosts", []))
    if not hosts:
        raise ExperimentError(f"{inventory}: no host in the dut group")
    gens = list(out.get("gen", {}).get("hosts", []))
    hostvars = out.get("_meta", {}).get("hostvars", {})
    return {
        h: str(
            hostvars.get(h, {}).get("experiment_generator") or (gens[n] if n < len(gens) else "")
        )
        for n, h in enumerate(hosts)
    }


class Experiment:
    def __init__(
        self,
        spec: Spec,
        *,
        results_root: Path,
        inventory: Path,
        playbook: Path,
        hosts: Sequence[str],
        generators: Mapping[str, str] | None = None,
        run_fn: RunFn | None = None,
        force: bool = False,
        show_progress: bool = True,
    ) -> None:
        self.spec = spec
        self.out = results_root / spec.name
        self.inventory = inventory
        self.playbook = playbook
        self.hosts = list(hosts)
        # dut host -> its traffic generator host ('' or missing: the pipeline's test source)
        self.generators = dict(generators or {})
        self.force = force
        self.show_progress = show_progress
        if run_fn is None:
            import ansible_runner

            run_fn = ansible_runner.run
        self.run_fn = run_fn
        self._lock = threading.Lock()

    # -- the cache --------------------------------------------------------------------------

    def record_path(self, point: Point) -> Path:
        return self.out / "points" / f"{point.ident}.json"

    def cached(self, point: Point) -> bool:
        path = self.record_path(point)
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        return bool(
            rec.get("status") == "successful" and rec.get("key") == point_key(self.spec, point)
        )

    def todo(self) -> tuple[list[Point], list[Point]]:
        """(points to run, points whose finished record is reused)."""
        run: list[Point] = []
        keep: list[Point] = []
        for p in self.spec.points():
            (keep if not self.force and self.cached(p) else run).append(p)
        return run, keep

    def limit(self, host: str) -> str:
        """The hosts of one point's run: the dut host and its generator."""
        gen = self.generators.get(host, "")
        return f"{host},{gen}" if gen else host

    # -- one point --------------------------------------------------------------------------

    def run_point(self, point: Point, host: str, prov: dict[str, Any]) -> dict[str, Any]:
        logs = self.out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        runs = self.out / "runs"
        ev = extravars(self.spec, point, runs, bool(self.generators.get(host)))
        facts: dict[str, Any] = {}
        events_path = logs / f"{point.ident}.events.jsonl"
        text_path = logs / f"{point.ident}.log"
        with events_path.open("w") as events, text_path.open("w") as text:

            def on_event(event: dict[str, Any]) -> bool:
                events.write(json.dumps(event, default=str) + "\n")
                if event.get("stdout"):
                    text.write(event["stdout"] + "\n")
                res = (event.get("event_data") or {}).get("res")
                if isinstance(res, dict) and isinstance(res.get("ansible_facts"), dict):
                    facts.update(res["ansible_facts"])
                return True

            started = time.time()
            env = {
                "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            }
            private = self.out / "runner" / point.ident
            private.mkdir(parents=True, exist_ok=True)
            r = self.run_fn(
                private_data_dir=str(private),
                project_dir=str(REPO),
                playbook=str(self.playbook),
                inventory=str(self.inventory),
                limit=self.limit(host),
                ident=point.ident,
                extravars=ev,
                envvars=env,
                event_handler=on_event,
                quiet=True,
            )
        results = {}
        fetched = runs / point.ident / host
        for path in sorted(fetched.glob("*.json")) if fetched.is_dir() else []:
            try:
                results[path.stem] = json.loads(path.read_text())
            except json.JSONDecodeError:
                results[path.stem] = None
        record = {
            "ident": point.ident,
            "key": point_key(self.spec, point),
            "status": getattr(r, "status", "unknown"),
            "rc": getattr(r, "rc", None),
            "host": host,
            "started": round(started, 3),
            "duration_s": round(time.time() - started, 3),
            "point": {"factors": point.factors, "repetition": point.repetition},
            **prov,
            "spec": self.spec.raw,
            "extravars": ev,
            "host_facts": facts,
            "results": results,
        }
        if record["status"] == "successful" and "summary" not in results:
            record["status"] = "incomplete"  # the playbook passed but brought nothing back
        path = self.record_path(point)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")
        return record

    # -- all points -------------------------------------------------------------------------

    def run(self) -> list[dict[str, Any]]:
        """Run what is not cached, one point per host at a time; returns the new records."""
        todo, _ = self.todo()
        prov = provenance()
        jobs: queue.Queue[Point] = queue.Queue()
        for p in todo:
            jobs.put(p)
        done: list[dict[str, Any]] = []
        progress, task = self._progress(len(todo))

        def worker(host: str) -> None:
            while True:
                try:
                    point = jobs.get_nowait()
                except queue.Empty:
                    return
                try:
                    rec = self.run_point(point, host, prov)
                except Exception as e:  # a broken run must not stop the other hosts
                    rec = {"ident": point.ident, "status": "error", "error": str(e)}
                with self._lock:
                    done.append(rec)
                    if progress is not None:
                        progress.update(
                            task, advance=1, description=f"{point.ident} {rec['status']}"
                        )

        threads = [threading.Thread(target=worker, args=(h,), daemon=True) for h in self.hosts]
        if progress is not None:
            progress.start()
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            if progress is not None:
                progress.stop()
        return done

    def _progress(self, total: int) -> tuple[Any, Any]:
        if not self.show_progress or total == 0:
            return None, None
        from dyssect_ctrl.progress import progress_bar  # rich loads only when shown

        progress = progress_bar()
        return progress, progress.add_task(self.spec.name, total=total)

    # -- outputs ----------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """The finished records of the spec's current points (older levels are ignored)."""
        out = []
        for p in self.spec.points():
            if self.cached(p):
                out.append(json.loads(self.record_path(p).read_text()))
        return out

    def write_outputs(self) -> list[str]:
        recs = self.records()
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "spec.yml").write_text(yaml.safe_dump(self.spec.raw, sort_keys=False))
        self._points_csv(recs)
        metrics = write_tables(self.spec, recs, self.out)
        if recs and metrics:
            write_plots(self.spec, recs, metrics, self.out)
        return metrics

    def _points_csv(self, recs: list[dict[str, Any]]) -> None:
        import csv

        queries = metric_queries(self.spec)
        names = list(self.spec.factors)
        with (self.out / "points.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["ident", *names, "repetition", "host", *queries])
            for r in recs:
                f = r["point"]["factors"]
                w.writerow(
                    [r["ident"], *[f[n] for n in names], r["point"]["repetition"], r["host"]]
                    + [value_of(q, r) for q in queries.values()]
                )


def dry_run(exp: Experiment, out: Any = sys.stdout) -> None:
    """Print the command and the variables of every point that would run."""
    todo, keep = exp.todo()
    print(
        f"{exp.spec.name}: {len(todo)} point(s) to run, {len(keep)} cached, "
        f"over {len(exp.hosts)} dut host(s): {', '.join(exp.hosts)}",
        file=out,
    )
    for n, p in enumerate(todo):
        host = exp.hosts[n % len(exp.hosts)]
        ev = extravars(exp.spec, p, exp.out / "runs", bool(exp.generators.get(host)))
        print(
            f"\n# {p.ident}\nANSIBLE_CONFIG={REPO / 'ansible.cfg'} ansible-playbook "
            f"-i {exp.inventory} --limit {exp.limit(host)} -e '{json.dumps(ev)}' {exp.playbook}",
            file=out,
        )
        print(yaml.safe_dump(ev, sort_keys=False, default_flow_style=None).rstrip(), file=out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dyssect-ctrl experiment",
        description="Run an experiment spec (factors x levels x repetitions) through Ansible.",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="run the spec's points that are not cached, then report")
    run.add_argument("spec", metavar="SPEC.yml")
    run.add_argument("--dry-run", action="store_true", help="print commands and variables only")
    run.add_argument("--force", action="store_true", help="run cached points again")
    run.add_argument("--inventory", type=Path, default=REPO / "inventory" / "lab")
    run.add_argument("--results", type=Path, default=REPO / "results", help="default: results/")
    run.add_argument("--playbook", type=Path, default=REPO / "playbooks" / "experiment.yml")
    run.add_argument("--hosts", help="comma-separated dut hosts (default: the inventory's)")
    args = parser.parse_args(argv)
    # ansible-runner runs ansible-playbook and ansible-inventory from PATH: this venv's first.
    venv_bin = str(Path(sys.executable).parent)
    if venv_bin not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")
    try:
        spec = load_spec(args.spec)
        generators = dut_generators(args.inventory.resolve())
        hosts = args.hosts.split(",") if args.hosts else list(generators)
    except (SpecError, ExperimentError) as e:
        print(f"experiment: {e}", file=sys.stderr)
        return EXIT_ERROR
    exp = Experiment(
        spec,
        results_root=args.results.resolve(),
        inventory=args.inventory.resolve(),
        playbook=args.playbook.resolve(),
        hosts=hosts,
        generators=generators,
        force=args.force,
        run_fn=(lambda **kw: None) if args.dry_run else None,
    )
    if args.dry_run:
        dry_run(exp)
        return EXIT_OK
    new = exp.run()
    failed = [r for r in new if r["status"] != "successful"]
    metrics = exp.write_outputs()
    print(
        f"experiment {spec.name}: {len(new) - len(failed)} point(s) run, {len(failed)} failed, "
        f"{len(spec.points()) - len(new)} cached; {len(metrics)} metric(s) -> {exp.out}"
    )
    for r in failed:
        print(f"  {r['ident']}: {r['status']} (log: {exp.out}/logs/{r['ident']}.log)")
    return EXIT_ERROR if failed else EXIT_OK
