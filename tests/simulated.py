"""Shared helpers for tests that run on every simulated system and on the real kernel."""

from __future__ import annotations

from securemem import Arena
from securemem._kernel import Kernel, NativeKernel
from securemem.testing import SYSTEMS, SimulatedKernel
from tests.conftest import kernel_locked_pages

# "native" is this machine's real kernel; the others follow their manuals.
KERNELS = ("native", *SYSTEMS)


def make_kernel(name: str, **options: object) -> Kernel:
    if name == "native":
        return NativeKernel()
    # QNX refuses to lock without superuser: run the arena as a privileged process there.
    options.setdefault("superuser", name == "qnx")
    return SimulatedKernel(name, **options)  # type: ignore[arg-type]


def kernel_side_locked(arena: Arena) -> set[int]:
    """The pages of the arena's regions that the kernel itself says are locked."""
    kernel = arena.kernel
    if isinstance(kernel, SimulatedKernel):
        ranges = arena.mapped_ranges()
        return {
            page
            for page in kernel.locked_pages()
            if any(base <= page < base + length for base, length in ranges)
        }
    return kernel_locked_pages(arena)


def assert_arena_matches_kernel(arena: Arena, kernel_locked: set[int] | None = None) -> None:
    """Invariant 1 on any kernel: locked exactly where the arena holds a count.
    ``kernel_locked``: what ``kernel_side_locked(arena)`` returned just now, if read already."""
    if kernel_locked is None:
        kernel_locked = kernel_side_locked(arena)
    assert kernel_locked == set(arena.locked_pages())
    kernel = arena.kernel
    if isinstance(kernel, SimulatedKernel):
        # Per-page counts mean the kernel never sees a second lock of a page,
        # even where it would nest (OpenBSD).
        assert set(kernel.locked_pages().values()) <= {1}
        assert kernel.violations == []


def assert_nothing_left(arena: Arena) -> None:
    """All secrets closed and the reserve released: no lock, no mapping remains."""
    arena.release_reserve()
    assert arena.locked_pages() == {}
    assert arena.mapped_ranges() == []
    kernel = arena.kernel
    if isinstance(kernel, SimulatedKernel):
        assert kernel.locked_pages() == {}, "a lock outlived every secret (nested?)"
        assert kernel.mapped_ranges() == []
        assert kernel.aio_requests() == []
        assert kernel.violations == []
