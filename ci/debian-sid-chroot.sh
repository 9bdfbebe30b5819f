#!/usr/bin/env bash
# A Debian unstable chroot with the CPythons this machine does not have (3.14, 3.15) and a
# newer OpenSSL, for running securemem's test suite there (ci/other-pythons.sh uses it).
#
#   ci/debian-sid-chroot.sh DIR                 # make DIR (or bring an existing one up to date)
#   ci/debian-sid-chroot.sh DIR -- CMD ARGS...  # then run CMD in it, in a clean environment
#
# Needs root (debootstrap, chroot, mounts). The mirror is the one apt on this machine already
# uses, so it works wherever `apt-get install` does. The chroot is kept between runs: making it
# costs minutes, and a second run only checks that every package is there.
set -euo pipefail
root=${1:?usage: ci/debian-sid-chroot.sh DIR [-- CMD ARGS...]}
shift
if (($#)); then
  [[ $1 == -- ]] || { echo "usage: ci/debian-sid-chroot.sh DIR [-- CMD ARGS...]" >&2; exit 2; }
  shift
fi
# openssl and putty-tools write the key files the key-format tests load.
packages=(python3.14 python3.14-dev python3.14-venv python3.15 python3.15-dev python3.15-venv
          gcc libc6-dev libffi-dev pkg-config libssl3t64 openssh-client ca-certificates libcap2-bin
          util-linux gdb openssl putty-tools)

mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
         | grep -oE 'https?://[^ ]+/debian/?$' | head -n 1 || true)
mirror=${mirror:-http://deb.debian.org/debian}

command -v debootstrap >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
}

mkdir -p "$(dirname "$root")"
if [[ ! -x "$root/usr/bin/apt-get" ]]; then
  rm -rf "$root"
  debootstrap --variant=minbase sid "$root" "$mirror" >"$root.debootstrap.log" 2>&1 || {
    tail -n 30 "$root.debootstrap.log" >&2
    exit 1
  }
fi

mount_into() {  # mount_into SOURCE TARGET [mount options...]: once, even when run again
  mountpoint -q "$root/$2" || mount "${@:3}" "$1" "$root/$2"
}
mkdir -p "$root/proc" "$root/dev/pts" "$root/dev/shm"
mount_into proc proc -t proc
mount_into devpts dev/pts -t devpts -o newinstance,ptmxmode=0666
mount_into tmpfs dev/shm -t tmpfs
# The ptys the tests open go through /dev/ptmx, which must be the new devpts instance's.
[[ -e "$root/dev/ptmx" && ! -L "$root/dev/ptmx" ]] && rm -f "$root/dev/ptmx"
[[ -L "$root/dev/ptmx" ]] || ln -s pts/ptmx "$root/dev/ptmx"

# unstable's Release files carry a Valid-Until that a mirror snapshot may be past.
echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99securemem-ci"
# The machine's CA certificates (registries may sit behind a proxy with its own CA), under a
# name of their own: the chroot's ca-certificates package rewrites the usual bundle.
host_ca=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
mkdir -p "$root/etc/ssl/certs"
cp "$host_ca" "$root/etc/ssl/certs/host-ca-certificates.crt"
cp /etc/resolv.conf "$root/etc/resolv.conf"

# A clean environment (env -i): nothing of this machine's Python set-up leaks in, except the
# certificates and pip's timeout.
ca=/etc/ssl/certs/host-ca-certificates.crt
in_chroot() {
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 SSL_CERT_FILE=$ca \
    PIP_CERT=$ca REQUESTS_CA_BUNDLE=$ca PIP_DEFAULT_TIMEOUT=180 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CI="${CI:-}" chroot "$root" "$@"
}
if ! in_chroot dpkg -s "${packages[@]}" >/dev/null 2>&1 || ! in_chroot sh -c 'ldconfig -p | grep -q "libsodium\.so\."'; then
  in_chroot apt-get update -qq
  # libsodium's package name carries its soname (libsodium23 in bookworm, libsodium26 later).
  packages+=("$(in_chroot apt-cache search --names-only '^libsodium[0-9]+$' | awk '{print $1}' | sort -V | tail -n 1)")
  in_chroot env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >"$root.apt.log" 2>&1 || { tail -n 30 "$root.apt.log" >&2; exit 1; }
fi
if (($#)); then
  in_chroot "$@"
else
  for python in python3.14 python3.15; do
    in_chroot "$python" -c 'import sys, ssl; print(sys.version.split()[0], ssl.OPENSSL_VERSION)'
  done
fi
