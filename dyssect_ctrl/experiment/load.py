"""`dyssect-ctrl load --rate PPS`: set the offered load of the pipeline's test traffic source.

The dyssect role can add a traffic source inside the pipeline (a lab has no traffic generator):
a rate-limited BESS traffic class, `dyssect_traffic` by default, feeding generated UDP flows to
the dispatcher. An experiment changes the offered load by changing that class's packet limit;
this is the one command that does it. It talks to bessd through pybess, like the controller.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from dyssect_ctrl.config import ConfigError, load_config
from dyssect_ctrl.dataplane.base import DataplaneError
from dyssect_ctrl.experiment.bessd import connected
from dyssect_ctrl.status import DEFAULT_CONFIG

EXIT_OK = 0
EXIT_ERROR = 1
DEFAULT_TC = "dyssect_traffic"


def set_rate(bess: Any, tc: str, rate_pps: int) -> int:
    """Set the packet limit of traffic class `tc`; returns the limit bessd reports after."""
    names = [c.name for c in _classes(bess)]
    if tc not in names:
        raise DataplaneError(
            f"bessd has no traffic class {tc!r}: the pipeline has no test traffic source "
            "(dyssect_test_traffic of the dyssect role)"
        )
    # bessd pauses and resumes the workers around the change itself; pause_all/resume_all here
    # would also resume the workers the controller keeps paused.
    bess.update_tc_params(tc, resource="packet", limit={"packet": int(rate_pps)})
    for c in _classes(bess):
        if c.name == tc:
            return int(c.limit.get("packet", 0))
    raise DataplaneError(f"traffic class {tc!r} vanished")  # torn down meanwhile


def _classes(bess: Any) -> list[Any]:
    return [getattr(c, "class") for c in bess.list_tcs().classes_status]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dyssect-ctrl load",
        description="Set the offered load (packets per second) of the pipeline's test source.",
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"default: {DEFAULT_CONFIG}")
    parser.add_argument("--rate", type=int, required=True, help="packets per second, >= 1")
    parser.add_argument("--tc", default=DEFAULT_TC, help=f"traffic class (default {DEFAULT_TC})")
    args = parser.parse_args(argv)
    if args.rate < 1:
        # BESS reads a limit of 0 as "unlimited": never what an experiment means by it.
        print("load: --rate must be >= 1 (BESS takes a limit of 0 as unlimited)", file=sys.stderr)
        return EXIT_ERROR
    try:
        config = load_config(args.config)
        with connected(config) as (bess, bess_cls, grpc):
            try:
                now = set_rate(bess, args.tc, args.rate)
            except (bess_cls.Error, grpc.RpcError) as e:
                raise DataplaneError(f"{args.tc}: {e}") from None
    except (ConfigError, DataplaneError) as e:
        print(f"load: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(f"load: {args.tc} limited to {now} packets/s")
    return EXIT_OK
