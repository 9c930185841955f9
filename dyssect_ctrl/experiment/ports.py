"""`dyssect-ctrl ports`: the BESS port counters of the server under test, as one JSON object.

The experiment playbook reads them before and after a generator run: what the DUT's port
received and sent over the run is how loss on the link is told apart from drops in the DUT
(docs/experiments.md, "Loss reconciliation").
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from dyssect_ctrl.config import ConfigError, load_config
from dyssect_ctrl.dataplane.base import DataplaneError
from dyssect_ctrl.experiment.bessd import connected
from dyssect_ctrl.status import DEFAULT_CONFIG

EXIT_OK = 0
EXIT_ERROR = 1


Counters = dict[str, dict[str, int]]


def port_counters(bess: Any) -> Counters:
    """{port: {rx_packets, rx_dropped, tx_packets, tx_dropped}} of every port of the daemon."""
    out: Counters = {}
    for port in bess.list_ports().ports:
        stats = bess.get_port_stats(port.name)
        out[port.name] = {
            "rx_packets": int(stats.inc.packets),
            "rx_dropped": int(stats.inc.dropped),
            "tx_packets": int(stats.out.packets),
            "tx_dropped": int(stats.out.dropped),
        }
    return out


def difference(before: Counters, after: Counters) -> Counters:
    """Counters over an interval; a port missing before (the pipeline was rebuilt) counts from 0."""
    return {
        name: {k: v - before.get(name, {}).get(k, 0) for k, v in now.items()}
        for name, now in after.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dyssect-ctrl ports", description="Print the data plane's port counters as JSON."
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"default: {DEFAULT_CONFIG}")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        with connected(config) as (bess, bess_cls, grpc):
            try:
                counters = port_counters(bess)
            except (bess_cls.Error, grpc.RpcError) as e:
                raise DataplaneError(f"port counters: {e}") from None
    except (ConfigError, DataplaneError) as e:
        print(f"ports: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(counters, sort_keys=True))
    return EXIT_OK
