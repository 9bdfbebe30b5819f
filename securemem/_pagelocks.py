"""Per-page lock counts, so that locking nests on every system.

``munlock`` does not nest on POSIX and Linux: one call unlocks a page however
often it was locked, which unlocks the neighbours of a freed secret that share
its page. On OpenBSD it does nest. Counting holders per page and telling the
kernel only about 0 -> 1 (lock) and 1 -> 0 (unlock) transitions gives the same,
correct behaviour everywhere. Pure logic over the :class:`Kernel` interface.
"""

from __future__ import annotations

from collections.abc import Iterable

from securemem._errors import SecureMemoryError
from securemem._kernel import Kernel


def coalesce_runs(pages: Iterable[int], page_size: int) -> list[tuple[int, int]]:
    """Coalesce sorted page addresses into (address, length) runs: one syscall each."""
    runs: list[tuple[int, int]] = []
    for page in pages:
        if runs and runs[-1][0] + runs[-1][1] == page:
            runs[-1] = (runs[-1][0], runs[-1][1] + page_size)
        else:
            runs.append((page, page_size))
    return runs


class PageLocks:
    """How many holders each page has; the kernel sees only edges 0 <-> 1.

    Not thread-safe by itself: the arena serialises calls.
    """

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self._page_size = kernel.page_size
        self._counts: dict[int, int] = {}

    def _pages(self, address: int, length: int) -> range:
        size = self._page_size
        first = address - address % size
        return range(first, address + length, size)

    def acquire(self, address: int, length: int) -> None:
        """Add one holder to every page of the range, locking pages that had none.

        On failure nothing changes: pages locked by this call are unlocked again
        and the counts are as before (invariant: no partial state).
        """
        counts = self._counts
        pages = self._pages(address, length)
        fresh = [page for page in pages if page not in counts]
        locked: list[tuple[int, int]] = []
        try:
            for start, size in coalesce_runs(fresh, self._page_size):
                self._kernel.lock(start, size)
                locked.append((start, size))
        except BaseException:
            for start, size in locked:
                self._kernel.unlock(start, size)
            raise
        for page in pages:
            counts[page] = counts.get(page, 0) + 1

    def adopt(self, address: int, length: int) -> None:
        """Count one holder on pages someone already locked (the prefetcher), without a call.

        The pages must have had no holder: their lock is the 0 -> 1 edge, done ahead.
        """
        pages = self._pages(address, length)
        if any(page in self._counts for page in pages):
            raise RuntimeError("adopted pages already have holders: their lock would be doubled")
        self._counts.update(dict.fromkeys(pages, 1))

    def release(self, address: int, length: int) -> list[int]:
        """Remove one holder from every page of the range, unlocking pages left with none.

        Returns the pages the kernel refused to unlock (see :meth:`release_pages`).
        """
        return self.release_pages(self._pages(address, length))

    def release_pages(self, pages: Iterable[int]) -> list[int]:
        """Remove one holder from each page (ascending page addresses).

        Pages left with no holder are unlocked, contiguous ones in one call.
        Returns the pages the kernel refused to unlock: they keep one holder
        (they are still locked) and the caller decides who holds them.
        """
        counts = self._counts
        pages = list(pages)
        for page in pages:
            if counts.get(page, 0) <= 0:
                raise RuntimeError(f"page {page:#x} released more often than acquired")
        emptied: list[int] = []
        for page in pages:
            count = counts[page] - 1
            if count:
                counts[page] = count
            else:
                del counts[page]
                emptied.append(page)
        still_locked: list[int] = []
        for start, size in coalesce_runs(emptied, self._page_size):
            try:
                self._kernel.unlock(start, size)
            except SecureMemoryError:
                stuck = range(start, start + size, self._page_size)
                counts.update(dict.fromkeys(stuck, 1))
                still_locked.extend(stuck)
        return still_locked

    def count(self, page: int) -> int:
        """Holders of the page that contains ``page``."""
        return self._counts.get(page - page % self._page_size, 0)

    def locked_pages(self) -> dict[int, int]:
        """A copy of {page address: holders} for every page with at least one."""
        return dict(self._counts)

    @property
    def locked_bytes(self) -> int:
        """Bytes in pages that have at least one holder."""
        return len(self._counts) * self._page_size
