"""The reference docs stay true to the tree: the config key tables and the layout document."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from dyssect_ctrl.config import Config, ConfigError, _checks, _flatten, live_keys

ROOT = Path(__file__).resolve().parent.parent
CONTROLLER_MD = ROOT / "docs" / "controller.md"

# "lo..hi": integers; "in (lo, hi]" and the like: real numbers.
_INT_RANGE = re.compile(r"(\d+)\.\.(\d+)")
_REAL_RANGE = re.compile(r"in ([\[(])([0-9.e]+), ([0-9.e]+)([\])])")


def key_rows() -> dict[str, dict[str, str]]:
    """Key -> {constraint, reload} from the key tables of docs/controller.md."""
    text = CONTROLLER_MD.read_text()
    section = text[text.index("### dataplane") : text.index("### From Python")]
    rows: dict[str, dict[str, str]] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        rows[cells[0].strip("`")] = {"constraint": cells[2], "reload": cells[3]}
    return rows


ROWS = key_rows()
DEFAULTS = _flatten(Config())


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def accepts(key: str, value: float) -> bool:
    try:
        _checks(key)(key, value)
    except ConfigError:
        return False
    return True


def test_the_key_tables_list_every_key_of_the_schema_once() -> None:
    assert set(ROWS) == set(DEFAULTS)


def test_the_reload_column_is_the_schemas_live_marks() -> None:
    live = {k for k, row in ROWS.items() if row["reload"] == "live"}
    restart = {k for k, row in ROWS.items() if row["reload"] == "restart"}
    assert live == set(live_keys())
    assert restart == set(DEFAULTS) - set(live_keys())


@pytest.mark.parametrize("key", sorted(k for k, v in DEFAULTS.items() if is_number(v)))
def test_a_numeric_keys_documented_bounds_are_the_schemas(key: str) -> None:
    constraint = ROWS[key]["constraint"]
    real = _REAL_RANGE.search(constraint)
    if real is not None:
        lo_open, lo, hi, hi_open = real[1] == "(", float(real[2]), float(real[3]), real[4] == ")"
        step = max(abs(hi), 1.0) * 1e-6
        assert accepts(key, lo) != lo_open and not accepts(key, lo - step)
        assert accepts(key, hi) != hi_open and not accepts(key, hi + step)
        assert accepts(key, (lo + hi) / 2)
        return
    whole = _INT_RANGE.search(constraint)
    assert whole is not None, f"{key}: no range in {constraint!r}"
    ilo, ihi = int(whole[1]), int(whole[2])
    assert accepts(key, ilo) and not accepts(key, ilo - 1)
    assert accepts(key, ihi) and not accepts(key, ihi + 1)


LAYOUT_MD = ROOT / "docs" / "layout.md"
# The folders whose every entry the layout must name.
COVERED = ("dyssect_ctrl", "native/modules", "roles")


def layout_paths() -> set[str]:
    """The paths of docs/layout.md's tree: two spaces of indent per level, a name, its job."""
    text = LAYOUT_MD.read_text()
    tree = text[text.index("```\n") + 4 : text.rindex("```")]
    paths: set[str] = set()
    parents: list[str] = []
    for line in tree.splitlines():
        name = line.split()[0]
        depth = (len(line) - len(line.lstrip(" "))) // 2
        del parents[depth:]
        path = "/".join([*parents, name.rstrip("/")])
        paths.add(path)
        if name.endswith("/"):
            parents.append(name.rstrip("/"))
    return paths


def on_disk(folder: str) -> set[str]:
    return {
        f"{folder}/{p.name}"
        for p in (ROOT / folder).iterdir()
        if p.name not in ("__init__.py", "__pycache__") and not p.name.startswith(".")
    }


@pytest.mark.parametrize("folder", COVERED)
def test_the_layout_names_every_part_of_the_folder(folder: str) -> None:
    assert on_disk(folder) - layout_paths() == set()


def test_every_path_in_the_layout_exists() -> None:
    assert {p for p in layout_paths() if not (ROOT / p).exists()} == set()


def test_the_readme_links_the_layout() -> None:
    assert "docs/layout.md" in (ROOT / "README.md").read_text()
