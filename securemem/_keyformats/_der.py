"""DER structures written straight into locked memory, from pieces of other locked buffers.

A structure is a list of pieces: ``bytes`` for tags, lengths and constants (never secret),
memoryviews for the secret values (slices of a :class:`~securemem.SecureBytes`). Sizes are
worked out first, then every piece is copied once into a new SecureBytes; the secret pieces
never pass through a ``bytes`` object or an int.
"""

from __future__ import annotations

from collections.abc import Sequence

from securemem._arena import Arena
from securemem._securebytes import SecureBytes

Piece = bytes | memoryview
_SEQUENCE = 0x30
_INTEGER = 0x02
_OCTET_STRING = 0x04
_BIT_STRING = 0x03


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes((size,))
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def _size(pieces: Sequence[Piece]) -> int:
    return sum(len(piece) if isinstance(piece, bytes) else piece.nbytes for piece in pieces)


def tagged(tag: int, pieces: Sequence[Piece]) -> list[Piece]:
    """``tag``, the length of ``pieces``, then ``pieces``."""
    return [bytes((tag,)) + _length(_size(pieces)), *pieces]


def sequence(*fields: list[Piece]) -> list[Piece]:
    return tagged(_SEQUENCE, [piece for field in fields for piece in field])


def small_integer(value: int) -> list[Piece]:
    """A public constant (a version number)."""
    return tagged(_INTEGER, [value.to_bytes(1, "big")])


def significant(magnitude: memoryview) -> memoryview:
    """An unsigned big-endian number without its leading zero bytes (a view: not copied)."""
    start = 0
    while start < magnitude.nbytes and magnitude[start] == 0:
        start += 1
    return magnitude[start:]


def fixed_size(magnitude: memoryview, size: int) -> list[Piece] | None:
    """An unsigned big-endian number at exactly ``size`` bytes (leading zero bytes dropped or
    added: an SEC 1 scalar), or None when it does not fit."""
    digits = significant(magnitude)
    return None if digits.nbytes > size else [bytes(size - digits.nbytes), digits]


def integer(magnitude: memoryview) -> list[Piece]:
    """An INTEGER from an unsigned big-endian number (an SSH mpint body works too)."""
    digits = significant(magnitude)
    if digits.nbytes == 0:
        return tagged(_INTEGER, [b"\x00"])
    if digits[0] & 0x80:
        return tagged(_INTEGER, [b"\x00", digits])  # keep it positive
    return tagged(_INTEGER, [digits])


def octet_string(pieces: Sequence[Piece]) -> list[Piece]:
    return tagged(_OCTET_STRING, pieces)


def bit_string(content: memoryview) -> list[Piece]:
    return tagged(_BIT_STRING, [b"\x00", content])  # no unused bits


def explicit(number: int, pieces: Sequence[Piece]) -> list[Piece]:
    """A context-specific, constructed ``[number]`` wrapper."""
    return tagged(0xA0 | number, pieces)


def write(pieces: Sequence[Piece], arena: Arena | None) -> SecureBytes:
    """The pieces, concatenated into a new SecureBytes."""
    result = SecureBytes(_size(pieces), arena=arena)
    with result.view() as out:
        offset = 0
        for piece in pieces:
            size = len(piece) if isinstance(piece, bytes) else piece.nbytes
            out[offset : offset + size] = piece
            offset += size
    return result
