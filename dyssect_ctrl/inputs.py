"""The bounded front door: limits every file, stream and message the controller takes in.

Config files, snapshot files, stdin and replay lines are read through here: a size cap before
anything is parsed, a nesting-depth cap, integers of at most MAX_INT_DIGITS digits, and error
lines that are one short ASCII line (control characters, bidi marks and other non-ASCII quoted
as escapes, long quotes cut in the middle). docs/controller.md lists the limits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

MAX_CONFIG_BYTES = 1 << 20  # a config is a few hundred bytes
MAX_SNAPSHOT_BYTES = 8 << 20  # one snapshot: 512 shards with long flow_shares lists fit
MAX_REPLAY_BYTES = 256 << 20  # a replay file of many snapshots
MAX_DEPTH = 16  # the deepest valid input is 4 levels (snapshot.current.pairing.<slot>)
MAX_INT_DIGITS = 20  # a uint64 counter has at most 20 digits
MAX_NUMBER_CHARS = 64  # any real number fits in 64 characters
MAX_LINE = 400  # an error line, all parts included
MAX_QUOTE = 60  # a value or key quoted inside an error line

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InputError(ValueError):
    """Input refused before it is parsed or validated; str(e) is one bounded line."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def escape(text: str) -> str:
    """ASCII only: non-ASCII (bidi marks, lone surrogates, look-alike digits) and control
    characters become backslash escapes, so what a line quotes cannot reorder or hide itself."""
    out = text.encode("ascii", "backslashreplace").decode("ascii")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", out)


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """`text` escaped and at most `limit` characters, cut in the middle (head and tail kept:
    the file name is at the front and the reason at the end)."""
    if len(text) > 4 * limit:  # escaping costs up to 10 characters per one; cut first
        text = text[: 2 * limit] + text[-2 * limit :]
    out = escape(text)
    if len(out) <= limit:
        return out
    half = (limit - 5) // 2
    return f"{out[:half]} ... {out[-half:]}"


def quote(value: Any, limit: int = MAX_QUOTE) -> str:
    """A short, escaped description of any parsed value: never the repr of a large container or
    of a huge integer (which costs time quadratic in its digits)."""
    if isinstance(value, str):
        text = repr(value)
        if len(value) > limit:
            text = f"{value[: limit // 2]!r}... ({len(value)} characters)"
        return one_line(text, limit + 40)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() > 3 * MAX_INT_DIGITS + 10:
            return f"an integer of {int(value.bit_length() * 0.30103) + 1} digits"
        return str(value)
    if isinstance(value, Mapping | list | tuple):
        # a small container is shown whole (the caps keep its repr short and finite: no aliases,
        # bounded depth and size); a larger one is only counted
        if len(value) <= 8:
            text = repr(value)
            if len(text) <= limit:
                return escape(text)
        what = "mapping" if isinstance(value, Mapping) else "list"
        return f"a {what} of {len(value)} {'keys' if what == 'mapping' else 'items'}"
    return f"a {type(value).__name__}"


def quote_key(key: Any) -> str:
    """A mapping key as it appears in a dotted path: plain when short and printable ASCII."""
    if isinstance(key, str) and len(key) <= MAX_QUOTE and escape(key) == key:
        return key
    return quote(key)


def int_digits_ok(text: str) -> bool:
    """Digits of an integer literal (sign, underscores and a 0x/0o/0b prefix not counted)."""
    body = text.strip().lstrip("+-").replace("_", "")
    return len(body) <= MAX_INT_DIGITS + 2


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse containers nested deeper than `limit` (iterative: no recursion on the input)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            raise InputError(f"nested deeper than {limit} levels")
        stack.extend((c, depth + 1) for c in children)


def _decode(data: bytes, limit: int) -> str:
    if len(data) > limit:
        raise InputError(f"larger than {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 (byte {e.start})") from None


def read_text(path: str | Path, limit: int) -> str:
    """A whole file as UTF-8 text, refused past `limit` bytes (read no further than that: a
    device such as /dev/zero or a FIFO that never ends costs limit + 1 bytes)."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise InputError(f"cannot read ({e.strerror or e})") from None
    except ValueError as e:  # a NUL byte in the path
        raise InputError(f"cannot read ({e})") from None
    return _decode(data, limit)


def read_stream(stream: IO[bytes], limit: int) -> str:
    """Like read_text for an open binary stream (stdin)."""
    try:
        data = stream.read(limit + 1)
    except OSError as e:
        raise InputError(f"cannot read ({e.strerror or e})") from None
    return _decode(data, limit)
