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

import os
import sys
import threading
import time
from typing import Any

import pytest

from securemem import SecureBytes, SecureBytesClosedError
from tests.test_redteam_support import MINE, OTHER, SIZE, WRITTEN, describe_exit, in_child

MODULE = "tests.test_redteam_threads"


def _operate(victim: SecureBytes, operation: str) -> int:
    """Run ``operation`` on ``victim`` once; 1 if it read another secret's byte."""
    if operation == "wipe":
        victim.wipe()
    elif operation == "setitem":
        victim[0] = WRITTEN
    elif operation == "getitem":
        return int(victim[SIZE - 1] == OTHER)
    elif operation == "slice":
        return int(OTHER in bytes(victim[:].view()))
    elif operation == "eq":
        return int(victim == bytes([OTHER]) * SIZE)
    elif operation == "export":
        # Export a buffer, then read and write through it: the slot must stay the victim's
        # until the view is released, whoever closes it meanwhile.
        with memoryview(victim.view()) as view:
            view[1] = WRITTEN
            return int(view[SIZE - 1] == OTHER)
    else:
        raise ValueError(operation)
    return 0


def _close_and_allocate(
    victim: SecureBytes, others: list[SecureBytes], started: threading.Event, guarded: bool
) -> None:
    started.wait()
    victim.close()
    others.extend(SecureBytes(bytes([OTHER]) * SIZE, guarded=guarded) for _ in range(2))


def close_race(operation: str, guarded: bool, rounds: int) -> dict[str, Any]:
    """Rounds of: this thread loops ``operation``, another closes the secret and allocates."""
    sys.setswitchinterval(1e-6)
    corrupted = foreign_reads = refused = 0
    for _ in range(rounds):
        victim = SecureBytes(bytes([MINE]) * SIZE, guarded=guarded)
        others: list[SecureBytes] = []
        started = threading.Event()

        closer = threading.Thread(
            target=_close_and_allocate, args=(victim, others, started, guarded)
        )
        closer.start()
        started.set()
        try:
            for _ in range(2000):
                foreign_reads += _operate(victim, operation)
            victim.close()  # the closer was slower than the whole loop: no race this round
        except SecureBytesClosedError:
            refused += 1
        closer.join()
        corrupted += sum(1 for other in others if bytes(other.view()) != bytes([OTHER]) * SIZE)
        for other in others:
            other.close()
    return {
        "rounds": rounds,
        "raced": refused,
        "corrupted": corrupted,
        "foreign_reads": foreign_reads,
    }


OPERATIONS = ["wipe", "setitem", "getitem", "slice", "eq", "export"]


@pytest.mark.parametrize("guarded", [False, True], ids=["packed", "guarded"])
@pytest.mark.parametrize("operation", OPERATIONS)
def test_close_from_another_thread_never_lets_an_operation_touch_another_secret(
    operation: str, guarded: bool
) -> None:
    rounds = 150 if guarded else 600
    result = in_child(MODULE, "close_race", operation=operation, guarded=guarded, rounds=rounds)
    assert result["raced"] > rounds // 4, f"too few rounds raced to prove anything: {result}"
    assert result["corrupted"] == 0, f"another secret changed: {result}"
    assert result["foreign_reads"] == 0, f"a read returned another secret's bytes: {result}"


def double_close_race(rounds: int) -> dict[str, Any]:
    """Two threads close the same secret at once, round after round; then every slot the
    allocator hands out must be distinct (a slot freed twice is handed out twice)."""
    sys.setswitchinterval(1e-6)
    for _ in range(rounds):
        victim = SecureBytes(bytes([MINE]) * SIZE)
        start = threading.Barrier(2)

        def close_it(victim: SecureBytes = victim, start: threading.Barrier = start) -> None:
            start.wait()
            victim.close()

        racer = threading.Thread(target=close_it)
        racer.start()
        close_it()
        racer.join()
    held = [SecureBytes(SIZE) for _ in range(4 * rounds)]
    addresses = [secret.address for secret in held]
    for secret in held:
        secret.close()
    import securemem

    return {
        "handed_out_twice": len(addresses) - len(set(addresses)),
        "allocations_left": securemem.stats().allocations,
    }


def test_two_threads_closing_one_secret_free_its_slot_once() -> None:
    result = in_child(MODULE, "double_close_race", rounds=500)
    assert result["handed_out_twice"] == 0, f"a slot was freed twice: {result}"
    assert result["allocations_left"] == 0, result


BIG = 1 << 20  # hashlib and os.readv release the GIL for buffers this large


def io_without_the_gil_racing_close(operation: str, guarded: bool, rounds: int) -> dict[str, Any]:
    """One thread hashes a secret or reads a file into it (native code that releases the GIL
    while it holds the buffer), another closes the secret mid-way and allocates in its place.

    The exported buffer must pin the memory: no crash (a guarded secret's pages unmapped under
    the reader), no other secret written, and no later secret handed the stale bytes.
    """
    import hashlib
    import tempfile

    with tempfile.TemporaryFile() as source:
        source.write(bytes([WRITTEN]) * BIG)
        source.flush()
        corrupted = dirty = 0
        for _ in range(rounds):
            victim = SecureBytes(BIG, guarded=guarded)
            others: list[SecureBytes] = []
            view = victim.view()
            started = threading.Event()

            def use(view: memoryview = view, started: threading.Event = started) -> None:
                started.set()
                for _ in range(3):
                    if operation == "hash":
                        hashlib.sha256(view).digest()
                    else:
                        os.preadv(source.fileno(), [view], 0)
                view.release()

            user = threading.Thread(target=use)
            user.start()
            started.wait()
            del view
            victim.close()
            others += [SecureBytes(bytes([OTHER]) * BIG, guarded=guarded) for _ in range(2)]
            user.join()
            corrupted += sum(1 for other in others if other != bytes([OTHER]) * BIG)
            for other in others:
                other.close()
            fresh = SecureBytes(BIG, guarded=guarded)
            dirty += fresh != bytes(BIG)
            fresh.close()
    return {"corrupted": corrupted, "dirty_fresh": dirty}


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


def export_then_close_then_write() -> dict[str, Any]:
    """A view outlives ``close()`` and is written: the write must land in the closed secret's
    own (wiped, not yet reused) slot, and that slot must be zero when it is handed out again."""
    victim = SecureBytes(bytes([MINE]) * SIZE)
    view = memoryview(victim.view())
    victim.close()
    others = [SecureBytes(bytes([OTHER]) * SIZE) for _ in range(8)]
    wiped_on_close = bytes(view) == bytes(SIZE)
    view[:] = bytes([WRITTEN]) * SIZE
    corrupted = sum(1 for other in others if bytes(other.view()) != bytes([OTHER]) * SIZE)
    view.release()
    del view
    # The slot is free now: whatever takes it must start as zeros, not as the stale write.
    fresh = [SecureBytes(SIZE) for _ in range(64)]
    dirty = sum(1 for secret in fresh if bytes(secret.view()) != bytes(SIZE))
    return {"wiped_on_close": wiped_on_close, "corrupted": corrupted, "dirty_fresh": dirty}


def test_a_view_written_after_close_touches_no_other_secret_and_is_wiped_before_reuse() -> None:
    result = in_child(MODULE, "export_then_close_then_write")
    assert result["wiped_on_close"], "close() must wipe at once, even with a view alive"
    assert result["corrupted"] == 0, "a stale view wrote into another secret"
    assert result["dirty_fresh"] == 0, "a new secret started with a stale view's bytes"


def fork_while_another_thread_allocates() -> dict[str, Any]:
    """fork() while a second thread is inside the allocator, many times: every child must
    allocate, use and close a secret at once (no lock inherited held, no torn state)."""
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            secret = SecureBytes(bytes([MINE]) * SIZE)
            secret.wipe()
            secret.close()
            big = SecureBytes(9000)
            big.close()

    thread = threading.Thread(target=churn)
    thread.start()
    failures: list[str] = []
    try:
        for _ in range(40):
            time.sleep(0.002)
            pid = os.fork()
            if pid == 0:  # the child: one allocation round trip, bounded by an alarm
                code = 1
                try:
                    import signal

                    signal.alarm(10)
                    child_secret = SecureBytes(bytes([OTHER]) * SIZE)
                    child_big = SecureBytes(9000)
                    ok = bytes(child_secret.view()) == bytes([OTHER]) * SIZE
                    child_secret.close()
                    child_big.close()
                    code = 0 if ok else 2
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            if status:
                failures.append(
                    describe_exit(-os.WTERMSIG(status))
                    if os.WIFSIGNALED(status)
                    else describe_exit(os.WEXITSTATUS(status))
                )
    finally:
        stop.set()
        thread.join()
    return {"failures": failures}


def test_fork_while_another_thread_holds_the_allocator_leaves_a_working_child() -> None:
    """A child forked while another thread is mid-allocation must not inherit a held lock
    (deadlock, ended here by SIGALRM) or half-updated bookkeeping."""
    result = in_child(MODULE, "fork_while_another_thread_allocates")
    assert result["failures"] == [], f"children failed: {result['failures']}"
