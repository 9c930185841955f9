#!/bin/sh
# Compatibility fixes for building omec-project/bess (pinned 56020af0) on Debian 12.
#   1. core/drivers/pmd.cc sets rte_eth_rss_conf.algorithm, a field DPDK 23.11 added;
#      Debian 12 ships DPDK 22.11, so the initializer is guarded by RTE_VERSION.
#   2. pybess/protobuf_to_dict.py uses FieldDescriptor.is_repeated, which Debian's
#      protobuf 4.21 lacks; fall back to label == LABEL_REPEATED.
# Usage: bess-compat-fixes.sh <bess source dir>
# Idempotent: a second run changes nothing. Prints one line per file: "changed: ..." or
# "unchanged: ...". Exits non-zero if an expected anchor is missing (unknown BESS revision).
set -eu

if [ "$#" -ne 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 <bess source dir>" >&2
    exit 2
fi

exec python3 - "$1" <<'PY'
import pathlib
import sys

src = pathlib.Path(sys.argv[1])
failed = False


def report(path, changed):
    print(("changed: " if changed else "unchanged: ") + str(path))


def fix_pmd():
    global failed
    path = src / "core/drivers/pmd.cc"
    text = path.read_text()
    orig = text
    guard = "#if RTE_VERSION >= RTE_VERSION_NUM(23, 11, 0, 0)\n"
    field = "        .algorithm = RTE_ETH_HASH_FUNCTION_DEFAULT,\n"
    if "#include <rte_version.h>" not in text:
        anchor = "#include <rte_string_fns.h>\n"
        if anchor not in text:
            print("error: include anchor not found in " + str(path), file=sys.stderr)
            failed = True
            return
        text = text.replace(anchor, anchor + "#include <rte_version.h>\n", 1)
    if guard + field not in text:
        if field not in text:
            print("error: rss_conf.algorithm initializer not found in " + str(path),
                  file=sys.stderr)
            failed = True
            return
        text = text.replace(field, guard + field + "#endif\n", 1)
    if text != orig:
        path.write_text(text)
    report(path, text != orig)


HELPER = '''

def _is_repeated(field):
    # protobuf < 5 (Debian 12 ships 4.21) has no FieldDescriptor.is_repeated.
    rep = getattr(field, 'is_repeated', None)
    if rep is not None:
        return rep
    return field.label == FieldDescriptor.LABEL_REPEATED
'''


def fix_pybess():
    global failed
    path = src / "pybess/protobuf_to_dict.py"
    text = path.read_text()
    orig = text
    if "def _is_repeated(field):" not in text:
        anchor = "from google.protobuf.descriptor import FieldDescriptor\n"
        if anchor not in text:
            print("error: import anchor not found in " + str(path), file=sys.stderr)
            failed = True
            return
        text = text.replace(anchor, anchor + HELPER, 1)
    text = text.replace("if field.is_repeated:", "if _is_repeated(field):")
    if text != orig:
        path.write_text(text)
    report(path, text != orig)


fix_pmd()
fix_pybess()
sys.exit(1 if failed else 0)
PY
