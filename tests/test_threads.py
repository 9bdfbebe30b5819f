"""Four threads allocating, writing, verifying and closing at once."""

from __future__ import annotations

import threading

from securemem import Arena, SecureBytes
from tests.conftest import assert_arena_empty, close_checked


def test_four_threads_never_see_each_others_bytes(arena: Arena) -> None:
    failures: list[str] = []
    start = threading.Barrier(4)

    def worker(number: int) -> None:
        start.wait()
        mine: list[tuple[SecureBytes, bytes]] = []
        for round_ in range(1500):
            size = (round_ * 37 + number * 11) % 5000 + 1
            pattern = bytes([number + 1]) * size
            secret = SecureBytes(pattern, arena=arena)
            mine.append((secret, pattern))
            if len(mine) > 40:
                close_checked(*mine.pop(0), failures, f"thread {number}")
        for secret, expected in mine:
            close_checked(secret, expected, failures, f"thread {number}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert_arena_empty(arena)
