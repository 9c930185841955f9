#!/usr/bin/env python3
"""Check that every role's meta/argument_specs.yml options match its defaults/main.yml keys.

Both directions: a default without an option, or an option without a default (unless it is
required), is an error.
Like prometheus-community/ansible's lint_arguments_spec.sh. Exit 1 with one line per problem.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _load(path: Path) -> dict:
    with path.open(encoding="utf-8") as f:
        data = yaml.safe_load(f)
    return data if isinstance(data, dict) else {}


def check_role(role: Path) -> list[str]:
    """Problems of one role, as "roles/<name>: ..." lines."""
    name = f"roles/{role.name}"
    defaults_file = role / "defaults" / "main.yml"
    specs_file = role / "meta" / "argument_specs.yml"
    if not specs_file.is_file():
        return [f"{name}: meta/argument_specs.yml is missing"]
    defaults = set(_load(defaults_file)) if defaults_file.is_file() else set()
    entry = _load(specs_file).get("argument_specs", {}).get("main")
    if not isinstance(entry, dict):
        return [f"{name}: meta/argument_specs.yml has no argument_specs.main entry point"]
    specs = entry.get("options") or {}
    options = set(specs)
    # A required option has no default by definition (the caller passes it).
    required = {k for k, spec in specs.items() if isinstance(spec, dict) and spec.get("required")}
    problems = [
        f"{name}: {key} is in defaults/main.yml but not in meta/argument_specs.yml"
        for key in sorted(defaults - options)
    ]
    problems += [
        f"{name}: {key} is in meta/argument_specs.yml but not in defaults/main.yml"
        for key in sorted(options - defaults - required)
    ]
    problems += [
        f"{name}: {key} does not start with the role prefix {role.name}_"
        for key in sorted(defaults | options)
        if not key.startswith(f"{role.name}_")
    ]
    return problems


def main() -> int:
    roles = sorted(p for p in (ROOT / "roles").iterdir() if p.is_dir())
    problems = [line for role in roles for line in check_role(role)]
    for line in problems:
        print(line)
    if problems:
        return 1
    print(f"argument specs match defaults in {len(roles)} roles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
