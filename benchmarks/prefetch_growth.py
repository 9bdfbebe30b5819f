"""Allocation latency while the arena grows, prefetch off versus on (real kernel).

A steady stream of secret allocations (with a little work between them, as a
server has) grows a fresh arena region after region. Without prefetch every
new page is locked by the allocating thread (an mlock that faults the page
in); with prefetch the next region is mapped and locked by a background thread
(aio_mlock on FreeBSD) while the stream goes on, so the allocating thread
should not wait on mlock. Prints p50/p99/p99.9/max allocation latency for both.

    python3 benchmarks/prefetch_growth.py            # the full run
    python3 benchmarks/prefetch_growth.py --quick    # a smoke run (used by the tests)

Run it without CAP_IPC_LOCK to see what users see; the default sizes stay
under an 8 MiB RLIMIT_MEMLOCK.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from securemem import Arena, SecureBytes


def _spin(seconds: float) -> None:
    """CPU-bound work: holds the GIL, so a helper thread runs only at switch intervals."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _io(seconds: float) -> None:
    """Waiting on I/O (here: a sleep): releases the GIL, as a server's socket calls do."""
    time.sleep(seconds)


def run(
    prefetch: bool, secrets: int, size: int, gap: float, rounds: int, work: str
) -> dict[str, float]:
    between = _spin if work == "cpu" else _io
    latencies: list[int] = []
    growth: list[int] = []
    adopted = waited = 0
    for _ in range(rounds):
        arena = Arena(prefetch=prefetch, reserve_pages=4)
        held = []
        regions = 0
        for _ in range(secrets):
            start = time.perf_counter_ns()
            held.append(SecureBytes(size, arena=arena))
            elapsed = time.perf_counter_ns() - start
            latencies.append(elapsed)
            now = len(arena.mapped_ranges())
            if now != regions:
                growth.append(elapsed)
                regions = now
            between(gap)
        if arena.prefetcher is not None:
            counters = arena.prefetcher.counters()
            adopted += counters["adopted"]
            waited += counters["waited"]
        for secret in held:
            secret.close()
        arena.release_reserve()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] / 1000

    return {
        "p50_us": pct(50),
        "p99_us": pct(99),
        "p99.9_us": pct(99.9),
        "max_us": latencies[-1] / 1000,
        "mean_growth_us": statistics.fmean(growth) / 1000 if growth else 0.0,
        "allocations": len(latencies),
        "regions_adopted": adopted,
        "waited_for_prefetch": waited,
    }


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
    results = {
        name: run(name == "on", args.secrets, args.size, args.gap_us / 1e6, args.rounds, args.work)
        for name in ("off", "on")
    }
    if args.json:
        print(json.dumps(results))
        return
    print(
        f"{args.rounds} x {args.secrets} secrets of {args.size} bytes, "
        f"{args.gap_us:g} us of {args.work} work between allocations"
    )
    print(f"{'prefetch':>8} {'p50 us':>8} {'p99 us':>8} {'p99.9 us':>9} {'max us':>8} "
          f"{'growth us':>10} {'adopted':>8} {'waited':>7}")  # fmt: skip
    for name, r in results.items():
        print(
            f"{name:>8} {r['p50_us']:8.1f} {r['p99_us']:8.1f} {r['p99.9_us']:9.1f} "
            f"{r['max_us']:8.1f} {r['mean_growth_us']:10.1f} {r['regions_adopted']:8.0f} "
            f"{r['waited_for_prefetch']:7.0f}"
        )


if __name__ == "__main__":
    main()
