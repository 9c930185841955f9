#!/usr/bin/env bash
# Run `make STAGE` for each stage named, in order, stopping at the first that fails, and print
# each stage's time as it ends and all of them in a table at the end (what `make test` and so CI
# report).
set -uo pipefail
cd "$(dirname "$0")/.."
declare -a rows
total_start=$(date +%s)
status=0
for stage in "$@"; do
    echo "==== stage $stage ===="
    start=$(date +%s)
    make --no-print-directory "$stage"
    rc=$?
    took=$(($(date +%s) - start))
    rows+=("$(printf '%-16s %-6s %5d s' "$stage" "$([[ $rc == 0 ]] && echo ok || echo FAILED)" "$took")")
    echo "==== stage $stage: ${rows[-1]#"$stage"}"
    if ((rc != 0)); then
        status=$rc
        break
    fi
done
echo
echo "stages:"
printf '  %s\n' "${rows[@]}"
echo "  total            $(($(date +%s) - total_start)) s"
exit "$status"
