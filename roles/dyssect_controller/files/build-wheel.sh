#!/usr/bin/env bash
# Runs on the control node: build-wheel.sh SRC CACHE PYTHON
# Builds a wheel of dyssect-ctrl from the checkout SRC into CACHE/<source hash>/ unless one is
# there already, then prints "built" (only when it built) and "<hash> <wheel path>".
# The build runs on a copy so the checkout gets no build/ or egg-info litter.
set -euo pipefail
src=$1 cache=$2 python=$3
cd "$src"
files=(pyproject.toml README.md dyssect_ctrl)
hash=$(find "${files[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 |
    LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
out="$cache/$hash"
if ! compgen -G "$out/*.whl" >/dev/null; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    tar --exclude=__pycache__ --exclude='*.pyc' -cf - "${files[@]}" | tar -C "$tmp" -xf -
    mkdir -p "$cache"
    rm -rf "$out.partial"
    "$python" -m pip wheel --quiet --no-deps --wheel-dir "$out.partial" "$tmp" >&2
    mv "$out.partial" "$out"
    echo built
fi
echo "$hash $(compgen -G "$out/*.whl" | head -n1)"
