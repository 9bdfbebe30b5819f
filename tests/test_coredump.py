"""Secrets stay out of core dumps and out of other processes' reach: real gcore, real /proc.

The process under test gets its marker masked (XOR 0x5A) on stdin and unmasks
it byte by byte straight into a SecureBytes, so the marker itself never sits in
ordinary memory of that process. A control marker is put in a bytearray of the
same process: finding it in the dump proves the search works.
"""

from __future__ import annotations

import errno
import resource
import secrets
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from securemem._secretmem import secretmem_available
from tests.conftest import REPO, child_env, run_json, run_python

GCORE = shutil.which("gcore")
needs_gcore = pytest.mark.skipif(GCORE is None, reason="gcore (gdb) is needed: apt-get install gdb")

HOLDER = """
import os, sys
from securemem import Arena, SecureBytes

def unmask(line: bytes, target) -> None:
    for index, byte in enumerate(bytes.fromhex(line.decode().strip())):
        target[index] = byte ^ 0x5A

secret_line = sys.stdin.buffer.readline()
control_line = sys.stdin.buffer.readline()
arena = Arena(backend=BACKEND) if BACKEND != "anonymous" else None
secret = SecureBytes(len(secret_line.strip()) // 2, arena=arena)
unmask(secret_line, secret)
# Ordinary, readable memory of the same process holding a second copy of the
# control marker, in a SecureBytes of the default arena: /proc/PID/mem can read it.
control = bytearray(len(control_line.strip()) // 2)
unmask(control_line, control)
locked_control = SecureBytes(control)
print(secret.address, locked_control.address, len(secret), flush=True)
sys.stdin.buffer.readline()  # hold everything until the test is done
"""


def _masked(marker: bytes) -> bytes:
    return bytes(byte ^ 0x5A for byte in marker).hex().encode() + b"\n"


@contextmanager
def masked_child(code: str, *markers: bytes) -> Iterator[subprocess.Popen[bytes]]:
    """A child running ``code``, given each marker on its stdin masked (hex of the bytes xor
    0x5A, a line each), so no plain copy of a marker exists in it until it unmasks one; on exit
    its stdin is closed and it is waited for."""
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=child_env(),
        cwd=REPO,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(b"".join(_masked(marker) for marker in markers))
        process.stdin.flush()
        yield process
    finally:
        process.stdin.close()
        process.wait(timeout=30)


@contextmanager
def holder(secret: bytes, control: bytes, backend: str = "anonymous") -> Iterator[tuple[int, ...]]:
    """A live process holding ``secret`` in securemem and ``control`` in ordinary memory."""
    code = textwrap.dedent(HOLDER).replace("BACKEND", repr(backend))
    with masked_child(code, secret, control) as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, "the holder process died before it was ready"
        secret_address, control_address, length = (int(word) for word in line.split())
        yield process.pid, secret_address, control_address, length


def _gcore(pid: int, directory: Path) -> bytes:
    assert GCORE is not None
    result = subprocess.run(
        [GCORE, "-o", str(directory / "core"), str(pid)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    core = directory / f"core.{pid}"
    assert result.returncode == 0 and core.exists(), result.stdout + result.stderr
    return core.read_bytes()


def needs_secretmem() -> None:
    available, reason = secretmem_available()
    if not available:
        pytest.skip(reason)


@needs_gcore
@pytest.mark.parametrize("backend", ["anonymous", "secretmem"])
def test_gcore_dump_holds_the_control_marker_but_not_the_secret(
    tmp_path: Path, backend: str
) -> None:
    if backend == "secretmem":
        needs_secretmem()
    secret, control = secrets.token_bytes(24), secrets.token_bytes(24)
    with holder(secret, control, backend) as (pid, _, _, _):
        dump = _gcore(pid, tmp_path)
    assert control in dump, "the search cannot find even ordinary memory: test is broken"
    assert secret not in dump


def _read_proc_mem(pid: int, address: int, length: int) -> bytes:
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        mem.seek(address)
        return mem.read(length)


def test_memfd_secret_cannot_be_read_through_proc_pid_mem() -> None:
    # (Nor dumped: test_gcore_dump_holds_the_control_marker_but_not_the_secret[secretmem].)
    needs_secretmem()
    secret, control = secrets.token_bytes(24), secrets.token_bytes(24)
    with holder(secret, control, backend="secretmem") as (pid, secret_at, control_at, length):
        # The same read of the locked-but-ordinary SecureBytes works: the
        # method is sound, only memfd_secret memory is out of reach.
        assert _read_proc_mem(pid, control_at, length) == control
        try:
            leaked = _read_proc_mem(pid, secret_at, length)
        except OSError as exc:
            assert exc.errno == errno.EIO  # the pages are not in the kernel's direct map
        else:
            assert leaked != secret


CRASHER = """
import os, resource, sys
resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
os.chdir(sys.argv[1])
import securemem
if sys.argv[2] == "disable":
    securemem.disable_core_dumps()
os.abort()
"""


def test_disable_core_dumps_stops_a_real_core_file(tmp_path: Path) -> None:
    pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    if pattern.startswith("|") or "/" in pattern:
        pytest.skip(f"core_pattern {pattern!r} does not write into the working directory")
    if resource.getrlimit(resource.RLIMIT_CORE)[1] != resource.RLIM_INFINITY:
        pytest.skip("the hard RLIMIT_CORE forbids core files here")
    results = {}
    for mode in ("control", "disable"):
        directory = tmp_path / mode
        directory.mkdir()
        process = run_python(CRASHER, str(directory), mode, timeout=60)
        assert process.returncode == -6, process.stderr  # SIGABRT
        results[mode] = sorted(path.name for path in directory.iterdir())
    assert results["control"], "the control process left no core file: test is broken"
    assert results["disable"] == []


def test_disable_core_dumps_sets_the_limit_and_the_dumpable_flag() -> None:
    result = run_json(
        """
        import json, resource
        import securemem
        from securemem._native import lib
        from securemem._hardening import core_dump_settings
        before = lib.sm_dumpable()
        securemem.disable_core_dumps()
        settings = core_dump_settings()
        print(json.dumps({"before": before, "after": lib.sm_dumpable(),
                          "limit": resource.getrlimit(resource.RLIMIT_CORE),
                          "disabled": settings.disabled, "dumpable": settings.dumpable}))
        """
    )
    assert result == {
        "before": 1,
        "after": 0,
        "limit": [0, 0],
        "disabled": True,
        "dumpable": False,
    }
