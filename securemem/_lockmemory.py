"""Lock memory securemem did not allocate: a bytearray, an mmap, a NumPy array.

The same per-page counts as the arena (:class:`PageLocks`), one table per
kernel for the whole process, so two buffers that share a page - two small
bytearrays on one heap page, overlapping slices of one array - keep that page
locked until the last handle is released, on POSIX (munlock does not nest) as
on OpenBSD (it does, and still gets exactly one lock per page from us).

Arena memory is refused rather than counted here: an arena keeps its own
counts, and its pages are never shared with memory outside it (each region is
a private mapping of whole pages), so a page is counted by exactly one table.
A ``SecureBytes`` is locked already; there is nothing to add.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from types import TracebackType

from securemem._binding import all_arena_ranges, ffi, fork_generation
from securemem._kernel import Kernel, NativeKernel
from securemem._pagelocks import PageLocks
from securemem._types import Buffer

_tables: weakref.WeakKeyDictionary[Kernel, PageLocks] = weakref.WeakKeyDictionary()
_table_lock = threading.Lock()  # PageLocks is not thread-safe by itself
_native: NativeKernel | None = None


def forget_after_fork() -> None:
    """In a forked child (called by ``_fork``): memory locks are not inherited across
    fork, so the parent's counts say nothing about the child; its lock is fresh too."""
    global _table_lock
    _table_lock = threading.Lock()
    _tables.clear()


def _default_kernel() -> Kernel:
    global _native
    if _native is None:
        _native = NativeKernel()
    return _native


def _same_pages(kernel: Kernel) -> Kernel:
    """The kernel whose counts ``kernel`` shares: every NativeKernel object is the same
    operating system, so they keep one count per page (two tables would each think they
    hold a page that the other's release unlocks)."""
    return _default_kernel() if type(kernel) is NativeKernel else kernel


def _table(kernel: Kernel) -> PageLocks:
    kernel = _same_pages(kernel)
    table = _tables.get(kernel)
    if table is None:
        table = _tables[kernel] = PageLocks(kernel)
    return table


class LockedMemory:
    """A lock on the pages under a buffer; release it (or leave the ``with`` block) to undo.

    While it is held the buffer cannot be resized or freed (the handle holds a
    view of it), so the locked pages stay the buffer's.

    After ``fork`` a child inherits the handle but not the lock (memory locks are not
    inherited). There the handle is inert: it reports itself released, and
    :meth:`release` (or collecting it) only drops its view of the buffer; it never
    touches the child's own locks, including ones the child took on the same pages.
    """

    __slots__ = ("__weakref__", "_address", "_generation", "_kernel", "_length", "_view")

    def __init__(self, view: memoryview, address: int, kernel: Kernel, generation: int) -> None:
        self._view: memoryview | None = view
        self._address = address
        self._length = view.nbytes
        self._kernel = kernel
        self._generation = generation  # the process that took the lock

    @property
    def address(self) -> int:
        """The buffer's first byte."""
        return self._address

    @property
    def nbytes(self) -> int:
        """Bytes of the buffer (the locked pages cover them, rounded out to pages)."""
        return self._length

    @property
    def pages(self) -> tuple[int, ...]:
        """Addresses of the pages this handle holds."""
        if not self._length:
            return ()
        size = self._kernel.page_size
        first = self._address - self._address % size
        return tuple(range(first, self._address + self._length, size))

    @property
    def released(self) -> bool:
        """True once :meth:`release` ran, and in a forked child for a handle of its parent
        (the child never held that lock)."""
        return self._view is None or self._generation != fork_generation()

    def release(self) -> None:
        """Drop this handle's hold; pages no other handle holds are unlocked. Idempotent.

        In a forked child, for a handle inherited from the parent, it unlocks nothing
        (the lock was the parent's) and only lets go of the buffer.
        """
        view, self._view = self._view, None
        if view is None:
            return
        try:
            if self._length and self._generation == fork_generation():
                with _table_lock:
                    _table(self._kernel).release(self._address, self._length)
        finally:
            view.release()

    def __enter__(self) -> LockedMemory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:
        # A forgotten handle must not leave its pages locked for ever.
        with contextlib.suppress(Exception):  # at interpreter exit the modules may be gone
            self.release()

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"<LockedMemory {self._length} bytes, {len(self.pages)} pages {state}>"


def lock_memory(buffer: Buffer, *, kernel: Kernel | None = None) -> LockedMemory:
    """Lock the pages under ``buffer`` (any contiguous buffer) into RAM.

    Returns a :class:`LockedMemory` handle, usable as a context manager. Pages
    shared with other handles stay locked until the last of them is released.
    ``kernel`` is the real one by default (or a ``securemem.testing``
    simulation). Raises :class:`MemoryLockError` when the system refuses, with
    nothing locked; ``ValueError`` for arena memory or a non-contiguous buffer.
    """
    kernel = kernel if kernel is not None else _default_kernel()
    try:
        view = memoryview(buffer)
    except TypeError:
        raise TypeError(
            f"lock_memory() needs an object with the buffer protocol (bytearray, mmap, "
            f"NumPy array, ...), not {type(buffer).__name__}"
        ) from None
    if not view.c_contiguous:
        view.release()
        raise ValueError(
            "lock_memory() needs a C-contiguous buffer; lock the array it is a view of, "
            "or copy it into a contiguous one first"
        )
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    address = int(ffi.cast("uintptr_t", ffi.from_buffer(view))) if view.nbytes else 0
    length = view.nbytes
    # Before the lock: user code runs between the lock and the handle (a kernel's lock(),
    # a signal handler, a finaliser), and a child forked there did not take the lock.
    generation = fork_generation()
    if length:
        # every live arena's mappings (the native core's one registry of arenas)
        for base, size in all_arena_ranges():
            if address < base + size and base < address + length:
                view.release()
                raise ValueError(
                    "lock_memory() was given memory of a securemem arena (a SecureBytes "
                    "or its view): it is locked already and its arena keeps its counts"
                )
        with _table_lock:
            _table(kernel).acquire(address, length)
    return LockedMemory(view, address, kernel, generation)


def locked_pages(kernel: Kernel | None = None) -> dict[int, int]:
    """{page: handles holding it} for memory locked through :func:`lock_memory`."""
    kernel = kernel if kernel is not None else _default_kernel()
    with _table_lock:
        table = _tables.get(_same_pages(kernel))
        return table.locked_pages() if table is not None else {}
