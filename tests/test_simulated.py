"""The arena on every system of the manuals: the real kernel and each simulation.

First the simulated kernel itself is checked against its manual (nesting,
alignment, limits, privilege), then the invariants and the state machine of
tests/test_invariants.py and tests/test_state_machine.py run unchanged on every
kernel.
"""

from __future__ import annotations

import errno
import gc
import mmap
from typing import Any, cast

import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine
from securemem._native import ffi

from securemem import Arena, MemoryLockError, SecureBytes, SecureBytesClosedError
from securemem.testing import SYSTEMS, SimulatedKernel
from tests.conftest import read_raw
from tests.simulated import (
    KERNELS,
    assert_arena_matches_kernel,
    assert_nothing_left,
    kernel_side_locked,
    make_kernel,
)
from tests.test_state_machine import ArenaMachine

PAGE = 4096

# -- the simulated kernel against its manual --------------------------------


@pytest.mark.parametrize("system", SYSTEMS)
def test_lock_does_not_nest_except_on_openbsd(system: str) -> None:
    kernel = SimulatedKernel(system, superuser=True)
    base = kernel.map(4 * PAGE)
    kernel.lock(base, 2 * PAGE)
    kernel.lock(base, 2 * PAGE)
    depth = 2 if system == "openbsd" else 1
    assert kernel.locked_pages() == {base: depth, base + PAGE: depth}
    kernel.unlock(base, 2 * PAGE)
    if system == "openbsd":  # every mlock needs its munlock
        assert kernel.locked_pages() == {base: 1, base + PAGE: 1}
        kernel.unlock(base, 2 * PAGE)
    assert kernel.locked_pages() == {}  # POSIX: one munlock undoes any number of locks
    kernel.unmap(base, 4 * PAGE)
    assert kernel.mapped_ranges() == []


@pytest.mark.parametrize("system", SYSTEMS)
def test_unaligned_address(system: str) -> None:
    kernel = SimulatedKernel(system, superuser=True)
    base = kernel.map(2 * PAGE)
    if system in ("openbsd", "posix", "qnx"):  # must be a page multiple
        with pytest.raises(MemoryLockError) as info:
            kernel.lock(base + 10, 100)
        assert info.value.errno == errno.EINVAL
        assert kernel.locked_pages() == {}
    else:  # Linux and FreeBSD round the address down to its page
        kernel.lock(base + 10, PAGE)
        assert kernel.locked_pages() == {base: 1, base + PAGE: 1}
    kernel.unmap(base, 2 * PAGE)


@pytest.mark.parametrize(
    ("system", "number"),
    [
        ("linux", errno.ENOMEM),
        ("posix", errno.ENOMEM),
        ("openbsd", errno.EAGAIN),
        ("freebsd", errno.ENOMEM),
        ("qnx", errno.ENOMEM),
    ],
)
def test_limit_refuses_with_the_manuals_errno_and_changes_nothing(system: str, number: int) -> None:
    kernel = SimulatedKernel(system, memlock_limit=2 * PAGE, superuser=system == "qnx")
    base = kernel.map(4 * PAGE)
    kernel.lock(base, PAGE)
    with pytest.raises(MemoryLockError) as info:
        kernel.lock(base, 3 * PAGE)
    assert info.value.errno == number
    assert "RLIMIT_MEMLOCK is 8192 bytes (8 KiB)" in str(info.value)
    assert kernel.locked_pages() == {base: 1}, "a failed mlock changes no lock"
    kernel.lock(base, 2 * PAGE)  # the page already locked does not count twice
    kernel.unmap(base, 4 * PAGE)
    assert kernel.locked_pages() == {}, "munmap drops the locks of what it unmaps"


def test_linux_superuser_ignores_the_limit_and_zero_limit_is_eperm() -> None:
    root = SimulatedKernel("linux", memlock_limit=0, superuser=True)
    base = root.map(PAGE)
    root.lock(base, PAGE)
    assert root.locked_pages() == {base: 1}
    user = SimulatedKernel("linux", memlock_limit=0)
    base = user.map(PAGE)
    with pytest.raises(MemoryLockError) as info:
        user.lock(base, PAGE)
    assert info.value.errno == errno.EPERM


def test_openbsd_munlock_of_an_unlocked_page_fails() -> None:
    kernel = SimulatedKernel("openbsd")
    base = kernel.map(2 * PAGE)
    kernel.lock(base, PAGE)
    with pytest.raises(OSError) as info:
        kernel.unlock(base, 2 * PAGE)
    assert info.value.errno == errno.ENOMEM
    assert kernel.locked_pages() == {base: 1}


@pytest.mark.parametrize("system", SYSTEMS)
def test_unmapped_range_is_enomem(system: str) -> None:
    kernel = SimulatedKernel(system, superuser=True)
    base = kernel.map(PAGE)
    kernel.unmap(base, PAGE)
    with pytest.raises(MemoryLockError) as info:
        kernel.lock(base, PAGE)
    assert info.value.errno == errno.ENOMEM


def test_memory_the_process_really_has_counts_as_mapped() -> None:
    kernel = SimulatedKernel("posix")
    with mmap.mmap(-1, 2 * PAGE) as buffer:
        address = int(ffi.cast("uintptr_t", ffi.from_buffer(buffer)))
        kernel.lock(address, 2 * PAGE)
        assert len(kernel.locked_pages()) == 2
        kernel.unlock(address, 2 * PAGE)


def test_calls_are_logged_with_their_errno() -> None:
    kernel = SimulatedKernel("openbsd", memlock_limit=PAGE)
    base = kernel.map(2 * PAGE)
    with pytest.raises(MemoryLockError):
        kernel.lock(base, 2 * PAGE)
    assert [(c.name, c.errno) for c in kernel.calls] == [("mmap", 0), ("mlock", errno.EAGAIN)]
    assert kernel.calls_named("mlock")[0].length == 2 * PAGE


def test_bad_construction_is_explained() -> None:
    with pytest.raises(ValueError, match="system must be one of"):
        SimulatedKernel("windows")
    with pytest.raises(ValueError, match="page_size"):
        SimulatedKernel("linux", page_size=1000)
    assert "openbsd" in repr(SimulatedKernel("openbsd"))


# -- QNX: locking needs superuser -----------------------------------------------


def test_qnx_without_superuser_is_a_clear_eperm() -> None:
    arena = Arena(kernel=SimulatedKernel("qnx"))
    with pytest.raises(MemoryLockError) as info:
        SecureBytes(32, arena=arena)
    assert info.value.errno == errno.EPERM
    message = str(info.value)
    assert "EPERM" in message and "superuser on QNX" in message
    assert arena.locked_pages() == {}
    assert_nothing_left(arena)


def test_qnx_without_superuser_policy_allow_keeps_working_and_says_so() -> None:
    arena = Arena(kernel=SimulatedKernel("qnx"), on_lock_failure="allow")
    secret = SecureBytes(b"still usable", arena=arena)
    assert secret == b"still usable"
    assert arena.stats().unlocked_bytes == PAGE
    secret.close()
    assert_nothing_left(arena)


# -- the invariants, on every kernel ---------------------------------------------


@pytest.mark.parametrize("kernel_name", KERNELS)
def test_1_locked_exactly_while_counted_and_nothing_left(kernel_name: str) -> None:
    arena = Arena(kernel=make_kernel(kernel_name), reserve_pages=2)
    secrets = [SecureBytes(size, arena=arena) for size in (16, 64, 64, 900, 3000, 5000, 70000)]
    for secret in secrets:
        assert all(
            page in kernel_side_locked(arena)
            for page in range(
                secret.address - secret.address % arena.page_size,
                secret.address + len(secret),
                arena.page_size,
            )
        ), "a live secret's page is not locked"
    assert_arena_matches_kernel(arena)
    for secret in secrets[::2]:
        secret.close()
        assert_arena_matches_kernel(arena)
    for secret in secrets[1::2]:
        secret.close()
        assert_arena_matches_kernel(arena)
    assert_nothing_left(arena)


@pytest.mark.parametrize("system", SYSTEMS)
def test_2_one_lock_per_first_holder_one_unlock_per_last(system: str) -> None:
    kernel = SimulatedKernel(system, superuser=True)
    arena = Arena(kernel=kernel, reserve_pages=0)
    neighbours = [SecureBytes(64, arena=arena) for _ in range(PAGE // 64)]  # one full slab
    assert len(kernel.calls_named("mlock")) == 1
    for secret in neighbours[1:]:
        secret.close()
    assert kernel.calls_named("munlock") == [], "closing a neighbour unlocked the page"
    assert len(kernel.locked_pages()) == 1
    neighbours[0].close()
    assert len(kernel.calls_named("munlock")) == 1
    run = SecureBytes(3 * PAGE, arena=arena)
    assert kernel.calls_named("mlock")[-1].length == 3 * PAGE  # one call for the run
    run.close()
    assert kernel.calls_named("munlock")[-1].length == 3 * PAGE
    assert all(call.errno == 0 for call in kernel.calls if call.name in ("mlock", "munlock"))
    assert_nothing_left(arena)


@pytest.mark.parametrize("system", SYSTEMS)
def test_3_4_zeroed_on_release_and_no_reuse_under_a_view(system: str) -> None:
    arena = Arena(kernel=make_kernel(system), reserve_pages=2)
    keeper = SecureBytes(48, arena=arena)
    secret = SecureBytes(b"\xa5" * 48, arena=arena)
    address = secret.address
    stale = secret.view()
    secret.close()
    assert read_raw(address, 48) == bytes(48)
    others = [SecureBytes(b"B" * 48, arena=arena) for _ in range(100)]
    assert address not in {other.address for other in others}
    with pytest.raises(SecureBytesClosedError):
        secret.view()
    stale.release()
    del stale
    gc.collect()
    for other in [*others, keeper]:
        other.close()
    assert_nothing_left(arena)


@pytest.mark.parametrize("system", SYSTEMS)
def test_6_limit_on_every_system_leaves_no_partial_state(system: str) -> None:
    kernel = SimulatedKernel(system, memlock_limit=64 * 1024, superuser=system == "qnx")
    arena = Arena(kernel=kernel, reserve_pages=0)
    kept = [SecureBytes(b"k" * 64, arena=arena) for _ in range(64)]
    before = arena.stats(), arena.mapped_ranges(), kernel.locked_pages()
    with pytest.raises(MemoryLockError) as info:
        SecureBytes(1 << 20, arena=arena)
    assert info.value.errno == (errno.EAGAIN if system == "openbsd" else errno.ENOMEM)
    assert (arena.stats(), arena.mapped_ranges(), kernel.locked_pages()) == before
    assert all(k == b"k" * 64 for k in kept)
    # Density under a 64 KiB limit: the limit holds 16 pages of 64 secrets each.
    many = [SecureBytes(64, arena=arena) for _ in range(64 * 14)]
    assert len(kernel.locked_pages()) == 15
    for secret in kept + many:
        secret.close()
    assert_nothing_left(arena)


def test_larger_simulated_pages() -> None:
    kernel = SimulatedKernel("openbsd", page_size=16384)
    arena = Arena(kernel=kernel, reserve_pages=1)
    secrets = [SecureBytes(64, arena=arena) for _ in range(300)]  # 256 per 16 KiB page
    assert len(kernel.locked_pages()) == 2
    assert all(page % 16384 == 0 for page in kernel.locked_pages())
    for secret in secrets:
        secret.close()
    assert_nothing_left(arena)


# -- the state machine, on every simulated system --------------------------------


class SimulatedArenaMachine(ArenaMachine):
    """tests/test_state_machine.py's machine, with the kernel and prefetch as parameters."""

    system = "posix"
    prefetch = False

    def make_arena(self) -> Arena:
        kernel = SimulatedKernel(self.system, superuser=self.system == "qnx")
        kernel.aio_complete_after_polls = 2  # FreeBSD: queued locks complete a little later
        return Arena(kernel=kernel, region_pages=8, reserve_pages=2, prefetch=self.prefetch)


def _machine(system: str, prefetch: bool) -> type[RuleBasedStateMachine]:
    machine = type(
        f"Machine_{system}_{'prefetch' if prefetch else 'plain'}",
        (SimulatedArenaMachine,),
        {"system": system, "prefetch": prefetch},
    )
    # (cast: hypothesis gives each machine class a TestCase the type system cannot see)
    cast(Any, machine).TestCase.settings = settings(
        max_examples=12, stateful_step_count=25, deadline=None
    )
    return machine


# Linux itself, prefetching or not, runs on the real kernel: tests/test_state_machine.py.
TestPosix = _machine("posix", False).TestCase
TestOpenBSD = _machine("openbsd", False).TestCase
TestFreeBSD = _machine("freebsd", False).TestCase
TestQNX = _machine("qnx", False).TestCase
TestOpenBSDPrefetch = _machine("openbsd", True).TestCase
TestFreeBSDPrefetch = _machine("freebsd", True).TestCase
