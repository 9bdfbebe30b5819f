"""The locked arena: regions of whole pages, slabs for small secrets, runs for large ones.

Layout. A *region* is one mapping: a PROT_NONE guard page at each end and
usable pages between. A usable page is free, a *slab* page cut into equal
slots of one size class (small secrets), or part of a *run* of whole pages (a
secret larger than the largest class). Only pages that hold secrets, plus a
small reserve, are locked; the rest of a region is mapped but not locked, so
the memlock limit is spent on secrets, not on empty space.

Locking. Every slab, run and reserved page is one holder in
:class:`PageLocks`; the kernel sees a lock only when a page gets its first
holder and an unlock only when it loses its last. A slab holds its page from
creation to dissolution, so allocating a slot in an existing slab makes no
system call at all.

Bookkeeping (free lists, counts, states) lives in ordinary Python objects, never
in the locked pages: locked memory holds secrets only.

Threads and re-entrancy. One re-entrant lock per arena serialises changes. A
free that arrives while this thread is already inside the arena (a garbage
collection pass triggered mid-allocation runs ``__del__``) or from a weakref
callback is queued in ``_pending`` and applied at the next safe point, never in
the middle of another change.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
import weakref
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from securemem import _fork, _lockmemory
from securemem._errors import AllocationError, MemoryLockError, SecureMemoryError
from securemem._kernel import Kernel, NativeKernel, map_region, physical_memory
from securemem._native import lib
from securemem._pagelocks import PageLocks
from securemem._prefetch import Prefetcher

if TYPE_CHECKING:
    from securemem._guarded import Guarded

LockFailurePolicy = Literal["raise", "warn", "allow"]
Backend = Literal["anonymous", "secretmem"]

SIZE_CLASSES = (16, 32, 64, 128, 256, 512, 1024, 2048)
_LARGEST_CLASS = SIZE_CLASSES[-1]
# size -> index of the smallest class that holds it; a list lookup is the
# cheapest way to classify on the allocation path.
_CLASS_OF_SIZE = [
    next(i for i, c in enumerate(SIZE_CLASSES) if c >= n) for n in range(_LARGEST_CLASS + 1)
]

_FREE, _USED, _GUARD = 0, 1, 2


class _Region:
    """One mapping: guard page, usable pages, guard page."""

    __slots__ = ("base", "length", "reserved", "states", "used")

    def __init__(self, base: int, length: int, pages: int) -> None:
        self.base = base
        self.length = length
        self.states = bytearray(pages)
        self.states[0] = self.states[-1] = _GUARD
        self.used = 0  # pages owned by slabs and runs
        self.reserved = 0  # free pages kept locked for the reserve


class _Slab:
    """A locked page cut into slots of one size class."""

    __slots__ = ("class_index", "free", "listed", "live", "page", "region")

    def __init__(self, region: _Region, page: int, class_index: int, page_size: int) -> None:
        slot = SIZE_CLASSES[class_index]
        self.region = region
        self.page = page
        self.class_index = class_index
        # popped from the end: lowest addresses are handed out first
        self.free = list(range(page + page_size - slot, page - 1, -slot))
        self.live = 0  # slots handed out and not yet released (closed-but-viewed count too)
        self.listed = False  # on the arena's list of slabs with free slots


class _Run:
    """Whole locked pages for one large secret."""

    __slots__ = ("address", "length", "region")

    def __init__(self, region: _Region, address: int, length: int) -> None:
        self.region = region
        self.address = address
        self.length = length


Owner = _Slab | _Run


class Holder(Protocol):
    """What the fast paths hand a slot to (SecureBytes): owner, address and size."""

    _owner: Any
    _address: int
    _size: int


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


class Arena:
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
        if region_pages < 1:
            raise ValueError(f"region_pages must be at least 1, got {region_pages}")
        if reserve_pages < 0:
            raise ValueError(f"reserve_pages cannot be negative, got {reserve_pages}")
        if on_lock_failure not in ("raise", "warn", "allow"):
            raise ValueError(
                f"on_lock_failure must be 'raise', 'warn' or 'allow', got {on_lock_failure!r}"
            )
        if backend not in ("anonymous", "secretmem"):
            raise ValueError(f"backend must be 'anonymous' or 'secretmem', got {backend!r}")
        if backend == "secretmem":
            if kernel is not None:
                raise ValueError("give either kernel= or backend='secretmem', not both")
            from securemem._secretmem import SecretMemKernel

            kernel = SecretMemKernel()
        self.backend: Backend = backend
        self.kernel: Kernel = kernel if kernel is not None else NativeKernel()
        self.page_size = self.kernel.page_size
        self.region_pages = region_pages
        self.reserve_pages = reserve_pages
        self.on_lock_failure: LockFailurePolicy = on_lock_failure
        self._warned = False
        self._physical = physical_memory()
        self._reset_state()
        _fork.track(self)
        # Locks the next region in the background (see _prefetch for why it is off by default).
        self.prefetcher = Prefetcher(self.kernel, region_pages + 2) if prefetch else None
        _lockmemory.register_arena(self)  # lock_memory() refuses this arena's pages

    def _reset_state(self) -> None:
        """Empty bookkeeping: at construction, and in a forked child (see ``_fork``)."""
        self._page_locks = PageLocks(self.kernel)
        self._prefetched: set[int] = set()  # free pages a prefetched region brought in locked
        self._lock = threading.RLock()
        self._busy = False  # this arena is mid-change (re-entrant calls must queue)
        self._regions: list[_Region] = []
        self._partial: list[list[_Slab]] = [[] for _ in SIZE_CLASSES]
        # Locked pages kept free, oldest first: page -> its empty slab, or None
        # for a bare page. Evicting the oldest keeps what a loop just used.
        self._reserve: dict[int, _Slab | None] = {}
        self._unlocked_pages: set[int] = set()  # pages in use that the kernel refused to lock
        # a region or guarded mapping lacks wipe-on-fork: a forked child must wipe it itself
        self._fork_wipe_needed = False
        # Guarded secrets (``_guarded``) have mappings of their own, counted here for stats.
        self._guarded_locked = self._guarded_unlocked = 0
        # base -> length of each guarded secret's own mapping (stats, lock_memory, fork)
        self.guarded_ranges: dict[int, int] = {}
        self.guarded_to_unmap: set[Guarded] = set()  # released guarded mappings munmap refused
        self._pending: deque[tuple[Owner, int]] = deque()
        # id(weakref to a view exporter) -> (that weakref, owner, address)
        self._awaiting: dict[int, tuple[weakref.ref[object], Owner, int]] = {}
        self._live = 0
        self._in_use = 0

    # -- allocation ---------------------------------------------------------

    def allocate(self, size: int) -> tuple[Owner, int]:
        """A zeroed, locked slot of at least ``size`` bytes: (owner, address)."""
        if self._physical and size > self._physical:
            raise AllocationError(
                f"cannot allocate {size} bytes: that is more than this machine's "
                f"{self._physical} bytes of RAM. Ask for less."
            )
        with self._lock:
            self._busy = True
            try:
                if self._pending:
                    self._drain_pending()
                owner: Owner
                if size <= _LARGEST_CLASS:
                    owner, address = self._allocate_slot(_CLASS_OF_SIZE[size])
                else:
                    owner = self._allocate_run(size)
                    address = owner.address
                self._live += 1
                self._in_use += size
                return owner, address
            finally:
                self._busy = False

    def _allocate_slot(self, class_index: int) -> tuple[_Slab, int]:
        partial = self._partial[class_index]
        if partial:
            slab = partial[-1]
            if slab.live == 0:  # an empty slab kept in the reserve comes back into use
                del self._reserve[slab.page]
        else:
            region, page = self._take_pages(1)
            slab = _Slab(region, page, class_index, self.page_size)
            slab.listed = True
            partial.append(slab)
        address = slab.free.pop()
        if not slab.free:
            partial.pop()
            slab.listed = False
        slab.live += 1
        return slab, address

    def _allocate_run(self, size: int) -> _Run:
        length = -(-size // self.page_size) * self.page_size
        region, address = self._take_pages(length // self.page_size)
        return _Run(region, address, length)

    def _take_pages(self, count: int) -> tuple[_Region, int]:
        """Find, lock and mark used ``count`` contiguous free pages, mapping a region if needed."""
        wanted = bytes([_FREE]) * count  # that many free pages in a row
        for region in reversed(self._regions):
            index = region.states.find(wanted)
            if index >= 0:
                break
        else:
            region = self._map_region(max(self.region_pages, count) + 2)
            index = 1
        address = region.base + index * self.page_size
        try:
            from_reserve = self._hold_pages(region, address, count)
        except BaseException:
            self._unmap_if_empty(region)
            raise
        region.states[index : index + count] = bytes([_USED]) * count
        region.used += count
        region.reserved -= from_reserve
        if self.prefetcher is not None:
            self.prefetcher.consider(len(self._prefetched))
        return region, address

    def _pages(self, address: int, count: int) -> range:
        return range(address, address + count * self.page_size, self.page_size)

    def _map_region(self, pages: int) -> _Region:
        prefetcher = self.prefetcher
        if prefetcher is not None and pages == prefetcher.pages:
            prepared = prefetcher.take()  # never a region whose lock is pending
            if prepared is not None:
                return self._adopt_prefetched(prepared, pages, prefetcher.wiped_on_fork)
        base, wiped_on_fork = map_region(self.kernel, pages * self.page_size)
        return self._add_region(base, wiped_on_fork, pages)

    def _add_region(self, base: int, wiped_on_fork: bool, pages: int) -> _Region:
        if not wiped_on_fork:
            self._fork_wipe_needed = True  # a forked child must wipe it itself (see _fork)
        region = _Region(base, pages * self.page_size, pages)
        self._regions.append(region)
        return region

    def _hold_pages(self, region: _Region, address: int, count: int) -> int:
        """Give a new owner one lock hold per page; return how many pages came from the reserve.

        Pages kept in the reserve are already locked: the new owner takes a
        hold (1 -> 2) and the reserve drops its own (2 -> 1), no system call.
        Fresh pages are locked by PageLocks in as few calls as possible.
        """
        try:
            self._acquire_making_room(region, address, count)
        except MemoryLockError:
            if self.on_lock_failure == "raise":
                raise
            return self._hold_unlocked(address, count)
        from_reserve = 0
        for page in self._pages(address, count):
            if self._take_from_reserve(page):
                self._page_locks.release(page, self.page_size)  # 2 -> 1: never a system call
                from_reserve += 1
        return from_reserve

    def _take_from_reserve(self, page: int) -> bool:
        """Take ``page`` out of the reserve or the prefetched pages: True if it was there.

        Such a page is locked already, with one hold: the new owner's from now on.
        """
        if page in self._reserve:
            del self._reserve[page]
            return True
        if page in self._prefetched:
            self._prefetched.remove(page)
            return True
        return False

    def _acquire_making_room(self, region: _Region, address: int, count: int) -> None:
        """Lock the pages; refused at the memlock limit, give idle reserve pages back and retry.

        The reserve exists for speed, never at the cost of a secret: its pages
        are locked but empty. Only pages of other regions are given back, so the
        region being allocated from is never unmapped under the new owner.
        """
        length = count * self.page_size
        try:
            self._page_locks.acquire(address, length)
        except MemoryLockError:
            end = region.base + region.length
            idle = [page for page in self._reserve if not region.base <= page < end]
            if not idle:
                raise
            for page in idle:
                self._evict(page)
            self._page_locks.acquire(address, length)

    def _hold_unlocked(self, address: int, count: int) -> int:
        """Policy warn/allow: hand the pages out unlocked, and say so (once)."""
        from_reserve = 0
        for page in self._pages(address, count):
            if self._take_from_reserve(page):  # still locked: it just changes owner
                from_reserve += 1
            else:
                self._unlocked_pages.add(page)
        self._lock_failed()
        return from_reserve

    def _lock_failed(self) -> None:
        """Policy ``warn``: one warning per arena, pointing at the user's line, never a flood."""
        if self.on_lock_failure == "warn" and not self._warned:
            self._warned = True
            warnings.warn(
                "securemem could not lock memory (RLIMIT_MEMLOCK reached or locking "
                "not permitted); secrets in this arena may be swapped to disk. "
                "securemem.stats().unlocked_bytes shows how much. Raise the limit "
                "(`ulimit -l`) or use on_lock_failure='raise'.",
                RuntimeWarning,
                stacklevel=_caller_stacklevel(),
            )

    # -- the fast paths, safe against KeyboardInterrupt -----------------------
    #
    # Python runs signal handlers (KeyboardInterrupt) only at checkpoints:
    # function entry, backward jumps, and right after a call. The fast paths
    # below first decide (calls allowed), then change state with subscripts,
    # arithmetic and attribute stores only, handing the result straight to the
    # holder, so an interrupt lands before anything changed or after all of it.
    # ``_busy`` is set around the changes so that a garbage collection they
    # trigger queues its frees instead of re-entering. Everything else goes to
    # the general path with signals deferred (``_native.sm_defer_signals``).

    def allocate_into(self, holder: Holder, size: int) -> None:
        """Allocate ``size`` bytes and set ``holder._owner`` and ``holder._address``."""
        if size <= _LARGEST_CLASS:
            with self._lock:
                partial = self._partial[_CLASS_OF_SIZE[size]]
                if partial and not self._busy and not self._pending:
                    slab = partial[-1]
                    free = slab.free
                    self._busy = True
                    address = free[-1]
                    del free[-1]
                    if not free:
                        del partial[-1]
                        slab.listed = False
                    if not slab.live:  # an empty slab kept in the reserve comes back
                        del self._reserve[slab.page]
                    slab.live += 1
                    self._live += 1
                    self._in_use += size
                    holder._owner = slab
                    holder._address = address
                    self._busy = False
                    return
        try:
            lib.sm_defer_signals()
            holder._owner, holder._address = self.allocate(size)
        finally:
            lib.sm_restore_signals()

    def release_from(self, holder: Holder) -> None:
        """Release the (already wiped) slot of ``holder`` and set ``holder._owner`` to None."""
        owner = holder._owner
        if owner is None:
            return
        if type(owner) is _Slab:
            with self._lock:
                free = owner.free
                slots = len(free)
                keep = owner.live > 1 or (
                    len(self._reserve) < self.reserve_pages
                    and owner.page not in self._unlocked_pages  # never reserve an unlocked page
                )
                if keep and owner.listed and not self._busy and not self._pending:
                    self._busy = True
                    if owner.live == 1:  # it empties: keep it, locked, in the reserve
                        self._reserve[owner.page] = owner
                    owner.live -= 1
                    self._live -= 1
                    self._in_use -= holder._size
                    holder._owner = None
                    free[slots:] = (holder._address,)
                    self._busy = False
                    return
        try:
            lib.sm_defer_signals()
            self.free(owner, holder._address, holder._size)
            holder._owner = None
        finally:
            lib.sm_restore_signals()

    # -- release ------------------------------------------------------------

    def free(self, owner: Owner, address: int, size: int) -> None:
        """Return a slot whose bytes the caller has already wiped."""
        with self._lock:
            self._in_use -= size
            if self._busy:
                # A __del__ or callback running inside a change on this thread:
                # apply it once that change is finished.
                self._pending.append((owner, address))
                return
            self._busy = True
            try:
                self._release(owner, address)
                if self._pending:
                    self._drain_pending()
            finally:
                self._busy = False

    def release_after_views(self, holder: Holder, exporter: object) -> None:
        """Release the wiped slot of ``holder`` once ``exporter`` (and every view of it) is gone.

        Until then the slot is not reused, so a stale view reads zeros and never
        another secret. Clears ``holder._owner`` in the same uninterruptible step.
        """
        reference = weakref.ref(exporter, self._exporter_gone)
        key, entry = id(reference), (reference, holder._owner, holder._address)
        with self._lock:
            self._in_use -= holder._size
            self._awaiting[key] = entry
            holder._owner = None

    def _exporter_gone(self, reference: weakref.ref[object]) -> None:
        # Runs whenever the last view dies, on any thread, maybe mid-change:
        # only atomic container operations here.
        entry = self._awaiting.pop(id(reference), None)
        if entry is not None:
            self._pending.append((entry[1], entry[2]))

    def _drain_pending(self) -> None:
        while self._pending:
            owner, address = self._pending.popleft()
            self._release(owner, address)

    def _release(self, owner: Owner, address: int) -> None:
        self._live -= 1
        if type(owner) is _Slab:
            slab = owner
            slab.free.append(address)
            slab.live -= 1
            if not slab.listed:
                slab.listed = True
                self._partial[slab.class_index].append(slab)
            if slab.live == 0:
                self._slab_emptied(slab)
        else:
            assert isinstance(owner, _Run)
            self._return_pages(owner.region, owner.address, owner.length // self.page_size)

    def _slab_emptied(self, slab: _Slab) -> None:
        """Keep an empty slab, locked, in the reserve (reusing it costs nothing), or dissolve it."""
        if slab.page in self._unlocked_pages or self.reserve_pages == 0:
            self._dissolve(slab)
            return
        self._reserve[slab.page] = slab
        self._trim_reserve()

    def _trim_reserve(self) -> None:
        """Evict the oldest reserve pages until the reserve is within its size.

        Callers add their pages first and trim after, so a region whose pages
        are entering the reserve never looks empty and is never unmapped under them.
        """
        # Bounded: a page the kernel refuses to unlock goes back to the end of
        # the reserve, and is retried at the next trim rather than in a loop.
        for _ in range(len(self._reserve) - self.reserve_pages):
            if len(self._reserve) <= self.reserve_pages:  # a nested trim did the work
                break
            self._evict(next(iter(self._reserve)))

    def _evict(self, page: int) -> None:
        """Take one page out of the reserve and give it back to the system."""
        slab = self._reserve.pop(page)
        if slab is not None:
            self._dissolve(slab, keep_in_reserve=False)
            return
        region = self._region_of(page)
        region.reserved -= 1
        self._keep_stuck(region, self._page_locks.release(page, self.page_size))
        self._unmap_if_empty(region)

    def _keep_stuck(self, region: _Region, pages: list[int]) -> None:
        """Pages the kernel would not unlock: still locked, so the reserve holds them.

        Releasing never fails for the user (the secret is already wiped); the
        unlock is retried when the reserve is next trimmed or released.
        """
        for page in pages:
            self._reserve[page] = None
        region.reserved += len(pages)

    def _dissolve(self, slab: _Slab, *, keep_in_reserve: bool = True) -> None:
        self._partial[slab.class_index].remove(slab)
        slab.listed = False
        self._return_pages(slab.region, slab.page, 1, keep_in_reserve=keep_in_reserve)

    def _return_pages(
        self, region: _Region, address: int, count: int, *, keep_in_reserve: bool = True
    ) -> None:
        """Pages whose owner is gone: keep some locked in the reserve, unlock the rest.

        Order matters: the rest is unlocked while the region is surely mapped,
        and only then may trimming the reserve unmap regions.
        """
        index = (address - region.base) // self.page_size
        region.states[index : index + count] = bytes([_FREE]) * count
        region.used -= count
        pages = self._pages(address, count)
        locked = [page for page in pages if page not in self._unlocked_pages]
        self._unlocked_pages.difference_update(pages)
        kept = locked[: self.reserve_pages] if keep_in_reserve else []
        if len(locked) > len(kept):
            self._keep_stuck(region, self._page_locks.release_pages(locked[len(kept) :]))
        for page in kept:
            self._reserve[page] = None  # the owner's hold becomes the reserve's
        region.reserved += len(kept)
        self._trim_reserve()
        self._unmap_if_empty(region)

    def _unmap_if_empty(self, region: _Region) -> None:
        if region.used == 0 and region.reserved == 0 and region in self._regions:
            try:
                self.kernel.unmap(region.base, region.length)
            except SecureMemoryError:
                return  # still mapped, still listed: release_reserve() retries it
            self._regions.remove(region)

    # -- reserve and stats --------------------------------------------------

    def release_reserve(self) -> None:
        """Unlock and unmap every free page kept in the reserve (empty slabs too)."""
        with self._lock:
            self._busy = True
            try:
                if self._pending:
                    self._drain_pending()
                self._release_prefetched()
                for page in list(self._reserve):
                    self._evict(page)
                for region in list(self._regions):
                    self._unmap_if_empty(region)
                for guarded in list(self.guarded_to_unmap):
                    guarded._unmap()
            finally:
                self._busy = False

    def _adopt_prefetched(self, base: int, pages: int, wiped_on_fork: bool) -> _Region:
        """A region the prefetcher mapped, guarded and locked: its usable pages come in held."""
        usable = self._pages(base + self.page_size, pages - 2)
        self._page_locks.adopt(usable.start, len(usable) * self.page_size)
        region = self._add_region(base, wiped_on_fork, pages)
        self._prefetched.update(usable)
        region.reserved += len(usable)
        return region

    def _release_prefetched(self) -> None:
        """Unlock pages locked ahead and not used, and any region still being prepared."""
        if self.prefetcher is not None:
            self.prefetcher.close()
        pages = sorted(self._prefetched)
        self._prefetched.clear()
        for page in pages:
            self._region_of(page).reserved -= 1
        for page in self._page_locks.release_pages(pages):  # refused: the reserve keeps it
            self._keep_stuck(self._region_of(page), [page])

    def _region_of(self, address: int) -> _Region:
        for region in self._regions:
            if region.base <= address < region.base + region.length:
                return region
        raise LookupError(f"address {address:#x} is not in this arena")

    def stats(self) -> ArenaStats:
        """A consistent snapshot of what this arena holds."""
        with self._lock:
            if self._pending and not self._busy:
                self._busy = True
                try:
                    self._drain_pending()
                finally:
                    self._busy = False
            return ArenaStats(
                locked_bytes=self._page_locks.locked_bytes + self._guarded_locked,
                mapped_bytes=sum(region.length for region in self._regions)
                + sum(self.guarded_ranges.values()),
                in_use_bytes=self._in_use,
                allocations=self._live,
                regions=len(self._regions),
                memlock_limit=self.kernel.memlock_limit(),
                reserve_bytes=(len(self._reserve) + len(self._prefetched)) * self.page_size,
                unlocked_bytes=len(self._unlocked_pages) * self.page_size
                + self._guarded_unlocked,
                awaiting_views=len(self._awaiting),
            )

    def mapped_ranges(self) -> list[tuple[int, int]]:
        """(address, length) of every region this arena has mapped, guard pages included."""
        with self._lock:
            return [(region.base, region.length) for region in self._regions]

    def locked_pages(self) -> dict[int, int]:
        """{page address: holders} for every page this arena keeps locked."""
        with self._lock:
            return self._page_locks.locked_pages()


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
