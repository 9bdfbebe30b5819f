"""Hex and base64 straight into and out of locked memory, in constant time.

``bytes.fromhex`` and ``base64.b64decode`` return the decoded secret as a ``bytes`` object in
the ordinary heap, where it stays after it is freed. Here the C decoder in
``securemem/_c/codec.c`` writes each decoded byte into a :class:`SecureBytes` and nowhere else,
computing every digit's value with arithmetic masks rather than a table or a branch, so the time
taken does not depend on the secret (only on the text's length and where its whitespace and
padding are).

Where the text is read from, without a copy:

* a bytes-like object or a :class:`SecureBytes`: through the buffer protocol;
* a ``str``: CPython keeps an ASCII ``str``'s characters as one byte each, and
  ``PyUnicode_AsUTF8AndSize`` returns a pointer to exactly those bytes (for an ASCII string it
  allocates nothing). It is called through ``ctypes.pythonapi``, which holds the GIL, because
  cffi has no way to take a ``str``'s buffer. A non-ASCII ``str`` is refused before that call
  (it would make and cache a UTF-8 copy), and ``str.encode`` is never used: its ``bytes`` would
  be a heap copy of the text, which is as secret as what it encodes.

The decoders are strict. Hex: ``bytes.fromhex``'s rules (either case; ASCII whitespace between
bytes, never inside one). Base64: ``base64.b64decode(text, validate=True)``'s, plus ASCII
whitespace anywhere (PEM bodies, wrapped environment variables); ``=`` after a complete group
of four, which Python 3.11 lets through (``"QUJD=="``), is refused. Errors are ``ValueError``
naming the offset and what was wrong there, never a character of the text.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from securemem._binding import ArenaCore, SecureBytesBase, ffi, lib
from securemem._errors import SecureBytesClosedError

# The secret's class is an argument (SecureBytes passes its own), so that this module and
# securemem._securebytes do not import each other.
_Secret = TypeVar("_Secret", bound=SecureBytesBase)

__all__ = [
    "decode_base64",
    "decode_base64_region",
    "decode_hex",
    "encode_base64",
    "encode_hex",
]

Text = Any  # a str, any bytes-like object (bytes, bytearray, memoryview, mmap, ...) or SecureBytes

# Enough to cover the codec's own stack frame and cffi's call wrapper below it.
_STACK_BURN = 2048

_utf8_and_size = ctypes.pythonapi.PyUnicode_AsUTF8AndSize
_utf8_and_size.restype = ctypes.c_void_p
_utf8_and_size.argtypes = [ctypes.py_object, ctypes.POINTER(ctypes.c_ssize_t)]

# (value 62, value 63) of each alphabet.
_STANDARD = (ord("+"), ord("/"))
_URLSAFE = (ord("-"), ord("_"))


def decode_hex(cls: type[_Secret], text: Text, *, arena: ArenaCore | None = None) -> _Secret:
    """Hex ``text`` decoded into a new ``cls`` (see the module docstring)."""
    return _decode(cls, "hex", _hex_decoder, text, arena, 0)


def decode_base64(
    cls: type[_Secret], text: Text, *, urlsafe: bool = False, arena: ArenaCore | None = None
) -> _Secret:
    """Base64 ``text`` decoded into a new ``cls`` (see the module docstring).

    ``urlsafe=True`` takes the URL-safe alphabet (``-`` and ``_`` for values 62 and 63) and
    only that one; padding is required either way, as the standard library requires it.
    """
    return _decode(cls, "base64", _base64_decoder(urlsafe), text, arena, 0)


def decode_base64_region(
    cls: type[_Secret],
    buffer: Text,
    offset: int,
    length: int,
    *,
    urlsafe: bool = False,
    arena: ArenaCore | None = None,
) -> _Secret:
    """``buffer[offset:offset + length]`` decoded from base64 into a new ``cls``.

    For a base64 body inside a larger buffer (a PEM block in a key file held in a
    ``SecureBytes``): no slice of the buffer is copied. Whitespace and line ends (``\\n`` or
    ``\\r\\n``) in the region are skipped. Offsets in error messages count from the start of
    ``buffer``, not of the region. ``IndexError`` if the region is not inside the buffer.
    """
    for name, value in (("offset", offset), ("length", length)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    with _text_view(buffer) as (pointer, size):
        if offset < 0 or length < 0 or offset + length > size:
            raise IndexError(
                f"the region offset={offset}, length={length} is not inside the "
                f"{size}-byte buffer"
            )
        return _decode_pointer(
            cls, "base64", _base64_decoder(urlsafe), pointer + offset, length, arena, offset
        )


def encode_hex(secret: _Secret, *, arena: ArenaCore | None = None) -> _Secret:
    """Lowercase hex of ``secret``, as ASCII text in a new secret of its class."""
    return _encode(secret, "hex", lambda size: 2 * size, lib.sm_hex_encode, arena)


def encode_base64(
    secret: _Secret, *, urlsafe: bool = False, arena: ArenaCore | None = None
) -> _Secret:
    """Padded base64 of ``secret`` (URL-safe alphabet with ``urlsafe=True``), as ASCII text
    in a new secret of its class."""
    char62, char63 = _alphabet(urlsafe)

    def encoder(out: Any, data: Any, size: int) -> None:
        lib.sm_base64_encode(out, data, size, char62, char63)

    return _encode(secret, "base64", lib.sm_base64_encoded_length, encoder, arena)


def _encode(
    secret: _Secret,
    kind: str,
    encoded_length: Callable[[int], int],
    encoder: Callable[[Any, Any, int], None],
    arena: ArenaCore | None,
) -> _Secret:
    """``encoder(out, data, size)`` writes the text of ``secret`` into a new secret of its
    class, ``encoded_length(size)`` bytes long; both buffers held as exports throughout."""
    with secret.view() as source:
        size = source.nbytes
        length = encoded_length(size)
        encoded = _made(type(secret)(length, arena=arena))
        try:
            if size:
                with (
                    ffi.from_buffer("unsigned char[]", source) as data,
                    _output(encoded, length) as out,
                ):
                    encoder(out, data, size)
                lib.sm_burn_stack(_STACK_BURN)
            _check_not_closed(encoded, kind)
        except BaseException:
            encoded.close()
            raise
    return encoded


# -- decoding ---------------------------------------------------------------------------------

Decoder = Callable[[Any, int, Any, int, Any, Any], int]


def _hex_decoder(out: Any, capacity: int, text: Any, length: int, written: Any, at: Any) -> int:
    status: int = lib.sm_hex_decode(out, capacity, text, length, written, at)
    return status


def _base64_decoder(urlsafe: bool) -> Decoder:
    char62, char63 = _alphabet(urlsafe)

    def decoder(out: Any, capacity: int, text: Any, length: int, written: Any, at: Any) -> int:
        status: int = lib.sm_base64_decode(
            out, capacity, text, length, char62, char63, written, at
        )
        return status

    return decoder


def _alphabet(urlsafe: bool) -> tuple[int, int]:
    if not isinstance(urlsafe, bool):
        raise TypeError(f"urlsafe must be True or False, not {type(urlsafe).__name__}")
    return _URLSAFE if urlsafe else _STANDARD


def _decode(
    cls: type[_Secret],
    kind: str,
    decoder: Decoder,
    text: Text,
    arena: ArenaCore | None,
    base: int,
) -> _Secret:
    with _text_view(text) as (pointer, size):
        return _decode_pointer(cls, kind, decoder, pointer, size, arena, base)


def _decode_pointer(
    cls: type[_Secret],
    kind: str,
    decoder: Decoder,
    text: Any,
    length: int,
    arena: ArenaCore | None,
    base: int,
) -> _Secret:
    """Two passes over the text: the first checks it and counts the decoded bytes without
    writing any, the second writes them into a SecureBytes of exactly that size."""
    written = ffi.new("size_t *")
    error_at = ffi.new("size_t *")
    status = decoder(ffi.NULL, 0, text, length, written, error_at)
    if status != lib.SM_CODEC_OK:
        raise ValueError(_error_message(kind, status, base + error_at[0]))
    size = written[0]
    decoded = _made(cls(size, arena=arena))
    try:
        if size:
            with _output(decoded, size) as out:
                status = decoder(out, size, text, length, written, error_at)
            lib.sm_burn_stack(_STACK_BURN)
            # first: a purge wipes a secret text under the decoder too, and that is what
            # the caller needs to hear, not the decoding error the zeros caused
            _check_not_closed(decoded, kind)
            if status == lib.SM_CODEC_OUTPUT_SIZE:
                raise RuntimeError(
                    f"the {kind} text changed while it was being decoded (another thread "
                    "wrote to it); nothing was decoded. Do not modify it until the call returns."
                )
            if status != lib.SM_CODEC_OK:
                raise ValueError(_error_message(kind, status, base + error_at[0]))
    except BaseException:
        decoded.close()  # wipes what was decoded so far
        raise
    return decoded


def _output(secret: SecureBytesBase, length: int) -> Any:
    """The secret's bytes for a codec to write, as a buffer export held for the whole
    ``with`` block.

    cffi lets the GIL go for the call, so another thread may close the secret (or purge
    every secret) while the codec writes. A raw address would then point into a slot that
    was freed (handed to the next secret) or a region that was unmapped. Under an export
    the core only wipes: the memory stays mapped and the slot stays the secret's until the
    export is released, when it is wiped again and freed. ``SecureBytesClosedError`` if
    the secret is already closed.

    The secret's class is the caller's (``from_hex`` is a classmethod): its buffer must be
    exactly ``length`` bytes, or the codec would write past the end of a shorter one (a
    subclass can define ``__buffer__`` on Python 3.12 and later).
    """
    out = ffi.from_buffer("unsigned char[]", secret, require_writable=True)
    if len(out) != length:
        ffi.release(out)
        raise TypeError(
            f"the new {type(secret).__name__}'s buffer is {len(out)} bytes, not the "
            f"{length} it was made with: its class's __buffer__ does not export its own memory"
        )
    return out


def _made(secret: _Secret) -> _Secret:
    """What the caller's class made for the result: a secret, or the codec would write the
    decoded bytes into ordinary memory.

    Its buffer must be its own memory too: a class that overrides ``__buffer__`` (Python
    3.12 and later) may export any memory of the right length, a ``bytearray`` say, and
    the codec would write the secret there while the secret itself stays zeros.
    """
    if not isinstance(secret, SecureBytesBase):
        raise TypeError(
            f"the class made a {type(secret).__name__}, not a SecureBytes: the codec writes "
            "only into a SecureBytes"
        )
    exporter = getattr(type(secret), "__buffer__", None)
    if exporter is not getattr(SecureBytesBase, "__buffer__", None):
        secret.close()
        raise TypeError(
            f"{type(secret).__name__} overrides __buffer__: the codec writes only into a "
            "SecureBytes's own memory, which only SecureBytes's own buffer exports"
        )
    return secret


def _check_not_closed(secret: SecureBytesBase, kind: str) -> None:
    """A purge (or another thread's close) that ran while the codec wrote has wiped what it
    wrote: say so rather than hand back a closed secret."""
    if secret.closed:
        raise SecureBytesClosedError(
            f"the {kind} result was closed while it was being written (securemem.purge(), or "
            "another thread closed it); its bytes were wiped"
        )


@contextlib.contextmanager
def _text_view(text: Text) -> Iterator[tuple[Any, int]]:
    """A pointer to the text's bytes and their number, valid inside the block; no copy."""
    if isinstance(text, str):
        yield _str_pointer(text), len(text)  # ``text`` stays referenced: the pointer stays valid
        return
    if isinstance(text, SecureBytesBase):
        view = text.view()  # a view keeps its memory from reuse even if it is closed meanwhile
    else:
        try:
            view = memoryview(text)
        except TypeError:
            raise TypeError(
                "expected the text as a str, a bytes-like object or a SecureBytes, not "
                f"{type(text).__name__}"
            ) from None
    try:
        if not view.c_contiguous:
            raise TypeError(
                "the text must be a contiguous buffer; pass the object itself rather than a "
                "strided slice of it"
            )
        flat = view if view.format == "B" and view.ndim == 1 else view.cast("B")
        try:
            with ffi.from_buffer("unsigned char[]", flat) as pointer:
                yield pointer, flat.nbytes
        finally:
            flat.release()
    finally:
        view.release()


def _str_pointer(text: str) -> Any:
    if not text.isascii():
        position = next(index for index, char in enumerate(text) if not char.isascii())
        raise ValueError(
            f"the text holds a non-ASCII character at offset {position}: hex and base64 "
            "text is ASCII only"
        )
    if not text:
        return ffi.NULL
    size = ctypes.c_ssize_t()
    address = _utf8_and_size(text, ctypes.byref(size))
    if not address or size.value != len(text):  # cannot happen for an ASCII str on CPython
        raise RuntimeError("could not read the str's characters in place")
    return ffi.cast("const unsigned char *", address)


def _error_message(kind: str, status: int, offset: int) -> str:
    alphabet = (
        "0-9, a-f, A-F"
        if kind == "hex"
        else "A-Z, a-z, 0-9 and + / (or - _ with urlsafe=True), = for padding"
    )
    what = {
        lib.SM_CODEC_BAD_CHARACTER: f"a character that is not {kind} (allowed: {alphabet}, "
        "and whitespace).",
        lib.SM_CODEC_SPACE_IN_PAIR: "whitespace between the two digits of a byte (whitespace "
        "may only separate bytes).",
        lib.SM_CODEC_ODD_DIGITS: "the text ends in the middle of a byte: an odd number of hex "
        "digits; is a digit missing?",
        lib.SM_CODEC_BAD_PADDING: "'=' padding where none may be (padding only ends the "
        "last group of four symbols, as '==' after two or '=' after three).",
        lib.SM_CODEC_AFTER_PADDING: "data after the '=' padding; is this two base64 texts "
        "run together?",
        lib.SM_CODEC_INCOMPLETE: "the text ends in the middle of a group of four symbols: "
        "is the '=' padding missing, or the text cut short?",
    }.get(status, f"error {status}.")
    return f"invalid {kind} at offset {offset}: {what} Nothing was decoded."
