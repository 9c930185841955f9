"""Experiment specs: parsing, refusals in one line, the cross product."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dyssect_ctrl.experiment.spec import SpecError, load_spec, parse_spec
from dyssect_ctrl.traffic.profile import parse_profile

REPO = Path(__file__).resolve().parents[1]


def spec(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "t",
        "repetitions": 2,
        "factors": {"policy": ["static", "rsspp"], "profile": ["flat"], "rate": [1000, 2000]},
        "profiles": {"flat": {"phases": [{"seconds": 5, "load": 1.0}]}},
    }
    base.update(over)
    return base


def test_cross_product_times_repetitions() -> None:
    s = parse_spec(spec())
    points = s.points()
    assert len(points) == 2 * 1 * 2 * 2
    combos = {(p.factors["policy"], p.factors["rate"], p.repetition) for p in points}
    assert len(combos) == 8
    assert len({p.ident for p in points}) == 8
    # Repetitions of one combination share the series key, other combinations do not.
    keys = {(p.factors["policy"], p.factors["rate"]): p.series_key for p in points}
    assert len(set(keys.values())) == 4
    assert s.series == "policy" and s.x == "rate"


def test_factor_order_does_not_change_the_points() -> None:
    a = parse_spec(spec())
    b = parse_spec(
        spec(factors={"rate": [1000, 2000], "profile": ["flat"], "policy": ["static", "rsspp"]})
    )
    assert [p.ident for p in a.points()] == [p.ident for p in b.points()]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"factors": {"policy": ["static"], "profile": ["flat"]}}, "factors.rate: missing"),
        ({"colour": 1}, "colour: unknown key"),
        (
            {"factors": {"policy": ["fast"], "profile": ["flat"], "rate": [1]}},
            "factors.policy[0]: must be one of",
        ),
        (
            {"factors": {"policy": ["static"], "profile": ["flat"], "rate": [0]}},
            "factors.rate[0]: must be an integer >= 1",
        ),
        (
            {"factors": {"policy": ["static"], "profile": ["other"], "rate": [1]}},
            "factors.profile[0]: no profile 'other'",
        ),
        (
            {"factors": {"policy": ["static"], "profile": ["flat"], "rate": [1], "shards": [48]}},
            "factors.shards[0]: must be a power of two",
        ),
        (
            {"factors": {"policy": ["static", "static"], "profile": ["flat"], "rate": [1]}},
            "factors.policy: repeats a level",
        ),
        (
            {"factors": {"policy": ["static"], "profile": ["flat"], "rate": [1], "mtu": [1]}},
            "factors.mtu: unknown factor",
        ),
        ({"profiles": {"flat": {"phases": [{"seconds": 5}]}}}, "profiles.flat.phases[0]: must be"),
        (
            {"profiles": {"flat": {"phases": [{"seconds": 5, "load": 1}], "flows": 0}}},
            "profiles.flat.flows: must be",
        ),
        (
            {"profiles": {"flat": {"phases": [{"seconds": 5, "load": 1}], "kind": "x"}}},
            "profiles.flat.kind: unknown key",
        ),
        (
            {"profiles": {"flat": {"phases": [{"seconds": 5, "load": 1}], "seed": 3}}},
            "profiles.flat.seed: comes from the factors",
        ),
        ({"repetitions": 0}, "repetitions: must be an integer >= 1"),
        ({"metrics": {"p99": "results.[["}}, "metrics.p99: bad JMESPath"),
        ({"series": "seed"}, "series: must be one of the spec's factors"),
    ],
)
def test_bad_specs_are_refused_with_one_line(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_spec(spec(**change))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match=r"^.*bad\.yml: invalid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yml")


def test_shipped_specs_parse_and_compare_every_policy() -> None:
    from dyssect_ctrl.policy import POLICIES

    # experiments/ holds specs (factors) and playbook variable files (experiment_traffic)
    files = [p for p in sorted((REPO / "experiments").glob("*.yml")) if "factors" in _yaml(p)]
    assert len(files) >= 4
    for path in files:
        s = load_spec(path)
        # the lab's comparison: the three the paper compares; the others: every policy
        want = {"static", "rsspp", "dyssect"} if s.name == "lab-compare" else set(POLICIES)
        assert set(s.factors["policy"]) == want, path.name


def test_shipped_playbook_variable_files_hold_a_generator_profile() -> None:
    files = [p for p in sorted((REPO / "experiments").glob("*.yml")) if "factors" not in _yaml(p)]
    assert files
    for path in files:
        doc = _yaml(path)
        assert set(doc) <= {"experiment_name", "experiment_traffic", "experiment_setup"}, path
        assert parse_profile(doc["experiment_traffic"]).seconds > 0


def _yaml(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), path
    return doc


def test_a_point_becomes_a_generator_profile() -> None:
    s = parse_spec(
        spec(
            factors={"policy": ["static"], "profile": ["burst"], "rate": [40000], "skew": [1.1]},
            profiles={
                "burst": {
                    "phases": [{"seconds": 5, "load": 0.25}, {"seconds": 3, "load": 1.0}],
                    "hot_set": {"shift_every_s": 2},
                    "flows": 512,
                }
            },
        )
    )
    gen = s.profiles["burst"].generator(40000, seed=7, skew=1.1)
    assert gen == {
        "hot_set": {"shift_every_s": 2},
        "flows": 512,
        "seed": 7,
        "zipf_alpha": 1.1,
        "phases": [
            {"name": "p1", "seconds": 5, "rate_pps": 10000},
            {"name": "p2", "seconds": 3, "rate_pps": 40000},
        ],
    }
    profile = parse_profile(gen)  # what the generator on gen reads
    assert profile.seed == 7 and profile.flows == 512 and profile.seconds == 8
