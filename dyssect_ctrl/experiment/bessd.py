"""A pybess connection for the experiment commands run on the server under test (`load`,
`ports`): the controller config names bessd's address and the pybess install."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dyssect_ctrl.config import Config
from dyssect_ctrl.dataplane.base import DataplaneError
from dyssect_ctrl.dataplane.bess import load_pybess, probe


@contextmanager
def connected(config: Config) -> Iterator[tuple[Any, Any, Any]]:
    """(pybess BESS client, its class, the grpc module), disconnected on exit. Raises
    DataplaneError when bessd does not answer within dataplane.connect_timeout_ms."""
    bess_cls, grpc = load_pybess(config.dataplane.pybess_path)
    probe(grpc, config.dataplane.grpc_url, config.dataplane.connect_timeout_ms / 1000.0)
    bess = bess_cls()
    try:
        bess.connect(grpc_url=config.dataplane.grpc_url)
    except Exception as e:  # pybess raises its own RPCError / APIError types
        raise DataplaneError(f"bessd at {config.dataplane.grpc_url}: {e}") from None
    try:
        yield bess, bess_cls, grpc
    finally:
        bess.disconnect()
