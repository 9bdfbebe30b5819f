"""Fork safety: what a forked child keeps of its parent's secrets (nothing).

Three facts shape this module:

* The kernel already zeroes every arena region and guarded secret's mapping in
  a child (``MADV_WIPEONFORK`` on Linux 4.14+, ``minherit(INHERIT_ZERO)`` on the
  BSDs); memfd_secret ones are not inherited at all (``MADV_DONTFORK``), and the
  child maps zero pages where they were.
* Memory locks are not inherited across fork (mlock(2)): the parent's lock
  counts say nothing true about the child.
* Another thread of the parent may have been inside an arena at the moment of
  the fork; its half-made change and its held lock are copied into the child.

So, in the child, right after fork (``os.register_at_fork``):

1. :data:`generation` goes up by one. A :class:`SecureBytes` remembers the
   generation it was made in, and one made before the fork reports itself
   closed, refuses every use, and its ``close()`` touches nothing: the memory
   is the parent's. Checking an int is all the hot path pays.
2. Every arena *abandons* its regions and starts empty (fresh lock, fresh
   counts). The abandoned regions stay mapped, so a memoryview taken before the
   fork keeps reading zeros instead of crashing; they are never reused or
   unlocked, and cost the child address space only (wiped pages are not
   populated until touched). Where the kernel could not promise wipe-on-fork,
   the child wipes them itself, guarded secrets' mappings included.
3. New secrets in the child get new pages, locked by the child.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from typing import TYPE_CHECKING

from securemem._errors import SecureMemoryError
from securemem._native import ffi, lib

if TYPE_CHECKING:
    from securemem._arena import Arena

generation = 0
"""How many forks this process is away from the one that imported securemem."""

_arenas: weakref.WeakSet[Arena] = weakref.WeakSet()


def track(arena: Arena) -> None:
    """Reset ``arena`` in every forked child (called by ``Arena.__init__``)."""
    _arenas.add(arena)


def _abandon(arena: Arena) -> None:
    """Forget the parent's mappings of ``arena``; wipe them where the kernel did not.

    Regions and guarded secrets' mappings alike: each is a guard page, data
    pages, a guard page. The bookkeeping is reset even if a wipe fails.
    """
    kernel = arena.kernel
    size = arena.page_size
    regions = [(region.base, region.length) for region in arena._regions]
    guarded = list(arena.guarded_ranges.items())
    try:
        if arena.backend == "secretmem":
            # memfd_secret mappings are not inherited at all (MADV_DONTFORK): put
            # zero pages where they were, so a view from before the fork reads zeros.
            # (Never a wipe: were such a shared mapping inherited, it would wipe the parent's.)
            for base, length in regions + guarded:
                lib.sm_map_zero_at(ffi.cast("void *", base), length)
        elif arena._fork_wipe_needed:
            for base, length in regions:
                kernel.wipe(base + size, length - 2 * size)  # between the guard pages
            for base, length in guarded:
                # The parent may have protected it (protect("noaccess")): open it first,
                # and where that is refused leave it, since a wipe would fault.
                with contextlib.suppress(SecureMemoryError):
                    kernel.protect(base + size, length - 2 * size, "readwrite")
                    kernel.wipe(base + size, length - 2 * size)
    finally:
        arena._reset_state()


def _after_fork_in_child() -> None:
    global generation
    generation += 1
    from securemem import _arena

    _arena._default_lock = threading.Lock()  # may have been held by another parent thread
    for arena in list(_arenas):
        # A failed wipe leaves parent bytes in the child's memory; nothing the
        # child can do about it, and the generation check still keeps every
        # inherited secret closed.
        with contextlib.suppress(Exception):
            _abandon(arena)


os.register_at_fork(after_in_child=_after_fork_in_child)
