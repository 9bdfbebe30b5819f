"""Allocation latency while the arena grows, prefetch off versus on (real kernel).

A steady stream of secret allocations (with a little work between them, as a
server has) grows a fresh arena region after region. Without prefetch every
new page is locked by the allocating thread (an mlock that faults the page
in); with prefetch the next region is mapped and locked by a background thread
(aio_mlock on FreeBSD) while the stream goes on, so the allocating thread
should not wait on mlock. Prints p50/p99/p99.9/max allocation latency for both,
and for the floor: a plain Python object of a SecureBytes's size allocated in the
same loop (what any allocation costs there; no allocator goes under it). The three
take turns round by round, and the cyclic garbage collector is off while timing.

    python3 benchmarks/prefetch_growth.py            # the full run
    python3 benchmarks/prefetch_growth.py --quick    # a smoke run (used by the tests)

Run it without CAP_IPC_LOCK to see what users see; the default sizes stay
under an 8 MiB RLIMIT_MEMLOCK.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from dataclasses import dataclass, field

from securemem import Arena, SecureBytes


def _spin(seconds: float) -> None:
    """CPU-bound work: holds the GIL, so a helper thread runs only at switch intervals."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _io(seconds: float) -> None:
    """Waiting on I/O (here: a sleep): releases the GIL, as a server's socket calls do."""
    time.sleep(seconds)


@dataclass
class _Samples:
    """What one prefetch setting measured, over all its rounds."""

    latencies: list[int] = field(default_factory=list)
    fresh_page: list[int] = field(default_factory=list)  # allocations that took a fresh page
    new_region: list[int] = field(default_factory=list)  # allocations that added a region
    adopted: int = 0
    waited: int = 0

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.latencies)
        growing = sorted(self.fresh_page)

        def pct(p: float, of: list[int]) -> float:
            return of[min(len(of) - 1, int(p / 100 * len(of)))] / 1000 if of else 0.0

        return {
            "p50_us": pct(50, ordered),
            "p99_us": pct(99, ordered),
            "p99.9_us": pct(99.9, ordered),
            "max_us": ordered[-1] / 1000,
            "growing_p50_us": pct(50, growing),
            "growing_p99_us": pct(99, growing),
            "growing_allocations": len(growing),
            "mean_growth_us": statistics.fmean(self.new_region) / 1000 if self.new_region else 0.0,
            "allocations": len(ordered),
            "regions_adopted": self.adopted,
            "waited_for_prefetch": self.waited,
        }


def _same_size_object() -> type:
    """A class of plain Python objects as big as a SecureBytes object, with no secret memory.

    Allocating one in the same loop is the floor: what any allocation of a Python object
    costs on this machine after that work (the tail there is the interpreter's heap growing
    and the machine waking from the pause), which no allocator can go under.
    """
    probe = SecureBytes(1)
    size = sys.getsizeof(probe)
    probe.close()
    empty: type = type("_Empty", (), {"__slots__": ()})
    slots = max(0, (size - sys.getsizeof(empty())) // 8)
    return type("_SameSize", (), {"__slots__": tuple(f"s{i}" for i in range(slots))})


def _floor_round(secrets: int, gap: float, work: str, into: _Samples) -> None:
    """The same loop, allocating objects of a SecureBytes's size that hold no secret."""
    between = _spin if work == "cpu" else _io
    make = _same_size_object()
    held: list[object] = [None] * secrets
    for index in range(secrets):
        start = time.perf_counter_ns()
        held[index] = make()
        into.latencies.append(time.perf_counter_ns() - start)
        between(gap)


def _round(prefetch: bool, secrets: int, size: int, gap: float, work: str, into: _Samples) -> None:
    """One fresh arena grown by ``secrets`` allocations, each timed."""
    between = _spin if work == "cpu" else _io
    arena = Arena(prefetch=prefetch, reserve_pages=4)
    held: list[SecureBytes | None] = [None] * secrets  # never resized while timing
    regions = 0
    pages: set[int] = set()
    for index in range(secrets):
        start = time.perf_counter_ns()
        secret = SecureBytes(size, arena=arena)
        elapsed = time.perf_counter_ns() - start
        held[index] = secret
        into.latencies.append(elapsed)
        # Growth is an allocation that needed memory the arena was not using: the first
        # secret on a page (off: the allocating thread locks it, or maps a region; on: it
        # takes a page locked ahead). The others reuse a page and grow nothing.
        page = secret.address // arena.page_size
        if page not in pages:
            pages.add(page)
            into.fresh_page.append(elapsed)
        now = len(arena.mapped_ranges())
        if now != regions:
            into.new_region.append(elapsed)
            regions = now
        between(gap)
    if arena.prefetcher is not None:
        counters = arena.prefetcher.counters()
        into.adopted += counters["adopted"]
        into.waited += counters["waited"]
    for kept in held:
        if kept is not None:
            kept.close()
    arena.release_reserve()


def run(
    secrets: int, size: int, gap: float, rounds: int, work: str
) -> dict[str, dict[str, float]]:
    """Prefetch off and on, and the floor, their rounds taking turns so that all three see
    the same machine."""
    samples = {"off": _Samples(), "on": _Samples(), "floor": _Samples()}
    # The cyclic garbage collector is off while allocations are timed, as timeit has it:
    # a collection (every 700 allocations) lands in whichever allocation triggered it,
    # with or without prefetch, and the tail would measure the interpreter instead of
    # the allocator.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, into in samples.items():
                if name == "floor":
                    _floor_round(secrets, gap, work, into)
                else:
                    _round(name == "on", secrets, size, gap, work, into)
                gc.collect()
    finally:
        if collecting:
            gc.enable()
    return {name: into.summary() for name, into in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secrets", type=int, default=3000, help="secrets per round")
    parser.add_argument("--size", type=int, default=2048, help="bytes per secret")
    parser.add_argument("--gap-us", type=float, default=20.0, help="work between allocations")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--work",
        choices=("io", "cpu"),
        default="io",
        help="between allocations: wait on I/O (GIL released) or compute (GIL held)",
    )
    parser.add_argument("--quick", action="store_true", help="a few hundred allocations")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.quick:
        args.secrets, args.rounds = 300, 1
    results = run(args.secrets, args.size, args.gap_us / 1e6, args.rounds, args.work)
    if args.json:
        print(json.dumps(results))
        return
    print(
        f"{args.rounds} x {args.secrets} secrets of {args.size} bytes, "
        f"{args.gap_us:g} us of {args.work} work between allocations"
    )
    print("all allocations, and those that grew the arena (the first on a fresh page):")
    columns = ("p50 us", "p99 us", "p99.9 us", "max us", "grew p50", "grew p99", "region us")
    print(f"{'prefetch':>8} " + " ".join(f"{c:>9}" for c in columns) + "  adopted  waited")
    for name, r in results.items():
        keys = ("p50_us", "p99_us", "p99.9_us", "max_us", "growing_p50_us", "growing_p99_us")
        cells = [r[key] for key in keys] + [r["mean_growth_us"]]
        print(
            f"{name:>8} " + " ".join(f"{cell:9.1f}" for cell in cells)
            + f" {r['regions_adopted']:8.0f} {r['waited_for_prefetch']:7.0f}"
        )


if __name__ == "__main__":
    main()
