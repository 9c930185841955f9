"""Experiment specs: factors and levels, profiles, repetitions -> the points to run.

A spec is a YAML file (experiments/*.yml, docs/experiments.md):

    name: flash-crowd
    repetitions: 3
    series: policy            # the factor that makes the lines of the plots (default policy)
    x: rate                   # the factor on the x axis (default: the first that varies)
    factors:
      policy: [static, rsspp, dyssect]
      profile: [flash]
      rate: [40000]           # peak offered load, packets/s
      skew: [0.0]             # Zipf exponent of the flow popularity (for the generator)
      cores: [3]              # cores the controller may use: the first N of the host's list
      shards: [64]
      nf_cost: [0.0]          # cost_per_byte of the chain's cpu NF
      seed: [1]
    profiles:
      flash:
        phases: [{seconds: 20, load: 0.25}, {seconds: 10, load: 1.0}, {seconds: 30, load: 0.25}]
        hot_set: {shift_every_s: 5}    # any key of a generator profile but seed and phases

The cross product of the factors' levels, times the repetitions, gives the points. policy,
profile and rate are required; cores, shards and nf_cost left out keep what the host runs.
Every error is one line that names the file and the key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dyssect_ctrl.config import ConfigError, load_yaml_text
from dyssect_ctrl.policy import POLICIES
from dyssect_ctrl.traffic.profile import parse_profile

FACTORS = ("policy", "profile", "rate", "skew", "cores", "shards", "nf_cost", "seed")
REQUIRED = ("policy", "profile", "rate")
TOP_KEYS = (
    "name",
    "description",
    "repetitions",
    "series",
    "x",
    "factors",
    "profiles",
    "settle_s",
    "metrics",
)
MAX_POINTS = 10_000


class SpecError(ValueError):
    """A spec that cannot be run; str() is one line: '<file>: <key>: <reason>'."""


def _fail(key: str, reason: str) -> SpecError:
    return SpecError(f"{key}: {reason}" if key else reason)


def _int(key: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise _fail(key, f"must be an integer >= {lo} (got {v!r})")
    return v


def _num(key: str, v: Any, lo: float) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < lo:
        raise _fail(key, f"must be a number >= {lo:g} (got {v!r})")
    return float(v)


def _shards(key: str, v: Any) -> int:
    n = _int(key, v, 1)
    if n > 512 or n & (n - 1):
        raise _fail(key, f"must be a power of two no larger than 512 (got {n})")
    return n


def _policy(key: str, v: Any) -> str:
    if v not in POLICIES:
        raise _fail(key, f"must be one of {', '.join(POLICIES)} (got {v!r})")
    return str(v)


def _name(key: str, v: Any) -> str:
    if not isinstance(v, str) or not v or not all(c.isalnum() or c in "-_." for c in v):
        raise _fail(key, f"must be a name of letters, digits, '-', '_' or '.' (got {v!r})")
    return v


LEVEL_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "policy": _policy,
    "profile": _name,
    "rate": lambda k, v: _int(k, v, 1),
    "skew": lambda k, v: _num(k, v, 0.0),
    "cores": lambda k, v: _int(k, v, 1),
    "shards": _shards,
    "nf_cost": lambda k, v: _num(k, v, 0.0),
    "seed": lambda k, v: _int(k, v, 0),
}


@dataclass(frozen=True)
class Phase:
    seconds: int
    load: float  # fraction of the point's rate


@dataclass(frozen=True)
class Profile:
    name: str
    phases: tuple[Phase, ...]
    # Everything else the profile says (hot-set shifts, churn...): passed to the generator as is.
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "phases": [{"seconds": p.seconds, "load": p.load} for p in self.phases],
            **self.extra,
        }

    def generator(self, rate_pps: int, seed: int, skew: float | None) -> dict[str, Any]:
        """The traffic generator's profile of a point (docs/traffic.md): each phase offers its
        load times the point's rate; skew is the Zipf exponent of the flow popularity."""
        out: dict[str, Any] = {
            **self.extra,
            "seed": seed,
            "phases": [
                {
                    "name": f"p{n + 1}",
                    "seconds": p.seconds,
                    "rate_pps": max(1, round(p.load * rate_pps)),
                }
                for n, p in enumerate(self.phases)
            ],
        }
        if skew is not None:
            out["zipf_alpha"] = skew
        return out


@dataclass(frozen=True)
class Point:
    """One run: a level of every factor and a repetition number (1-based)."""

    factors: dict[str, Any]
    repetition: int

    @property
    def series_key(self) -> str:
        """Identity of the factor levels (the same for every repetition)."""
        text = json.dumps(self.factors, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    @property
    def ident(self) -> str:
        """ansible-runner ident and directory name: readable, unique per point."""
        return f"{self.factors['policy']}-{self.series_key}-r{self.repetition}"


@dataclass(frozen=True)
class Spec:
    name: str
    description: str
    repetitions: int
    series: str
    x: str
    factors: dict[str, list[Any]]
    profiles: dict[str, Profile]
    settle_s: int
    metrics: dict[str, str]
    raw: dict[str, Any]

    def points(self) -> list[Point]:
        names = list(self.factors)
        out = []
        for values in itertools.product(*(self.factors[n] for n in names)):
            for rep in range(1, self.repetitions + 1):
                out.append(Point(dict(zip(names, values, strict=True)), rep))
        return out


def _profile(key: str, name: str, value: Any) -> Profile:
    if not isinstance(value, Mapping):
        raise _fail(key, f"must be a mapping with phases (got {value!r})")
    phases_raw = value.get("phases")
    if not isinstance(phases_raw, list) or not phases_raw:
        raise _fail(f"{key}.phases", "must be a non-empty list of {seconds, load}")
    phases = []
    for n, ph in enumerate(phases_raw):
        pk = f"{key}.phases[{n}]"
        if not isinstance(ph, Mapping) or set(ph) != {"seconds", "load"}:
            raise _fail(pk, f"must be {{seconds, load}} (got {ph!r})")
        phases.append(
            Phase(_int(f"{pk}.seconds", ph["seconds"], 1), _num(f"{pk}.load", ph["load"], 0.0))
        )
    if all(p.load == 0.0 for p in phases):
        raise _fail(f"{key}.phases", "offer no load in any phase")
    extra = {str(k): v for k, v in value.items() if k != "phases"}
    profile = Profile(name, tuple(phases), extra)
    # The rest is the generator's (docs/traffic.md): refused here, not at the first point.
    for reserved in ("seed", "zipf_alpha"):
        if reserved in extra:
            raise _fail(f"{key}.{reserved}", "comes from the factors (seed, skew), not the profile")
    try:
        parse_profile(profile.generator(rate_pps=1, seed=0, skew=None))
    except ConfigError as e:
        raise _fail(f"{key}.{e.key}", e.reason) from None
    return profile


def parse_spec(obj: Any) -> Spec:
    if not isinstance(obj, Mapping):
        raise _fail("", f"a spec must be a mapping (got {type(obj).__name__})")
    for k in obj:
        if k not in TOP_KEYS:
            raise _fail(str(k), f"unknown key (known: {', '.join(TOP_KEYS)})")
    if "name" not in obj:
        raise _fail("name", "missing")
    name = _name("name", obj["name"])
    description = obj.get("description", "")
    if not isinstance(description, str):
        raise _fail("description", "must be a string")
    repetitions = _int("repetitions", obj.get("repetitions", 1), 1)
    settle_s = _int("settle_s", obj.get("settle_s", 10), 0)
    raw_factors = obj.get("factors")
    if not isinstance(raw_factors, Mapping):
        raise _fail("factors", "must be a mapping of factor -> list of levels")
    factors: dict[str, list[Any]] = {}
    for f, levels in raw_factors.items():
        key = f"factors.{f}"
        if f not in FACTORS:
            raise _fail(key, f"unknown factor (known: {', '.join(FACTORS)})")
        if not isinstance(levels, list) or not levels:
            raise _fail(key, f"must be a non-empty list of levels (got {levels!r})")
        checked = [LEVEL_CHECKS[f](f"{key}[{n}]", v) for n, v in enumerate(levels)]
        if len(set(checked)) != len(checked):
            raise _fail(key, f"repeats a level ({levels})")
        factors[f] = checked
    for f in REQUIRED:
        if f not in factors:
            raise _fail(f"factors.{f}", "missing (policy, profile and rate are required)")
    factors = {f: factors[f] for f in FACTORS if f in factors}  # one order for every spec
    raw_profiles = obj.get("profiles")
    if not isinstance(raw_profiles, Mapping):
        raise _fail("profiles", "must be a mapping of profile name -> {phases: ...}")
    profiles = {
        str(n): _profile(f"profiles.{n}", _name(f"profiles.{n}", n), v)
        for n, v in raw_profiles.items()
    }
    for n, p in enumerate(factors["profile"]):
        if p not in profiles:
            raise _fail(f"factors.profile[{n}]", f"no profile {p!r} under profiles")
    series = obj.get("series", "policy")
    if series not in factors:
        raise _fail("series", f"must be one of the spec's factors (got {series!r})")
    varying = [f for f in factors if f != series and len(factors[f]) > 1]
    x = obj.get("x", varying[0] if varying else "profile")
    if x not in factors or x == series:
        raise _fail("x", f"must be a factor of the spec other than the series (got {x!r})")
    metrics = obj.get("metrics", {})
    if not isinstance(metrics, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metrics.items()
    ):
        raise _fail("metrics", "must map metric names to JMESPath expressions")
    import jmespath

    for k, v in metrics.items():
        _name(f"metrics.{k}", k)
        try:
            jmespath.compile(v)
        except jmespath.exceptions.JMESPathError as e:
            first = str(e).splitlines()[0].rstrip(":")
            raise _fail(f"metrics.{k}", f"bad JMESPath ({first})") from None
    spec = Spec(
        name,
        description,
        repetitions,
        series,
        x,
        factors,
        profiles,
        settle_s,
        dict(metrics),
        dict(obj),
    )
    count = len(spec.points())
    if count > MAX_POINTS:
        raise _fail("factors", f"{count} points; more than {MAX_POINTS} is surely a mistake")
    return spec


def load_spec(path: str | Path) -> Spec:
    """Read and check a spec file; every error is one line naming the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return parse_spec(load_yaml_text(text))
    except ConfigError as e:  # YAML syntax
        raise SpecError(f"{path}: {e.reason}") from None
    except SpecError as e:
        raise SpecError(f"{path}: {e}") from None
