"""Interpret a byte string as a program of public-API calls, with a shadow model.

Both the atheris harness (fuzz_api.py) and the test suite (hypothesis) drive
this. Each operation's arguments come from the input, including wrong types
and out-of-range values. Allowed outcomes: the documented result, or one of
the documented exceptions. Anything else (another exception, a secret that no
longer matches its shadow, a byte of a secret in a repr or message, a crash)
is a bug.
"""

from __future__ import annotations

import copy
import gc
from collections import Counter
from typing import Any

from securemem import Arena, SecureBytes, SecureBytesClosedError, SecureMemoryError

EXPECTED_ERRORS = (TypeError, ValueError, IndexError, SecureMemoryError)
OPERATIONS = 14
BAD_SIZES: list[Any] = [-1, -(2**40), "12", None, 1.5, True, object(), 2**70, b"", [3]]
BAD_VALUES: list[Any] = [-1, 256, 1000, "a", None, 2.0, b"x", False]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def byte(self) -> int:
        if self.at >= len(self.data):
            raise EOFError
        self.at += 1
        return self.data[self.at - 1]

    def number(self, limit: int) -> int:
        return (self.byte() << 8 | self.byte()) % limit

    def blob(self, limit: int) -> bytes:
        size = self.number(limit)
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk.ljust(size, b"\x01")


def run_program(data: bytes, arena: Arena) -> Counter[int]:
    """Run the program; return how often each operation ran (with a secret to act on, where
    it needs one; a documented exception counts). Raises AssertionError on a bug."""
    read = _Reader(data)
    live: list[tuple[SecureBytes, bytearray]] = []
    closed: list[SecureBytes] = []
    ran: Counter[int] = Counter()
    try:
        while True:
            operation = read.byte() % OPERATIONS
            try:
                acted = _step(operation, read, live, closed, arena)
            except EXPECTED_ERRORS as error:
                acted = True
                _check_message(str(error), live)
            ran[operation] += acted
    except EOFError:
        pass
    for secret, shadow in live:
        assert secret == shadow, "a secret no longer matches what was written to it"
        secret.close()
    return ran


def _check_message(text: str, live: list[tuple[SecureBytes, bytearray]]) -> None:
    for _, shadow in live:
        if len(shadow) >= 8:
            assert bytes(shadow) not in text.encode(errors="replace"), "secret in a message"


def _pick(read: _Reader, live: list[tuple[SecureBytes, bytearray]]) -> int:
    return read.number(len(live)) if live else -1


def _step(
    operation: int,
    read: _Reader,
    live: list[tuple[SecureBytes, bytearray]],
    closed: list[SecureBytes],
    arena: Arena,
) -> bool:
    """Run one operation; False when it found nothing to act on."""
    if operation == 0:  # allocate by size, sometimes a bad one
        choice = read.byte()
        size: Any = BAD_SIZES[choice % len(BAD_SIZES)] if choice >= 230 else read.number(20_000)
        secret = SecureBytes(size, arena=arena)
        live.append((secret, bytearray(size)))
        return True
    if operation == 1:  # allocate from a buffer
        blob = read.blob(5000)
        live.append((SecureBytes(blob, arena=arena), bytearray(blob)))
        return True
    if operation == 11:  # use after close: must be a clear error, never a crash
        if not closed:
            return False
        secret = closed[read.number(len(closed))]
        try:
            secret[0] = 1
        except SecureBytesClosedError:
            return True
        except Exception as error:
            raise AssertionError(f"use after close raised {error!r}") from error
        raise AssertionError("writing to a closed SecureBytes succeeded")
    if operation == 12:
        gc.collect()
        return True
    if operation == 13:  # the arena counts exactly the secrets still open
        assert arena.stats().allocations == len(live), "the arena's count of secrets is off"
        return True
    index = _pick(read, live)
    if index < 0:
        return False
    secret, shadow = live[index]
    if operation == 2:  # write one byte, index and value possibly bad
        position = read.number(len(shadow) + 4) - 2
        choice = read.byte()
        value: Any = BAD_VALUES[choice % len(BAD_VALUES)] if choice >= 240 else choice
        secret[position] = value
        shadow[position] = value
    elif operation == 3:  # read a byte or a slice
        start, stop = read.number(len(shadow) + 3) - 1, read.number(len(shadow) + 3) - 1
        part = secret[start:stop]
        assert isinstance(part, SecureBytes) and part == shadow[start:stop]
        part.close()
        if shadow:
            assert secret[start % len(shadow)] == shadow[start % len(shadow)]
    elif operation == 4:  # slice assignment, sometimes of the wrong length
        start = read.number(len(shadow) + 1)
        blob = read.blob(len(shadow) + 2)
        stop = start + len(blob) - (read.byte() % 2)
        secret[start:stop] = blob
        shadow[start:stop] = blob
    elif operation == 5:  # write through a view
        position, value = read.number(max(len(shadow), 1)), read.byte()
        view = secret.view()
        if len(shadow):
            view[position] = shadow[position] = value
        view.release()
    elif operation == 6:
        secret.wipe()
        shadow[:] = bytes(len(shadow))
    elif operation == 7:  # close, sometimes twice (arguments are read before acting)
        twice = read.byte() % 2
        secret.close()
        if twice:
            secret.close()
        del live[index]
        closed.append(secret)
        if len(closed) > 50:
            del closed[0]
    elif operation == 8:  # drop without closing: garbage collection releases it
        del live[index]
    elif operation == 9:
        blob = read.blob(len(shadow) + 2)
        assert (secret == blob) == (bytes(shadow) == blob)
    elif operation == 10:
        duplicate = copy.copy(secret)
        assert duplicate == shadow
        text = repr(duplicate)
        assert text == f"<SecureBytes size={len(shadow)} open>"
        duplicate.close()
    return True
