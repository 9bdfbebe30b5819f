"""Sealed streams: :class:`Stream`, a large secret held as a queue of sealed chunks.

The counterpart of memguard's ``Stream``. One :class:`~securemem.Enclave` of any size
works, but opening it needs that much locked memory at once; a stream seals the value
in chunks of at most ``chunk_size`` bytes, so reading it back needs the locked memory
of one chunk at a time (except :meth:`Stream.flush`, which opens everything at once).

Each chunk is an ordinary Enclave (AES-GCM-SIV under the one process key), so a
stream inherits their properties: its ciphertext costs no locked memory, a forked
child cannot open it, :func:`securemem.purge` makes it unreadable.
"""

from __future__ import annotations

import contextlib
import operator
import threading
from collections import deque
from typing import Any, NoReturn, SupportsIndex

from securemem._enclave import Enclave, readable_view
from securemem._securebytes import SecureBytes, wipe_view, writable_byte_view
from securemem._types import Buffer

__all__ = ["Stream"]


class Stream:
    """A secret of any size, sealed as a first-in, first-out queue of enclaves.

    :meth:`write` seals data in chunks of at most ``chunk_size`` bytes and wipes a
    writable source (a SecureBytes source is left as it was, as ``Enclave(secret)``
    does: close it yourself; a read-only source such as ``bytes`` raises
    ``TypeError``, as :meth:`Enclave.take` does). :meth:`next` opens and removes the
    first chunk; :meth:`read_into` fills a buffer from the front; :meth:`flush` opens
    everything into one SecureBytes and empties the stream. ``len()`` is the number of
    bytes held. Each method holds the stream's lock, so threads may share a stream.

    Nothing reveals the content: ``repr`` shows the size and the number of chunks,
    and ``==``, ``hash``, ``copy`` and ``pickle`` raise ``TypeError``.
    """

    __slots__ = ("_chunk_size", "_chunks", "_lock", "_size")

    def __init__(self, chunk_size: SupportsIndex = 4096) -> None:
        if isinstance(chunk_size, bool):
            raise TypeError("Stream(chunk_size) takes an int number of bytes, not bool")
        try:
            size = operator.index(chunk_size)
        except TypeError:
            raise TypeError(
                f"Stream(chunk_size) takes an int number of bytes, not "
                f"{type(chunk_size).__name__}"
            ) from None
        if size < 1:
            raise ValueError(f"Stream(chunk_size) must be at least 1 byte, got {size}")
        self._chunk_size = size
        self._chunks: deque[Enclave] = deque()
        self._size = 0
        self._lock = threading.Lock()

    @property
    def chunk_size(self) -> int:
        """The largest number of bytes sealed in one chunk."""
        return self._chunk_size

    def write(self, data: SecureBytes | Buffer) -> None:
        """Seal ``data`` at the end of the stream, then wipe a writable source.

        All or nothing: if sealing fails, the stream and the source are unchanged.
        A SecureBytes is sealed and left as it was (opened for the seal if it is
        guarded and no-access). Anything else must be a writable, contiguous
        bytes-like object (``bytearray``, writable ``memoryview``, ``array``,
        ``mmap``); it is zeroed after sealing.
        """
        if isinstance(data, SecureBytes):
            with readable_view(data) as view:
                self._append(view)
            return
        source = writable_byte_view(data, "Stream.write")
        try:
            self._append(source)
            wipe_view(source)
        finally:
            source.release()

    def _append(self, view: memoryview) -> None:
        step = self._chunk_size
        sealed: list[Enclave] = []
        # Sealed outside the lock (sealing is the slow part); appended under it, at once.
        try:
            for start in range(0, view.nbytes, step):
                with view[start : start + step] as piece:
                    sealed.append(Enclave(piece))
        except BaseException:
            for enclave in sealed:  # all or nothing: the chunks sealed so far are wiped
                enclave.close()
            raise
        with self._lock:
            self._chunks.extend(sealed)
            self._size += view.nbytes

    def next(self) -> SecureBytes:
        """Open and remove the first chunk (close the result, or use ``with``).

        Raises ``EOFError`` when the stream is empty. If opening fails
        (:class:`~securemem.EnclaveError`), the chunk stays in the stream.
        """
        with self._lock:
            if not self._chunks:
                raise EOFError("the stream is empty: nothing left to read")
            chunk = self._chunks[0]
            secret = chunk.open()
            self._chunks.popleft()
            self._size -= len(chunk)
            chunk.close()  # its ciphertext wiped, not left in freed memory
            return secret

    def read_into(self, buffer: Buffer) -> int:
        """Fill a writable buffer from the front of the stream; the bytes read.

        Reads ``min(len(buffer), len(stream))`` bytes, fewer than asked only when the
        stream runs out (0 when it is empty). A chunk read in part is sealed again
        holding what is left of it. ``buffer``: a writable, contiguous bytes-like
        object, e.g. a ``bytearray`` or a SecureBytes.
        """
        with contextlib.ExitStack() as stack:
            if isinstance(buffer, SecureBytes):
                # A guarded one may be no-access or read-only: writing would fault.
                try:
                    protection = buffer.protection
                except ValueError:
                    protection = "readwrite"  # not guarded: always writable
                if protection != "readwrite":
                    stack.enter_context(buffer.accessible("readwrite"))
            target = writable_byte_view(buffer, "Stream.read_into")
            try:
                with self._lock:
                    return self._read_locked(target)
            finally:
                target.release()
        raise AssertionError("unreachable")  # pragma: no cover  (mypy: ExitStack may swallow)

    def _read_locked(self, target: memoryview) -> int:
        done = 0
        while done < target.nbytes and self._chunks:
            chunk = self._chunks[0]
            wanted = target.nbytes - done
            with chunk.open() as secret, secret.view() as plain:
                taken = min(wanted, plain.nbytes)
                target[done : done + taken] = plain[:taken]
                if taken < plain.nbytes:
                    with plain[taken:] as rest:
                        self._chunks[0] = Enclave(rest)
                else:
                    self._chunks.popleft()
            chunk.close()  # read, or replaced by what is left of it: its ciphertext wiped
            self._size -= taken
            done += taken
        return done

    def flush(self) -> SecureBytes:
        """Open every chunk into one new SecureBytes and empty the stream.

        Needs locked memory for the whole value at once. If anything fails (an
        :class:`~securemem.EnclaveError`, the memory lock limit), the partial result
        is wiped and the stream is left as it was.
        """
        with self._lock:
            whole = SecureBytes(self._size)
            try:
                with whole.view() as target:
                    done = 0
                    for chunk in self._chunks:
                        with chunk.open() as secret, secret.view() as plain:
                            target[done : done + plain.nbytes] = plain
                            done += plain.nbytes
            except BaseException:
                whole.close()
                raise
            for chunk in self._chunks:
                chunk.close()  # every ciphertext wiped, not left in freed memory
            self._chunks.clear()
            self._size = 0
            return whole

    # -- what a stream is not ----------------------------------------------------

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"<Stream size={self._size} chunks={len(self._chunks)}>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        raise TypeError(
            "streams cannot be compared: flush both and compare the SecureBytes "
            "(a constant-time comparison)"
        )

    def __ne__(self, other: object) -> bool:
        return self.__eq__(other)

    def __hash__(self) -> int:
        raise TypeError("Stream is unhashable: it has no value to compare (== refuses too)")

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        raise TypeError(
            "a Stream cannot be pickled or copied: its chunks are sealed under a key "
            "that never leaves this process. Flush it and handle the secret explicitly "
            "if you must move it."
        )

    def __copy__(self) -> NoReturn:
        self.__reduce_ex__(2)

    def __deepcopy__(self, memo: dict[int, Any]) -> NoReturn:
        self.__reduce_ex__(2)
