"""atheris harness: random programs of public-API calls (see program.py).

    python fuzz/fuzz_api.py -atheris_runs=20000          # the short run CI does
    python fuzz/fuzz_api.py -max_total_time=3600 corpus/ # a long run

After every program the arena must hold nothing: all secrets closed, nothing
locked (the reserve aside) and lock counts equal to the kernel's locked pages.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import atheris  # type: ignore[import-untyped]  # (atheris ships no type hints)

# Run as a script from anywhere: the repository root makes `fuzz.program` importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports():
    import securemem
    from fuzz.program import run_program

from tests.conftest import assert_locks_match_kernel  # the test suite's own check

ARENA = securemem.Arena(region_pages=8, reserve_pages=2)
# Reading /proc/self/smaps costs ~10 ms, a program far less: compare with the kernel every
# KERNEL_CHECK_EVERY inputs. A lock count gone wrong stays wrong, so it is still caught.
KERNEL_CHECK_EVERY = 50
_inputs_run = 0


def test_one_input(data: bytes) -> None:
    run_program(data, ARENA)
    if ARENA.stats().allocations:
        gc.collect()
    assert ARENA.stats().allocations == 0, "a secret outlived its program"
    global _inputs_run
    _inputs_run += 1
    if _inputs_run % KERNEL_CHECK_EVERY == 1:  # the first input, then every 50th
        assert_locks_match_kernel(ARENA)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    # The programs call gc.collect(): leave the modules imported so far (pytest, hypothesis,
    # cryptography) out of every collection, or the full collections dominate the run.
    gc.freeze()
    atheris.Fuzz()
