"""The bounded front door: size caps, depth cap, digit limit, escaped one-line messages."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dyssect_ctrl import inputs


def bounded_line(text: str, limit: int = inputs.MAX_LINE) -> bool:
    """One line of printable ASCII no longer than `limit`."""
    return len(text) <= limit and text.isascii() and text.isprintable()


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain", "plain"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("a\u202egnp", "a\\u202egnp"),  # right-to-left override
        ("\u00b2\u0661", "\\xb2\\u0661"),  # digits str.isdigit takes
        ("line\nbreak\r", "line\\x0abreak\\x0d"),
        ("\ud800", "\\ud800"),  # a lone surrogate cannot even be printed raw
    ],
)
def test_escape_leaves_printable_ascii_only(raw: str, shown: str) -> None:
    assert inputs.escape(raw) == shown


def test_one_line_cuts_in_the_middle_and_keeps_both_ends() -> None:
    text = "file.json: " + "k" * 5_000_000 + ": unknown field"
    t0 = time.perf_counter()
    out = inputs.one_line(text)
    assert time.perf_counter() - t0 < 0.5
    assert bounded_line(out)
    assert out.startswith("file.json: kkk") and out.endswith("kkk: unknown field")


def test_quote_never_builds_the_repr_of_a_large_value() -> None:
    big = 10**100_000  # str() of it would exceed Python's 4300-digit limit and raise
    assert inputs.quote(big) == "an integer of 100001 digits"
    assert inputs.quote([1, 2]) == "[1, 2]"
    nested: list = []
    for _ in range(9):  # an alias bomb's shape: 9^9 leaves behind 81 list objects
        nested = [nested] * 9
    assert inputs.quote(nested) == "a list of 9 items"
    assert inputs.quote({str(n): n for n in range(100)}) == "a mapping of 100 keys"
    assert inputs.quote("x" * 1000) == "'" + "x" * 30 + "'... (1000 characters)"


def test_quote_key_is_plain_only_for_short_printable_ascii() -> None:
    assert inputs.quote_key("shards") == "shards"
    assert inputs.quote_key("\u00b2") == "'\\xb2'"
    assert inputs.quote_key(("a", "b")) == "('a', 'b')"


def test_check_depth_refuses_deep_nesting_without_recursing() -> None:
    value: list = []
    for _ in range(100_000):  # deeper than the interpreter's recursion limit
        value = [value]
    with pytest.raises(inputs.InputError, match=f"nested deeper than {inputs.MAX_DEPTH} levels"):
        inputs.check_depth(value)
    ok: dict = {"a": {"b": {"c": [1]}}}
    inputs.check_depth(ok)


def test_digit_limit_counts_digits_only() -> None:
    assert inputs.int_digits_ok(str(2**64 - 1))
    assert inputs.int_digits_ok("-1_000_000")
    assert not inputs.int_digits_ok("9" * 23)


def test_read_text_stops_at_the_cap_on_an_endless_device() -> None:
    t0 = time.perf_counter()
    with pytest.raises(inputs.InputError, match="larger than 4096 bytes"):
        inputs.read_text("/dev/zero", 4096)
    assert time.perf_counter() - t0 < 1.0


def test_read_text_refuses_what_is_not_utf8_or_not_readable(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"ok\xff")
    with pytest.raises(inputs.InputError, match=r"not UTF-8 \(byte 2\)"):
        inputs.read_text(bad, 100)
    with pytest.raises(inputs.InputError, match="cannot read"):
        inputs.read_text(tmp_path / "missing", 100)
    with pytest.raises(inputs.InputError, match="cannot read"):
        inputs.read_text(str(tmp_path) + "/a\0b", 100)
    (tmp_path / "good").write_text("fine")
    assert inputs.read_text(tmp_path / "good", 4) == "fine"


def test_read_stream_caps_stdin() -> None:
    with pytest.raises(inputs.InputError, match="larger than 10 bytes"):
        inputs.read_stream(io.BytesIO(b"x" * 11), 10)
    assert inputs.read_stream(io.BytesIO(b"x" * 10), 10) == "x" * 10


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=2000), st.integers(20, 500))
def test_one_line_is_always_one_bounded_ascii_line(text: str, limit: int) -> None:
    assert bounded_line(inputs.one_line(text, limit), limit)
