"""Snapshot JSON: parsing, defaults, validation messages and the dump/parse round trip."""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dyssect_ctrl.config import parse_config
from dyssect_ctrl.model import Params, Plan, ShardStats, Snapshot
from dyssect_ctrl.snapshot import (
    SnapshotError,
    decode_json,
    dump_snapshot,
    load_snapshot,
    parse_snapshot,
    parse_snapshot_line,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("snapshot-*.json"))


def base() -> dict[str, Any]:
    return {
        "cores": 4,
        "window_s": 0.1,
        "shards": [{"packets": 1000, "bytes": 64000}, {"packets": 3000, "bytes": 192000}],
        "current": {
            "working": 2,
            "offloading": 1,
            "assignment": [0, 1],
            "pairing": {"0": 0, "1": 0},
            "offload": [0.0, 0.5],
        },
    }


def test_minimal_snapshot_takes_default_params_and_start_state() -> None:
    snap = parse_snapshot({"cores": 2, "window_s": 0.5, "shards": [{"packets": 5, "bytes": 320}]})
    assert snap.cores == 2
    assert snap.window_s == 0.5
    assert snap.params == Params()
    assert snap.shards == (ShardStats(5, 320),)
    assert snap.current is None
    assert snap.current_or_initial() == Plan.initial(1)
    assert (snap.timestamp, snap.epoch, snap.drops) == (0.0, 0, {})


def test_loads_follow_packets_times_service_time_over_window() -> None:
    obj = base()
    obj["params"] = {"t_working_us": 2.0}
    snap = parse_snapshot(obj)
    # V_s = packets * t_working_us * 1e-6 / window_s
    assert snap.loads() == pytest.approx([1000 * 2e-6 / 0.1, 3000 * 2e-6 / 0.1])


def test_missing_params_come_from_the_config() -> None:
    config = parse_config({"model": {"sigma": 1.7, "rho_cap": 0.8}})
    obj = base()
    obj["params"] = {"sigma": 1.2}
    snap = parse_snapshot(obj, config)
    assert snap.params.sigma == 1.2  # the snapshot wins
    assert snap.params.rho_cap == 0.8  # the config fills the gap
    assert snap.params.t_working_us == Params().t_working_us


def test_current_plan_is_parsed_with_integer_slots() -> None:
    snap = parse_snapshot(base())
    assert snap.current == Plan(2, 1, (0, 1), {0: 0, 1: 0}, (0.0, 0.5))


def test_current_defaults_for_optional_plan_fields() -> None:
    obj = base()
    obj["current"] = {"working": 2, "assignment": [1, 1]}
    snap = parse_snapshot(obj)
    assert snap.current == Plan(2, 0, (1, 1), {}, (0.0, 0.0))


def test_optional_extras_are_accepted() -> None:
    obj = base()
    obj["shards"][0]["flow_shares"] = [0.7, 0.2, 0.1]
    obj.update({"timestamp": 12.5, "epoch": 9, "drops": {"queue_full": 3}})
    snap = parse_snapshot(obj)
    assert snap.shards[0].flow_shares == (0.7, 0.2, 0.1)
    assert snap.shards[1].flow_shares == ()
    assert (snap.timestamp, snap.epoch, snap.drops) == (12.5, 9, {"queue_full": 3})


def _with(path: str, value: Any) -> dict[str, Any]:
    """base() with the value at a dotted path (list indices as numbers) set, or removed if ..."""
    obj = base()
    parts = path.split(".")
    node: Any = obj
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last: Any = int(parts[-1]) if isinstance(node, list) else parts[-1]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return obj


BAD: list[tuple[dict[str, Any], str]] = [
    (_with("cores", ...), "snapshot: missing field 'cores'"),
    (_with("window_s", ...), "snapshot: missing field 'window_s'"),
    (_with("shards", ...), "snapshot: missing field 'shards'"),
    (_with("cores", 0), "cores: must be >= 1 (got 0)"),
    (_with("cores", "4"), 'cores: must be an integer (got "4")'),
    (_with("cores", True), "cores: must be an integer (got true)"),
    (_with("window_s", 0), "window_s: must be > 0 (got 0)"),
    (_with("window_s", None), "window_s: must be a finite number (got null)"),
    (_with("shards", []), "shards: must not be empty"),
    (_with("shards", {"0": 1}), 'shards: must be a list (got {"0": 1})'),
    (_with("shards.1.packets", -1), "shards[1].packets: must be >= 0 (got -1)"),
    (_with("shards.1.packets", 1.5), "shards[1].packets: must be an integer (got 1.5)"),
    (_with("shards.0.bytes", ...), "shards[0]: missing field 'bytes'"),
    (_with("shards.0", 7), "shards[0]: must be a JSON object (got 7)"),
    (
        _with("shards.0.flow_shares", [0.8, 0.3]),
        "shards[0].flow_shares: shares sum to 1.1 > 1",
    ),
    (_with("shards.0.flow_shares", [1.5]), "shards[0].flow_shares[0]: must be in [0, 1] (got 1.5)"),
    (
        _with("shards.0.pkts", 1),
        "shards[0].pkts: unknown field (expected one of packets, bytes, flow_shares)",
    ),
    (
        _with("shard", []),
        "shard: unknown field (expected one of cores, window_s, params, shards, current, "
        "timestamp, epoch, drops)",
    ),
    (_with("params", {"sigma": 0}), "params.sigma: must be > 0 (got 0)"),
    (_with("params", {"sigm": 1}), "params.sigm: unknown key"),
    (_with("current.working", 0), "current.working: must be >= 1 (got 0)"),
    (_with("current.working", ...), "current: missing field 'working'"),
    (_with("current.offloading", 3), "current: working + offloading = 5 exceeds cores (4)"),
    (_with("current.assignment", [0]), "current.assignment: has 1 entries but there are 2 shards"),
    (
        _with("current.assignment", [0, 2]),
        "current.assignment[1]: working slot 2 is not < current.working (2)",
    ),
    (_with("current.assignment", [0, -1]), "current.assignment[1]: must be >= 0 (got -1)"),
    (
        _with("current.pairing", {"2": 0}),
        "current.pairing.2: working slot 2 is not < current.working (2)",
    ),
    (
        _with("current.pairing", {"0": 1, "1": 0}),
        "current.pairing.0: offloading slot 1 is not < current.offloading (1)",
    ),
    (_with("current.pairing", {"x": 0}), "current.pairing: key 'x' is not a working slot number"),
    (_with("current.offload", [0.0, 1.5]), "current.offload[1]: must be in [0, 1] (got 1.5)"),
    (_with("current.offload", [0.0]), "current.offload: has 1 entries but there are 2 shards"),
    (
        _with("current.pairing", {"0": 0}),
        "current.offload[1]: offloads 0.5 from working slot 1, which has no entry in "
        "current.pairing",
    ),
    (_with("epoch", -1), "epoch: must be >= 0 (got -1)"),
    (_with("drops", {"queue_full": -2}), "drops.queue_full: must be >= 0 (got -2)"),
    (_with("drops", [1]), "drops: must be a JSON object (got [1])"),
]


@pytest.mark.parametrize(("obj", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_malformed_snapshot_gives_one_clear_line(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(SnapshotError) as info:
        parse_snapshot(obj)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_top_level_must_be_an_object() -> None:
    with pytest.raises(SnapshotError, match=r"^snapshot: must be a JSON object \(got \[1, 2\]\)$"):
        parse_snapshot([1, 2])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"cores": 4,', "invalid JSON at line 1 column 13: Expecting property name"),
        ("", "invalid JSON at line 1 column 1: Expecting value"),
        ('{"cores": 4, "cores": 5}', "duplicate field 'cores'"),
        ('{"cores": 4, "window_s": NaN}', "NaN is not valid JSON"),
    ],
)
def test_bad_json(text: str, message: str) -> None:
    with pytest.raises(SnapshotError) as info:
        parse_snapshot_line(text)
    assert str(info.value).startswith(message)
    with pytest.raises(SnapshotError):
        decode_json(text)


def test_load_snapshot_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(_with("cores", -3)))
    with pytest.raises(SnapshotError) as info:
        load_snapshot(path)
    assert str(info.value) == f"{path}: cores: must be >= 1 (got -3)"
    with pytest.raises(SnapshotError, match=r"nope\.json: cannot read \(No such file"):
        load_snapshot(tmp_path / "nope.json")


def test_input_object_is_not_modified() -> None:
    obj = base()
    before = copy.deepcopy(obj)
    parse_snapshot(obj)
    assert obj == before


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_parse_and_round_trip(path: Path) -> None:
    snap = load_snapshot(path)
    assert len(snap.shards) >= 1
    assert all(v >= 0 for v in snap.loads())
    dumped = dump_snapshot(snap)
    assert parse_snapshot(json.loads(json.dumps(dumped))) == snap


def test_at_least_three_examples() -> None:
    assert len(EXAMPLES) >= 3


def test_dump_of_full_snapshot_is_stable_json() -> None:
    obj = base()
    obj["shards"][1]["flow_shares"] = [0.5]
    obj.update({"timestamp": 3.25, "epoch": 4, "drops": {"ring": 1}})
    snap = parse_snapshot(obj)
    dumped = dump_snapshot(snap)
    assert dumped["params"] == Params().__dict__
    assert dumped["current"]["pairing"] == {"0": 0, "1": 0}
    assert dumped["shards"] == [
        {"packets": 1000, "bytes": 64000},
        {"packets": 3000, "bytes": 192000, "flow_shares": [0.5]},
    ]
    line = json.dumps(dumped)
    assert parse_snapshot_line(line) == snap


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    n = draw(st.integers(1, 24))
    cores = draw(st.integers(1, 16))
    shards = tuple(
        ShardStats(
            draw(st.integers(0, 10**9)),
            draw(st.integers(0, 10**12)),
            tuple(draw(st.lists(st.floats(0, 1.0 / 8), max_size=8))),
        )
        for _ in range(n)
    )
    current = None
    if draw(st.booleans()):
        w = draw(st.integers(1, cores))
        e = draw(st.integers(0, cores - w))
        assignment = tuple(draw(st.integers(0, w - 1)) for _ in range(n))
        pairing = {i: draw(st.integers(0, e - 1)) for i in range(w)} if e else {}
        offload = tuple(draw(st.floats(0, 1)) if e else 0.0 for _ in range(n))
        current = Plan(w, e, assignment, pairing, offload)
    params = Params(
        sigma=draw(st.floats(0.1, 4)),
        rho_cap=draw(st.floats(0.05, 0.99)),
        slo_priority_us=draw(st.floats(0.5, 1000)),
    )
    return Snapshot(
        cores=cores,
        window_s=draw(st.floats(1e-3, 10)),
        params=params,
        shards=shards,
        current=current,
        timestamp=draw(st.floats(0, 1e9)),
        epoch=draw(st.integers(0, 10**9)),
        drops=draw(
            st.dictionaries(
                st.sampled_from(["ring", "queue", "no_core"]), st.integers(0, 2**64 - 1)
            )
        ),
    )


@settings(max_examples=150, deadline=None)
@given(snapshots())
def test_dump_then_parse_is_the_identity(snap: Snapshot) -> None:
    assert parse_snapshot_line(json.dumps(dump_snapshot(snap))) == snap


# ---------------------------------------------------------------------------------------------
# Hostile input: every case is one bounded error line (or a snapshot), never a traceback.

# DYSSECT_FUZZ_EXAMPLES=5000 runs a larger set than the suite's default.
FUZZ_EXAMPLES = int(os.environ.get("DYSSECT_FUZZ_EXAMPLES", "300"))
TWO_SHARDS = '"shards":[{"packets":1000,"bytes":1},{"packets":1000,"bytes":1}]'


def _pairing(keys: str) -> str:
    return (
        '{"cores":4,"window_s":0.1,' + TWO_SHARDS + ',"current":{"working":2,"offloading":1,'
        '"assignment":[0,1],"pairing":{' + keys + "}}}"
    )


HOSTILE = [
    # (text, what the one line must contain)
    (_pairing('"\u00b2":0,"1":0'), "current.pairing: key '\\xb2' is not a working slot number"),
    (_pairing('"0":0,"\u0661":0'), "current.pairing: key '\\u0661' is not a working slot"),
    (
        '{"cores":4,"window_s":0.1,"shards":[{"packets":' + "9" * 5000 + ',"bytes":1}]}',
        "integer of 5000 digits (at most 20)",
    ),
    (
        '{"cores":4,"window_s":0.1,"shards":[{"packets":' + "9" * 400 + ',"bytes":1}]}',
        "integer of 400 digits (at most 20)",
    ),
    (
        '{"cores":4,"window_s":0.1,"shards":[{"packets":' + str(2**64) + ',"bytes":1}]}',
        "shards[0].packets: must be <= 18446744073709551615",
    ),
    ("[" * 100_000, "nested deeper than 16 levels"),
    ('{"a":' * 20 + "1" + "}" * 20, "nested deeper than 16 levels"),
    ('{"' + "k" * 5_000_000 + '":1}', "... (5000000 characters): unknown field"),
    ('{"\\u001b[31mred\\u202egnp":1}', "'\\x1b[31mred\\u202egnp': unknown field"),
    ('{"cores":1000000,"window_s":0.1,"shards":[{"packets":1,"bytes":1}]}', "cores: must be <= 64"),
    (
        '{"cores":4,"window_s":0.1,"shards":[' + ",".join(['{"packets":1,"bytes":1}'] * 513) + "]}",
        "shards: has 513 entries, at most 512",
    ),
    ('{"cores":4,"window_s":1e999,"shards":[]}', "window_s: must be a finite number"),
    ('{"cores":4,"window_s":0.1,"shards":[{"packets":1,"bytes":1}],"drops":{"a b\\n":1}}', "drops"),
    ("1" + "0" * 30, "integer of 31 digits"),
    ("0." + "1" * 100, "number of 102 characters (at most 64)"),
]


@pytest.mark.parametrize(("text", "expected"), HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_snapshots_give_one_bounded_line(text: str, expected: str) -> None:
    with pytest.raises(SnapshotError) as info:
        parse_snapshot_line(text)
    line = str(info.value)
    assert expected in line
    assert len(line) <= 400 and line.isascii() and line.isprintable()


def test_a_snapshot_file_is_read_no_further_than_its_cap() -> None:
    with pytest.raises(SnapshotError, match=r"^/dev/zero: larger than 8388608 bytes$"):
        load_snapshot("/dev/zero")


_NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(1, 6000).map(lambda n: "9" * n),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1e999", "-0", "-0.0", "1e-400", "0." + "1" * 200, "2" * 20 + "e2"]),
)
_KEYS = st.one_of(
    st.sampled_from(["0", "1", "2", "\u00b2", "\u0661", "01", "-1", "", "4294967296", "x"]),
    st.text(max_size=12),
)


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@st.composite
def hostile_snapshot_text(draw: st.DrawFn) -> str:
    """A valid snapshot with one field replaced by something hostile, or plain junk."""
    kind = draw(st.sampled_from(["field", "number", "nesting", "junk", "key"]))
    obj = base()
    if kind == "junk":
        return draw(st.text(max_size=400))
    if kind == "nesting":
        depth = draw(st.integers(1, 3000))
        opener = draw(st.sampled_from(["[", '{"a":']))
        closer = "]" if opener == "[" else "}"
        return opener * depth + "1" + closer * draw(st.integers(0, depth))
    paths = [
        ("cores",),
        ("window_s",),
        ("epoch",),
        ("timestamp",),
        ("current", "working"),
        ("current", "offloading"),
        ("current", "assignment"),
        ("current", "offload"),
        ("current", "pairing"),
        ("shards",),
        ("params",),
        ("drops",),
    ]
    path = draw(st.sampled_from(paths))
    holder = obj
    for key in path[:-1]:
        holder = holder[key]
    marker = "__HOSTILE__"
    if kind == "key":
        holder[path[-1]] = {marker: 0}
        text = _json_text(obj)
        return text.replace(f'"{marker}"', _json_text(draw(_KEYS)))
    holder[path[-1]] = marker
    text = _json_text(obj)
    if kind == "number":
        value = draw(_NUMBERS)
    else:
        small = st.one_of(st.integers(-5, 70), st.floats(allow_nan=False), st.text(max_size=5))
        value = _json_text(
            draw(
                st.one_of(
                    small,
                    st.lists(small, max_size=600),
                    st.dictionaries(_KEYS, small, max_size=5),
                )
            )
        )
    return text.replace(f'"{marker}"', value)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(hostile_snapshot_text())
def test_hostile_snapshots_never_give_a_traceback(text: str) -> None:
    from dyssect_ctrl import planner

    t0 = time.perf_counter()
    try:
        snap = parse_snapshot_line(text)
    except SnapshotError as e:
        line = str(e)
        assert len(line) <= 400 and line.isascii() and line.isprintable(), line
    else:
        # What parses is plannable: within the short limit, whatever the current plan.
        result = planner.plan(
            snap.loads(),
            snap.params,
            snap.cores,
            snap.current_or_initial(),
            mode="short",
            solver="greedy",
            short_time_limit_s=0.01,
            greedy_deadline_s=0.005,
        )
        assert result.plan.working <= len(snap.shards)
    assert time.perf_counter() - t0 < 2.0
