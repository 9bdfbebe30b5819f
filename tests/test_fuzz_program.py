"""The fuzz program interpreter, driven by hypothesis so the harness cannot rot."""

from __future__ import annotations

import gc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.program import run_program
from securemem import Arena
from tests.conftest import assert_locks_match_kernel

ARENA = Arena(region_pages=8, reserve_pages=2)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=1, max_size=400))
def test_random_programs_keep_the_arena_sound(program: bytes) -> None:
    run_program(program, ARENA)
    gc.collect()
    assert ARENA.stats().allocations == 0
    assert_locks_match_kernel(ARENA)


def test_the_program_reaches_every_operation() -> None:
    program = bytes(b for op in range(14) for b in (op, 0, 7, 0, 3, 1, 2, 3))
    assert run_program(program * 3, ARENA) >= 14
