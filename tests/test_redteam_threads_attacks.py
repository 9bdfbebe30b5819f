"""The attacks of ``tests/test_redteam_threads.py``, each run in a child interpreter.

No pytest here: a child imports only this module and securemem, and starts in a fraction
of the time a pytest import takes (there are dozens of children).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from securemem import SecureBytes, SecureBytesClosedError
from tests.test_redteam_support import MINE, OTHER, SIZE, WRITTEN, describe_exit


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
    """Rounds of: this thread loops ``operation``, another closes the secret and allocates.

    The closer is let go only once the loop has run an operation, and the loop runs until
    an operation is refused: every round's close lands while this thread is operating, on
    any machine however busy (where in an operation is the switch interval's choice).
    """
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
        try:
            while True:
                foreign_reads += _operate(victim, operation)
                started.set()
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


def fork_while_another_thread_allocates(prefetch: bool) -> dict[str, Any]:
    """fork() while a second thread is inside the allocator, many times: every child must
    allocate, use and close a secret at once (no lock inherited held, no torn state).

    ``prefetch``: the churning thread grows an ``Arena(prefetch=True)`` region by region, so
    the prefetcher's own thread is busy (and holds its queue) when the fork lands too.
    """
    from securemem import Arena

    stop, churned = threading.Event(), threading.Event()

    def churn() -> None:
        arena = Arena(prefetch=True, region_pages=4) if prefetch else None
        while not stop.is_set():
            churned.set()
            secret = SecureBytes(bytes([MINE]) * SIZE, arena=arena)
            secret.wipe()
            secret.close()
            held = [SecureBytes(9000, arena=arena) for _ in range(3 if prefetch else 1)]
            for big in held:
                big.close()

    thread = threading.Thread(target=churn)
    thread.start()
    failures: list[str] = []
    try:
        for _ in range(40):
            # each fork after another round of the churn began: the thread is in the allocator
            # or about to be, not yet to start or already stopped
            churned.wait()
            churned.clear()
            pid = os.fork()
            if pid == 0:  # the child: one allocation round trip, bounded by an alarm
                code = 1
                try:
                    import signal

                    signal.alarm(10)
                    child_arena = Arena(prefetch=True, region_pages=4) if prefetch else None
                    child_secret = SecureBytes(bytes([OTHER]) * SIZE, arena=child_arena)
                    child_big = SecureBytes(9000, arena=child_arena)
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
