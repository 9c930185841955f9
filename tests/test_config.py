"""Config parsing: defaults, good files, and the exact message for each bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from dyssect_ctrl.config import (
    Config,
    ConfigError,
    changed_keys,
    live_keys,
    load_config,
    load_yaml_text,
    parse_config,
    parse_model,
    restart_keys,
    to_dict,
    with_live_keys,
)
from dyssect_ctrl.model import Params

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "etc" / "dyssect-controller.yaml"

# (config object, exact str(ConfigError))
BAD: list[tuple[Any, str]] = [
    ({"shards": 48}, "shards: must be a power of two no larger than 512 (got 48)"),
    ({"shards": 1024}, "shards: must be a power of two no larger than 512 (got 1024)"),
    ({"shards": 0}, "shards: must be a power of two no larger than 512 (got 0)"),
    ({"shards": True}, "shards: must be an integer (got bool True)"),
    ({"shards": 64.0}, "shards: must be an integer (got float 64.0)"),
    ({"shards": "64"}, "shards: must be an integer (got str '64')"),
    ({"cores": {"list": [2, 3, 3]}}, "cores.list: duplicate core 3"),
    ({"cores": {"list": []}}, "cores.list: must have 1..64 entries (got 0)"),
    ({"cores": {"list": list(range(2, 67))}}, "cores.list: must have 1..64 entries (got 65)"),
    ({"cores": {"list": "2-5"}}, "cores.list: must be a list of CPU ids (got str '2-5')"),
    ({"cores": {"list": [2, -1]}}, "cores.list[1]: must be >= 0 (got -1)"),
    ({"cores": {"list": [2, 3.5]}}, "cores.list[1]: must be an integer (got float 3.5)"),
    (
        {"cores": {"list": [1, 2]}},
        "cores.controller: CPU 1 is also in cores.list; the controller needs its own CPU",
    ),
    ({"model": {"sigma": 0}}, "model.sigma: must be > 0 (got 0)"),
    ({"model": {"sigma": -0.5}}, "model.sigma: must be > 0 (got -0.5)"),
    ({"model": {"slo_priority_us": 0}}, "model.slo_priority_us: must be > 0 (got 0)"),
    ({"model": {"slo_regular_us": -10}}, "model.slo_regular_us: must be > 0 (got -10)"),
    ({"model": {"rho_cap": 1.0}}, "model.rho_cap: must be in (0, 1) (got 1)"),
    ({"model": {"rho_cap": 0}}, "model.rho_cap: must be in (0, 1) (got 0)"),
    (
        {"model": {"max_offloading_ratio": 1.5}},
        "model.max_offloading_ratio: must be in [0, 1] (got 1.5)",
    ),
    ({"model": {"ca_priority": -1}}, "model.ca_priority: must be >= 0 (got -1)"),
    ({"model": {"t_working_us": "1us"}}, "model.t_working_us: must be a number (got str '1us')"),
    (
        {"model": {"t_offloading_us": False}},
        "model.t_offloading_us: must be a number (got bool False)",
    ),
    ({"model": {"sigma": float("nan")}}, "model.sigma: must be a finite number (got nan)"),
    ({"model": {"sigma": float("inf")}}, "model.sigma: must be a finite number (got inf)"),
    ({"model": {"kingman": 2}}, "model.kingman: unknown key"),
    ({"solver": {"frobnicate": 1}}, "solver.frobnicate: unknown key"),
    (
        {"solver": {"backend": "cplex"}},
        "solver.backend: must be one of auto, highs, gurobi, greedy (got 'cplex')",
    ),
    ({"solver": {"short_time_limit_ms": 0}}, "solver.short_time_limit_ms: must be > 0 (got 0)"),
    (
        {"solver": {"short_time_limit_ms": 99}},
        "solver.short_time_limit_ms: plus solver.greedy_deadline_ms must fit in epochs.short_ms "
        "(99 + 5 > 100)",
    ),
    (
        {"solver": {"long_time_limit_ms": 999.5}},
        "solver.long_time_limit_ms: plus solver.greedy_deadline_ms must fit in epochs.long_ms "
        "(999.5 + 5 > 1000)",
    ),
    (
        {"epochs": {"long_ms": 250}},
        "epochs.long_ms: must be a multiple of epochs.short_ms (100) (got 250)",
    ),
    ({"epochs": {"short_ms": 0}}, "epochs.short_ms: must be > 0 (got 0)"),
    (
        {"epochs": {"scale_down_hysteresis": 0}},
        "epochs.scale_down_hysteresis: must be >= 1 (got 0)",
    ),
    ({"epochs": ["short_ms", 100]}, "epochs: must be a mapping (got list ['short_ms', 100])"),
    ({"dataplane": {"kind": "dpdk"}}, "dataplane.kind: must be one of bess, replay (got 'dpdk')"),
    (
        {"dataplane": {"kind": "replay"}},
        "dataplane.replay_file: required when dataplane.kind is replay",
    ),
    (
        {"dataplane": {"grpc_url": "localhost"}},
        "dataplane.grpc_url: must be host:port with a port in 1..65535 (got 'localhost')",
    ),
    (
        {"dataplane": {"grpc_url": "127.0.0.1:70000"}},
        "dataplane.grpc_url: must be host:port with a port in 1..65535 (got '127.0.0.1:70000')",
    ),
    (
        {"dataplane": {"module": "my module"}},
        "dataplane.module: must not contain whitespace (got 'my module')",
    ),
    ({"dataplane": {"pybess_path": ""}}, "dataplane.pybess_path: must not be empty"),
    (
        {"dataplane": {"connect_timeout_ms": -1}},
        "dataplane.connect_timeout_ms: must be > 0 (got -1)",
    ),
    ({"metrics": {"port": 70000}}, "metrics.port: must be <= 65535 (got 70000)"),
    ({"metrics": {"port": -1}}, "metrics.port: must be >= 0 (got -1)"),
    ({"decision_log": {"max_bytes": 100}}, "decision_log.max_bytes: must be >= 4096 (got 100)"),
    ({"decision_log": {"backups": -1}}, "decision_log.backups: must be >= 0 (got -1)"),
    (
        {"log_level": "verbose"},
        "log_level: must be one of debug, info, warning, error (got 'verbose')",
    ),
    ({"state_dir": 5}, "state_dir: must be a string (got int 5)"),
    (
        {"status_socket": "/run/" + "x" * 200},
        "status_socket: must be at most 107 bytes (AF_UNIX path limit)",
    ),
    ({"shard": 64}, "shard: unknown key"),
    ([1, 2], "(top level): must be a mapping (got list [1, 2])"),
]


@pytest.mark.parametrize(("obj", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_input_is_rejected_with_its_path_and_reason(obj: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(obj)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_enough_rejection_cases() -> None:
    # The issue asks for at least 20 distinct bad inputs.
    assert len({m for _, m in BAD}) >= 20


def test_error_carries_key_and_reason() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"model": {"sigma": 0}})
    assert info.value.key == "model.sigma"
    assert info.value.reason == "must be > 0 (got 0)"
    assert isinstance(info.value, ValueError)


def test_empty_config_is_all_defaults() -> None:
    assert parse_config(None) == Config()
    assert parse_config({}) == Config()
    c = Config()
    assert c.params == Params()
    assert c.cores.list == (2, 3, 4, 5)
    assert c.core_count == 4
    assert c.shards == 64
    assert c.dataplane.kind == "bess"
    assert c.dataplane.replay_file is None
    assert c.solver.backend == "auto"
    assert c.solver.short_time_limit_s == pytest.approx(0.01)
    assert c.solver.long_time_limit_s == pytest.approx(0.5)
    assert c.solver.greedy_deadline_s == pytest.approx(0.005)
    assert c.metrics.port == 9105
    assert c.log_level == "info"


def test_example_file_is_valid_and_lists_every_key() -> None:
    config = load_config(EXAMPLE)
    assert config == Config()
    raw = yaml.safe_load(EXAMPLE.read_text())
    assert raw == to_dict(Config()), "etc/dyssect-controller.yaml must list every key"


def test_good_config_values_land_in_typed_fields() -> None:
    config = parse_config(
        {
            "dataplane": {
                "kind": "replay",
                "replay_file": "/tmp/r.jsonl",
                "grpc_url": "[::1]:10514",
            },
            "cores": {"list": [8, 9, 10, 11, 12, 13, 14, 15], "controller": 0},
            "shards": 512,
            "epochs": {"short_ms": 50, "long_ms": 500, "scale_down_hysteresis": 1},
            "model": {"sigma": 1, "rho_cap": 0.8, "slo_priority_us": 5, "max_offloading_ratio": 0},
            "solver": {
                "backend": "highs",
                "short_time_limit_ms": 20,
                "long_time_limit_ms": 400,
                "greedy_deadline_ms": 2.5,
            },
            "metrics": {"port": 0},
            "log_level": "debug",
        }
    )
    assert config.dataplane.kind == "replay"
    assert config.dataplane.replay_file == "/tmp/r.jsonl"
    assert config.cores.list == (8, 9, 10, 11, 12, 13, 14, 15)
    assert config.core_count == 8
    assert config.shards == 512
    assert config.epochs.long_ms == 500
    # ints are accepted for real-valued knobs and stored as floats
    assert config.params.sigma == 1.0 and isinstance(config.params.sigma, float)
    assert config.params.rho_cap == 0.8
    assert config.params.max_offloading_ratio == 0.0
    assert config.params.slo_regular_us == Params().slo_regular_us
    assert config.solver.backend == "highs"
    assert config.solver.greedy_deadline_s == pytest.approx(0.0025)
    assert config.metrics.port == 0


@pytest.mark.parametrize("shards", [1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
def test_every_power_of_two_shard_count_is_accepted(shards: int) -> None:
    assert parse_config({"shards": shards}).shards == shards


@pytest.mark.parametrize("url", ["localhost:10514", "10.0.0.1:1", "[::1]:10514", "unix:/run/b.s"])
def test_grpc_address_forms(url: str) -> None:
    assert parse_config({"dataplane": {"grpc_url": url}}).dataplane.grpc_url == url


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.shards = 8  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.solver.backend = "greedy"  # type: ignore[misc]


def test_round_trip_through_dict() -> None:
    config = parse_config({"shards": 16, "model": {"sigma": 1.5}, "cores": {"list": [4, 5]}})
    assert parse_config(to_dict(config)) == config


def test_changed_keys_names_dotted_paths() -> None:
    old = Config()
    new = parse_config(
        {
            "model": {"sigma": 2.0},
            "shards": 128,
            "solver": {"backend": "greedy"},
            "log_level": "info",
        }
    )
    assert changed_keys(old, new) == {"model.sigma", "shards", "solver.backend"}
    assert changed_keys(old, old) == set()
    moved = parse_config({"cores": {"list": [3, 4]}})
    assert changed_keys(old, moved) == {"cores.list"}


def test_parse_model_uses_base_for_missing_keys() -> None:
    base = Params(sigma=2.0, rho_cap=0.7)
    params = parse_model({"sigma": 0.5}, key="params", base=base)
    assert params == Params(sigma=0.5, rho_cap=0.7)
    with pytest.raises(ConfigError, match=r"^params\.rho: unknown key$"):
        parse_model({"rho": 0.5}, key="params")


def test_yaml_duplicate_key_is_rejected() -> None:
    with pytest.raises(
        ConfigError, match=r"^invalid YAML at line 3 column 1: duplicate key 'shards'$"
    ):
        load_yaml_text("shards: 64\nlog_level: info\nshards: 32\n")


def test_yaml_exponent_without_dot_is_a_float() -> None:
    # PyYAML's YAML 1.1 rules read 1e-3 as a string; users mean a number.
    assert load_yaml_text("a: 1e-3\nb: 2E2\nc: 3") == {"a": 0.001, "b": 200.0, "c": 3}


def test_load_config_reads_a_file_and_names_it_in_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("shards: 16\nmodel:\n  sigma: 1.25\n")
    config = load_config(good)
    assert config.shards == 16
    assert config.params.sigma == 1.25

    bad = tmp_path / "bad.yaml"
    bad.write_text("shards: 48\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value) == f"{bad}: shards: must be a power of two no larger than 512 (got 48)"
    assert info.value.key == "shards"

    broken = tmp_path / "broken.yaml"
    broken.write_text("shards: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: invalid YAML at line 2 column 1: "):
        load_config(broken)

    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read \(No such file"):
        load_config(tmp_path / "missing.yaml")


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing set\n")
    assert load_config(empty) == Config()


def test_role_restarts_for_exactly_the_keys_a_reload_does_not_apply() -> None:
    tasks = yaml.safe_load(
        (REPO / "roles" / "dyssect_controller" / "tasks" / "configure.yml").read_text()
    )
    restart = next(t for t in tasks if "__dyssect_controller_restart_keys" in t.get("vars", {}))
    assert restart["vars"]["__dyssect_controller_restart_keys"] == restart_keys()


def test_live_keys_take_new_values_and_the_others_keep_theirs() -> None:
    old = Config()
    new = parse_config({"shards": 128, "model": {"sigma": 2.0}, "epochs": {"short_ms": 50}})
    merged = with_live_keys(old, new)
    assert {"model.sigma", "epochs.short_ms"} <= live_keys()
    assert "shards" not in live_keys() and "shards" in restart_keys()
    assert changed_keys(old, merged) == {"model.sigma", "epochs.short_ms"}
