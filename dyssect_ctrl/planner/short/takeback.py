"""The repair's last phase: take back every move or re-pointing the caps allow."""

from __future__ import annotations

from collections.abc import Sequence

from dyssect_ctrl.model import Plan
from dyssect_ctrl.planner import core
from dyssect_ctrl.planner.core import EPS, Caps
from dyssect_ctrl.planner.short.groups import GroupLoads


def take_back(
    a: list[int],
    pairing: dict[int, int],
    loads: Sequence[float],
    w: int,
    e: int,
    caps: Caps,
    cur: Plan,
) -> tuple[list[int], dict[int, int]]:
    """One pass each, re-pointings first, then moves with the largest shards first; each one
    taken back saves a migration. `a` is changed in place."""
    gl = GroupLoads(loads, w, e, caps, a, [pairing[i] if e else 0 for i in range(w)])
    b, grp, gsum, g, cnt = gl.b, gl.grp, gl.gsum, gl.g, gl.cnt
    if e:
        for i in range(w):
            old = cur.pairing.get(i)
            if old is None or old >= e or old == grp[i] or gl.members[grp[i]] < 2:
                continue
            if gsum[old] + gl.over(i) <= b + EPS:
                gl.regroup(i, old)
    for s in sorted(range(len(a)), key=lambda x: -loads[x]):
        src, dst = a[s], cur.assignment[s]
        if dst == src or dst >= w or cnt[src] < 2:
            continue
        v = loads[s]
        d_src = gl.overflow_if(g[src] - v) - gl.over(src)
        d_dst = gl.overflow_if(g[dst] + v) - gl.over(dst)
        if e:
            if grp[src] == grp[dst]:
                ok = gsum[grp[src]] + d_src + d_dst <= b + EPS
            else:
                ok = gsum[grp[dst]] + d_dst <= b + EPS
        else:
            ok = g[dst] + v <= gl.cw + EPS
        if ok:
            gl.move(s, dst)
    new_pairing = gl.pairing()
    if not core.placement_ok(a, new_pairing, loads, w, e, caps):  # cannot happen; be safe
        return a, pairing
    return a, new_pairing
