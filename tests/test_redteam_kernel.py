"""Red team: what securemem says it locked against what the kernel locked (issue 14).

Every check reads the kernel's own count (``VmLck`` in /proc/self/status) in a fresh child
interpreter, so nothing pytest or other tests locked is counted, and the limits users meet
(``prlimit --memlock=65536`` without CAP_IPC_LOCK) are the real ones.
"""

from __future__ import annotations

import pytest

from tests.test_redteam_support import PAGE, in_child

MODULE = "tests.test_redteam_kernel_attacks"


@pytest.mark.parametrize("close_first", [True, False], ids=["closed", "dropped-open"])
def test_a_dropped_arena_returns_every_page_it_locked(close_first: bool) -> None:
    """Main: under a 64 KiB memlock the 17th arena made and dropped raised MemoryLockError
    (each kept its reserve locked forever)."""
    result = in_child(MODULE, "drop_arenas", memlock=65536, count=100, close_first=close_first)
    assert result["failed_at"] is None, f"arena {result['failed_at']} could not lock: {result}"
    assert result["left_locked"] == 0, f"{result['left_locked']} bytes still locked"


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


def test_lock_memory_in_a_forked_child_really_locks() -> None:
    """Main: the child inherited the parent's count of 1, so its lock_memory locked nothing."""
    result = in_child(MODULE, "lock_memory_after_fork")
    assert result["parent_locked"] >= 2 * PAGE
    assert result["child_after"] - result["child_before"] >= 2 * PAGE, (
        f"the child's lock_memory locked nothing: {result}"
    )


def test_two_kernel_objects_share_one_count_per_page() -> None:
    result = in_child(MODULE, "two_kernels_one_page")
    assert result["still_locked"] >= PAGE, f"one handle's release unlocked the other's: {result}"
    assert result["after_both"] == 0, f"a page stayed locked after both handles: {result}"


def test_at_the_limit_every_copy_fails_cleanly_and_nothing_leaks() -> None:
    """Invariant 6: a failure leaves no partial state, whichever path allocated."""
    result = in_child(MODULE, "exhaust_then_copy", memlock=65536)
    assert result["held"] >= 900, result
    assert set(result["outcomes"].values()) <= {"made", "MemoryLockError"}, result
    assert result["intact"], f"a failed copy changed a live secret: {result}"
    assert result["allocations_when_full"] == result["held"], f"a failed copy leaked: {result}"
    assert result["allocations_after"] == 0, result
    assert abs(result["stats_locked"] - result["kernel_locked"]) <= PAGE, result


def test_absurd_sizes_raise_clear_errors() -> None:
    result = in_child(MODULE, "unreasonable_sizes")
    assert result.pop("allocations_left") == "0", result
    assert "made" not in result.values(), result
    assert result["SecureBytes(-1)"] == "ValueError" and result["random(-1)"] == "ValueError"
