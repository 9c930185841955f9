"""Decision policies: the same measurements and data plane, a different way to decide.

A policy turns the per-shard loads of one window and the plan in force into the next plan. The
control loop calls `long` every long epoch and `short` every other short epoch (see
dyssect_ctrl.planner.Planner, whose interface every policy has). The policy is chosen by the
`policy` key of the controller config; docs/policies.md says which source each one follows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dyssect_ctrl.policy.base import Policy

if TYPE_CHECKING:
    from dyssect_ctrl.config import Config

__all__ = ["DEFAULT_POLICY", "POLICIES", "Policy", "make_policy"]

DEFAULT_POLICY = "dyssect"
POLICIES = ("dyssect", "dyssect-no-offload", "static", "rsspp", "metron")


def make_policy(config: Config, solver: str) -> Policy:
    """The planner of `config.policy`, solving with `solver` where the policy solves models.

    static, rsspp and metron solve no model: they are their own fallback, so the loop's greedy
    planner (asked for with solver "greedy") is the same policy and never a Dyssect plan.
    """
    name = config.policy
    if name in ("dyssect", "dyssect-no-offload"):
        from dyssect_ctrl.policy.dyssect import dyssect_planner

        return dyssect_planner(config, solver, offload=name == "dyssect")
    if name == "static":
        from dyssect_ctrl.policy.static import StaticPolicy

        return StaticPolicy(config.params, config.core_count, config.shards)
    if name == "rsspp":
        from dyssect_ctrl.policy.rsspp import RssppPolicy

        return RssppPolicy(config.params, config.core_count, config.shards)
    if name == "metron":
        from dyssect_ctrl.policy.metron import MetronPolicy

        return MetronPolicy(config.params, config.core_count, config.shards)
    raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}")
