"""Look at this thread's stack right after a call, without disturbing it.

A scan from the thread that made the call (tests/memscan.py) runs Python and C code of its
own on that thread first, and those frames overwrite what the call left below the stack
pointer, so a leftover at a few KiB deep is gone before the scan reads it. Here the thread
that made the call blocks on a lock at once (a few hundred bytes of C frames), and a second
thread reads the blocked thread's stack through /proc/self/mem, into a private mapping that
is wiped afterwards (what it reads may hold the very secrets the test looks for).

"Blocked on the lock" is told apart from "waiting for the GIL", which is a futex wait too:
the calling thread drops the GIL every few milliseconds while the reader polls, so a slow
operation (an OpenSSH RSA load runs Python bignum loops for half a second) was once read in
the middle, with its unscrubbed leftovers below. The reader now waits for the operation to
have returned (a flag set without a C call) and for a futex wait without a timeout (the
GIL's waits are timed).
"""

from __future__ import annotations

import mmap
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cffi import FFI

from securemem._scrub import scrub_after_native

# The system call a thread blocked on a lock sits in (futex), by machine.
_FUTEX = {"x86_64": 202, "aarch64": 98}
_DEPTH = 64 * 1024  # how far below the blocked stack pointer to read
_ABOVE = 4096  # and above it (the blocked call's own frames)


def supported() -> bool:
    return platform.machine() in _FUTEX and os.path.exists("/proc/self/syscall")


def stack_depths_after(
    operation: Callable[[], object], needle: memoryview, *, clean_start: bool = False
) -> list[int]:
    """Run ``operation`` on this thread, then return where ``needle`` lies on this thread's
    stack: bytes below the stack pointer of the blocked thread (negative: above it).

    ``clean_start``: clear the vector registers and wipe the stack first, so that what the
    test did before (copying the needle into its marker, a direct call to compare with) is
    not counted against ``operation``; those leftovers lie where the operation's own frames
    may not reach, and a spill of the registers (the dynamic linker, a signal frame) puts
    them there."""
    futex = _FUTEX[platform.machine()]
    thread = threading.get_native_id()
    gate = threading.Lock()
    gate.acquire()
    found: list[int] = []
    failure: list[BaseException] = []
    returned = False

    def read_the_stack() -> None:
        try:
            deadline = time.monotonic() + 10
            while True:
                with open(f"/proc/self/task/{thread}/syscall", encoding="ascii") as status:
                    fields = status.read().split()
                # fields: number, six arguments, stack pointer, program counter; a futex's
                # fourth argument is its timeout
                if returned and fields[0] == str(futex) and int(fields[4], 16) == 0:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("the calling thread never blocked on the lock")
                time.sleep(0.001)
            stack_pointer = int(fields[7], 16)
            found.extend(_find_below(stack_pointer, needle))
        except BaseException as error:  # reported on the calling thread
            failure.append(error)
        finally:
            gate.release()

    reader = threading.Thread(target=read_the_stack)
    reader.start()
    if clean_start:
        scrub_after_native()
    operation()
    returned = True  # a cell store: no C call, so nothing overwrites what operation() left
    gate.acquire()  # blocks here until the reader has looked
    reader.join()
    if failure:
        raise failure[0]
    return found


def _find_below(stack_pointer: int, needle: memoryview) -> list[int]:
    low, high = _mapping_around(stack_pointer)
    start = max(low, stack_pointer - _DEPTH)
    length = min(high, stack_pointer + _ABOVE) - start
    workspace = mmap.mmap(-1, length)
    try:
        fd = os.open("/proc/self/mem", os.O_RDONLY)
        try:
            got = os.preadv(fd, [workspace], start)
        finally:
            os.close(fd)
        depths = []
        hit = workspace.find(needle, 0, got)
        while hit != -1:
            depths.append(stack_pointer - (start + hit))
            hit = workspace.find(needle, hit + 1, got)
        return depths
    finally:
        workspace[:] = bytes(length)
        workspace.close()


def _mapping_around(address: int) -> tuple[int, int]:
    with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
        for line in maps:
            low, high = (int(part, 16) for part in line.split(maxsplit=1)[0].split("-"))
            if low <= address < high:
                return low, high
    raise LookupError(f"no mapping holds the stack pointer {address:#x}")


def mapping_name(address: int) -> str:
    """The name /proc/self/maps gives the mapping holding ``address`` ("" if anonymous)."""
    with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            low, high = (int(part, 16) for part in fields[0].split("-"))
            if low <= address < high:
                return fields[5].strip() if len(fields) > 5 else ""
    return ""


# The control for every "nothing on the stack" test: native code of the tests' own that copies
# a needle into its frame and returns without wiping it, as native code handling a secret does.
# A scan that finds this copy can find such leftovers; one that does not proves nothing.
_LEAVE_ON_STACK = Path(__file__).with_name("leave_on_stack.c")
_MAX_DEPTH = 60 * 1024
# How the helper is compiled (.ci/run builds its prebuilt copy with the same flags).
HELPER_FLAGS = ("-O1", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC")


@cache
def _stack_helper() -> Any:
    """The compiled helper (once per process): SECUREMEM_STACK_HELPER when it names one built
    beforehand (.ci/run's wheel stage tests an installed wheel with no compiler on PATH), else
    built here with the C compiler that builds securemem."""
    ffi = FFI()
    ffi.cdef("void leave_on_stack(const unsigned char *, size_t, size_t);")
    prebuilt = os.environ.get("SECUREMEM_STACK_HELPER")
    if prebuilt:
        return ffi, ffi.dlopen(prebuilt)
    if shutil.which("cc") is None:
        pytest.skip(
            "the stack scans' control compiles tests/leave_on_stack.c: no C compiler (cc) on "
            "PATH, and SECUREMEM_STACK_HELPER names no prebuilt copy"
        )
    with tempfile.TemporaryDirectory(prefix="securemem-stackview-") as directory:
        library = Path(directory) / "leave_on_stack.so"
        subprocess.run(
            ["cc", *HELPER_FLAGS, "-o", str(library), str(_LEAVE_ON_STACK)],
            check=True,
            capture_output=True,
        )
        # Once loaded, the mapping outlives the file: nothing is left in /tmp.
        return ffi, ffi.dlopen(str(library))


def leave_on_stack(needle: memoryview, depth: int = 3072) -> None:
    """Copy ``needle`` into a native stack frame, under ``depth`` bytes of it, and return
    without wiping it: a copy the test makes itself, for the scans to find."""
    if not 0 <= depth <= _MAX_DEPTH:
        raise ValueError(f"depth must be 0 to {_MAX_DEPTH} bytes, not {depth}")
    ffi, library = _stack_helper()
    library.leave_on_stack(ffi.from_buffer(needle), needle.nbytes, depth)
