#!/usr/bin/env bash
# What `make lab` runs after host-deps and the venv: bring up the podman lab (lab_up.yml), then
# deploy site.yml on it, printing the deploy time and the per-host recap. Run it twice: the second
# run must report changed=0 for every host (the script says whether it did).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d .venv/bin ]] && export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_CONFIG="${ANSIBLE_CONFIG:-$PWD/ansible.cfg}"
log="${DYSSECT_LAB_LOG:-/tmp/dyssect-lab-site.log}"
# The data plane's source: the pinned BESS commit vendored beside the project unless
# DYSSECT_BESS_SRC names another tree or archive (the bess role's bess_source).
vendored="$(cd .. && pwd)/shared/vendor/omec-bess-56020af0.tar.gz"
if [[ -z ${DYSSECT_BESS_SRC:-} && -f $vendored ]]; then
    export DYSSECT_BESS_SRC=$vendored
fi

start=$(date +%s)
ansible-playbook playbooks/lab_up.yml
up=$(($(date +%s) - start))

start=$(date +%s)
set +e
ansible-playbook -i inventory/lab site.yml "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
took=$(($(date +%s) - start))

echo
echo "lab: lab_up.yml took ${up} s; site.yml took ${took} s (rc ${rc}; log ${log})"
recap=$(sed -n '/^PLAY RECAP/,/^$/p' "$log" | grep -E 'changed=' || true)
if ((rc == 0)); then
    if [[ -n "$recap" ]] && ! grep -qvE 'changed=0 ' <<<"$recap"; then
        echo "lab: changed=0 on every host (idempotent re-run)"
    else
        echo "lab: some hosts changed (expected on the first run):"
        grep -vE 'changed=0 ' <<<"$recap" | sed 's/^/  /'
    fi
fi
# The data plane roles say why they deployed nothing in the middle of the run; repeat it last.
if grep -q 'is NOT deployed on' "$log"; then
    echo "lab: the data plane was NOT deployed:"
    awk '/msg: .*is NOT deployed on/ {p = 1}
         p { last = ($0 ~ /\047$/); line = $0
             sub(/^ *(msg: )?\047?/, "", line); sub(/\047$/, "", line)
             print "  " line; if (last) p = 0 }' "$log"
fi
exit "$rc"
