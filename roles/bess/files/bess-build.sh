#!/bin/bash
# Build BESS from a source archive or a git checkout in a staging tree, then swap the finished
# tree into the install directory. A failed build leaves the installed tree as it was and removes
# the staging tree: there is never a half-built BESS in the install directory.
#
# Usage: bess-build.sh KIND SOURCE REVISION INSTALL_DIR CPU JOBS FIXES_SCRIPT
#   KIND=archive  SOURCE is a .tar[.gz|.xz|.bz2] or .zip of a BESS tree (REVISION is unused)
#   KIND=git      SOURCE is a git checkout, REVISION the commit to build
# Environment: BESS_STAMP, the stamp text written as INSTALL_DIR/.dyssect-build-stamp;
#   BESS_CCACHE_DIR (optional), a ccache directory the compiler goes through.
set -euo pipefail

kind=$1 src=$2 rev=$3 install=$4 cpu=$5 jobs=$6 fixes=$7
staging="$install.staging"

rm -rf --one-file-system "$staging" "$staging.inner"
mkdir -p "$staging"
trap 'rm -rf --one-file-system "$staging" "$staging.inner"' EXIT

case "$kind" in
git) git -C "$src" archive --format=tar "$rev" | tar -x -C "$staging" ;;
archive)
    case "$src" in
    *.zip) python3 -m zipfile -e "$src" "$staging" ;;
    *) tar -x -f "$src" -C "$staging" ;;
    esac
    ;;
*) echo "bess-build: unknown source kind $kind" >&2; exit 2 ;;
esac

# An archive may hold the tree under one top-level directory.
if [ ! -f "$staging/build.py" ]; then
    inner=$(find "$staging" -mindepth 2 -maxdepth 2 -name build.py -printf '%h\n' | head -n1)
    if [ -z "$inner" ]; then
        echo "bess-build: no build.py in the source; not a BESS tree" >&2
        exit 1
    fi
    mv "$inner" "$staging.inner"
    rm -rf --one-file-system "$staging"
    mv "$staging.inner" "$staging"
fi

cd "$staging"
sh "$fixes" "$staging"

# Start from nothing built: a copied tree may carry outputs made with other flags.
make -C core clean >/dev/null
rm -f pybess/builtin_pb/*_pb2*.py pybess/plugin_pb/*_pb2*.py core/extra.mk
mkdir -p pybess/builtin_pb pybess/plugin_pb core/pb

# Read last by core/Makefile, so this -march wins over the -march=corei7 of Debian's libdpdk.pc.
printf 'CXXFLAGS += -march=%s\n' "$cpu" >core/extra-dyssect.mk

export BESS_LINK_DYNAMIC=1
# Same output, but objects this host (or a host sharing the cache) compiled before are reused.
if [ -n "${BESS_CCACHE_DIR:-}" ]; then
    export CCACHE_DIR="$BESS_CCACHE_DIR" PATH="/usr/lib/ccache:$PATH"
fi
# Not `build.py bess`: it stops any bessd on the default port and builds the gtest suite.
python3 build.py protobuf
make -C core -j"$jobs" bessd
test -x core/bessd

printf '%s\n' "${BESS_STAMP:?}" >.dyssect-build-stamp
cd /
if [ -e "$install" ]; then
    rm -rf --one-file-system "$install.old"
    mv "$install" "$install.old"
fi
mv "$staging" "$install"
rm -rf --one-file-system "$install.old"
echo "bess-build: installed $install"
