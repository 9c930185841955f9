"""Short model: W and E fixed, the placement with the fewest migrations from the current plan.

Notation, used throughout this package:
- S shards, with loads loads[s] in cores;
- W working cores (slots 0..W-1) and E offloading cores (slots 0..E-1 of their own);
- a placement is an assignment (shard -> working core) and a pairing (working core ->
  offloading core; empty when E = 0); a working core with the offloading core it points at
  make a pair, and an offloading core with every working core pointing at it a group;
- g[i] the load of working core i (the sum of its shards' loads);
- Cw the working cap, Co the offloading cap (core.Caps), sigma the offload cost factor;
- overflow of core i: max(0, g[i] - Cw), the load its offloading core takes;
- B = Co / sigma, the overflow one offloading core (one group) can take: a group's overflow sum
  must stay within B, and one core's load within Cw + B;
- migrations: shards moved plus working cores re-pointed (Plan.migrations).

The parts: bounds (a lower bound on migrations), groups (g and group overflows under moves and
re-pointings, with undo), repair (a close valid placement in named phases) and takeback (its
last phase), search (the exact search), solve (the three in order, then the MILP).
"""

from dyssect_ctrl.planner.short.bounds import lower_bound
from dyssect_ctrl.planner.short.repair import migrations, repair
from dyssect_ctrl.planner.short.search import ExactSearch, SearchResult, Verdict
from dyssect_ctrl.planner.short.solve import ShortOutcome, objective, solve_short

__all__ = [
    "ExactSearch",
    "SearchResult",
    "ShortOutcome",
    "Verdict",
    "lower_bound",
    "migrations",
    "objective",
    "repair",
    "solve_short",
]
