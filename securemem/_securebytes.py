"""SecureBytes: the one type users hold, a fixed-size secret in locked memory.

The type is native (``securemem._core.SecureBytesBase``): construction, every
read and write, comparison, wipe, close, the buffer protocol and deallocation
are C, each validating the secret and touching its memory in one step. This
Python subclass adds what is naturally Python: documentation, constructors that
read files or decode text, and context managers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from securemem._binding import SecureBytesBase
from securemem._kernel import Protection
from securemem._secretfile import read_secret_file

if TYPE_CHECKING:
    from securemem._arena import Arena

Buffer = Any  # any object with the buffer protocol (bytes, bytearray, memoryview, SecureBytes)


def as_byte_view(data: object) -> memoryview:
    """A flat, one-byte-per-item view of a bytes-like object (a SecureBytes too), no copy."""
    view = memoryview(data)  # type: ignore[arg-type]
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view



class SecureBytes(SecureBytesBase):
    """A fixed-size, mutable secret held in locked memory and wiped on release.

    ``SecureBytes(32)`` is 32 zero bytes; ``SecureBytes(data)`` copies any
    bytes-like object in (the source is left as it is: wipe it yourself if you
    own it). The memory is locked into RAM, kept out of core dumps, reads as
    zeros in a forked child, and is zeroed by :meth:`wipe`, :meth:`close`, the
    end of a ``with`` block, or garbage collection.

    It never reveals its content on its own: ``repr``/``str`` show the size and
    state, ``hash`` and ``pickle`` refuse, comparison is constant-time. To read
    or write it, use indexing, slicing (a slice is a new SecureBytes), or
    :meth:`view` for a memoryview over the locked bytes.

    ``guarded=True`` gives the secret pages of its own between PROT_NONE guard
    pages, right-aligned so one byte past the end faults, with a canary filling
    the rest of its pages, checked on close, on release and by :meth:`check`;
    only such a secret can :meth:`protect` its pages. It costs a locked page and
    three pages of address space: keep it for a few high-value keys (slices and
    copies of it are ordinary packed secrets). In a forked child, every
    SecureBytes of the parent reports itself closed.

    It is a buffer: ``hashlib.sha256(secret)``, ``hmac.new(secret, ...)``,
    ``AESGCM(secret)``, ``os.write(fd, secret)`` and ``memoryview(secret)``
    read the locked bytes in place (:meth:`view` is the same as
    ``memoryview(secret)``). ``bytes(secret)`` is an explicit copy into ordinary,
    swappable memory, made through the buffer in one step: do it only when an
    API insists on ``bytes``. ``x in secret`` is refused (a search leaks timing).
    """

    __slots__ = ()

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        max_size: int = 1 << 20,
        strip_newline: bool = False,
        arena: Arena | None = None,
    ) -> SecureBytes:
        """A key or password file read straight into locked memory (no ``bytes`` copy).

        ``ValueError`` if it holds more than ``max_size`` bytes; ``strip_newline=True``
        drops one trailing ``\\n`` or ``\\r\\n`` (off by default: a binary key may end in
        that byte); warns with :class:`~securemem.InsecureFileWarning` if the file's group
        or other users may read it. Pipes and ``/dev/stdin`` work too.
        """
        return read_secret_file(
            cls, path, max_size=max_size, strip_newline=strip_newline, arena=arena
        )

    def __iter__(self) -> Iterator[int]:
        """The bytes one by one, each read checked (prefer the buffer: ``memoryview(s)``)."""
        for index in range(len(self)):
            yield self[index]

    @contextlib.contextmanager
    def accessible(self, protection: Protection = "readonly") -> Iterator[SecureBytes]:
        """Open a guarded secret for the ``with`` block, then restore its protection.

        For example::

            key.protect("noaccess")
            with key.accessible("readonly"):
                use(key)
            # noaccess again here, even if the block raised
        """
        previous = self.protection
        self.protect(protection)
        try:
            yield self
        finally:
            if not self.closed:
                self.protect(previous)
