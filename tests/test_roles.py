"""Facts the roles must share with the controller package."""

from __future__ import annotations

from pathlib import Path

import yaml

from dyssect_ctrl.config import MAX_SHARDS

ROLES = Path(__file__).resolve().parents[1] / "roles"


def _vars(role: str) -> dict[str, object]:
    return yaml.safe_load((ROLES / role / "vars" / "main.yml").read_text(encoding="utf-8"))


def test_one_shard_limit_in_the_roles_and_the_controller() -> None:
    assert _vars("dyssect")["_dyssect_max_shards"] == MAX_SHARDS
    assert _vars("dyssect_controller")["_dyssect_controller_max_shards"] == MAX_SHARDS
