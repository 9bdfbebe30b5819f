"""The fuzz program interpreter, driven by hypothesis so the harness cannot rot."""

from __future__ import annotations

import gc
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.program import OPERATIONS, run_program
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


# One of each operation, in an order that gives each a secret to act on. A number argument
# is two bytes (big-endian, reduced modulo its limit); a blob is a number, then its bytes.
EVERY_OPERATION = b"".join(
    [
        bytes([0, 0, 0, 100]),  # allocate 100 bytes: A
        bytes([1, 0, 10]) + b"0123456789",  # allocate from a 10-byte buffer: B
        bytes([2, 0, 0, 0, 5, 7]),  # A[3] = 7
        bytes([3, 0, 0, 0, 1, 0, 9]),  # A[0:8]
        bytes([4, 0, 0, 0, 2, 0, 3]) + b"abc" + bytes([0]),  # A[2:5] = b"abc"
        bytes([5, 0, 0, 0, 4, 9]),  # A.view()[4] = 9
        bytes([6, 0, 1]),  # B.wipe()
        bytes([9, 0, 1, 0, 10]) + bytes(10),  # B == bytes(10)
        bytes([10, 0, 0]),  # copy.copy(A)
        bytes([7, 0, 1, 1]),  # B.close(), twice
        bytes([11, 0, 0]),  # B[0] = 1 after close
        bytes([8, 0, 0]),  # drop A without closing
        bytes([12, 13]),  # gc.collect(); the arena's count
    ]
)


def test_the_program_reaches_every_operation() -> None:
    assert run_program(EVERY_OPERATION, ARENA) == Counter(range(OPERATIONS))
    assert ARENA.stats().allocations == 0
