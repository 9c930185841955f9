#!/usr/bin/env bash
# Run every molecule scenario under molecule/ (`molecule test -s NAME`: create, converge,
# idempotence, verify, destroy), one after another, printing each scenario's time; exit 1 if any
# scenario failed.
#
# Scenarios that need BESS sources (a file named `requires-bess` in the scenario directory says
# so) build BESS inside their container from DYSSECT_BESS_SRC: a source tree or archive on this
# machine, by default the pinned commit vendored at ../shared/vendor. Without one they fail.
#
#   MOLECULE_SCENARIOS="hugepages dpdk"  run only these
#   MOLECULE_LOG_DIR=DIR                 full logs (default /tmp/molecule-logs)
#
# The hugepage pool is one per machine and scenarios change it from inside their containers:
# the script records it first and puts it back at the end, whatever happened.
set -uo pipefail
cd "$(dirname "$0")/.."
[[ -d .venv/bin ]] && export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_CONFIG="${ANSIBLE_CONFIG:-$PWD/ansible.cfg}"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 NO_COLOR=1
logdir="${MOLECULE_LOG_DIR:-/tmp/molecule-logs}"
export DYSSECT_BESS_SRC="${DYSSECT_BESS_SRC:-$(cd .. && pwd)/shared/vendor/omec-bess-56020af0.tar.gz}"
mkdir -p "$logdir"
# Mounted into every scenario's container (.config/molecule/config.yml); podman needs them.
mkdir -p /var/cache/dyssect-lab/apt /var/cache/dyssect-lab/pip /var/cache/dyssect-lab/ccache

# One run at a time per machine: each run puts the shared hugepage pool back at its end.
exec 9>/run/lock/dyssect-molecule-all.lock
if ! flock -n 9; then
    echo "molecule-all: another run holds /run/lock/dyssect-molecule-all.lock; waiting"
    flock 9
fi

hp2m=/proc/sys/vm/nr_hugepages
hp1g=/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages
orig2m=$(cat "$hp2m")
orig1g=$(cat "$hp1g" 2>/dev/null || echo "")
restore() {
    echo "$orig2m" >"$hp2m" 2>/dev/null || true
    [[ -n "$orig1g" ]] && { echo "$orig1g" >"$hp1g" 2>/dev/null || true; }
    echo "molecule-all: hugepage pool restored to $(cat "$hp2m") x 2M${orig1g:+, $(cat "$hp1g") x 1G}"
}
trap restore EXIT

if [[ -n "${MOLECULE_SCENARIOS:-}" ]]; then
    read -r -a scenarios <<<"$MOLECULE_SCENARIOS"
else
    scenarios=()
    for f in molecule/*/molecule.yml; do
        scenarios+=("$(basename "$(dirname "$f")")")
    done
fi

declare -a summary
failed=0 passed=0
total_start=$(date +%s)
for s in "${scenarios[@]}"; do
    if [[ -f "molecule/$s/requires-bess" ]] && [[ ! -e $DYSSECT_BESS_SRC ]]; then
        summary+=("$(printf '%-22s FAILED   no BESS source: %s does not exist (set DYSSECT_BESS_SRC)' \
            "$s" "$DYSSECT_BESS_SRC")")
        failed=$((failed + 1))
        continue
    fi
    echo "molecule-all: $s ..."
    start=$(date +%s)
    molecule test -s "$s" >"$logdir/$s.log" 2>&1
    rc=$?
    took=$(($(date +%s) - start))
    if ((rc == 0)); then
        summary+=("$(printf '%-22s PASSED   %4d s' "$s" "$took")")
        passed=$((passed + 1))
    else
        summary+=("$(printf '%-22s FAILED   %4d s  (rc %d, log %s)' "$s" "$took" "$rc" "$logdir/$s.log")")
        failed=$((failed + 1))
        echo "---- last lines of $logdir/$s.log ----"
        grep -v '^\s*$' "$logdir/$s.log" | tail -n 40
        echo "----"
    fi
    echo "molecule-all: $s: ${summary[-1]##"$s"}"
done

echo
echo "molecule scenarios (logs in $logdir):"
printf '  %s\n' "${summary[@]}"
echo "molecule-all: $passed passed, $failed failed in $(($(date +%s) - total_start)) s"
((failed == 0))
