"""The controller's config file: typed, frozen, strictly validated.

Every key is optional; unknown keys and bad values raise ConfigError whose text starts with the
dotted path of the offending key. The schema is documented in docs/controller.md.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dyssect_ctrl import inputs
from dyssect_ctrl.model import Params
from dyssect_ctrl.policy import DEFAULT_POLICY, POLICIES

MAX_SHARDS = 512  # the largest RETA size of the NICs Dyssect runs on
MAX_CORES = 64
MAX_STRING = 4096  # PATH_MAX
SUN_PATH_MAX = 107  # AF_UNIX socket path limit (108 bytes including the NUL)
DATAPLANE_KINDS = ("bess", "replay")
BACKENDS = ("auto", "highs", "gurobi", "greedy")
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """A bad config. `key` is the dotted key path, `reason` what is wrong with it.

    str(e) is "<key>: <reason>"; errors raised by load_config are prefixed with the file name
    ("<file>: <key>: <reason>"), and errors about the file itself have no key.
    """

    def __init__(self, key: str, reason: str, source: str | None = None) -> None:
        # Each part escaped and bounded: a key or file name may be anything the input held.
        self.key = inputs.one_line(key, 120)
        self.reason = inputs.one_line(reason, 240)
        self.source = None if source is None else inputs.one_line(source, 120)
        super().__init__(": ".join(p for p in (self.source, self.key, self.reason) if p))


@dataclass(frozen=True)
class DataplaneConfig:
    kind: str = "bess"
    grpc_url: str = "127.0.0.1:10514"
    pybess_path: str = "/opt/bess"
    module: str = "dyssect"
    replay_file: str | None = None
    connect_timeout_ms: int = 1000


@dataclass(frozen=True)
class CoresConfig:
    list: tuple[int, ...] = (2, 3, 4, 5)
    controller: int = 1


@dataclass(frozen=True)
class EpochsConfig:
    short_ms: int = 100
    long_ms: int = 1000
    scale_down_hysteresis: int = 3


@dataclass(frozen=True)
class SolverConfig:
    backend: str = "auto"
    short_time_limit_ms: float = 10.0
    long_time_limit_ms: float = 500.0
    greedy_deadline_ms: float = 5.0

    @property
    def short_time_limit_s(self) -> float:
        return self.short_time_limit_ms / 1000.0

    @property
    def long_time_limit_s(self) -> float:
        return self.long_time_limit_ms / 1000.0

    @property
    def greedy_deadline_s(self) -> float:
        return self.greedy_deadline_ms / 1000.0


@dataclass(frozen=True)
class DecisionLogConfig:
    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = "127.0.0.1"
    port: int = 9105  # 0 disables the endpoint


@dataclass(frozen=True)
class Config:
    dataplane: DataplaneConfig = field(default_factory=DataplaneConfig)
    cores: CoresConfig = field(default_factory=CoresConfig)
    shards: int = 64
    epochs: EpochsConfig = field(default_factory=EpochsConfig)
    params: Params = field(default_factory=Params)  # the `model` section
    solver: SolverConfig = field(default_factory=SolverConfig)
    state_dir: str = "/var/lib/dyssect-controller"
    decision_log: DecisionLogConfig = field(default_factory=DecisionLogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    status_socket: str = "/run/dyssect-controller/status.sock"
    log_level: str = "info"
    policy: str = DEFAULT_POLICY  # docs/policies.md

    @property
    def core_count(self) -> int:
        """M: the number of core slots the planner may use."""
        return len(self.cores.list)


# ---------------------------------------------------------------------------------------------
# Value checkers. Each takes (key path, raw value) and returns the typed value or raises.

T = TypeVar("T")
Check = Callable[[str, Any], Any]


def _describe(value: Any) -> str:
    # inputs.quote: never the repr of a whole container (an alias bomb's is exponential)
    text = inputs.quote(value, 40)
    return text if text.startswith("a ") else f"{type(value).__name__} {text}"


def _fmt(value: float) -> str:
    return repr(value) if isinstance(value, float) and not value.is_integer() else f"{value:g}"


def _integer(key: str, value: Any) -> int:
    # bool is a subclass of int in Python; `true` is not a count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be an integer (got {_describe(value)})")
    return value


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, f"must be a number (got {_describe(value)})")
    if not math.isfinite(value):
        raise ConfigError(key, f"must be a finite number (got {value})")
    return float(value)


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a string (got {_describe(value)})")
    if not value.strip():
        raise ConfigError(key, "must not be empty")
    if len(value) > MAX_STRING:
        raise ConfigError(key, f"must be at most {MAX_STRING} characters (got {len(value)})")
    # paths and names: a NUL or newline would fail (or split a line) far from here
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(key, f"must not contain control characters (got {inputs.quote(value)})")
    return value


def int_range(lo: int | None = None, hi: int | None = None) -> Check:
    def check(key: str, value: Any) -> int:
        v = _integer(key, value)
        if lo is not None and v < lo:
            raise ConfigError(key, f"must be >= {lo} (got {v})")
        if hi is not None and v > hi:
            raise ConfigError(key, f"must be <= {hi} (got {v})")
        return v

    return check


def positive_int(key: str, value: Any) -> int:
    v = _integer(key, value)
    if v <= 0:
        raise ConfigError(key, f"must be > 0 (got {v})")
    return v


def positive_int_upto(hi: int) -> Check:
    def check(key: str, value: Any) -> int:
        v = positive_int(key, value)
        if v > hi:
            raise ConfigError(key, f"must be <= {hi} (got {v})")
        return v

    return check


def positive(key: str, value: Any) -> float:
    v = _number(key, value)
    if v <= 0:
        raise ConfigError(key, f"must be > 0 (got {_fmt(value)})")
    return v


def number_range(lo: float, hi: float, *, lo_open: bool = False) -> Check:
    """A number in [lo, hi] ((lo, hi] when lo_open)."""

    def check(key: str, value: Any) -> float:
        v = _number(key, value)
        if v < lo or (lo_open and v == lo):
            raise ConfigError(key, f"must be {'>' if lo_open else '>='} {lo:g} (got {_fmt(value)})")
        if v > hi:
            raise ConfigError(key, f"must be <= {hi:g} (got {_fmt(value)})")
        return v

    return check


def non_negative(key: str, value: Any) -> float:
    v = _number(key, value)
    if v < 0:
        raise ConfigError(key, f"must be >= 0 (got {_fmt(value)})")
    return v


def open_unit(key: str, value: Any) -> float:
    v = _number(key, value)
    if not 0.0 < v < 1.0:
        raise ConfigError(key, f"must be in (0, 1) (got {_fmt(value)})")
    return v


def closed_unit(key: str, value: Any) -> float:
    v = _number(key, value)
    if not 0.0 <= v <= 1.0:
        raise ConfigError(key, f"must be in [0, 1] (got {_fmt(value)})")
    return v


def one_of(*choices: str) -> Check:
    def check(key: str, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ConfigError(key, f"must be one of {', '.join(choices)} (got {value!r})")
        return value

    return check


def nonempty_string(key: str, value: Any) -> str:
    return _string(key, value)


def optional(check: Check) -> Check:
    """`check`, or None (null: the key's documented meaning of "not set")."""

    def check_optional(key: str, value: Any) -> Any:
        return None if value is None else check(key, value)

    return check_optional


def optional_string(key: str, value: Any) -> str | None:
    return None if value is None else _string(key, value)


def word(key: str, value: Any) -> str:
    v = _string(key, value)
    if any(c.isspace() for c in v):
        raise ConfigError(key, f"must not contain whitespace (got {v!r})")
    return v


_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)$")


def grpc_address(key: str, value: Any) -> str:
    """host:port, [v6addr]:port or unix:/path, the address forms grpc accepts."""
    v = word(key, value)
    if v.startswith("unix:"):
        if len(v) == len("unix:"):
            raise ConfigError(key, "unix: address needs a socket path")
        return v
    host, sep, port = v.rpartition(":")
    if not sep or not _HOST_RE.match(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(key, f"must be host:port with a port in 1..65535 (got {v!r})")
    return v


def socket_path(key: str, value: Any) -> str:
    v = word(key, value)
    if len(v.encode()) > SUN_PATH_MAX:
        raise ConfigError(key, f"must be at most {SUN_PATH_MAX} bytes (AF_UNIX path limit)")
    return v


def shard_count(key: str, value: Any) -> int:
    v = _integer(key, value)
    if v < 1 or v > MAX_SHARDS or v & (v - 1):
        raise ConfigError(key, f"must be a power of two no larger than {MAX_SHARDS} (got {v})")
    return v


def core_list(key: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ConfigError(key, f"must be a list of CPU ids (got {_describe(value)})")
    if not 1 <= len(value) <= MAX_CORES:
        raise ConfigError(key, f"must have 1..{MAX_CORES} entries (got {len(value)})")
    seen: set[int] = set()
    for n, item in enumerate(value):
        cpu = int_range(0, 4095)(f"{key}[{n}]", item)
        if cpu in seen:
            raise ConfigError(key, f"duplicate core {cpu}")
        seen.add(cpu)
    return tuple(value)


class Live:
    """Marks a key's checker: a reload applies the key while running (faucet's mutable_attrs).

    An unmarked key takes effect only at a start; the role restarts the controller when one
    changes (its list is checked against restart_keys() by the tests).
    """

    def __init__(self, check: Check) -> None:
        self.check = check

    def __call__(self, key: str, value: Any) -> Any:
        return self.check(key, value)


# ---------------------------------------------------------------------------------------------
# Sections: dataclass + {yaml key: checker}; Live(checker) for a key a reload applies.

_DATAPLANE: dict[str, Check] = {
    "kind": one_of(*DATAPLANE_KINDS),
    "grpc_url": grpc_address,
    "pybess_path": nonempty_string,
    "module": word,
    "replay_file": optional_string,
    "connect_timeout_ms": positive_int_upto(600_000),
}
_CORES: dict[str, Check] = {"list": core_list, "controller": int_range(0, 4095)}
_EPOCHS: dict[str, Check] = {
    "short_ms": Live(positive_int_upto(60_000)),
    "long_ms": Live(positive_int_upto(3_600_000)),
    "scale_down_hysteresis": Live(int_range(1, 1000)),
}
_MODEL: dict[str, Check] = {
    "slo_priority_us": Live(number_range(0, 1e9, lo_open=True)),
    "slo_regular_us": Live(number_range(0, 1e9, lo_open=True)),
    "ca_priority": Live(number_range(0, 1e3)),
    "cs_priority": Live(number_range(0, 1e3)),
    "ca_regular": Live(number_range(0, 1e3)),
    "cs_regular": Live(number_range(0, 1e3)),
    "t_working_us": Live(optional(number_range(0, 1e6, lo_open=True))),
    "t_offloading_us": Live(optional(number_range(0, 1e6, lo_open=True))),
    "service_time_default_us": Live(number_range(0, 1e6, lo_open=True)),
    "sigma": Live(number_range(0, 1e3, lo_open=True)),
    "rho_cap": Live(open_unit),
    "max_offloading_ratio": Live(closed_unit),
}
_SOLVER: dict[str, Check] = {
    "backend": Live(one_of(*BACKENDS)),
    "short_time_limit_ms": Live(number_range(0, 3_600_000, lo_open=True)),
    "long_time_limit_ms": Live(number_range(0, 3_600_000, lo_open=True)),
    "greedy_deadline_ms": Live(number_range(0, 3_600_000, lo_open=True)),
}
_DECISION_LOG: dict[str, Check] = {
    "max_bytes": Live(int_range(4096, 1 << 30)),
    "backups": Live(int_range(0, 100)),
}
_METRICS: dict[str, Check] = {"listen": word, "port": int_range(0, 65535)}

# Top-level key -> (Config field, section dataclass or None, checkers).
_SECTIONS: dict[str, tuple[str, type | None, dict[str, Check] | Check]] = {
    "dataplane": ("dataplane", DataplaneConfig, _DATAPLANE),
    "cores": ("cores", CoresConfig, _CORES),
    "shards": ("shards", None, shard_count),
    "epochs": ("epochs", EpochsConfig, _EPOCHS),
    "model": ("params", Params, _MODEL),
    "solver": ("solver", SolverConfig, _SOLVER),
    "state_dir": ("state_dir", None, nonempty_string),
    "decision_log": ("decision_log", DecisionLogConfig, _DECISION_LOG),
    "metrics": ("metrics", MetricsConfig, _METRICS),
    "status_socket": ("status_socket", None, socket_path),
    "log_level": ("log_level", None, Live(one_of(*LOG_LEVELS))),
    "policy": ("policy", None, Live(one_of(*POLICIES))),
}


def _mapping(key: str, value: Any) -> Mapping[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(key or "(top level)", f"must be a mapping (got {_describe(value)})")
    return value


def check_fields(key: str, value: Any, checks: Mapping[str, Check]) -> dict[str, Any]:
    """The mapping at `key` with each value passed through its key's check; a key with no
    check is an error. Used by every section here and by other validated documents."""
    values: dict[str, Any] = {}
    for name, item in _mapping(key, value).items():
        path = f"{key}.{inputs.quote_key(name)}" if key else inputs.quote_key(name)
        if not isinstance(name, str) or name not in checks:
            raise ConfigError(path, "unknown key")
        values[name] = checks[name](path, item)
    return values


def _section(key: str, cls: type[T], checks: dict[str, Check], value: Any) -> T:
    return cls(**check_fields(key, value, checks))


def parse_model(obj: Any, key: str = "model", base: Params | None = None) -> Params:
    """Validate a mapping of model parameters (missing ones taken from `base`)."""
    return (base or Params()).with_values(check_fields(key, obj, _MODEL))


def parse_config(obj: object) -> Config:
    """Build a Config from parsed YAML (None means every default)."""
    raw = _mapping("", obj)
    values: dict[str, Any] = {}
    for name, item in raw.items():
        if not isinstance(name, str) or name not in _SECTIONS:
            raise ConfigError(inputs.quote_key(name), "unknown key")
        attr, cls, checks = _SECTIONS[name]
        if cls is None:
            assert callable(checks)
            values[attr] = checks(name, item)
        else:
            assert isinstance(checks, dict)
            values[attr] = _section(name, cls, checks, item)
    config = Config(**values)
    _cross_check(config)
    return config


def _cross_check(c: Config) -> None:
    """Constraints between keys; reported at the key that has to change."""
    if c.cores.controller in c.cores.list:
        raise ConfigError(
            "cores.controller",
            f"CPU {c.cores.controller} is also in cores.list; the controller needs its own CPU",
        )
    if c.epochs.long_ms % c.epochs.short_ms:
        raise ConfigError(
            "epochs.long_ms",
            f"must be a multiple of epochs.short_ms ({c.epochs.short_ms}) (got {c.epochs.long_ms})",
        )
    if c.dataplane.kind == "replay" and c.dataplane.replay_file is None:
        raise ConfigError("dataplane.replay_file", "required when dataplane.kind is replay")
    # A solve and its greedy fallback must both fit in the epoch they serve.
    s = c.solver
    if s.short_time_limit_ms + s.greedy_deadline_ms > c.epochs.short_ms:
        raise ConfigError(
            "solver.short_time_limit_ms",
            f"plus solver.greedy_deadline_ms must fit in epochs.short_ms "
            f"({_fmt(s.short_time_limit_ms)} + {_fmt(s.greedy_deadline_ms)} > "
            f"{c.epochs.short_ms})",
        )
    if s.long_time_limit_ms + s.greedy_deadline_ms > c.epochs.long_ms:
        raise ConfigError(
            "solver.long_time_limit_ms",
            f"plus solver.greedy_deadline_ms must fit in epochs.long_ms "
            f"({_fmt(s.long_time_limit_ms)} + {_fmt(s.greedy_deadline_ms)} > "
            f"{c.epochs.long_ms})",
        )


# ---------------------------------------------------------------------------------------------
# YAML: safe loader that rejects duplicate keys and reads 1e-3 as a float (YAML 1.2 style).
# Bounded: no aliases (nine nested ones make a value of 9^9 items), nesting of at most
# inputs.MAX_DEPTH levels (the composer recurses), scalar mapping keys, short number literals.


class _StrictLoader(yaml.SafeLoader):
    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None,
                None,
                "aliases (*name) are not accepted",
                self.peek_event().start_mark,  # type: ignore[no-untyped-call]
            )
        self._depth += 1
        try:
            if self._depth > inputs.MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested deeper than {inputs.MAX_DEPTH} levels",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            )
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {inputs.quote(key)}", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
    return out


def _construct_int(loader: _StrictLoader, node: yaml.ScalarNode) -> int:
    if not inputs.int_digits_ok(str(node.value)):
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"integer of {len(node.value)} digits (at most {inputs.MAX_INT_DIGITS})",
            node.start_mark,
        )
    return int(loader.construct_yaml_int(node))


def _construct_float(loader: _StrictLoader, node: yaml.ScalarNode) -> float:
    if len(str(node.value)) > inputs.MAX_NUMBER_CHARS:
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"number of {len(node.value)} characters (at most {inputs.MAX_NUMBER_CHARS})",
            node.start_mark,
        )
    return float(loader.construct_yaml_float(node))


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_StrictLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml_text(text: str) -> Any:
    """Parse YAML text strictly; YAML errors become ConfigError with no key path."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError("", f"invalid YAML{where}: {problem}") from None
    except (ValueError, RecursionError) as e:  # a value PyYAML's constructors refuse (2001-02-30)
        raise ConfigError("", f"invalid YAML: {e}") from None


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; every error names the file."""
    source = str(path)
    try:
        text = inputs.read_text(path, inputs.MAX_CONFIG_BYTES)
    except inputs.InputError as e:
        raise ConfigError("", str(e), source) from None
    try:
        return parse_config(load_yaml_text(text))
    except ConfigError as e:
        raise ConfigError(e.key, e.reason, source) from None


# ---------------------------------------------------------------------------------------------
# Reload support.


def _flatten(config: Config) -> dict[str, Any]:
    """Dotted YAML key path -> value, for every leaf key."""
    out: dict[str, Any] = {}
    for name, (attr, cls, _checks) in _SECTIONS.items():
        value = getattr(config, attr)
        if cls is None:
            out[name] = value
        else:
            for f in dataclasses.fields(value):
                out[f"{name}.{f.name}"] = getattr(value, f.name)
    return out


def _checks(key: str) -> Check:
    """The checker of a dotted leaf key path."""
    section, _, leaf = key.partition(".")
    checks = _SECTIONS[section][2]
    return checks[leaf] if isinstance(checks, dict) else checks


def live_keys() -> frozenset[str]:
    """Dotted paths of the keys a reload applies while running (marked Live in the schema)."""
    return frozenset(k for k in _flatten(Config()) if isinstance(_checks(k), Live))


def restart_keys() -> list[str]:
    """Top-level keys holding a key that takes effect only at a start, in schema order."""
    live = live_keys()
    return [
        name
        for name in _SECTIONS
        if any(k not in live for k in _flatten(Config()) if k.partition(".")[0] == name)
    ]


def with_live_keys(old: Config, new: Config) -> Config:
    """`old` with the values of `new` for every live key (the others keep their old value)."""
    live = live_keys()
    values: dict[str, Any] = {}
    for name, (attr, cls, _checks) in _SECTIONS.items():
        if cls is None:
            if name in live:
                values[attr] = getattr(new, attr)
            continue
        section_new = getattr(new, attr)
        fields = {
            f.name: getattr(section_new, f.name)
            for f in dataclasses.fields(section_new)
            if f"{name}.{f.name}" in live
        }
        if fields:
            values[attr] = dataclasses.replace(getattr(old, attr), **fields)
    return dataclasses.replace(old, **values)


def changed_keys(old: Config, new: Config) -> set[str]:
    """Dotted paths of the keys whose value differs (e.g. {"model.sigma", "shards"})."""
    a, b = _flatten(old), _flatten(new)
    return {k for k in a if a[k] != b[k]}


def to_dict(config: Config) -> dict[str, Any]:
    """The config as plain YAML-shaped data (the inverse of parse_config)."""
    out: dict[str, Any] = {}
    for key, value in _flatten(config).items():
        section, _, leaf = key.partition(".")
        if leaf:
            out.setdefault(section, {})[leaf] = list(value) if isinstance(value, tuple) else value
        else:
            out[section] = value
    return out
