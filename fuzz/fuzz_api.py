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


def test_one_input(data: bytes) -> None:
    run_program(data, ARENA)
    if ARENA.stats().allocations:
        gc.collect()
    assert ARENA.stats().allocations == 0, "a secret outlived its program"
    assert_locks_match_kernel(ARENA)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
