"""Guarded secrets: ``SecureBytes(n, guarded=True)``.

A guarded secret gets a mapping of its own, laid out as libsodium's
``sodium_malloc`` does::

    [guard PROT_NONE][ ... unused | canary | data ][guard PROT_NONE]
                     '--------- data pages -------'

The data ends exactly at the trailing guard page, so writing one byte past it
faults at once (SIGSEGV) instead of corrupting a neighbour. A random canary sits
right in front of the data; an underrun that overwrites it is caught when the
secret is released (:class:`CanaryError`, raised after the memory is wiped).
Because the pages belong to this secret alone, their access can be changed:
``protect("noaccess")`` makes any read fault, ``"readonly"`` any write.

The price is memory: at least three pages of address space and one locked page
per secret, where a packed secret shares its page with up to 255 others. Use it
for a few long-lived, high-value keys.
"""

from __future__ import annotations

import contextlib
import secrets
import weakref
from typing import TYPE_CHECKING

from securemem import _fork
from securemem._errors import CanaryError, MemoryLockError, SecureMemoryError
from securemem._kernel import Protection, map_region
from securemem._native import ffi, lib

if TYPE_CHECKING:
    from securemem._arena import Arena

CANARY_SIZE = 16

PROTECTIONS: tuple[Protection, ...] = ("noaccess", "readonly", "readwrite")


class Guarded:
    """The mapping behind one guarded secret (bookkeeping only: no secret in here)."""

    __slots__ = (
        "_canary",
        "address",
        "arena",
        "base",
        "data_length",
        "data_start",
        "generation",
        "length",
        "locked",
        "protection",
        "size",
    )

    def __init__(self, arena: Arena, size: int) -> None:
        kernel = arena.kernel
        page = arena.page_size
        data_pages = -(-(size + CANARY_SIZE) // page)
        self.arena = arena
        self.size = size
        self.length = (data_pages + 2) * page
        # Guard pages, out of core dumps, zeros in a forked child: as every region.
        self.base, wiped_on_fork = map_region(kernel, self.length)
        self.data_start = self.base + page
        self.data_length = data_pages * page
        self.address = self.data_start + self.data_length - size
        self.protection: Protection = "readwrite"
        self.generation = _fork.generation
        self._canary = secrets.token_bytes(CANARY_SIZE)
        self.locked = False
        try:
            try:
                kernel.lock(self.data_start, self.data_length)
                self.locked = True
            except MemoryLockError:
                if arena.on_lock_failure == "raise":
                    raise
            ffi.memmove(ffi.cast("void *", self.address - CANARY_SIZE), self._canary, CANARY_SIZE)
        except BaseException:
            kernel.unmap(self.base, self.length)
            raise
        with arena._lock:
            if not wiped_on_fork:
                arena._fork_wipe_needed = True  # a forked child wipes it itself (see _fork)
            arena.guarded_ranges[self.base] = self.length
            if self.locked:
                arena._guarded_locked += self.data_length
            else:
                arena._guarded_unlocked += self.data_length
                arena._lock_failed()
            arena._live += 1
            arena._in_use += size

    def protect(self, protection: Protection) -> None:
        """Set the access rights of the data pages (guards stay PROT_NONE)."""
        if protection not in PROTECTIONS:
            raise ValueError(
                f"protection must be 'noaccess', 'readonly' or 'readwrite', got {protection!r}"
            )
        self.arena.kernel.protect(self.data_start, self.data_length, protection)
        self.protection = protection

    def wipe(self) -> None:
        """Zero the secret's bytes, whatever their protection, and restore it."""
        previous = self.protection
        if previous != "readwrite":
            self.protect("readwrite")
        self.arena.kernel.wipe(self.address, self.size)
        if previous != "readwrite":
            self.protect(previous)

    def release(self, exporter: object | None) -> None:
        """Wipe the data pages and check the canary; give the mapping back.

        While ``exporter`` (a view of the secret) is alive the mapping stays,
        wiped and readable, so a stale view reads zeros; it goes with the last
        view. Raises :class:`CanaryError` (after wiping) if the canary changed.
        """
        if self.generation != _fork.generation:
            return  # the parent's mapping, inherited zeroed: nothing of ours to free
        arena = self.arena
        if self.protection != "readwrite":
            self.protect("readwrite")
        intact = bool(
            lib.sm_equal(
                ffi.cast("void *", self.address - CANARY_SIZE), self._canary, CANARY_SIZE
            )
        )
        arena.kernel.wipe(self.data_start, self.data_length)
        with arena._lock:
            arena._live -= 1
            arena._in_use -= self.size
        if exporter is None:
            self._unmap()
        else:
            weakref.finalize(exporter, self._unmap)
        if not intact:
            raise CanaryError(
                f"the canary in front of a guarded secret of {self.size} bytes was "
                "overwritten: something wrote before the start of the secret (a buffer "
                "underrun). The secret has been wiped; look for native code writing "
                "through its address with a negative offset."
            )

    def _unmap(self) -> None:
        if self.generation != _fork.generation:
            return
        arena = self.arena
        kernel = arena.kernel
        if self.locked:
            # munmap drops the lock along with the mapping: this unlock only keeps
            # the accounting exact, and its failure must not keep the mapping.
            with contextlib.suppress(SecureMemoryError):
                kernel.unlock(self.data_start, self.data_length)
        try:
            kernel.unmap(self.base, self.length)
        except SecureMemoryError:
            # Releasing never fails for the user (the secret is wiped already):
            # still mapped and counted, retried by Arena.release_reserve().
            arena.guarded_to_unmap.add(self)
            return
        arena.guarded_to_unmap.discard(self)
        with arena._lock:
            arena.guarded_ranges.pop(self.base, None)
            if self.locked:
                arena._guarded_locked -= self.data_length
            else:
                arena._guarded_unlocked -= self.data_length
