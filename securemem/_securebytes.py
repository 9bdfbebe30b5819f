"""SecureBytes: the one type users hold, a fixed-size secret in locked memory."""

from __future__ import annotations

import contextlib
import operator
import sys
import weakref
from collections.abc import Iterator
from types import TracebackType
from typing import Any, SupportsIndex

from securemem._arena import Arena, Owner, default_arena
from securemem._errors import SecureBytesClosedError
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
    """

    __slots__ = ("__weakref__", "_address", "_arena", "_exporter", "_owner", "_size")

    def __init__(
        self, size_or_buffer: SupportsIndex | Buffer, *, arena: Arena | None = None
    ) -> None:
        source: memoryview | None = None
        if isinstance(size_or_buffer, int) and not isinstance(size_or_buffer, bool):
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
        self._owner: Owner | None = None  # set last: __del__ may run on a half-built object
        self._exporter: weakref.ref[object] | None = None
        self._size = size
        self._arena = arena_ = arena if arena is not None else default_arena()
        self._owner, self._address = arena_.allocate(size)
        if source is not None and size:
            self._fill_from(source)

    @classmethod
    def random(cls, size: int, *, arena: Arena | None = None) -> SecureBytes:
        """``size`` bytes from the OS CSPRNG, written straight into locked memory."""
        secret = cls(size, arena=arena)
        if size and lib.sm_random(ffi.cast("void *", secret._address), size) != 0:
            secret.close()
            raise OSError(ffi.errno, "the operating system's random source failed")
        return secret

    def _fill_from(self, source: memoryview) -> None:
        if source.c_contiguous:
            ffi.memmove(ffi.cast("void *", self._address), source, self._size)
        else:
            self.view()[:] = source

    # -- state --------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (or the object was released)."""
        return self._owner is None

    def _check_open(self) -> None:
        if self._owner is None:
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
        self._arena.kernel.wipe(self._address, self._size)

    def close(self) -> None:
        """Wipe and release the memory. Calling it again does nothing."""
        owner = self._owner
        if owner is None:
            return
        self._owner = None
        arena = self._arena
        arena.kernel.wipe(self._address, self._size)
        exporter = self._exporter() if self._exporter is not None else None
        self._exporter = None
        if exporter is None:
            arena.free(owner, self._address, self._size)
        else:
            arena.free_after_views(exporter, owner, self._address, self._size)

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
        # At interpreter exit the arena's modules may be torn down already.
        with contextlib.suppress(Exception):
            self.close()

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
            index = operator.index(key)
        except TypeError:
            raise TypeError(
                f"SecureBytes indices must be integers or slices, not {type(key).__name__}"
            ) from None
        if index < 0:
            index += self._size
        if not 0 <= index < self._size:
            raise IndexError("SecureBytes index out of range")
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
        state = "closed" if self._owner is None else "open"
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
