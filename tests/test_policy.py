"""The policy key of the config picks the planner the loop runs."""

from __future__ import annotations

import pytest

from dyssect_ctrl.config import ConfigError, parse_config
from dyssect_ctrl.model import Params
from dyssect_ctrl.planner import Planner
from dyssect_ctrl.policy import POLICIES, make_policy
from dyssect_ctrl.policy.metron import MetronPolicy
from dyssect_ctrl.policy.rsspp import RssppPolicy
from dyssect_ctrl.policy.static import StaticPolicy


def test_default_is_dyssect() -> None:
    assert parse_config({}).policy == "dyssect"
    assert isinstance(make_policy(parse_config({}), "greedy"), Planner)


@pytest.mark.parametrize(
    ("name", "kind"), [("static", StaticPolicy), ("rsspp", RssppPolicy), ("metron", MetronPolicy)]
)
def test_model_free_policies_are_their_own_fallback(name: str, kind: type) -> None:
    c = parse_config({"policy": name})
    assert isinstance(make_policy(c, "auto"), kind)
    assert isinstance(make_policy(c, "greedy"), kind)


def test_every_listed_policy_builds() -> None:
    for name in POLICIES:
        make_policy(parse_config({"policy": name}), "greedy")


def test_unknown_policy_is_refused_with_its_key() -> None:
    with pytest.raises(ConfigError, match=r"^policy: must be one of"):
        parse_config({"policy": "rss"})


@pytest.mark.parametrize("kind", [StaticPolicy, RssppPolicy, MetronPolicy])
@pytest.mark.parametrize(("cores", "shards"), [(0, 16), (4, 0)])
def test_round_policies_refuse_no_cores_or_no_shards(kind: type, cores: int, shards: int) -> None:
    with pytest.raises(ValueError, match=f"^{kind.backend} needs cores >= 1 and shards >= 1"):
        kind(Params(), cores, shards)
    assert kind(Params(), 4, 16).max_working == 4
