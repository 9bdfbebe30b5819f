"""SecureBytes: the one type users hold, a fixed-size secret in locked memory."""

from __future__ import annotations

import contextlib
import operator
import os
import sys
import weakref
from collections.abc import Iterator
from types import TracebackType
from typing import Any, SupportsIndex

from securemem import _fork
from securemem._arena import Arena, Owner, default_arena
from securemem._errors import CanaryError, KernelError, SecureBytesClosedError, errno_name
from securemem._guarded import Guarded
from securemem._kernel import Protection
from securemem._native import ffi, lib

Buffer = Any  # any object with the buffer protocol (bytes, bytearray, memoryview, ...)


def _as_byte_view(data: object) -> memoryview:
    """A flat, one-byte-per-item view of a bytes-like object, without copying it."""
    if isinstance(data, SecureBytes):
        return data.view()
    view = memoryview(data)  # type: ignore[arg-type]
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def _writable_byte_view(data: object, who: str) -> memoryview:
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


def _wipe_view(view: memoryview) -> None:
    """Zero a writable, contiguous byte view (what _writable_byte_view returns)."""
    if view.nbytes:
        lib.sm_wipe(ffi.from_buffer(view, require_writable=True), view.nbytes)


class SecureBytes:
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
    pages, right-aligned so one byte past the end faults, with a canary in
    front checked on release; only such a secret can :meth:`protect` its pages.
    It costs a locked page and three pages of address space: keep it for a few
    high-value keys (slices and copies of it are ordinary packed secrets).
    In a forked child, every SecureBytes of the parent reports itself closed.
    """

    __slots__ = (
        "__weakref__",
        "_address",
        "_arena",
        "_exporter",
        "_generation",
        "_owner",
        "_size",
    )

    def __init__(
        self,
        size_or_buffer: SupportsIndex | Buffer,
        *,
        arena: Arena | None = None,
        guarded: bool = False,
    ) -> None:
        source: memoryview | None = None
        if type(size_or_buffer) is int:  # the common case, checked first
            size = size_or_buffer
        elif isinstance(size_or_buffer, int) and not isinstance(size_or_buffer, bool):
            size = int(size_or_buffer)
        elif isinstance(size_or_buffer, (str, bool)) or size_or_buffer is None:
            raise TypeError(
                "SecureBytes() takes a size (int) or a bytes-like object, not "
                f"{type(size_or_buffer).__name__}; encode text first, e.g. "
                "SecureBytes(text.encode()), or better read it straight into a "
                "SecureBytes (securemem.getpass)"
            )
        else:
            try:
                source = _as_byte_view(size_or_buffer)
            except TypeError:
                try:
                    size = operator.index(size_or_buffer)
                except TypeError:
                    raise TypeError(
                        "SecureBytes() takes a size (int) or a bytes-like object, "
                        f"not {type(size_or_buffer).__name__}"
                    ) from None
            else:
                size = source.nbytes
        if size < 0:
            raise ValueError(f"SecureBytes size cannot be negative, got {size}")
        self._owner: Owner | Guarded | None = None  # set last: __del__ may see a half-built one
        self._generation = _fork.generation
        self._exporter: weakref.ref[object] | None = None
        self._size = size
        self._arena = arena_ = arena if arena is not None else default_arena()
        if guarded:
            # A mapping of its own, between guard pages, with a canary (see _guarded).
            # Signals held as on the arena's general path: an interrupt between the
            # mapping and this store would leak it.
            try:
                lib.sm_defer_signals()
                owner = Guarded(arena_, size)
                self._owner, self._address = owner, owner.address
            finally:
                lib.sm_restore_signals()
        else:
            arena_.allocate_into(self, size)  # sets _owner and _address in one safe step
        if source is not None and size:
            self._fill_from(source)

    @classmethod
    def random(
        cls, size: int, *, arena: Arena | None = None, guarded: bool = False
    ) -> SecureBytes:
        """``size`` bytes from the OS CSPRNG, written straight into locked memory."""
        secret = cls(size, arena=arena, guarded=guarded)
        if size and lib.sm_random(ffi.cast("void *", secret._address), size) != 0:
            number = ffi.errno  # before close(), whose own C calls replace it
            secret.close()
            raise KernelError(
                number,
                f"the operating system's random source failed: {errno_name(number)} "
                f"({os.strerror(number)}). No secret was made; try again, and if it "
                "keeps failing check that the system's entropy source (getrandom, "
                "/dev/urandom) works inside this container or sandbox.",
            )
        return secret

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
        view = _writable_byte_view(buffer, "SecureBytes.take")
        try:
            secret = cls(view, arena=arena, guarded=guarded)
            _wipe_view(view)
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
        from securemem._secretinput import read_secret_file  # it imports this module

        return read_secret_file(
            path, max_size=max_size, strip_newline=strip_newline, arena=arena
        )

    # -- hex and base64 (the logic is in securemem._codecs) --------------------

    @classmethod
    def from_hex(cls, text: Any, *, arena: Arena | None = None) -> SecureBytes:
        """Hex text decoded straight into locked memory, in constant time.

        ``text`` is a ``str``, a bytes-like object or a SecureBytes; it is read in place
        (no copy of it, none of the decoded bytes outside the result). The rules are
        ``bytes.fromhex``'s: either case, ASCII whitespace between bytes but not inside
        one. ``ValueError`` names the offset and the kind of error, never the text.
        """
        from securemem import _codecs  # it imports this module

        return _codecs.decode_hex(text, arena=arena)

    @classmethod
    def from_base64(
        cls, text: Any, *, urlsafe: bool = False, arena: Arena | None = None
    ) -> SecureBytes:
        """Base64 text decoded straight into locked memory, in constant time.

        Strict, as ``base64.b64decode(text, validate=True)``, except that ASCII whitespace
        and line ends are skipped anywhere (PEM bodies, wrapped values). Padding is
        required; ``urlsafe=True`` takes ``-`` and ``_`` instead of ``+`` and ``/``.
        ``text`` and errors as for :meth:`from_hex`.
        """
        from securemem import _codecs  # it imports this module

        return _codecs.decode_base64(text, urlsafe=urlsafe, arena=arena)

    def to_hex(self) -> SecureBytes:
        """Lowercase hex of the secret, as ASCII text in a new SecureBytes (constant time)."""
        from securemem import _codecs  # it imports this module

        return _codecs.encode_hex(self, arena=self._arena)

    def to_base64(self, *, urlsafe: bool = False) -> SecureBytes:
        """Padded base64 of the secret, as ASCII text in a new SecureBytes (constant time)."""
        from securemem import _codecs  # it imports this module

        return _codecs.encode_base64(self, urlsafe=urlsafe, arena=self._arena)

    def _fill_from(self, source: memoryview) -> None:
        if source.c_contiguous:
            ffi.memmove(ffi.cast("void *", self._address), source, self._size)
        else:
            self.view()[:] = source

    # -- state --------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran, and in a forked child for secrets of the parent."""
        return self._owner is None or self._generation != _fork.generation

    def _check_open(self) -> None:
        if self._owner is None or self._generation != _fork.generation:
            if self._owner is not None:
                raise SecureBytesClosedError(
                    "this SecureBytes belongs to the parent of this forked process: a "
                    "child inherits no secrets (their memory reads as zeros here). "
                    "Pass what the child needs explicitly, or create it after the fork."
                )
            raise SecureBytesClosedError(
                "this SecureBytes is closed: its bytes were wiped and its memory "
                "released. Keep it open (use it inside its `with` block) while you need it."
            )

    @property
    def address(self) -> int:
        """The address of the first byte, for native code. Valid until close."""
        self._check_open()
        return self._address

    def __len__(self) -> int:
        self._check_open()
        return self._size

    def view(self) -> memoryview:
        """A writable memoryview over the locked bytes (no copy).

        A view outliving :meth:`close` reads zeros: the memory is wiped at
        close and not reused until the last view is released.
        """
        self._check_open()
        exporter = self._exporter() if self._exporter is not None else None
        if exporter is None:
            # The pointer's destructor holds this object, so views keep it alive
            # (as a memoryview keeps its bytearray); we hold the exporter only
            # weakly, so there is no cycle and release stays prompt.
            anchor = ffi.gc(ffi.cast("char *", self._address), lambda _, owner=self: None)
            exporter = ffi.buffer(anchor, self._size)
            self._exporter = weakref.ref(exporter)
        return memoryview(exporter)  # type: ignore[arg-type]

    if sys.version_info >= (3, 12):

        def __buffer__(self, flags: int) -> memoryview:
            return self.view()

        def __release_buffer__(self, view: memoryview) -> None:
            view.release()

    # -- release ------------------------------------------------------------

    def wipe(self) -> None:
        """Zero every byte now; the SecureBytes stays open and usable."""
        self._check_open()
        if isinstance(self._owner, Guarded):
            self._owner.wipe()  # opens a protected secret for the wipe
            return
        self._arena.kernel.wipe(self._address, self._size)

    def randomize(self) -> None:
        """Overwrite every byte with fresh bytes from the OS CSPRNG, in place."""
        self._check_open()
        if isinstance(self._owner, Guarded) and self._owner.protection != "readwrite":
            with self.accessible("readwrite"):
                self._fill_random()
        else:
            self._fill_random()

    def _fill_random(self) -> None:
        if self._size and lib.sm_random(ffi.cast("void *", self._address), self._size) != 0:
            number = ffi.errno  # before wipe(), whose own C calls replace it
            self.wipe()  # never a half-old, half-new secret
            raise KernelError(
                number,
                f"the operating system's random source failed: {errno_name(number)} "
                f"({os.strerror(number)}). The secret was wiped (all zeros); check that "
                "the system's entropy source (getrandom, /dev/urandom) works here.",
            )

    def close(self) -> None:
        """Wipe and release the memory. Calling it again does nothing.

        For a guarded secret, raises :class:`CanaryError` (after wiping and
        releasing) if the canary in front of it was overwritten.
        """
        owner = self._owner
        if owner is None:
            return
        if self._generation != _fork.generation:
            self._owner = None
            return  # inherited from the parent across fork: its memory is not ours to free
        arena = self._arena
        # _exporter stays set: cleared here, an interrupt before the release below
        # would let a later close() free the slot under a live view.
        exporter = self._exporter() if self._exporter is not None else None
        if type(owner) is Guarded:
            # Signals held: an interrupt after _owner is cleared and before the wipe
            # would leave the secret in memory with nothing left to wipe it.
            try:
                lib.sm_defer_signals()
                self._owner = None
                owner.release(exporter)
            finally:
                lib.sm_restore_signals()
            return
        # Wipe, then release. The arena clears _owner in the same step that
        # frees the slot, so a KeyboardInterrupt can never free it twice or lose it.
        arena.kernel.wipe(self._address, self._size)
        if exporter is None:
            arena.release_from(self)
        else:
            arena.release_after_views(self, exporter)

    def __enter__(self) -> SecureBytes:
        self._check_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._owner is None:
                return  # closed already: the common case costs nothing more
        except AttributeError:
            return  # __init__ failed before it allocated anything
        # Hold signals while releasing from a finaliser: a KeyboardInterrupt raised
        # here could only be printed, and would cut the release short.
        try:
            lib.sm_defer_signals()
            self.close()
        except CanaryError:
            raise  # memory corruption is reported (as an unraisable exception) even here
        except Exception:  # noqa: S110 - at interpreter exit the arena may be torn down already
            pass
        finally:
            lib.sm_restore_signals()

    # -- page protection (guarded secrets) ----------------------------------

    def _guarded(self) -> Guarded:
        self._check_open()
        owner = self._owner
        if not isinstance(owner, Guarded):
            raise ValueError(
                "only a guarded secret can change its page protection: its pages are "
                "shared with other secrets otherwise. Create it with "
                "SecureBytes(n, guarded=True)."
            )
        return owner

    @property
    def protection(self) -> Protection:
        """``"readwrite"``, ``"readonly"`` or ``"noaccess"`` (guarded secrets only)."""
        return self._guarded().protection

    def protect(self, protection: Protection) -> None:
        """Change what the process may do with a guarded secret's bytes.

        ``"noaccess"``: any read or write kills the process with SIGSEGV;
        ``"readonly"``: writes do; ``"readwrite"``: the default. Only for
        ``SecureBytes(n, guarded=True)`` (``ValueError`` otherwise).
        """
        self._guarded().protect(protection)

    @contextlib.contextmanager
    def accessible(self, protection: Protection = "readonly") -> Iterator[SecureBytes]:
        """Open a guarded secret for the ``with`` block, then restore its protection.

        For example::

            key.protect("noaccess")
            with key.accessible("readonly"):
                use(key)
            # noaccess again here, even if the block raised
        """
        owner = self._guarded()
        previous = owner.protection
        owner.protect(protection)
        try:
            yield self
        finally:
            if self._owner is owner and self._generation == _fork.generation:
                owner.protect(previous)

    # -- bytes-like behaviour -----------------------------------------------

    def __getitem__(self, key: SupportsIndex | slice) -> Any:
        """``sb[i]`` is an int; ``sb[a:b]`` is a new SecureBytes, never a bytes copy."""
        self._check_open()
        if isinstance(key, slice):
            start, stop, step = key.indices(self._size)
            if step == 1:
                part = SecureBytes(max(0, stop - start), arena=self._arena)
                if stop > start:
                    ffi.memmove(
                        ffi.cast("void *", part._address),
                        ffi.cast("void *", self._address + start),
                        stop - start,
                    )
                return part
            return SecureBytes(self.view()[key], arena=self._arena)
        index = self._index(key)
        return ffi.cast("unsigned char *", self._address)[index]

    def __setitem__(self, key: SupportsIndex | slice, value: Any) -> None:
        self._check_open()
        if isinstance(key, slice):
            target = self.view()[key]
            try:
                source = _as_byte_view(value)
            except TypeError:
                raise TypeError(
                    f"slice assignment needs a bytes-like object, not {type(value).__name__}"
                ) from None
            if source.nbytes != target.nbytes:
                raise ValueError(
                    f"cannot assign {source.nbytes} bytes to a slice of {target.nbytes}: "
                    "a SecureBytes never changes size"
                )
            target[:] = source
            return
        index = self._index(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"a byte must be an int in range(0, 256), not {type(value).__name__}")
        if not 0 <= value < 256:
            raise ValueError("a byte must be in range(0, 256)")  # the value itself is not echoed
        ffi.cast("unsigned char *", self._address)[index] = value

    def _index(self, key: SupportsIndex) -> int:
        try:
            given = operator.index(key)
        except TypeError:
            raise TypeError(
                f"SecureBytes indices must be integers or slices, not {type(key).__name__}"
            ) from None
        index = given + self._size if given < 0 else given
        if not 0 <= index < self._size:
            raise IndexError(
                f"SecureBytes index {given} is out of range for its "
                f"{self._size} bytes (valid: {-self._size} to {self._size - 1})"
            )
        return index

    def __iter__(self) -> Iterator[int]:
        self._check_open()
        pointer = ffi.cast("unsigned char *", self._address)
        for index in range(self._size):
            self._check_open()
            yield pointer[index]

    def __eq__(self, other: object) -> bool:
        """Constant-time equality with another SecureBytes or any bytes-like object."""
        self._check_open()
        try:
            other_view = _as_byte_view(other)
        except TypeError:
            return NotImplemented
        if other_view.nbytes != self._size:
            return False  # lengths are not secret; contents are compared in constant time
        if not other_view.c_contiguous:
            with SecureBytes(other_view, arena=self._arena) as flat:
                return self == flat
        return bool(
            lib.sm_equal(ffi.cast("void *", self._address), ffi.from_buffer(other_view), self._size)
        )

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        raise TypeError(
            "SecureBytes is unhashable: a hash would leak information about the secret "
            "and it is mutable"
        )

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<SecureBytes size={self._size} {state}>"

    __str__ = __repr__

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        raise TypeError(
            "SecureBytes cannot be pickled: a pickle would copy the secret into "
            "ordinary, swappable memory. Copy it explicitly if you must."
        )

    def __copy__(self) -> SecureBytes:
        self._check_open()
        return SecureBytes(self.view(), arena=self._arena)

    def __deepcopy__(self, memo: dict[int, Any]) -> SecureBytes:
        return self.__copy__()
