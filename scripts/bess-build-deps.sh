#!/usr/bin/env bash
# The Debian packages a BESS build needs, read from the bess role's own list
# (roles/bess/defaults/main.yml, bess_build_packages) plus ccache, so the host build used by the
# tests and the role's build on a target install the same things.
#   --missing   print the ones not installed (space separated), nothing when all are
#   --install   install the missing ones
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
mapfile -t packages < <(awk '/^bess_build_packages:/ {on = 1; next}
    on && /^  - / {print $2; next}
    on {exit}' "$top/roles/bess/defaults/main.yml")
packages+=(ccache)
((${#packages[@]} > 5)) || { echo "bess-build-deps: could not read bess_build_packages" >&2; exit 2; }

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
case "${1:-}" in
--missing) echo "${missing[*]}" ;;
--install)
    ((${#missing[@]})) || exit 0
    apt-get -o DPkg::Lock::Timeout=900 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
    ;;
*) echo "usage: $0 --missing|--install" >&2; exit 2 ;;
esac
