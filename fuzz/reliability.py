"""Record the reliability figures for docs/reliability.md.

    python -m fuzz.reliability            # prints the Markdown table
    python -m fuzz.reliability --write    # also rewrites the table in docs/reliability.md

Each figure comes from running the same code the tests run, here with counters:
the fault sweep (tests/test_faults.py), random public-API programs
(fuzz/program.py), the thread/GC load and the memlock limit cycles
(tests/test_load.py) and the SIGINT storm (tests/test_interrupts.py).
A secret is "lost or corrupted" when it no longer holds what was written to it;
a page is "leaked" when it is still locked or mapped after everything was closed.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import random
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from fuzz.program import run_program
from securemem import Arena
from tests import test_faults, test_interrupts, test_load

DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"


def _counted(count: int, noun: str) -> str:
    """``1 wiped slot``, ``3 wiped slots``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def fault_sweep() -> tuple[int, Counter[str], int]:
    failures, by_call = 0, Counter[str]()
    for scenario, call, k, number in test_faults.CASES:
        by_call[call] += 1
        try:
            test_faults.test_fault_leaves_arena_consistent(scenario, call, k, number)
        except AssertionError:
            failures += 1
    return len(test_faults.CASES), by_call, failures


def random_programs(count: int) -> tuple[int, int, int]:
    arena = Arena(region_pages=8, reserve_pages=2)
    rng = random.Random(2026)
    operations = failures = 0
    for _ in range(count):
        program = rng.randbytes(rng.randrange(1, 600))
        try:
            operations += run_program(program, arena).total()
        except AssertionError:
            failures += 1
    gc.collect()
    arena.release_reserve()
    leaked = len(arena.locked_pages()) + len(arena.mapped_ranges())
    return operations, failures, leaked


def run_checked(action: Callable[[], None]) -> str | None:
    """Run a test function; None when every assertion held, else the failure."""
    try:
        action()
    except AssertionError as error:
        return str(error)
    return None


def _outcome(failure: str | None) -> str:
    return "0 corrupted, 0 pages leaked" if failure is None else f"FAILED: {failure}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--programs", type=int, default=5000)
    parser.add_argument("--write", action="store_true", help="update docs/reliability.md")
    args = parser.parse_args()

    cases, by_call, fault_failures = fault_sweep()
    operations, program_failures, program_leaks = random_programs(args.programs)
    load = run_checked(test_load.test_threads_racing_with_gc_and_cross_thread_close)
    cycles = run_checked(test_load.test_fill_to_the_limit_free_and_repeat_returns_to_baseline)
    storm = test_interrupts.sigint_storm()

    calls = ", ".join(f"{call} {count}" for call, count in sorted(by_call.items()))
    rows = [
        ("Faults injected (k-th call failed, each errno of its manual)",
         f"{cases} ({calls}) in {len(test_faults.SCENARIOS)} scenarios "
         f"({', '.join(test_faults.SCENARIOS)})",
         f"{fault_failures} runs inconsistent"),
        ("Random public-API programs (bad arguments, use after close included)",
         f"{args.programs} programs, {operations} operations",
         f"{program_failures} failed, {program_leaks} pages leaked"),
        ("Threads allocating/verifying/closing, racing GC and cross-thread close",
         f"{test_load.THREADS} threads x {test_load.ROUNDS} secrets + closer + collector",
         _outcome(load)),
        ("Fill to RLIMIT_MEMLOCK 64 KiB, free, repeat (no CAP_IPC_LOCK)",
         "20 cycles, VmLck back to baseline each time", _outcome(cycles)),
        ("SIGINT delivered at random points of allocation and release",
         f"{storm['interrupts']} KeyboardInterrupts in {storm['operations']} operations",
         f"0 corrupted; {_counted(storm['slots_stranded'], 'wiped slot')} stranded by the "
         f"{_counted(storm['finalisers_cut'], 'interrupt')} that hit a finaliser (see below)"),
    ]
    table = ["| what | how much | secrets lost or corrupted / pages leaked |", "|---|---|---|"]
    table += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    stamp = (
        f"Recorded {datetime.date.today().isoformat()} on {platform.system()} "
        f"{platform.release()} ({platform.machine()}, {os.cpu_count()} CPUs), "
        f"Python {platform.python_version()}, with `python -m fuzz.reliability`."
    )
    text = "\n".join([stamp, "", *table])
    print(text)
    if args.write:
        content = DOC.read_text()
        content = re.sub(
            r"<!-- figures -->.*<!-- /figures -->",
            f"<!-- figures -->\n{text}\n<!-- /figures -->",
            content,
            flags=re.S,
        )
        DOC.write_text(content)


if __name__ == "__main__":
    main()
