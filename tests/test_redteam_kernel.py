"""Red team: what securemem says it locked against what the kernel locked (issue 14).

Every check reads the kernel's own count (``VmLck`` in /proc/self/status) in a fresh child
interpreter, so nothing pytest or other tests locked is counted, and the limits users meet
(``prlimit --memlock=65536`` without CAP_IPC_LOCK) are the real ones.
"""

from __future__ import annotations

import json
import mmap
import os
from typing import Any

import pytest

from securemem import Arena, MemoryLockError, SecureBytes, lock_memory
from tests.test_redteam_support import in_child, vmlck_bytes

MODULE = "tests.test_redteam_kernel"
PAGE = mmap.PAGESIZE


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


@pytest.mark.parametrize("close_first", [True, False], ids=["closed", "dropped-open"])
def test_a_dropped_arena_returns_every_page_it_locked(close_first: bool) -> None:
    """Main: under a 64 KiB memlock the 17th arena made and dropped raised MemoryLockError
    (each kept its reserve locked forever)."""
    result = in_child(MODULE, "drop_arenas", memlock=65536, count=100, close_first=close_first)
    assert result["failed_at"] is None, f"arena {result['failed_at']} could not lock: {result}"
    assert result["left_locked"] == 0, f"{result['left_locked']} bytes still locked"


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


@pytest.mark.parametrize(
    ("backend", "guarded", "count"),
    [("anonymous", False, 300), ("anonymous", True, 12), ("secretmem", False, 300)],
    ids=["plain", "guarded", "secretmem"],
)
def test_stats_locked_bytes_equal_the_kernels_count(
    backend: str, guarded: bool, count: int
) -> None:
    """Main: a memfd_secret arena reported 4 KiB locked while the kernel had locked its whole
    264 KiB region (memfd_secret locks and charges at map time)."""
    result = in_child(MODULE, "stats_against_kernel", backend=backend, guarded=guarded, count=count)
    for when, stats_locked, kernel_locked in result["samples"]:
        assert abs(stats_locked - kernel_locked) <= PAGE, (
            f"{when}: stats() says {stats_locked} bytes locked, the kernel {kernel_locked}"
        )


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


def test_lock_memory_in_a_forked_child_really_locks() -> None:
    """Main: the child inherited the parent's count of 1, so its lock_memory locked nothing."""
    result = in_child(MODULE, "lock_memory_after_fork")
    assert result["parent_locked"] >= 2 * PAGE
    assert result["child_after"] - result["child_before"] >= 2 * PAGE, (
        f"the child's lock_memory locked nothing: {result}"
    )


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


def test_two_kernel_objects_share_one_count_per_page() -> None:
    result = in_child(MODULE, "two_kernels_one_page")
    assert result["still_locked"] >= PAGE, f"one handle's release unlocked the other's: {result}"
    assert result["after_both"] == 0, f"a page stayed locked after both handles: {result}"
