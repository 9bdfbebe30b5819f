#!/usr/bin/env bash
# The README's test command on the CPythons this machine has besides the system one:
# pyenv's 3.12 and 3.13, and 3.14 and 3.15 from Debian unstable in a chroot
# (ci/debian-sid-chroot.sh). Each run gets a fresh copy of the tree and a fresh virtual
# environment, so pip resolves the newest releases for that Python, as a new user's does.
#
#   ci/other-pythons.sh              # every world
#   ci/other-pythons.sh 3.14 3.12    # only these
#
# Prints one summary line per Python; exits non-zero if any world failed (pytest's own exit
# code: 5, nothing collected, is a failure too). A Python that is not on this machine is
# skipped with a line saying so. Logs are kept in $SECUREMEM_CI_LOGS (default: a new
# directory under /tmp, printed at the end). Needs root for the chroot worlds.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$PWD
sid=${SECUREMEM_SID_CHROOT:-/var/cache/securemem-ci/sid}
logs=${SECUREMEM_CI_LOGS:-$(mktemp -d /tmp/securemem-other-pythons.XXXXXX)}
mkdir -p "$logs"
worlds=("$@")
((${#worlds[@]})) || worlds=(3.12 3.13 3.14 3.15)

readme_command() {  # the shell command between <!-- NAME --> and <!-- /NAME --> in README.md
  sed -n "/<!-- $1 -->/,/<!-- \/$1 -->/p" README.md | grep -v -e '^<!--' -e '^```'
}
test_command=$(readme_command test-command)
[[ -n $test_command ]] || { echo "no test-command in README.md" >&2; exit 2; }
# Started in the background by a shell (`ci/other-pythons.sh &`), this script ignores SIGINT
# and SIGQUIT, which bash cannot undo, and the tests' children would inherit that: run the
# tests with both at their defaults, as from a terminal.
with_default_signals=(python3 -c 'import os, signal, sys
for number in (signal.SIGINT, signal.SIGQUIT):
    signal.signal(number, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])')

copy_tree() {  # copy_tree DEST: the tracked and untracked (not ignored) files, no build output
  mkdir -p "$1"
  git -C "$tree" ls-files -z --cached --others --exclude-standard \
    | (cd "$tree" && xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' _) \
    | tar -C "$tree" --null -T - -cf - | tar -C "$1" -xf -
}

scratch=()
cleanup() { ((${#scratch[@]})) && rm -rf "${scratch[@]}"; return 0; }
trap cleanup EXIT

summary=()
failed=0
record() {  # record WORLD RC LOG: one summary line from pytest's last line and its exit code
  local last
  last=$(grep -E '(passed|failed|error|no tests ran)' "$3" | tail -n 1 | tr -d '=' | xargs || true)
  if [[ $2 == 0 ]]; then
    summary+=("$1: PASS ($last)")
  else
    summary+=("$1: FAIL, exit $2 (${last:-see log}) log: $3")
    failed=1
  fi
}

run_pyenv() {  # run_pyenv VERSION: pyenv's newest patch release of that minor version
  local python log work rc=0
  python=$(ls -d /root/.pyenv/versions/"$1".*/bin/python3 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -z $python ]]; then
    summary+=("$1: skipped (no /root/.pyenv/versions/$1.*/bin/python3 on this machine)")
    return
  fi
  work=$(mktemp -d /tmp/securemem-py"$1".XXXXXX)
  scratch+=("$work")
  log="$logs/python$1.log"
  copy_tree "$work/tree"
  echo "== $1: $python, log in $log"
  "$python" -m venv "$work/venv" >"$log" 2>&1 || rc=$?
  if [[ $rc == 0 ]]; then
    (cd "$work/tree" && PATH="$work/venv/bin:$PATH" \
      "${with_default_signals[@]}" bash -euo pipefail -c "$test_command") >>"$log" 2>&1 || rc=$?
  fi
  record "$1 ($("$python" -c 'import platform; print(platform.python_version())'))" "$rc" "$log"
}

run_sid() {  # run_sid VERSION: Debian unstable's python$VERSION inside the chroot
  local log inside at rc=0
  if [[ $(id -u) != 0 ]]; then
    summary+=("$1: skipped (the Debian unstable chroot needs root)")
    return
  fi
  log="$logs/python$1.log"
  echo "== $1: Debian unstable chroot at $sid, log in $log"
  # Makes the chroot if it is missing, else only mounts /proc, /dev/pts, /dev/shm and checks
  # that every package is installed.
  ci/debian-sid-chroot.sh "$sid" >"$log" 2>&1 || { record "$1" "chroot:$?" "$log"; return; }
  if [[ ! -x $sid/usr/bin/python$1 ]]; then
    summary+=("$1: skipped (no python$1 in $sid)")
    return
  fi
  inside=$(mktemp -d "$sid/tmp/securemem.XXXXXX")
  scratch+=("$inside")
  copy_tree "$inside/tree"
  at=${inside#"$sid"}
  # in the chroot's clean environment (env -i, the machine's CA certificates), as root
  "${with_default_signals[@]}" ci/debian-sid-chroot.sh "$sid" -- \
    bash -euo pipefail -c "python$1 -m venv $at/venv && cd $at/tree &&
                           PATH=$at/venv/bin:\$PATH; $test_command" >>"$log" 2>&1 || rc=$?
  record "$1 ($(ci/debian-sid-chroot.sh "$sid" -- "python$1" -c \
                'import platform; print(platform.python_version())'))" "$rc" "$log"
}

for world in "${worlds[@]}"; do
  case $world in
    3.12 | 3.13) run_pyenv "$world" ;;
    3.14 | 3.15) run_sid "$world" ;;
    *) echo "unknown world $world (3.12, 3.13, 3.14 or 3.15)" >&2; exit 2 ;;
  esac
done

echo "== other Pythons (logs in $logs)"
printf '%s\n' "${summary[@]}"
exit "$failed"
