#!/usr/bin/env bash
# Prepare this machine for lint, tests and the lab; idempotent and quick when all is present.
#   1. apt packages: podman (rootful containers), debootstrap (the lab image)
#   2. host fix: podman's default ulimits must not exceed root's hard limits (no CAP_SYS_RESOURCE)
#   3. host fix: on hybrid cgroups, mount the hugetlb v1 hierarchy so cgroup2 owns no controller
#   4. download caches for lab hosts, and the lab base image (scripts/lab-image.sh; skipped when
#      it exists)
# playbooks/lab_up.yml applies 2-4 too, so `ansible-playbook playbooks/lab_up.yml` alone works.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
    echo "host-deps: must run as root (rootful podman, apt, mounts)" >&2
    exit 1
fi

packages=(podman debootstrap)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "host-deps: installing ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
fi

# Fix 2 (ulimits). Only ever write a file this script owns.
conf=/etc/containers/containers.conf
marker="# managed by dyssect scripts/host-deps.sh"
want=$(printf '%s\n[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=32768:32768"]\n' \
    "$marker" "$(ulimit -Hn)" "$(ulimit -Hn)")
if [[ ! -e $conf ]] || { head -n1 "$conf" | grep -qxF "$marker" && [[ "$(cat "$conf")" != "$want" ]]; }; then
    mkdir -p /etc/containers
    printf '%s\n' "$want" >"$conf"
    echo "host-deps: wrote $conf (default_ulimits within root's hard limits)"
elif ! grep -q default_ulimits "$conf"; then
    echo "host-deps: WARNING $conf exists, is not ours and sets no default_ulimits;" \
        "podman may fail with setrlimit errors" >&2
fi

# Fix 1 (hybrid cgroups): crun refuses to run while cgroup2 still owns a controller.
unified=/sys/fs/cgroup/unified/cgroup.controllers
if [[ -r $unified ]] && grep -qw hugetlb "$unified" && ! mountpoint -q /sys/fs/cgroup/hugetlb; then
    mkdir -p /sys/fs/cgroup/hugetlb
    mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
    echo "host-deps: mounted the hugetlb cgroup v1 hierarchy"
fi

# Download caches shared by the lab hosts and molecule containers (mounted into each).
mkdir -p /var/cache/dyssect-lab/apt /var/cache/dyssect-lab/pip /var/cache/dyssect-lab/ccache

bash scripts/lab-image.sh
