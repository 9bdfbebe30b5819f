"""Locked capacity ahead of need: the arena's next region, prepared in the background.

Growing the arena costs an ``mmap`` and, above all, an ``mlock`` that faults in
every page it locks: the slow part of an allocation that needs a new region.
The :class:`Prefetcher` does that work before it is needed. When the arena's
prefetched (locked, free) pages fall below a low-water mark, it prepares the
next region - mapped, guard pages protected, advised, usable pages locked - and
hands it over when the arena next grows. The mark is half a region by default:
one region is used while the next is locked.

How the lock is done depends on the kernel:

* FreeBSD (``aio_mlock``): the lock is queued from the calling thread and
  returns at once; the kernel's aio daemons do the work. ``EAGAIN`` at enqueue
  (aio limits) falls back to a synchronous lock. The zeroed iocb lives in C
  until collected; the range is not touched while the request is queued.
* The real kernel elsewhere: the native core does it all (:class:`NativePrefetcher`
  is only its face): a native worker thread maps, prepares and locks the next region
  without ever taking the GIL, and the arena adopts it in C with no system call and
  no Python code, so growth does not wait for mlock in the allocating thread.
* Any other kernel (a simulation, a test's fault-injecting kernel): a
  short-lived background thread locks the region through the kernel's methods.

Rule: memory is never handed out while its lock is pending. :meth:`take`
waits for the background work (a thread finishes: mlock returns), or polls a
queued request for up to ``wait_seconds``, then cancels it and lets the arena
lock synchronously; a request the kernel will not cancel is waited for.

Prefetch is best effort and never raises to the user: a refused lock unmaps
the prepared region, and prefetch pauses until the arena's reserve is next
released (the memlock limit is then better spent on secrets). It never starts
when the region would not fit under the memlock limit.

Off by default (``Arena(prefetch=False)``): it locks a whole region ahead,
which spends the memlock limit on empty pages (64 KiB on some systems holds a
quarter of a default region); it starts threads inside a library, which a
forking server may not expect; and most programs hold a few secrets and never
grow past one region. Turn it on for servers that create secrets at a high
rate (see ``benchmarks/prefetch_growth.py``).
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import threading
import time
import weakref
from typing import Literal, Protocol

from securemem._errors import SecureMemoryError
from securemem._kernel import AsyncLockKernel, Kernel, map_region, supports_async_lock

_State = Literal["running", "ready", "failed"]


class _Job:
    """One region being prepared."""

    __slots__ = ("base", "request", "state")

    def __init__(self) -> None:
        self.base = 0  # 0 until mapped
        self.state: _State = "running"
        self.request: object | None = None  # the queued aio_mlock, if any


_live: weakref.WeakSet[Prefetcher] = weakref.WeakSet()


def forget_after_fork() -> None:
    """In a forked child (called by ``_fork``): a thread does not survive fork, so its
    job would never finish, and the condition may have been held at the moment of it."""
    for prefetcher in list(_live):
        prefetcher._after_fork_in_child()


class Prefetcher:
    """Prepares one region of ``pages`` pages (guard pages included) ahead of need.

    Called by the arena under the arena's lock: :meth:`consider` after pages
    were taken, :meth:`take` when a region is needed, :meth:`close` when the
    reserve is released. Counters (:meth:`counters`) tell tests and benchmarks
    what happened.
    """

    def __init__(
        self,
        kernel: Kernel,
        pages: int,
        *,
        low_water: int | None = None,
        wait_seconds: float = 1.0,
    ) -> None:
        if pages < 3:
            raise ValueError(f"a prefetched region needs at least 3 pages, got {pages}")
        self.kernel = kernel
        self.pages = pages
        self.length: int = pages * kernel.page_size
        self.low_water: int = low_water if low_water is not None else max(1, (pages - 2) // 2)
        self.wait_seconds = wait_seconds
        self.mode: Literal["aio", "thread"] = "aio" if supports_async_lock(kernel) else "thread"
        self._cond = threading.Condition()
        self._job: _Job | None = None
        self._paused = False
        self.wiped_on_fork: bool = True  # whether the kernel wipes the last region mapped on fork
        self._counts: dict[str, int] = dict.fromkeys(
            ("started", "adopted", "waited", "cancelled", "sync_fallbacks", "failed"), 0
        )
        _live.add(self)

    # -- what the arena calls ------------------------------------------------

    def consider(self, prefetched_pages: int) -> None:
        """Start preparing the next region when locked free pages run low."""
        job = self._job
        if job is not None:
            if job.state == "running" and job.request is not None:
                self._poll(job)  # collect a finished aio request early; never blocks
            return
        if prefetched_pages < self.low_water:
            self._start()

    def take(self) -> int | None:
        """The base of a prepared region whose usable pages are locked, or None.

        Starts the work when none is under way, and waits for it: a region is
        never handed over while its lock is pending.
        """
        if self._job is None and not self._start():
            return None
        job = self._job
        assert job is not None
        self._await(job)
        self._job = None
        if job.state != "ready":
            return None
        self._counts["adopted"] += 1
        return job.base

    def close(self) -> None:
        """Give back a prepared or pending region (unlock, unmap) and resume after a pause."""
        job, self._job = self._job, None
        self._paused = False
        if job is None:
            return
        self._await(job)
        if job.state == "ready":
            first, usable = self._usable(job.base)
            # munmap drops the lock with the mapping: a refused unlock changes nothing.
            with contextlib.suppress(SecureMemoryError):
                self.kernel.unlock(first, usable)
            try:
                self.kernel.unmap(job.base, self.length)
            except SecureMemoryError:
                self._job = job  # still mapped: the next close() tries again

    def prepared_range(self) -> tuple[int, int] | None:
        """(address, length) of the region mapped ahead of need, if there is one.

        Waits (up to ``wait_seconds``) for a lock still running on the background
        thread, which unmaps the region if the lock fails.
        """
        job = self._job
        if job is None or not job.base:
            return None
        with self._cond:
            self._cond.wait_for(lambda: job.state != "running", timeout=self.wait_seconds)
        return (job.base, self.length) if job.state != "failed" else None

    def counters(self) -> dict[str, int]:
        """How many regions were started, adopted, waited for, cancelled, ..."""
        return dict(self._counts)

    # -- the work --------------------------------------------------------------

    def _usable(self, base: int) -> tuple[int, int]:
        size = self.kernel.page_size
        return base + size, self.length - 2 * size

    def _fits_limit(self) -> bool:
        limit = self.kernel.memlock_limit()
        if limit is None:
            return True
        locked = self.kernel.locked_bytes() or 0
        return locked + self._usable(0)[1] <= limit

    def _start(self) -> bool:
        if self._paused or not self._fits_limit():
            return False
        job = _Job()
        self._job = job
        self._counts["started"] += 1
        if self.mode == "aio":
            self._start_queued(job)
            return True
        # Mapping costs no page faults: do it here, and leave only the mlock (which
        # faults every page in) to the thread. Each return from C into Python needs
        # the GIL, which a busy interpreter hands over only every switch interval
        # (5 ms): the fewer the thread's steps, the sooner it is done.
        try:
            job.base = self._map()
        except SecureMemoryError:
            self._finish(job, "failed")
            return True
        # A bare thread: threading.Thread.start() waits until the thread is running,
        # which on a busy machine costs the allocating thread a scheduler tick.
        try:
            _thread.start_new_thread(self._prepare, (job,))
        except RuntimeError:  # no thread to be had: a job left running would block take()
            self._fail(job)
        return True

    def _map(self) -> int:
        """Map and prepare a region exactly as the arena does (guards, advice)."""
        base, self.wiped_on_fork = map_region(self.kernel, self.length)
        return base

    def _prepare(self, job: _Job) -> None:
        """The background thread: lock every usable page of the mapped region in one call."""
        try:
            self.kernel.lock(*self._usable(job.base))
        except BaseException as error:
            self._fail(job)  # whatever happened, take() must not wait for ever
            if not isinstance(error, SecureMemoryError):
                raise
        else:
            self._finish(job, "ready")

    def _fail(self, job: _Job) -> None:
        """The mapped region cannot be made ready: give it back and mark the job failed.

        Never raises: prefetch runs inside the user's allocations. A region the
        kernel will not unmap holds no secret and no lock; it is left behind.
        """
        with contextlib.suppress(SecureMemoryError):
            self.kernel.unmap(job.base, self.length)
        self._finish(job, "failed")

    def _finish(self, job: _Job, state: _State) -> None:
        with self._cond:
            if state == "failed":
                self._counts["failed"] += 1
                self._paused = True
            job.state = state
            self._cond.notify_all()

    def _start_queued(self, job: _Job) -> None:
        kernel = self.kernel
        assert isinstance(kernel, AsyncLockKernel)
        try:
            job.base = self._map()
        except SecureMemoryError:
            self._finish(job, "failed")
            return
        first, usable = self._usable(job.base)
        try:
            job.request = kernel.lock_async_start(first, usable)
            return
        except SecureMemoryError as error:
            if getattr(error, "errno", None) != errno.EAGAIN:
                # No aio here after all (ENOSYS): threads from now on.
                self.mode = "thread"
        # aio(4) limits reached (or no aio): lock synchronously, as the manual advises.
        self._counts["sync_fallbacks"] += 1
        try:
            kernel.lock(first, usable)
        except SecureMemoryError:
            self._fail(job)
            return
        self._finish(job, "ready")

    def _poll(self, job: _Job) -> bool:
        """Collect a queued request if it is done; True when the job is no longer running."""
        kernel = self.kernel
        assert isinstance(kernel, AsyncLockKernel) and job.request is not None
        if kernel.lock_async_poll(job.request) == errno.EINPROGRESS:
            return False
        self._collect(job)
        return True

    def _collect(self, job: _Job) -> None:
        kernel = self.kernel
        assert isinstance(kernel, AsyncLockKernel) and job.request is not None
        request, job.request = job.request, None
        try:
            kernel.lock_async_finish(request)
        except SecureMemoryError as error:
            if getattr(error, "errno", None) == errno.EINPROGRESS:
                job.request = request  # not done after all: the range stays untouched
                return
            if getattr(error, "errno", None) == errno.ECANCELED:
                self._counts["cancelled"] += 1
            self._fail(job)
            return
        self._finish(job, "ready")

    def _await(self, job: _Job) -> None:
        if job.state != "running":
            return
        self._counts["waited"] += 1
        if job.request is None:  # a thread: mlock returns, so wait for it
            with self._cond:
                while job.state == "running":
                    self._cond.wait()
            return
        kernel = self.kernel
        assert isinstance(kernel, AsyncLockKernel)
        deadline = time.monotonic() + self.wait_seconds
        pause = 0.0002
        while not self._poll(job):
            if time.monotonic() >= deadline and kernel.lock_async_cancel(job.request):
                # Cancelled (or finished meanwhile): collect whichever it was.
                self._collect(job)
                if job.request is None:
                    self._paused = False  # a cancel is not a refusal: keep prefetching
                    return
            time.sleep(pause)
            pause = min(pause * 2, 0.01)

    def _after_fork_in_child(self) -> None:
        self._cond = threading.Condition()
        # Drop any job: a thread is gone, an aio request belongs to the parent, and a
        # ready region is not locked here (locks are not inherited across fork). Its
        # mapping, zero in the child (wipe-on-fork), is left to the child to leak.
        self._job = None


class NativePrefetcher:
    """The face of the native core's prefetch, for an arena on the real kernel.

    The work is done in C (``securemem/_c/core/prefetch.c`` and the arena): this
    object reports on it with the same counters as :class:`Prefetcher`.
    """

    mode: Literal["aio", "thread"] = "thread"

    def __init__(self, arena: _NativeArena, pages: int) -> None:
        self._arena = weakref.ref(arena)  # no cycle: the arena holds this object
        self.pages = pages
        self.wait_seconds: float = 1.0  # the native worker is always waited for: mlock returns

    def counters(self) -> dict[str, int]:
        """How many regions were started, adopted, waited for, failed, ..."""
        arena = self._arena()
        return arena._prefetch_counters() if arena is not None else {}

    def prepared_range(self) -> tuple[int, int] | None:
        """(address, length) of the region locked ahead of need, if there is one (waits for
        the worker's lock to finish)."""
        arena = self._arena()
        return arena._prefetch_prepared() if arena is not None else None


class _NativeArena(Protocol):
    def _prefetch_counters(self) -> dict[str, int]: ...
    def _prefetch_prepared(self) -> tuple[int, int] | None: ...
