"""Where a 32-byte ``SecureBytes(32).close()`` round trip spends its time.

    python3 -m benchmarks.profile_roundtrip            # component timings (ns per call)
    python3 -m benchmarks.profile_roundtrip --cprofile # plus a cProfile of the round trip

Each line times one layer of the round trip on its own, best of several
batches, so the layers can be compared and subtracted: what the object costs,
what the arena costs, what the lock, the wipe and ``__del__`` cost. cProfile
adds its own overhead to every Python call; the component timings do not.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import threading
import time
import timeit
from collections.abc import Callable
from typing import Any

from securemem._native import lib

from securemem import Arena, SecureBytes


def best_ns(statement: Callable[[], object], number: int = 100_000, repeat: int = 7) -> float:
    # Thread CPU time, as the benchmarks use: steady on a shared machine.
    timings = timeit.repeat(statement, number=number, repeat=repeat, timer=time.thread_time)
    return min(timings) / number * 1e9


def components() -> list[tuple[str, float]]:
    arena = Arena()
    kernel = arena.kernel
    rows: list[tuple[str, float]] = []

    def add(name: str, statement: Callable[[], object]) -> None:
        rows.append((name, best_ns(statement)))

    add("bytearray(32) (the floor)", lambda: bytearray(32))
    add("SecureBytes(32).close(), default arena", lambda: SecureBytes(32).close())
    add("SecureBytes(32, arena=a).close()", lambda: SecureBytes(32, arena=arena).close())
    keep = SecureBytes(32, arena=arena)  # a neighbour: the slab never empties
    add("  ... with a neighbour alive in the slab", lambda: SecureBytes(32, arena=arena).close())
    keep.close()

    def arena_pair() -> None:
        owner, address = arena.allocate(32)
        arena.free(owner, address, 32)

    add("arena.allocate + arena.free (no object, no wipe)", arena_pair)
    keep = SecureBytes(32, arena=arena)
    add("  ... with a neighbour alive in the slab", arena_pair)
    keep.close()

    class Holder:
        __slots__ = ("_address", "_owner", "_size")
        _address: int
        _owner: Any
        _size: int

    holder = Holder()
    holder._size = 32
    holder._owner = None

    def fast_pair() -> None:
        arena.allocate_into(holder, 32)
        arena.release_from(holder)

    add("arena.allocate_into + release_from (fast paths)", fast_pair)

    lock = threading.RLock()

    def with_lock() -> None:
        with lock:
            pass

    add("with RLock: (one acquire + release)", with_lock)
    owner, address = arena.allocate(32)
    add("kernel.wipe(address, 32) (Python method + cffi)", lambda: kernel.wipe(address, 32))
    add("lib.sm_wipe_at(address, 32) (cffi call alone)", lambda: lib.sm_wipe_at(address, 32))
    arena.free(owner, address, 32)

    class Slotted:
        __slots__ = ("__weakref__", "a", "b", "c", "d", "e", "f")

        def __init__(self) -> None:
            self.a = self.b = self.c = self.d = self.e = self.f = None

        def __del__(self) -> None:
            pass

    add("a 6-slot object with __init__ and __del__", Slotted)
    arena.release_reserve()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()
    for name, ns in components():
        print(f"{ns:9.0f} ns  {name}")
    if args.cprofile:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(100_000):
            SecureBytes(32).close()
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
