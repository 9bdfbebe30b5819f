"""Systematic fault injection through the kernel seam (issue 8).

For each scenario, every call the arena makes to the kernel is failed in turn
(the k-th mmap, mlock, munlock, ..., for every k) with each errno its manual
lists. After each run: the user saw a securemem error or the documented
fallback, every stored secret is intact, the arena's lock counts match the
pages the real kernel reports locked, and once everything is closed nothing
stays mapped or locked. The figures land in docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections import Counter
from collections.abc import Callable

import pytest

from securemem import Arena, KernelError, SecureBytes, SecureMemoryError
from tests.conftest import assert_locks_match_kernel
from tests.faultkernel import MANUAL_ERRNOS, FaultInjectingKernel

Scenario = Callable[[Arena, list[tuple[SecureBytes, bytes]]], None]
SIZES = [64] * 70 + [3000] * 3 + [20_000, 40_000, 300_000] + [16] * 10


def _store(
    arena: Arena, stored: list[tuple[SecureBytes, bytes]], size: int, *, guarded: bool = False
) -> None:
    pattern = (len(stored).to_bytes(4, "little") * (size // 4 + 1))[:size]
    try:
        secret = SecureBytes(pattern, arena=arena, guarded=guarded)
    except SecureMemoryError:
        return  # a clear error to the user; the scenario carries on as a user would
    stored.append((secret, pattern))


def grow(arena: Arena, stored: list[tuple[SecureBytes, bytes]]) -> None:
    for size in SIZES:
        _store(arena, stored, size)


def shrink(arena: Arena, stored: list[tuple[SecureBytes, bytes]]) -> None:
    grow(arena, stored)
    for secret, _ in stored[1::2] + stored[::4]:
        secret.close()
    arena.release_reserve()


def churn(arena: Arena, stored: list[tuple[SecureBytes, bytes]]) -> None:
    for round_ in range(3):
        for size in SIZES[round_::3]:
            _store(arena, stored, size)
        for secret, _ in stored[round_::2]:
            secret.close()


def guarded(arena: Arena, stored: list[tuple[SecureBytes, bytes]]) -> None:
    for size in (1, 64, 4000, 4096, 9000):
        _store(arena, stored, size, guarded=True)
    for secret, _ in stored[::2]:
        secret.close()


def forked(arena: Arena, stored: list[tuple[SecureBytes, bytes]]) -> None:
    """Grow, fork, and grow again in the child, which checks itself and reports by exit status."""
    grow(arena, stored)
    pid = os.fork()
    if pid == 0:  # the child: inherited secrets are closed; new ones must be sound
        status = 1
        try:
            own: list[tuple[SecureBytes, bytes]] = []
            grow(arena, own)
            assert all(secret.closed for secret, _ in stored)
            for secret, pattern in own:
                assert secret == pattern
            assert_locks_match_kernel(arena)
            kernel = arena.kernel
            assert isinstance(kernel, FaultInjectingKernel)
            status = 0 if kernel.injected else 3
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    assert code in (0, 3), "the forked child found its arena inconsistent"
    kernel = arena.kernel
    assert isinstance(kernel, FaultInjectingKernel)
    kernel.injected_in_child = kernel.injected_in_child or code == 0


# scenario -> (what it does, whether its arena prefetches)
SCENARIOS: dict[str, tuple[Scenario, bool]] = {
    "grow": (grow, False),
    "shrink": (shrink, False),
    "churn": (churn, False),
    "guarded": (guarded, False),
    "prefetch": (churn, True),
    "fork": (forked, False),
}


def _calls_made(name: str, *, cleanup: bool = True) -> Counter[str]:
    """The calls scenario ``name`` makes, with (or without) those of closing everything."""
    scenario, prefetch = SCENARIOS[name]
    kernel = FaultInjectingKernel()
    arena = Arena(kernel=kernel, region_pages=4, reserve_pages=2, prefetch=prefetch)
    stored: list[tuple[SecureBytes, bytes]] = []
    scenario(arena, stored)
    made = Counter(kernel.calls)
    for secret, _ in stored:
        secret.close()
    arena.release_reserve()
    return kernel.calls if cleanup else made


def _cases() -> list[tuple[str, str, int, int]]:
    cases = []
    for name in SCENARIOS:
        calls = _calls_made(name)
        if name == "fork":  # the child grows a fresh arena: fail its calls too
            calls = calls + _calls_made("grow", cleanup=False)
        for call, count in sorted(calls.items()):
            for k in range(1, count + 1):
                for number in MANUAL_ERRNOS[call]:
                    cases.append((name, call, k, number))
    return cases


CASES = _cases()


def test_fault_sweep_covers_every_call_the_scenarios_make() -> None:
    calls = {call for _, call, _, _ in CASES}
    assert {"mmap", "munmap", "mlock", "munlock", "madvise", "mprotect"} <= calls


@pytest.mark.parametrize(("scenario", "call", "k", "number"), CASES)
def test_fault_leaves_arena_consistent(scenario: str, call: str, k: int, number: int) -> None:
    run, prefetch = SCENARIOS[scenario]
    kernel = FaultInjectingKernel(call, k, number)
    arena = Arena(kernel=kernel, region_pages=4, reserve_pages=2, prefetch=prefetch)
    stored: list[tuple[SecureBytes, bytes]] = []
    with contextlib.suppress(SecureMemoryError):  # a clear error reached the user: allowed
        run(arena, stored)
    # every secret still open holds what was stored in it
    for secret, pattern in stored:
        if not secret.closed:
            assert secret == pattern
    # the arena's counts agree with the real kernel, and its regions are really mapped
    assert_locks_match_kernel(arena)
    ahead = arena.prefetcher.prepared_range() if arena.prefetcher else None
    mapped = dict(arena.mapped_ranges()) | arena.guarded_ranges | dict([ahead] if ahead else [])
    assert mapped == kernel.mapped
    # the next operation works
    with SecureBytes(b"after the fault", arena=arena) as after:
        assert after == b"after the fault"
    # and once everything is closed, nothing stays locked or mapped. Release
    # never raises: a refused munlock/munmap is kept and retried, so a second
    # release_reserve() (the retry point) must finish the job.
    for secret, _ in stored:
        secret.close()
    arena.release_reserve()
    assert_locks_match_kernel(arena)
    arena.release_reserve()
    assert kernel.injected or kernel.injected_in_child, "the sweep must reach the k-th call"
    assert arena.locked_pages() == {}
    assert arena.mapped_ranges() == [] and kernel.mapped == {}


def test_a_refused_guard_page_says_what_happened_and_what_to_do() -> None:
    arena = Arena(kernel=FaultInjectingKernel("mprotect", 1, errno.ENOMEM))
    with pytest.raises(KernelError) as info:
        SecureBytes(b"k" * 32, arena=arena, guarded=True)
    message = str(info.value)
    assert info.value.errno == errno.ENOMEM
    assert "mprotect of" in message and "ENOMEM" in message
    assert "vm.max_map_count" in message  # the usual cause on Linux, and the remedy
    assert "kk" not in message
    assert arena.mapped_ranges() == [] and arena.locked_pages() == {}
