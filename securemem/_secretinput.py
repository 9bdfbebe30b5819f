"""Secrets in from a terminal or a file, straight into locked memory.

Both paths read with ``os.readv`` into a memoryview over a :class:`SecureBytes`: the kernel
copies the bytes from the terminal's line buffer or the page cache directly into locked
memory, and no ``bytes`` or ``str`` ever holds them. ``os.read`` would not do: it returns a
freshly allocated ``bytes`` object for every call, even for a single byte (CPython only
returns its cached one-byte singletons when it copies from an existing buffer, not when
``os.read`` allocates the result to read into), and freed objects are not wiped.
"""

from __future__ import annotations

import os
import sys
import termios
import warnings
from getpass import GetPassWarning
from typing import Any

from securemem._arena import Arena
from securemem._secretfile import (
    DEFAULT_MAX_FILE_SIZE,
    InsecureFileWarning,
    check_max_size,
)
from securemem._securebytes import SecureBytes

__all__ = [
    "DEFAULT_MAX_FILE_SIZE",
    "DEFAULT_MAX_PASSWORD_SIZE",
    "GetPassWarning",
    "InsecureFileWarning",
    "getpass",
]

DEFAULT_MAX_PASSWORD_SIZE = 1024

# termios.IUTF8 arrived in Python 3.13; Linux has had the flag (0o40000) since 2.6.4.
IUTF8: int = getattr(termios, "IUTF8", 0o40000 if sys.platform.startswith("linux") else 0)
_LF = 0x0A
_CR = 0x0D


class _Controls:
    """The terminal's own editing keys (from its termios c_cc), so we honour user settings."""

    def __init__(self, attributes: list[Any]) -> None:
        cc = attributes[6]

        def key(index: int) -> int | None:
            value = cc[index]
            code = value[0] if isinstance(value, bytes) and value else value
            # _POSIX_VDISABLE (0) means "this key is switched off".
            return code if isinstance(code, int) and code != 0 else None

        # Backspace sends DEL (0x7f) or BS (0x08) depending on the terminal: accept both.
        erase = key(termios.VERASE)
        self.erase = {0x7F, 0x08} if erase is None else {0x7F, 0x08, erase}
        self.kill = key(termios.VKILL)  # Ctrl-U by default: erase the whole line
        self.eof = key(termios.VEOF)  # Ctrl-D
        self.interrupt = key(termios.VINTR)  # only seen as a byte when ISIG is off
        self.utf8 = bool(attributes[0] & IUTF8)


def getpass(
    prompt: str = "Password: ",
    *,
    max_size: int = DEFAULT_MAX_PASSWORD_SIZE,
    arena: Arena | None = None,
) -> SecureBytes:
    """Prompt for a password on the controlling terminal and return it in locked memory.

    Like :func:`getpass.getpass`, but the password never exists as a ``str`` or ``bytes``:
    each byte goes from the terminal straight into a :class:`SecureBytes`. Echo is off while
    the user types, the terminal is restored on every exit (Enter, Ctrl-D, Ctrl-C, an error),
    and the returned secret holds the bytes typed, without the line ending.

    Backspace/DEL erase one character (a whole UTF-8 character when the terminal is in UTF-8
    mode), the terminal's kill key (Ctrl-U) erases the line, Enter ends it, and Ctrl-D ends
    it too (``EOFError`` when nothing was typed). Ctrl-C raises ``KeyboardInterrupt``.

    Without a terminal (no ``/dev/tty``, e.g. under cron, a daemon or CI) it warns with
    :class:`getpass.GetPassWarning`, as the standard library does, and reads one line from
    standard input instead. More than ``max_size`` bytes raises ``ValueError``.
    """
    check_max_size(max_size)
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        fd = -1
    if fd >= 0:
        try:
            try:
                attributes = termios.tcgetattr(fd)
            except termios.error:
                pass  # /dev/tty exists but is no terminal we can control: fall back
            else:
                return _read_from_terminal(fd, attributes, prompt, max_size, arena)
        finally:
            os.close(fd)
    warnings.warn(
        "Can not control echo on the terminal: reading the password from standard input",
        GetPassWarning,
        stacklevel=2,
    )
    stderr = sys.stderr
    if stderr is not None:
        stderr.write("Warning: Password input may be echoed.\n" + prompt)
        stderr.flush()
    return _read_line(0, max_size, arena, None)


def _read_from_terminal(
    fd: int, saved: list[Any], prompt: str, max_size: int, arena: Arena | None
) -> SecureBytes:
    quiet = list(saved)
    lflag: int = saved[3]
    # Non-canonical mode: the kernel hands us each byte as it is typed, so editing happens in
    # locked memory rather than in a line we would have to read in one piece. ISIG stays as
    # it was, so Ctrl-C still raises KeyboardInterrupt through SIGINT.
    quiet[3] = lflag & ~(
        termios.ECHO | termios.ECHOE | termios.ECHOK | termios.ECHONL | termios.ICANON
    )
    cc = list(saved[6])
    cc[termios.VMIN] = 1
    cc[termios.VTIME] = 0
    quiet[6] = cc
    controls = _Controls(saved)
    # TCSAFLUSH drops anything typed before echo went off: it was echoed, so it is not secret.
    termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
    try:
        os.write(fd, prompt.encode(errors="replace"))
        return _read_line(fd, max_size, arena, controls)
    finally:
        # Restore even on KeyboardInterrupt; a failure here (terminal hung up) must not hide
        # the exception that got us here.
        try:
            termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
            os.write(fd, b"\n")  # the user's Enter was not echoed
        except (OSError, termios.error):
            pass


def _read_line(
    fd: int, max_size: int, arena: Arena | None, controls: _Controls | None
) -> SecureBytes:
    """Read up to a line ending into locked memory, one byte at a time, editing in place."""
    # One spare slot: the byte that arrives after max_size bytes lands there before we know
    # whether it ends the line or overflows it.
    buffer = SecureBytes(max_size + 1, arena=arena)
    view = buffer.view()
    length = 0
    try:
        while True:
            if os.readv(fd, [view[length : length + 1]]) == 0:
                if length == 0:
                    raise EOFError("end of input before a password was entered")
                break
            byte = view[length]
            if byte == _LF or (controls is not None and byte == _CR):
                view[length] = 0
                break
            if controls is not None:
                if byte in controls.erase:
                    view[length] = 0
                    length = _erase_character(view, length, utf8=controls.utf8)
                    continue
                if byte == controls.kill:
                    buffer.wipe()  # the line so far and the kill byte; the rest is zero already
                    length = 0
                    continue
                if byte == controls.eof:
                    view[length] = 0
                    if length == 0:
                        raise EOFError("end of input (Ctrl-D) before a password was entered")
                    break
                if byte == controls.interrupt:
                    view[length] = 0
                    raise KeyboardInterrupt
            length += 1
            if length > max_size:
                raise ValueError(
                    f"the password is longer than max_size={max_size} bytes; "
                    "pass a larger max_size to getpass()"
                )
        line: SecureBytes = buffer[:length]
        return line
    finally:
        view.release()
        buffer.close()


def _erase_character(view: memoryview, length: int, *, utf8: bool) -> int:
    """Drop the last character (all its bytes in UTF-8 mode) and zero what it used."""
    if length == 0:
        return 0
    length -= 1
    if utf8:
        while length > 0 and view[length] & 0xC0 == 0x80:  # a UTF-8 continuation byte
            view[length] = 0
            length -= 1
    view[length] = 0
    return length
