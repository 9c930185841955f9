"""The two bucket-mapping problems RSS++ solves, as rsspp/fastclick's
vendor/nicscheduler/methods/solver.hh defines them (BucketMapTargetProblem::solve and
BucketMapProblem::solve), written again in Python.

Where the C++ leaves an order open (std::priority_queue with equal keys), the lower index comes
first here, so every run is deterministic. Loads are Python floats (the source uses float32).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

# Constants of BucketMapTargetProblem::solve.
MAX_RUNS = 10
TARGET_IMBALANCE = 0.01  # a core within this of its goal is done; also the stop criterion
FIRST_ALLOWED = -0.01  # first run: take just not enough, give just not enough


@dataclass
class TargetRun:
    """One greedy pass: which underloaded core each bucket goes to (-1: stays), and what is left."""

    transfer: list[int]
    square_imbalance: float
    imbalance_over: float
    imbalance_under: float


def _greedy_pass(
    buckets_load: Sequence[float],
    buckets_owner: Sequence[int],
    room: Sequence[float],
    excess: Sequence[float],
    overload_allowed: float,
    underload_allowed: float,
) -> TargetRun:
    """The inner loop of BucketMapTargetProblem::solve for one pair of allowances.

    Take the overloaded core with the most load to shed, its biggest remaining bucket, and give
    the bucket to the underloaded core with the most room that it fits in (bucket < room +
    underload_allowed); a core leaves the game once it is within its allowance.
    """
    transfer = [-1] * len(buckets_load)
    stacks: list[list[tuple[float, int]]] = [[] for _ in excess]
    for b, (load, owner) in enumerate(zip(buckets_load, buckets_owner, strict=True)):
        heapq.heappush(stacks[owner], (-load, b))  # biggest bucket first
    over = [(-x, o) for o, x in enumerate(excess)]
    under = [(-x, u) for u, x in enumerate(room)]
    heapq.heapify(over)
    heapq.heapify(under)
    sq = imb_o = imb_u = 0.0
    while over and under:
        neg_o, o = heapq.heappop(over)
        o_load = -neg_o
        stack = stacks[o]
        if not stack:  # cannot happen with the caller's buckets; closes the core if it did
            imb_o += abs(o_load)
            sq += o_load * o_load
            continue
        neg_b, b = heapq.heappop(stack)  # removed for good, moved or not
        b_load = -neg_b
        saved = []
        while under:
            neg_u, u = heapq.heappop(under)
            u_load = -neg_u
            if b_load < u_load + underload_allowed:
                u_load -= b_load
                o_load -= b_load
                transfer[b] = u
                if u_load > TARGET_IMBALANCE:
                    heapq.heappush(under, (-u_load, u))
                else:
                    imb_u += abs(u_load)
                    sq += u_load * u_load
                break
            saved.append((neg_u, u))
        for item in saved:
            heapq.heappush(under, item)
        if o_load > -overload_allowed and stack:
            heapq.heappush(over, (-o_load, o))
        else:
            imb_o += abs(o_load)
            sq += o_load * o_load
    for neg, _ in over:
        imb_o += abs(neg)
        sq += neg * neg
    for neg, _ in under:
        imb_u += abs(neg)
        sq += neg * neg
    return TargetRun(transfer, sq, imb_o, imb_u)


def solve_target(
    buckets_load: Sequence[float],
    buckets_owner: Sequence[int],
    room: Sequence[float],
    excess: Sequence[float],
) -> list[int]:
    """BucketMapTargetProblem::solve: move buckets of overloaded cores to underloaded ones.

    buckets_owner[b] indexes `excess` (load each overloaded core should shed); the result maps
    each bucket to an index of `room` (load each underloaded core may take) or -1.

    The first pass uses allowances of -0.01; the next ones search the allowances (grow by half
    while the squared imbalance does not grow, then bisect between a bottom and a top), for at
    most MAX_RUNS passes or until the squared imbalance is under TARGET_IMBALANCE. As in the
    source, the answer is the last pass's, and min_sq is never lowered, so the tenth pass
    repeats the ninth's allowances.
    """
    oa = ua = FIRST_ALLOWED
    bottom_oa, bottom_ua = oa, ua
    top_oa = top_ua = 0.0
    oa_min = ua_min = 0.0
    last_sq = min_sq = bottom_sq = top_sq = math.inf
    run, m, phase = 1, -1.0, 0
    while True:
        out = _greedy_pass(buckets_load, buckets_owner, room, excess, oa, ua)
        sq = out.square_imbalance
        if run == MAX_RUNS or sq < TARGET_IMBALANCE:
            break
        if run == 1:
            oa, ua = out.imbalance_over, out.imbalance_under
            phase = 1  # searching the top
        else:
            if sq < min_sq:
                oa_min, ua_min = oa, ua
            if phase == 1:
                if sq <= last_sq:
                    oa, ua = oa + oa / 2, ua + ua / 2
                else:
                    phase, top_oa, top_ua, m = 2, oa, ua, 0.5
                    oa, ua = oa / 2, ua / 2
            elif phase == 2:  # searching to the left
                if sq <= last_sq:
                    m = m / 2
                    if m < 0.01:
                        break
                    oa = bottom_oa + (top_oa - bottom_oa) * m
                    ua = bottom_ua + (top_ua - bottom_ua) * m
                else:  # a new bottom
                    bottom_oa, bottom_ua, bottom_sq = oa, ua, sq
                    phase, m = 3, 0.5
                    oa, ua = (bottom_oa + top_oa) / 2, (bottom_ua + top_ua) / 2
            elif phase == 3:  # searching to the right
                if sq <= last_sq:
                    m = (1 + m) / 2
                    if m > 0.99:
                        break
                    oa = bottom_oa + (top_oa - bottom_oa) * m
                    ua = bottom_ua + (top_ua - bottom_ua) * m
                else:  # a new top
                    phase, top_oa, top_ua, top_sq, m = 2, oa, ua, sq, 0.5
                    oa = bottom_oa + (top_oa - bottom_oa) * m
                    ua = bottom_ua + (top_ua - bottom_ua) * m
            if top_sq == bottom_sq == sq == min_sq:
                break
        run += 1
        last_sq = sq
        if run == MAX_RUNS:
            if sq != min_sq:
                oa, ua = oa_min, ua_min
            else:
                break
    return out.transfer


def spread(buckets_load: Sequence[float], cores: int) -> list[int]:
    """BucketMapProblem::solve: the buckets of a removed core, one by one, each to the core that
    has received the least so far.

    As written in the source, the bucket queue pops the lightest bucket first (its comment says
    the heaviest) and every core starts from 0 (the imbalance the caller computes is not passed
    in), so the spread ignores the load the cores already carry.
    """
    if cores < 1:
        raise ValueError("no core to spread the buckets over")
    order = sorted(range(len(buckets_load)), key=lambda b: (buckets_load[b], b))
    received = [(0.0, c) for c in range(cores)]
    transfer = [0] * len(buckets_load)
    for b in order:
        load, c = heapq.heappop(received)
        transfer[b] = c
        heapq.heappush(received, (load + buckets_load[b], c))
    return transfer
