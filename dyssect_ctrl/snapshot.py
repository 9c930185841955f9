"""The snapshot format: one measurement window as JSON, parsed into model.Snapshot.

    {"cores": M, "window_s": 0.1, "params": {...}, "shards": [{"packets": n, "bytes": b}, ...],
     "current": {"working": W, "offloading": E, "assignment": [...], "pairing": {...},
                 "offload": [...]}}

Missing params take the defaults (Params(), or the config's model section); a missing `current`
means the start state (Plan.initial). Optional: per-shard "flow_shares", top-level "timestamp",
"epoch" and "drops". Unknown keys are rejected. docs/controller.md has the full reference.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dyssect_ctrl import inputs
from dyssect_ctrl.config import MAX_CORES, MAX_SHARDS, Config, ConfigError, parse_model
from dyssect_ctrl.model import Params, Plan, ShardStats, Snapshot

_SLOT_KEY = re.compile(r"0|[1-9][0-9]{0,2}")
_REASON = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TOP_KEYS = ("cores", "window_s", "params", "shards", "current", "timestamp", "epoch", "drops")
_SHARD_KEYS = ("packets", "bytes", "flow_shares")
_CURRENT_KEYS = ("working", "offloading", "assignment", "pairing", "offload")
_SHARE_SLACK = 1e-6  # rounding in the data plane's share computation
MAX_COUNTER = (1 << 64) - 1  # the data plane's counters are uint64
MAX_WINDOW_S = 3600.0
MAX_FLOW_SHARES = 4096  # per shard; the plugin reports its top few flows
MAX_DROP_REASONS = 64


class SnapshotError(ValueError):
    """A malformed snapshot; str(e) is one bounded line naming the field and what is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(inputs.one_line(message))


def _fail(key: str, reason: str) -> SnapshotError:
    return SnapshotError(f"{key}: {reason}" if key else reason)


def _describe(value: Any) -> str:
    long_str = isinstance(value, str) and len(value) > 40
    if long_str or (isinstance(value, list | dict) and len(value) > 8):
        return inputs.quote(value)
    text = json.dumps(value) if _jsonable(value) else inputs.quote(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return inputs.escape(text)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _require(obj: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in obj:
        raise _fail(path, f"missing field {key!r}")
    return obj[key]


def _object(value: Any, path: str, allowed: tuple[str, ...] | None) -> Mapping[Any, Any]:
    """A JSON object whose keys are all in `allowed` (None: any key)."""
    if not isinstance(value, Mapping):
        raise _fail(path or "snapshot", f"must be a JSON object (got {_describe(value)})")
    if allowed is None:
        return value
    for key in value:
        if key not in allowed:
            name = inputs.quote_key(key)
            where = f"{path}.{name}" if path else name
            raise _fail(where, f"unknown field (expected one of {', '.join(allowed)})")
    return value


def _int(value: Any, path: str, lo: int = 0, hi: int = MAX_COUNTER) -> int:
    # JSON true/false load as bool, which Python counts as int; they are not counters.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"must be an integer (got {_describe(value)})")
    if value < lo:
        raise _fail(path, f"must be >= {lo} (got {inputs.quote(value)})")
    if value > hi:
        raise _fail(path, f"must be <= {hi} (got {inputs.quote(value)})")
    return value


def _float(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(path, f"must be a finite number (got {_describe(value)})")
    return float(value)


def _unit(value: Any, path: str) -> float:
    v = _float(value, path)
    if not 0.0 <= v <= 1.0:
        raise _fail(path, f"must be in [0, 1] (got {_describe(value)})")
    return v


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, f"must be a list (got {_describe(value)})")
    return value


def _shard(value: Any, path: str) -> ShardStats:
    obj = _object(value, path, _SHARD_KEYS)
    packets = _int(_require(obj, "packets", path), f"{path}.packets")
    size = _int(_require(obj, "bytes", path), f"{path}.bytes")
    shares: tuple[float, ...] = ()
    if obj.get("flow_shares") is not None:
        raw = _list(obj["flow_shares"], f"{path}.flow_shares")
        if len(raw) > MAX_FLOW_SHARES:
            raise _fail(f"{path}.flow_shares", f"has {len(raw)} entries, at most {MAX_FLOW_SHARES}")
        shares = tuple(_unit(x, f"{path}.flow_shares[{n}]") for n, x in enumerate(raw))
        if sum(shares) > 1.0 + _SHARE_SLACK:
            raise _fail(f"{path}.flow_shares", f"shares sum to {sum(shares):.6g} > 1")
    return ShardStats(packets=packets, bytes=size, flow_shares=shares)


def _slot_key(key: Any, path: str) -> int:
    # JSON object keys are strings; Python callers may pass ints. ASCII digits only: str.isdigit
    # also takes "\u00b2" and "\u0661", which int() refuses or reads as another number.
    if isinstance(key, str) and _SLOT_KEY.fullmatch(key):
        return int(key)
    if isinstance(key, int) and not isinstance(key, bool) and 0 <= key < MAX_CORES:
        return key
    raise _fail(path, f"key {inputs.quote(key)} is not a working slot number")


def _current(value: Any, shards: int, cores: int) -> Plan:
    obj = _object(value, "current", _CURRENT_KEYS)
    working = _int(_require(obj, "working", "current"), "current.working", lo=1, hi=cores)
    offloading = _int(obj.get("offloading", 0), "current.offloading", hi=cores)
    if working + offloading > cores:
        raise _fail(
            "current",
            f"working + offloading = {working + offloading} exceeds cores ({cores})",
        )
    assignment = _list(_require(obj, "assignment", "current"), "current.assignment")
    if len(assignment) != shards:
        raise _fail(
            "current.assignment",
            f"has {len(assignment)} entries but there are {shards} shards",
        )
    for n, slot in enumerate(assignment):
        _int(slot, f"current.assignment[{n}]", hi=MAX_CORES)
        if slot >= working:
            raise _fail(
                f"current.assignment[{n}]",
                f"working slot {slot} is not < current.working ({working})",
            )
    pairing: dict[int, int] = {}
    raw_pairing = obj.get("pairing")
    raw_pairing = {} if raw_pairing is None else raw_pairing
    for key, val in _object(raw_pairing, "current.pairing", None).items():
        slot = _slot_key(key, "current.pairing")
        path = f"current.pairing.{inputs.quote_key(key)}"
        if slot >= working:
            raise _fail(path, f"working slot {slot} is not < current.working ({working})")
        target = _int(val, path, hi=MAX_CORES)
        if target >= offloading:
            raise _fail(
                path, f"offloading slot {target} is not < current.offloading ({offloading})"
            )
        pairing[slot] = target
    raw_offload = obj.get("offload")
    if raw_offload is None:
        offload = tuple([0.0] * shards)
    else:
        offload_list = _list(raw_offload, "current.offload")
        if len(offload_list) != shards:
            raise _fail(
                "current.offload",
                f"has {len(offload_list)} entries but there are {shards} shards",
            )
        offload = tuple(_unit(r, f"current.offload[{n}]") for n, r in enumerate(offload_list))
    for n, r in enumerate(offload):
        if r > 0.0 and assignment[n] not in pairing:
            raise _fail(
                f"current.offload[{n}]",
                f"offloads {r:g} from working slot {assignment[n]}, which has no entry in "
                f"current.pairing",
            )
    return Plan(working, offloading, tuple(assignment), pairing, offload)


def parse_snapshot(obj: Any, config: Config | None = None) -> Snapshot:
    """Validate a decoded JSON snapshot. Missing params come from `config` (or Params())."""
    top = _object(obj, "", _TOP_KEYS)
    cores = _int(_require(top, "cores", "snapshot"), "cores", lo=1, hi=MAX_CORES)
    window_s = _float(_require(top, "window_s", "snapshot"), "window_s")
    if window_s <= 0:
        raise _fail("window_s", f"must be > 0 (got {_describe(top['window_s'])})")
    if window_s > MAX_WINDOW_S:
        raise _fail("window_s", f"must be <= {MAX_WINDOW_S:g} (got {_describe(top['window_s'])})")
    base = config.params if config is not None else Params()
    try:
        params = parse_model(top.get("params"), key="params", base=base)
    except ConfigError as e:
        raise SnapshotError(str(e)) from None
    raw_shards = _list(_require(top, "shards", "snapshot"), "shards")
    if not raw_shards:
        raise _fail("shards", "must not be empty")
    if len(raw_shards) > MAX_SHARDS:
        raise _fail("shards", f"has {len(raw_shards)} entries, at most {MAX_SHARDS}")
    shards = tuple(_shard(s, f"shards[{n}]") for n, s in enumerate(raw_shards))
    current = None
    if top.get("current") is not None:
        current = _current(top["current"], len(shards), cores)
    timestamp = _float(top.get("timestamp", 0.0), "timestamp")
    epoch = _int(top.get("epoch", 0), "epoch")
    drops: dict[str, int] = {}
    raw_drops = _object(top.get("drops", {}), "drops", None)
    if len(raw_drops) > MAX_DROP_REASONS:
        raise _fail("drops", f"has {len(raw_drops)} reasons, at most {MAX_DROP_REASONS}")
    for reason, count in raw_drops.items():
        # A reason becomes a metric label: a short printable word.
        if not isinstance(reason, str) or not _REASON.fullmatch(reason):
            raise _fail("drops", f"reason {inputs.quote(reason)} must match {_REASON.pattern}")
        drops[reason] = _int(count, f"drops.{reason}")
    return Snapshot(
        cores=cores,
        window_s=window_s,
        params=params,
        shards=shards,
        current=current,
        timestamp=timestamp,
        epoch=epoch,
        drops=drops,
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise SnapshotError(f"duplicate field {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise SnapshotError(f"{name} is not valid JSON")


def _parse_int(text: str) -> int:
    if not inputs.int_digits_ok(text):
        raise SnapshotError(
            f"integer of {len(text)} digits (at most {inputs.MAX_INT_DIGITS}) is not a counter"
        )
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > inputs.MAX_NUMBER_CHARS:
        raise SnapshotError(f"number of {len(text)} characters (at most {inputs.MAX_NUMBER_CHARS})")
    return float(text)


def decode_json(text: str) -> Any:
    """Strict, bounded JSON: no duplicate keys, no NaN/Infinity, integers of at most
    MAX_INT_DIGITS digits, nesting of at most MAX_DEPTH levels; errors are SnapshotError."""
    if len(text) > inputs.MAX_SNAPSHOT_BYTES:
        raise SnapshotError(f"larger than {inputs.MAX_SNAPSHOT_BYTES} bytes")
    try:
        obj = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
        )
        inputs.check_depth(obj)
    except json.JSONDecodeError as e:
        raise SnapshotError(f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise SnapshotError(f"nested deeper than {inputs.MAX_DEPTH} levels") from None
    except inputs.InputError as e:
        raise SnapshotError(str(e)) from None
    return obj


def parse_snapshot_line(line: str, config: Config | None = None) -> Snapshot:
    """One JSON-lines record (a replay file line or a decision-log input)."""
    return parse_snapshot(decode_json(line), config)


def load_snapshot(path: str | Path, config: Config | None = None) -> Snapshot:
    """Read a snapshot file; every error is one line starting with the file name."""
    try:
        text = inputs.read_text(path, inputs.MAX_SNAPSHOT_BYTES)
    except inputs.InputError as e:
        raise SnapshotError(f"{path}: {e}") from None
    try:
        return parse_snapshot_line(text, config)
    except SnapshotError as e:
        raise SnapshotError(f"{path}: {e}") from None


def dump_snapshot(snapshot: Snapshot) -> dict[str, Any]:
    """The JSON form of a snapshot; parse_snapshot(dump_snapshot(s)) == s."""
    shards: list[dict[str, Any]] = []
    for s in snapshot.shards:
        item: dict[str, Any] = {"packets": s.packets, "bytes": s.bytes}
        if s.flow_shares:
            item["flow_shares"] = list(s.flow_shares)
        shards.append(item)
    out: dict[str, Any] = {
        "cores": snapshot.cores,
        "window_s": snapshot.window_s,
        "params": asdict(snapshot.params),
        "shards": shards,
    }
    if snapshot.current is not None:
        out["current"] = snapshot.current.to_json()
    out["timestamp"] = snapshot.timestamp
    out["epoch"] = snapshot.epoch
    out["drops"] = dict(snapshot.drops)
    return out
