#!/usr/bin/env bash
# Print the path of a built BESS tree for the tests on this machine, building it first if needed.
# DYSSECT_BESS_SRC, when it names a directory, is taken as that tree and printed as it is; when it
# names a file, that file is the archive to build.
#
# The tree is built from a source archive (default: the pinned commit vendored beside the project,
# ../shared/vendor/omec-bess-56020af0.tar.gz) exactly as the bess role builds it on a target: the
# role's own bess-build.sh and bess-compat-fixes.sh, the distribution's DPDK, dynamic linking and
# the compiler cache the lab hosts share. It lands in a cache folder outside the repository, named
# by the sha256 of the archive and of both scripts, so it is rebuilt only when one of them changes;
# delete the folder to force a rebuild.
#
#   DYSSECT_BESS_ARCHIVE   the archive to build (default: the vendored one)
#   DYSSECT_BESS_CACHE     the cache folder (default /var/cache/dyssect/bess-trees)
#   DYSSECT_BESS_JOBS      compiler jobs (default: the number of CPUs)
#
# Everything but the path goes to stderr, so `tree=$(scripts/bess-tree.sh)` works.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
if [[ -d ${DYSSECT_BESS_SRC:-} ]]; then
    echo "$DYSSECT_BESS_SRC"
    exit 0
fi
default=$top/../shared/vendor/omec-bess-56020af0.tar.gz
archive=${DYSSECT_BESS_ARCHIVE:-${DYSSECT_BESS_SRC:-$default}}
cache=${DYSSECT_BESS_CACHE:-/var/cache/dyssect/bess-trees}
jobs=${DYSSECT_BESS_JOBS:-$(nproc)}
build=$top/roles/bess/files/bess-build.sh
fixes=$top/roles/bess/files/bess-compat-fixes.sh

if [[ ! -f $archive ]]; then
    echo "bess-tree: no BESS source archive at $archive" \
        "(set DYSSECT_BESS_ARCHIVE, or DYSSECT_BESS_SRC to a built BESS tree)" >&2
    exit 2
fi

key=$(cat "$archive" "$build" "$fixes" | sha256sum | cut -c1-16)
tree=$cache/$key
if [[ -x $tree/core/bessd ]]; then
    echo "bess-tree: $tree is built (key $key)" >&2
    echo "$tree"
    exit 0
fi

missing=$(bash "$top/scripts/bess-build-deps.sh" --missing)
if [[ -n $missing ]]; then
    echo "bess-tree: installing the BESS build dependencies: $missing" >&2
    bash "$top/scripts/bess-build-deps.sh" --install >&2
fi

mkdir -p "$cache"
# One build at a time per tree: a second caller waits and then finds the tree built.
exec 8>"$cache/.$key.lock"
flock 8
if [[ ! -x $tree/core/bessd ]]; then
    echo "bess-tree: building BESS from $(basename "$archive") into $tree (minutes)" >&2
    start=$(date +%s)
    stamp=$(printf '{"archive": "%s", "key": "%s"}' "$(basename "$archive")" "$key")
    mkdir -p /var/cache/dyssect-lab/ccache
    BESS_STAMP=$stamp BESS_CCACHE_DIR=/var/cache/dyssect-lab/ccache \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        bash "$build" archive "$archive" "" "$tree" native "$jobs" "$fixes" >"$cache/$key.log" 2>&1 || {
        echo "bess-tree: the build failed; last lines of $cache/$key.log:" >&2
        tail -n 30 "$cache/$key.log" >&2
        exit 1
    }
    echo "bess-tree: built in $(($(date +%s) - start)) s" >&2
fi
echo "$tree"
