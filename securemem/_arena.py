"""The Python face of an arena: options (checked), stats, prefetch, the default arena.

The allocator itself is native (``securemem._core``, see docs/design.md): regions
of whole pages with a guard page at each end, slabs of one size class for small
secrets, runs of whole pages for large ones, a lock count per page (the kernel
sees one lock per 0 -> 1 and one unlock per 1 -> 0), a reserve of locked free
pages, guarded mappings. Its bookkeeping lives outside the locked pages and is
changed only inside native calls, so no Python code (a user's hook, another
thread, a signal handler) ever runs in the middle of a change.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import Literal

from securemem._binding import ArenaCore, set_default_factory
from securemem._kernel import Kernel, NativeKernel
from securemem._prefetch import NativePrefetcher, Prefetcher

LockFailurePolicy = Literal["raise", "warn", "allow"]
Backend = Literal["anonymous", "secretmem"]

SIZE_CLASSES = (16, 32, 64, 128, 256, 512, 1024, 2048)
_POLICIES: tuple[LockFailurePolicy, ...] = ("raise", "warn", "allow")

@dataclass(frozen=True)
class ArenaStats:
    """A snapshot of an arena. Locked is reported apart from used and mapped."""

    locked_bytes: int
    """Bytes in pages locked into RAM by this arena (secrets and reserve)."""
    mapped_bytes: int
    """Bytes mapped by this arena, guard pages included."""
    in_use_bytes: int
    """Bytes of live secrets, as asked for (before rounding to a slot)."""
    allocations: int
    """Live secrets, counting closed ones whose memory still has views open."""
    regions: int
    """Mappings the arena holds."""
    memlock_limit: int | None
    """The soft RLIMIT_MEMLOCK in bytes, None when unlimited."""
    reserve_bytes: int
    """Locked bytes kept free so that an alloc/free loop makes no system call."""
    unlocked_bytes: int
    """Bytes holding secrets that could not be locked (policy ``warn``/``allow``)."""
    awaiting_views: int
    """Closed secrets, already wiped, whose slots wait for their last view to go."""


class Arena(ArenaCore):
    """A pool of locked memory that :class:`SecureBytes` allocate from.

    ``kernel`` is the operating system to use (the real one by default, or a
    ``securemem.testing.SimulatedKernel``). ``region_pages`` is how many pages
    one mapping holds; ``reserve_pages`` how many free pages stay locked so that
    an alloc/free loop does not lock and unlock on every call.
    ``on_lock_failure`` decides what happens when pages cannot be locked:
    ``"raise"`` a :class:`MemoryLockError` (default), ``"warn"`` once and keep
    the secret in unlocked memory, or ``"allow"`` silently; stats report what is
    unlocked either way.
    ``backend="secretmem"`` (Linux 5.14+) maps regions from memfd_secret, out of
    the kernel's own view (see ``_secretmem``): the kernel locks and charges
    whole regions at map time, so keep ``region_pages`` small under a small
    limit, and a refused region raises :class:`MemoryLockError` whatever the
    policy. It raises :class:`KernelError` naming the kernel requirement where
    memfd_secret is missing.
    """

    prefetcher: Prefetcher | NativePrefetcher | None
    """What locks the next region ahead of need (``prefetch=True``), or None."""

    def __init__(
        self,
        *,
        kernel: Kernel | None = None,
        region_pages: int = 64,
        reserve_pages: int = 4,
        on_lock_failure: LockFailurePolicy = "raise",
        backend: Backend = "anonymous",
        prefetch: bool = False,
    ) -> None:
        region_pages = _count("region_pages", region_pages, minimum=1)
        reserve_pages = _count("reserve_pages", reserve_pages, minimum=0)
        if not isinstance(on_lock_failure, str):
            raise TypeError(
                f"on_lock_failure must be a str ('raise', 'warn' or 'allow'), "
                f"not {type(on_lock_failure).__name__}"
            )
        if on_lock_failure not in _POLICIES:
            raise ValueError(
                f"on_lock_failure must be 'raise', 'warn' or 'allow', got {on_lock_failure!r}"
            )
        if not isinstance(backend, str):
            raise TypeError(
                f"backend must be a str ('anonymous' or 'secretmem'), not {type(backend).__name__}"
            )
        if backend not in ("anonymous", "secretmem"):
            raise ValueError(f"backend must be 'anonymous' or 'secretmem', got {backend!r}")
        if type(prefetch) is not bool:
            raise TypeError(
                f"prefetch must be True or False (a bool), not {type(prefetch).__name__}: "
                "options are checked, not truth-tested"
            )
        if kernel is not None and not isinstance(kernel, Kernel):
            raise TypeError(
                f"kernel must be a securemem kernel (NativeKernel, or a "
                f"securemem.testing.SimulatedKernel), not {type(kernel).__name__}"
            )
        if backend == "secretmem":
            if kernel is not None:
                raise ValueError("give either kernel= or backend='secretmem', not both")
            from securemem._secretmem import SecretMemKernel

            kernel = SecretMemKernel()
        chosen: Kernel = kernel if kernel is not None else NativeKernel()
        self.backend: Backend = backend
        self.region_pages = region_pages
        self.reserve_pages = reserve_pages
        self.on_lock_failure: LockFailurePolicy = on_lock_failure
        super().__init__(
            chosen,
            chosen.page_size,
            region_pages,
            reserve_pages,
            _POLICIES.index(on_lock_failure),
            type(chosen) is NativeKernel,  # the C shims directly; any other through its methods
            backend == "secretmem",
        )
        # Locks the next region in the background (see _prefetch for why it is off by default).
        if prefetch and type(chosen) is NativeKernel:
            # All in C: a native worker locks the next region, the arena adopts it.
            self._enable_native_prefetch()
            self.prefetcher = NativePrefetcher(self, region_pages + 2)
        elif prefetch:
            self.prefetcher = Prefetcher(chosen, region_pages + 2)

    def _warn_lock_failed(self) -> None:
        """Policy ``warn``: one warning per arena, pointing at the user's line, never a flood.

        Called by the native core once the allocation that could not lock is complete.
        """
        warnings.warn(
            "securemem could not lock memory (RLIMIT_MEMLOCK reached or locking "
            "not permitted); secrets in this arena may be swapped to disk. "
            "securemem.stats().unlocked_bytes shows how much. Raise the limit "
            "(`ulimit -l`) or use on_lock_failure='raise'.",
            RuntimeWarning,
            stacklevel=_caller_stacklevel(),
        )

    def stats(self) -> ArenaStats:
        """A consistent snapshot of what this arena holds."""
        locked, mapped, in_use, live, regions, reserve, unlocked, awaiting = self._core_stats()
        return ArenaStats(
            locked_bytes=locked,
            mapped_bytes=mapped,
            in_use_bytes=in_use,
            allocations=live,
            regions=regions,
            memlock_limit=self.kernel.memlock_limit(),
            reserve_bytes=reserve,
            unlocked_bytes=unlocked,
            awaiting_views=awaiting,
        )

    def __repr__(self) -> str:
        return (
            f"<Arena backend={self.backend!r} kernel={type(self.kernel).__name__} "
            f"region_pages={self.region_pages} reserve_pages={self.reserve_pages}>"
        )


def _count(name: str, value: object, *, minimum: int) -> int:
    """An int option: TypeError for another type (bool and float included), ValueError below
    ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        if minimum == 0:
            raise ValueError(f"{name} cannot be negative, got {value}")
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside securemem."""
    package = os.path.dirname(__file__)
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.dirname(frame.f_code.co_filename) == package:
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


_default: Arena | None = None
_default_lock = threading.Lock()


def default_arena() -> Arena:
    """The process-wide arena on the real kernel, made on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Arena()
    return _default


def reset_after_fork() -> None:
    """In a forked child: the lock may have been held by another thread of the parent."""
    global _default_lock
    _default_lock = threading.Lock()


set_default_factory(default_arena)
