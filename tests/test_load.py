"""Load: many threads, garbage collection and cross-thread close, limit cycles.

Figures for docs/reliability.md come from these runs (see that page).
"""

from __future__ import annotations

import gc
import queue
import random
import threading

from securemem import Arena, SecureBytes
from tests.conftest import assert_arena_empty, close_checked, run_json

THREADS = 8
ROUNDS = 2500


def _pattern(owner: int, serial: int, size: int) -> bytes:
    seed = owner.to_bytes(2, "little") + serial.to_bytes(4, "little")
    return (seed * (size // 6 + 1))[:size]


def test_threads_racing_with_gc_and_cross_thread_close() -> None:
    arena = Arena(region_pages=16, reserve_pages=4)
    handoff: queue.Queue[tuple[SecureBytes, bytes] | None] = queue.Queue(maxsize=256)
    failures: list[str] = []
    done = threading.Event()

    def producer(number: int) -> None:
        rng = random.Random(number)
        mine: list[tuple[SecureBytes, bytes]] = []
        for serial in range(ROUNDS):
            size = rng.choice((1, 16, 33, 64, 100, 700, 2048, 2049, 5000, 12000))
            pattern = _pattern(number, serial, size)
            secret = SecureBytes(pattern, arena=arena)
            choice = rng.random()
            if choice < 0.3:
                handoff.put((secret, pattern))  # another thread verifies and closes it
            elif choice < 0.4:
                del secret  # dropped: its finaliser must wipe and release it
            elif choice < 0.5:
                # Dropped inside a reference cycle: only the collector thread's
                # gc.collect() finds it, so it is wiped and released there.
                cycle: list[object] = [secret]
                cycle.append(cycle)
                del secret, cycle
            else:
                mine.append((secret, pattern))
            if len(mine) > 20:
                close_checked(*mine.pop(rng.randrange(len(mine))), failures, f"producer {number}")
        for secret, expected in mine:
            close_checked(secret, expected, failures, f"producer {number}")

    def closer() -> None:
        while (item := handoff.get()) is not None:
            close_checked(*item, failures, "closer")

    def collector() -> None:
        # A pause between collections: gc.collect() holds the GIL throughout, and
        # back to back it starves the producers (each contended lock then waits a
        # whole switch interval for the GIL) without racing any harder.
        while not done.wait(0.002):
            gc.collect()

    producers = [threading.Thread(target=producer, args=(n,)) for n in range(THREADS)]
    helpers = [threading.Thread(target=closer), threading.Thread(target=collector)]
    for thread in producers + helpers:
        thread.start()
    for thread in producers:
        thread.join()
    handoff.put(None)
    done.set()
    for thread in helpers:
        thread.join()
    gc.collect()
    assert failures == []
    assert_arena_empty(arena)
    arena.release_reserve()
    assert arena.locked_pages() == {} and arena.mapped_ranges() == []


def test_fill_to_the_limit_free_and_repeat_returns_to_baseline() -> None:
    result = run_json(
        """
        import json, gc
        from securemem import Arena, SecureBytes, MemoryLockError, _procfs
        arena = Arena(reserve_pages=0)
        baseline = _procfs.process_locked_bytes()
        counts, after = [], []
        for cycle in range(20):
            held = []
            try:
                while True:
                    held.append(SecureBytes(bytes([cycle + 1]) * 64, arena=arena))
            except MemoryLockError:
                pass
            assert all(s == bytes([cycle + 1]) * 64 for s in held)
            counts.append(len(held))
            for s in held:
                s.close()
            after.append(_procfs.process_locked_bytes())
        print(json.dumps({"baseline": baseline, "counts": counts, "after": after,
                          "mapped": arena.mapped_ranges()}))
        """,
        memlock=65536,
    )
    assert result["after"] == [result["baseline"]] * 20
    assert len(set(result["counts"])) == 1, "every cycle must fit the same number"
    assert result["counts"][0] >= 900
    assert result["mapped"] == []
