"""The attacks of ``tests/test_redteam_kernel.py``, each run in a child interpreter.

No pytest here: a child imports only this module and securemem, and starts in a fraction
of the time a pytest import takes (there are dozens of children).
"""

from __future__ import annotations

import json
import mmap
import os
from typing import Any

from securemem import Arena, MemoryLockError, SecureBytes, lock_memory
from tests.test_redteam_support import PAGE, vmlck_bytes


def drop_arenas(count: int, close_first: bool) -> dict[str, Any]:
    """Make, use and drop ``count`` arenas; the first that cannot lock, and what stays locked."""
    baseline = vmlck_bytes()
    for number in range(count):
        try:
            arena = Arena()
            small = SecureBytes(b"k" * 32, arena=arena)
            large = SecureBytes(5000, arena=arena)
        except MemoryLockError as error:
            return {"failed_at": number, "error": str(error), "left_locked": None}
        if close_first:
            small.close()
            large.close()
        del small, large, arena  # no gc.collect(): dropping is what users do
    return {"failed_at": None, "error": None, "left_locked": vmlck_bytes() - baseline}


def stats_against_kernel(backend: str, guarded: bool, count: int) -> dict[str, Any]:
    """(stats().locked_bytes, VmLck growth) after allocating, closing half, closing all."""
    baseline = vmlck_bytes()
    arena = Arena(backend=backend) if backend != "anonymous" else Arena()  # type: ignore[arg-type]
    samples: list[tuple[str, int, int]] = []

    def sample(when: str) -> None:
        samples.append((when, arena.stats().locked_bytes, vmlck_bytes() - baseline))

    secrets = [SecureBytes(64, arena=arena, guarded=guarded) for _ in range(count)]
    sample("allocated")
    for secret in secrets[::2]:
        secret.close()
    sample("half closed")
    for secret in secrets:
        secret.close()
    sample("all closed")
    return {"samples": samples}


def lock_memory_after_fork() -> dict[str, Any]:
    """lock_memory() a buffer, fork, lock_memory() it again in the child: the child's own
    VmLck must grow (mlock is not inherited by a child, whatever counts the parent kept)."""
    buffer = mmap.mmap(-1, 2 * PAGE)
    buffer[:] = b"\x01" * len(buffer)
    handle = lock_memory(buffer)
    parent_locked = vmlck_bytes()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            before = vmlck_bytes()
            child_handle = lock_memory(buffer)
            after = vmlck_bytes()
            child_handle.release()
            os.write(write_end, json.dumps([before, after]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        before, after = json.loads(pipe.read())
    os.waitpid(pid, 0)
    handle.release()
    return {"parent_locked": parent_locked, "child_before": before, "child_after": after}


def two_kernels_one_page() -> dict[str, Any]:
    """Lock one page through the default kernel and through another real-kernel object,
    release the second: the first handle's page must still be locked."""
    buffer = mmap.mmap(-1, PAGE)
    buffer[:] = b"\x01" * PAGE
    baseline = vmlck_bytes()
    first = lock_memory(buffer)
    second = lock_memory(buffer, kernel=Arena().kernel)
    second.release()
    still_locked = vmlck_bytes() - baseline
    first.release()
    return {"still_locked": still_locked, "after_both": vmlck_bytes() - baseline}


def exhaust_then_copy() -> dict[str, Any]:
    """Fill the memlock limit with 64-byte secrets, then ask for more in every way a copy can:
    each must fail with MemoryLockError (or succeed) and leave everything as it was."""
    import securemem

    baseline = vmlck_bytes()
    held: list[SecureBytes] = []
    try:
        while len(held) < 100_000:
            held.append(SecureBytes(b"k" * 64))
    except MemoryLockError:
        pass
    first = held[0]
    copies: dict[str, Any] = {
        "s[:]": lambda: first[:],
        "s[::2]": lambda: first[::2],
        "SecureBytes(s)": lambda: SecureBytes(first),
        "random(64)": lambda: SecureBytes.random(64),
        "guarded": lambda: SecureBytes(64, guarded=True),
        "4 KiB": lambda: SecureBytes(4096),
    }
    outcomes: dict[str, str] = {}
    for name, copy in copies.items():
        try:
            copy().close()
            outcomes[name] = "made"
        except MemoryLockError:
            outcomes[name] = "MemoryLockError"
        except Exception as error:
            outcomes[name] = f"{type(error).__name__}: {error}"
    intact = all(bytes(secret.view()) == b"k" * 64 for secret in held)
    allocations_when_full = securemem.stats().allocations
    count = len(held)
    for secret in held:
        secret.close()
    stats = securemem.stats()
    return {
        "held": count,
        "outcomes": outcomes,
        "intact": intact,
        "allocations_when_full": allocations_when_full,
        "allocations_after": stats.allocations,
        "stats_locked": stats.locked_bytes,
        "kernel_locked": vmlck_bytes() - baseline,
    }


def unreasonable_sizes() -> dict[str, str]:
    """What each absurd size raises (a crash or a hang ends the child instead)."""
    import securemem

    outcomes: dict[str, str] = {}
    for size in (-1, 2**62, 2**64, 2**100):
        for name, make in (("SecureBytes", SecureBytes), ("random", SecureBytes.random)):
            try:
                make(size).close()
                outcomes[f"{name}({size})"] = "made"
            except (ValueError, OverflowError, MemoryError) as error:
                outcomes[f"{name}({size})"] = type(error).__name__
    outcomes["allocations_left"] = str(securemem.stats().allocations)
    return outcomes
