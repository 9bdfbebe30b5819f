"""Red team: another thread closes a secret while this one uses it (issue 14, item 1).

Each round, one thread loops an operation on a secret while a second thread closes it and
allocates other secrets with known bytes (the first of them takes the freed slot when the
allocator reuses it). A close racing with a use must either wait for it or make it raise
``SecureBytesClosedError``: over every round, no other secret may change and no read may
return another secret's byte. On main, another secret was zeroed in up to 1,978 of 2,000
rounds and every guarded variant crashed the interpreter.

The switch interval is cut to 1 us so the two threads interleave inside operations that are
Python code; a native operation holds the GIL from its handle check to its last byte.
Every scenario runs in a child interpreter, so a crash fails the test with the signal named.
"""

from __future__ import annotations

import pytest

from tests.test_redteam_support import in_child, scaled

MODULE = "tests.test_redteam_threads_attacks"

OPERATIONS = ["wipe", "setitem", "getitem", "slice", "eq", "export"]


@pytest.mark.parametrize("guarded", [False, True], ids=["packed", "guarded"])
@pytest.mark.parametrize("operation", OPERATIONS)
def test_close_from_another_thread_never_lets_an_operation_touch_another_secret(
    operation: str, guarded: bool
) -> None:
    rounds = scaled(150 if guarded else 600)
    result = in_child(MODULE, "close_race", operation=operation, guarded=guarded, rounds=rounds)
    assert result["raced"] == rounds, f"a round's close did not race the operation: {result}"
    assert result["corrupted"] == 0, f"another secret changed: {result}"
    assert result["foreign_reads"] == 0, f"a read returned another secret's bytes: {result}"


def test_two_threads_closing_one_secret_free_its_slot_once() -> None:
    result = in_child(MODULE, "double_close_race", rounds=scaled(500))
    assert result["handed_out_twice"] == 0, f"a slot was freed twice: {result}"
    assert result["allocations_left"] == 0, result


@pytest.mark.parametrize("guarded", [False, True], ids=["packed", "guarded"])
@pytest.mark.parametrize("operation", ["hash", "preadv"])
def test_io_that_releases_the_gil_pins_the_secret_it_reads_or_writes(
    operation: str, guarded: bool
) -> None:
    result = in_child(
        MODULE, "io_without_the_gil_racing_close", operation=operation, guarded=guarded, rounds=10
    )
    assert result["corrupted"] == 0, f"another secret was written: {result}"
    assert result["dirty_fresh"] == 0, f"a new secret started with stale bytes: {result}"


def test_a_view_written_after_close_touches_no_other_secret_and_is_wiped_before_reuse() -> None:
    result = in_child(MODULE, "export_then_close_then_write")
    assert result["wiped_on_close"], "close() must wipe at once, even with a view alive"
    assert result["corrupted"] == 0, "a stale view wrote into another secret"
    assert result["dirty_fresh"] == 0, "a new secret started with a stale view's bytes"


@pytest.mark.parametrize("prefetch", [False, True], ids=["plain", "prefetch"])
def test_fork_while_another_thread_holds_the_allocator_leaves_a_working_child(
    prefetch: bool,
) -> None:
    """A child forked while another thread is mid-allocation (or the prefetcher mid-lock)
    must not inherit a held lock (deadlock, ended here by SIGALRM) or torn bookkeeping."""
    result = in_child(MODULE, "fork_while_another_thread_allocates", prefetch=prefetch)
    assert result["failures"] == [], f"children failed: {result['failures']}"
