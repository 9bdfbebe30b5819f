"""SecureBytes: the one type users hold, a fixed-size secret in locked memory.

The type is native (``securemem._core.SecureBytesBase``, named
``securemem.SecureBytes``): construction, every read and write, comparison, wipe,
close, the buffer protocol and deallocation are C, each validating the secret and
touching its memory in one step. The class below holds what is naturally Python
(documentation, constructors that read files or decode text, context managers);
at import its methods are attached to the native type, and ``SecureBytes`` *is*
the native type: a Python subclass would cost every secret garbage-collector
tracking and CPython's generic subtype allocator and deallocator.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from securemem import _codecs
from securemem._binding import SecureBytesBase, ffi, lib
from securemem._kernel import Protection
from securemem._secretfile import read_secret_file
from securemem._types import Buffer

if TYPE_CHECKING:
    from securemem._arena import Arena



def as_byte_view(data: object) -> memoryview:
    """A flat, one-byte-per-item view of a bytes-like object (a SecureBytes too), no copy."""
    view = memoryview(data)  # type: ignore[arg-type]
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def writable_byte_view(data: object, who: str) -> memoryview:
    """A flat byte view of a buffer that may be wiped; TypeError naming why not."""
    if isinstance(data, (str, int)) or data is None:
        raise TypeError(f"{who}() takes a writable bytes-like object, not {type(data).__name__}")
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{who}() takes a writable bytes-like object, not {type(data).__name__}"
        ) from None
    if view.readonly:
        view.release()
        raise TypeError(
            f"{who}() wipes its source, and a read-only {type(data).__name__} cannot be "
            "wiped (Python cannot clear a bytes object). Read the secret into a "
            "bytearray (or straight into a SecureBytes) instead, or copy it with "
            "SecureBytes(data) knowing the original stays in memory."
        )
    if not view.c_contiguous:
        view.release()
        raise TypeError(f"{who}() needs a contiguous buffer: it copies and wipes it in one piece")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def wipe_view(view: memoryview) -> None:
    """Zero a writable, contiguous byte view (what writable_byte_view returns)."""
    if view.nbytes:
        lib.sm_wipe(ffi.from_buffer(view, require_writable=True), view.nbytes)



# Type checkers see the class below as what it becomes: the native type with these methods.
if TYPE_CHECKING:
    _MethodHolder = SecureBytesBase
else:
    _MethodHolder = object


class SecureBytes(_MethodHolder):
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

    It is a buffer: ``hashlib.sha256(secret)``, ``hmac.digest(secret, ...)``,
    ``AESGCM(secret)``, ``os.write(fd, secret)`` and ``memoryview(secret)``
    read the locked bytes in place (:meth:`view` is the same as
    ``memoryview(secret)``). ``bytes(secret)`` is an explicit copy into ordinary,
    swappable memory, made through the buffer in one step: do it only when an
    API insists on ``bytes``. ``x in secret`` is refused (a search leaks timing).
    ``hmac.new(secret, ...)`` refuses it (CPython's ``hmac`` checks for ``bytes``
    or ``bytearray`` itself): use ``hmac.digest`` or cryptography's ``HMAC``.
    """

    __slots__ = ()

    @classmethod
    def take(
        cls, buffer: Buffer, *, arena: Arena | None = None, guarded: bool = False
    ) -> SecureBytes:
        """Copy a writable buffer into locked memory, then wipe the buffer (zeros).

        For a ``bytearray``, a writable ``memoryview``, an ``array`` or an ``mmap``:
        the secret then exists only here. A read-only source (``bytes``, a read-only
        ``memoryview``) raises ``TypeError``: it cannot be wiped. If the copy fails
        (e.g. :class:`MemoryLockError`) the buffer is left untouched.
        """
        if isinstance(buffer, SecureBytes):
            raise TypeError(
                "SecureBytes.take() moves a buffer into locked memory; this one is there "
                "already. Use secret[:] for a copy."
            )
        view = writable_byte_view(buffer, "SecureBytes.take")
        try:
            secret = cls(view, arena=arena, guarded=guarded)
            wipe_view(view)
        finally:
            view.release()
        return secret

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

    # -- hex and base64 (the logic is in securemem._codecs) --------------------

    @classmethod
    def from_hex(cls, text: str | Buffer, *, arena: Arena | None = None) -> SecureBytes:
        """Hex text decoded straight into locked memory, in constant time.

        ``text`` is a ``str``, a bytes-like object or a SecureBytes; it is read in place
        (no copy of it, none of the decoded bytes outside the result). The rules are
        ``bytes.fromhex``'s: either case, ASCII whitespace between bytes but not inside
        one. ``ValueError`` names the offset and the kind of error, never the text.
        """
        return _codecs.decode_hex(cls, text, arena=arena)

    @classmethod
    def from_base64(
        cls, text: str | Buffer, *, urlsafe: bool = False, arena: Arena | None = None
    ) -> SecureBytes:
        """Base64 text decoded straight into locked memory, in constant time.

        Strict, as ``base64.b64decode(text, validate=True)``, except that ASCII whitespace
        and line ends are skipped anywhere (PEM bodies, wrapped values). Padding is
        required; ``urlsafe=True`` takes ``-`` and ``_`` instead of ``+`` and ``/``.
        ``text`` and errors as for :meth:`from_hex`.
        """
        return _codecs.decode_base64(cls, text, urlsafe=urlsafe, arena=arena)

    def to_hex(self) -> SecureBytes:
        """Lowercase hex of the secret, as ASCII text in a new SecureBytes (constant time)."""
        return _codecs.encode_hex(self, arena=self._arena)

    def to_base64(self, *, urlsafe: bool = False) -> SecureBytes:
        """Padded base64 of the secret, as ASCII text in a new SecureBytes (constant time)."""
        return _codecs.encode_base64(self, urlsafe=urlsafe, arena=self._arena)

    @property
    def _arena(self) -> Arena | None:
        return self.arena  # type: ignore[return-value]

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


def _attach_to_native_type(holder: type) -> type:
    """The native type, with the methods and the docstring of ``holder`` set on it.

    The class statement's own entries (``__module__``, ``__qualname__``, ``__slots__``,
    and what later Pythons add) are left out: the native type has its own, from its
    name ``securemem.SecureBytes``. Every method, property and classmethod goes over,
    dunder methods too (``__iter__``): ``holder`` exists only to carry them.
    """
    native: type = SecureBytesBase
    for name, value in vars(holder).items():
        dunder = name.startswith("__") and name.endswith("__")
        if not dunder or name == "__doc__" or inspect.isfunction(value):
            setattr(native, name, value)
    return native


if not TYPE_CHECKING:
    SecureBytes = _attach_to_native_type(SecureBytes)
