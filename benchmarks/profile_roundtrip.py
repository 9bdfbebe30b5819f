"""Where a 32-byte ``SecureBytes(32).close()`` round trip and its neighbours spend their time.

    python3 -m benchmarks.profile_roundtrip            # component timings (ns per call)
    python3 -m benchmarks.profile_roundtrip --cprofile # plus a cProfile of the round trip

Each line times one public operation on its own, best of several batches, so
they can be compared and subtracted: the object against its floor, the default
arena against an explicit one, an empty slab against one with a neighbour alive,
the wipe, the export of a buffer. Only the public API is timed: the allocator
is native code, and what is inside it is for a C profiler (``perf``), not this.
cProfile adds its own overhead to every Python call; the component timings do not.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
import timeit
from collections.abc import Callable

from securemem import Arena, SecureBytes


def best_ns(statement: Callable[[], object], number: int = 100_000, repeat: int = 7) -> float:
    # Thread CPU time, as the benchmarks use: steady on a shared machine.
    timings = timeit.repeat(statement, number=number, repeat=repeat, timer=time.thread_time)
    return min(timings) / number * 1e9


def components() -> list[tuple[str, float | None]]:
    arena = Arena()
    rows: list[tuple[str, float | None]] = []

    def add(name: str, statement: Callable[[], object]) -> None:
        try:
            statement()
        except TypeError:  # e.g. a core whose SecureBytes is not a buffer (Python 3.11)
            rows.append((name, None))
            return
        rows.append((name, best_ns(statement)))

    source = bytearray(32)
    plain = bytearray(32)
    add("bytearray(32) (the floor)", lambda: bytearray(32))
    add("SecureBytes(32).close(), default arena", lambda: SecureBytes(32).close())
    add("SecureBytes(32) dropped (released by deallocation)", lambda: SecureBytes(32))
    add("SecureBytes(32, arena=a).close()", lambda: SecureBytes(32, arena=arena).close())
    keep = SecureBytes(32, arena=arena)  # a neighbour: the slab never empties
    add("  ... with a neighbour alive in the slab", lambda: SecureBytes(32, arena=arena).close())
    keep.close()
    add("bytes(bytearray(32)) (copy-in floor)", lambda: bytes(source))
    add("SecureBytes(bytearray(32)) dropped (copy-in)", lambda: SecureBytes(source))

    def in_with_block() -> None:
        with SecureBytes(32):
            pass

    add("with SecureBytes(32): pass", in_with_block)
    add("bytearray(os.urandom(32)) (the random floor)", lambda: bytearray(os.urandom(32)))
    add("SecureBytes.random(32).close()", lambda: SecureBytes.random(32).close())
    add("bytearray(4096) (the 4 KiB floor)", lambda: bytearray(4096))
    add("SecureBytes(4096).close()", lambda: SecureBytes(4096).close())
    with SecureBytes(32) as secret:
        add("bytearray[5] (the floor)", lambda: plain[5])
        add("s[5]", lambda: secret[5])
        add("s[5] = 1", lambda: secret.__setitem__(5, 1))
        add("s.wipe()", secret.wipe)
        add("memoryview(s) (buffer export and release)", lambda: memoryview(secret))  # type: ignore[arg-type,unused-ignore]
        add("bytes(s) (a copy the caller asked for)", lambda: bytes(secret))  # type: ignore[call-overload,unused-ignore]
    arena.release_reserve()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()
    for name, ns in components():
        shown = "      n/a" if ns is None else f"{ns:9.0f}"
        print(f"{shown} ns  {name}")
    if args.cprofile:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(100_000):
            SecureBytes(32).close()
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
