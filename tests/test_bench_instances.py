"""bench.instances: the seeded instance recipe and the random current plan."""

from __future__ import annotations

import random

from dyssect_ctrl.bench import instances
from tests.plan_checker import violations


def test_instances_follow_the_recipe():
    for s, m in ((16, 8), (64, 16), (256, 32)):
        for k in range(6):
            loads = instances.instance(s, m, k)
            assert loads == instances.instance(s, m, k)  # seeded
            assert len(loads) == s
            assert max(loads) <= instances.SHARD_CAP + 1e-9
            assert sum(loads) <= 0.45 * m + 1e-9
            if k % 2 == 0:
                assert max(loads) - min(loads) < 1e-12  # uniform
    assert instances.instance(16, 8, 1) != instances.instance(16, 8, 1, seed=1)


def test_random_current_is_a_valid_structure():
    from dyssect_ctrl.model import Params

    rng = random.Random(0)
    for _ in range(50):
        s = rng.randint(4, 40)
        w = rng.randint(1, s)
        e = rng.randint(0, (w + 1) // 2)
        cur = instances.random_current(s, w, e, rng)
        assert not violations(cur, [0.0] * s, Params(), w + e, check_caps=False)
