"""Recorded-snapshot files and configs for the controller-service tests (replay data plane)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import yaml

T_WORKING_US = 1.0


def shard_packets(
    total_cores: float, shards: int, window_s: float, rng: random.Random
) -> list[int]:
    """Per-shard packet counts whose load sums to about `total_cores` (skewed)."""
    weights = [rng.random() ** 2 + 0.01 for _ in range(shards)]
    scale = total_cores * window_s / (T_WORKING_US * 1e-6) / sum(weights)
    return [int(w * scale) for w in weights]


def snapshot_line(
    packets: list[int], cores: int, window_s: float = 0.1, **extra: Any
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "cores": cores,
        "window_s": window_s,
        "shards": [{"packets": p, "bytes": 100 * p} for p in packets],
    }
    obj.update(extra)
    return obj


def write_replay(
    path: Path,
    loads: list[float],
    *,
    shards: int = 16,
    cores: int = 4,
    window_s: float = 0.1,
    seed: int = 7,
    overrides: dict[int, dict[str, Any]] | None = None,
) -> Path:
    """One line per epoch with total load loads[i] (in cores); overrides[i] patches line i."""
    rng = random.Random(seed)
    lines = []
    for i, total in enumerate(loads):
        obj = snapshot_line(shard_packets(total, shards, window_s, rng), cores, window_s)
        if overrides and i in overrides:
            patch = overrides[i]
            obj = patch(obj) if callable(patch) else {**obj, **patch}
        lines.append(json.dumps(obj))
    path.write_text("\n".join(lines) + "\n")
    return path


def config_dict(tmp: Path, replay: Path, **sections: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "dataplane": {"kind": "replay", "replay_file": str(replay)},
        "cores": {"list": [2, 3, 4, 5], "controller": 1},
        "shards": 16,
        "epochs": {"short_ms": 100, "long_ms": 500, "scale_down_hysteresis": 2},
        "solver": {"backend": "highs", "long_time_limit_ms": 300},
        "state_dir": str(tmp / "state"),
        "metrics": {"port": 0},
        "status_socket": str(tmp / "status.sock"),
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
