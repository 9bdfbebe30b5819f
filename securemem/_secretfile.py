"""Secret files straight into locked memory (``SecureBytes.from_file``).

The file's bytes are read with ``os.readv`` into a memoryview over the secret: the kernel
copies them from the page cache (or a pipe) directly into locked memory, and no ``bytes``
ever holds them. This module takes the secret's type as an argument, so that
``_securebytes`` can use it without an import cycle.
"""

from __future__ import annotations

import os
import stat
import warnings
from typing import TypeVar

from securemem._binding import ArenaCore, SecureBytesBase

__all__ = ["DEFAULT_MAX_FILE_SIZE", "InsecureFileWarning", "check_max_size", "read_secret_file"]

DEFAULT_MAX_FILE_SIZE = 1 << 20
_LF = 0x0A
_CR = 0x0D

_Secret = TypeVar("_Secret", bound=SecureBytesBase)


class InsecureFileWarning(UserWarning):
    """A secret was read from a file that other users (group or world) may read too."""


def check_max_size(max_size: int) -> None:
    """``max_size`` is an int of at least one byte (TypeError / ValueError otherwise)."""
    if isinstance(max_size, bool) or not isinstance(max_size, int):
        raise TypeError(f"max_size must be an int, not {type(max_size).__name__}")
    if max_size < 1:
        raise ValueError(f"max_size must be at least 1 byte, got {max_size}")


def read_secret_file(
    cls: type[_Secret],
    path: str | os.PathLike[str],
    *,
    max_size: int = DEFAULT_MAX_FILE_SIZE,
    strip_newline: bool = False,
    arena: ArenaCore | None = None,
) -> _Secret:
    """Read a key or password file straight into locked memory.

    The file's bytes go from the kernel into a ``cls`` (a SecureBytes; ``os.readv`` into its
    memory), never through a ``bytes`` object. ``strip_newline=True`` drops one trailing
    ``\\n`` or ``\\r\\n`` (what ``echo`` and editors add to password files); it is off by
    default because a binary key may end in that byte. A file larger than ``max_size`` raises
    ``ValueError`` before anything is read. A regular file that its group or other users may
    read triggers :class:`InsecureFileWarning`: the secret is only as private as the file.
    """
    check_max_size(max_size)
    display = os.fsdecode(path)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        info = os.fstat(fd)  # of the file we opened, not of whatever the path names now
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(f"{display!r} is a directory, not a key or password file")
        capacity = 4096
        if stat.S_ISREG(info.st_mode):
            if info.st_size > max_size:
                raise ValueError(
                    f"{display!r} is {info.st_size} bytes, more than max_size={max_size}; "
                    "is it the right file? Pass a larger max_size if it is."
                )
            if info.st_mode & (stat.S_IRGRP | stat.S_IROTH):
                warnings.warn(
                    f"{display!r} is readable by its group or by other users (mode "
                    f"{stat.S_IMODE(info.st_mode):o}); restrict it with `chmod 600`",
                    InsecureFileWarning,
                    stacklevel=3,  # the caller of SecureBytes.from_file
                )
            capacity = info.st_size + 1  # +1: notice a file that grew since fstat
        return _read_all(
            cls, fd, min(capacity, max_size + 1), max_size, strip_newline, display, arena
        )
    finally:
        os.close(fd)


def _read_all(
    cls: type[_Secret],
    fd: int,
    capacity: int,
    max_size: int,
    strip_newline: bool,
    display: str,
    arena: ArenaCore | None,
) -> _Secret:
    buffer = cls(capacity, arena=arena)
    length = 0
    try:
        while True:
            if length == len(buffer):
                if length > max_size:
                    raise ValueError(
                        f"{display!r} holds more than max_size={max_size} bytes; "
                        "is it the right file? Pass a larger max_size if it is."
                    )
                # A pipe, a device or a growing file: move to a bigger locked buffer and wipe
                # the old one (close wipes), rather than ever holding the bytes elsewhere.
                bigger = cls(min(2 * length, max_size + 1), arena=arena)
                bigger[:length] = buffer
                buffer.close()
                buffer = bigger
            with buffer.view() as view:
                got = os.readv(fd, [view[length:]])
            if got == 0:
                break
            length += got
        if strip_newline and length and buffer[length - 1] == _LF:
            length -= 1
            if length and buffer[length - 1] == _CR:
                length -= 1
        content: _Secret = buffer[:length]
        return content
    finally:
        buffer.close()
