"""planner.short.groups: GroupLoads keeps g and the group overflows right under changes and undo."""

from __future__ import annotations

import random

import pytest

from dyssect_ctrl.model import Params
from dyssect_ctrl.planner.core import Caps
from dyssect_ctrl.planner.short.groups import GroupLoads


def _fresh(gl: GroupLoads) -> tuple[list[float], list[int], list[float], list[int]]:
    """g, cnt, group overflow sums and group sizes recomputed from where and grp."""
    g = [0.0] * gl.w
    cnt = [0] * gl.w
    for s, i in enumerate(gl.where):
        g[i] += gl.loads[s]
        cnt[i] += 1
    gsum = [0.0] * max(gl.e, 1)
    members = [0] * max(gl.e, 1)
    for i in range(gl.w):
        gsum[gl.grp[i]] += max(0.0, g[i] - gl.cw)
        members[gl.grp[i]] += 1
    return g, cnt, gsum, members


@pytest.mark.parametrize("seed", range(20))
def test_changes_keep_the_books_and_undo_restores_them(seed: int) -> None:
    rng = random.Random(seed)
    n, w, e = rng.randint(4, 30), rng.randint(2, 6), rng.randint(0, 3)
    e = min(e, w)
    loads = [rng.uniform(0.0, 0.6) for _ in range(n)]
    where = [rng.randrange(w) for _ in range(n)]
    grp = [rng.randrange(e) if e else 0 for _ in range(w)]
    gl = GroupLoads(loads, w, e, Caps.of(Params()), where, grp)
    start = (list(gl.where), list(gl.grp), *map(list, _fresh(gl)))
    undo = []
    for _ in range(10):
        if e and rng.random() < 0.3:
            i = rng.randrange(w)
            undo.append(("regroup", i, gl.regroup(i, rng.randrange(e))))
        else:
            s = rng.randrange(n)
            undo.append(("move", s, gl.move(s, rng.randrange(w))))
        g, cnt, gsum, members = _fresh(gl)
        assert gl.g == pytest.approx(g) and gl.cnt == cnt and gl.members == members
        assert gl.gsum == pytest.approx(gsum, abs=1e-9)
        assert gl.pairing() == ({i: gl.grp[i] for i in range(w)} if e else {})
    for kind, x, back in reversed(undo):
        if kind == "regroup":
            gl.regroup(x, back)
        else:
            gl.move(x, back)
    assert gl.where == start[0] and gl.grp == start[1]
    assert gl.g == pytest.approx(start[2]) and gl.cnt == start[3]
    assert gl.gsum == pytest.approx(start[4], abs=1e-9) and gl.members == start[5]
