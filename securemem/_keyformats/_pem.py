"""PEM blocks in locked memory: find them, read their labels, decode a body into locked memory.

A PEM file is text: any lines, then ``-----BEGIN LABEL-----``, a base64 body (optionally after
RFC 1421 headers such as ``Proc-Type``), and ``-----END LABEL-----``; a file may hold several
blocks (a certificate chain and a key, ``EC PARAMETERS`` before ``EC PRIVATE KEY``). Everything
here reads the file through a memoryview of its :class:`~securemem.SecureBytes`: no ``bytes``
or ``str`` copy of a body is ever made. Labels are the only text taken out, and only once they
are known to be short, upper-case ASCII (they name the block, they are not part of the key).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from securemem._arena import Arena
from securemem._errors import KeyFormatError
from securemem._securebytes import SecureBytes

_BEGIN = b"-----BEGIN "
_END = b"-----END "
_DASHES = b"-----"
_BOM = b"\xef\xbb\xbf"
_LABEL_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ")
_MAX_LABEL = 64

_COLON = 0x3A  # ':' only appears in RFC 1421 header lines, never in a base64 body


@dataclass(frozen=True)
class PemBlock:
    """Where one ``BEGIN``/``END`` block sits in the file (offsets into its bytes)."""

    label: str
    begin: int  # the BEGIN line
    body: int  # the first line after it
    end: int  # the END line
    after: int  # the first byte after the END line
    has_headers: bool  # RFC 1421 headers (Proc-Type, DEK-Info): a legacy encrypted PEM


def blocks(view: memoryview) -> Iterator[PemBlock]:
    """Every complete PEM block in ``view``, in order. Text around and between blocks (a
    UTF-8 byte-order mark, comments, ``openssl`` "Bag Attributes") is skipped."""
    index = len(_BOM) if view[: len(_BOM)] == _BOM else 0
    while True:
        begin = find_line(view, _BEGIN, index)
        if begin < 0:
            return
        label = _label(view, begin + len(_BEGIN))
        body = next_line(view, begin)
        if label is None:
            raise KeyFormatError(
                f"the PEM BEGIN line at offset {begin} has no readable label (expected e.g. "
                "'-----BEGIN PRIVATE KEY-----'): is the file damaged?"
            )
        end = _matching_end(view, body, label)
        if end < 0:
            raise KeyFormatError(
                f"the PEM block '{label}' has no '-----END {label}-----' line: is the file "
                "complete?"
            )
        headers = any(view[offset] == _COLON for offset in range(body, end))
        after = next_line(view, end)
        yield PemBlock(label, begin, body, end, after, headers)
        index = after


def _label(view: memoryview, start: int) -> str | None:
    """The label of a BEGIN/END line whose label starts at ``start``, if it is well formed."""
    stop = min(view.nbytes, start + _MAX_LABEL + len(_DASHES))
    for offset in range(start, stop):
        if view[offset : offset + len(_DASHES)] == _DASHES:
            label = view[start:offset]
            if label.nbytes and all(code in _LABEL_BYTES for code in label):
                return label.tobytes().decode("ascii")  # vetted: upper-case ASCII, not key data
            return None
        if view[offset] not in _LABEL_BYTES:
            return None
    return None


def _matching_end(view: memoryview, start: int, label: str) -> int:
    # The next BEGIN is looked for once (not again after every END of another label: that
    # was quadratic in the number of END lines).
    next_begin = find_line(view, _BEGIN, start)
    index = start
    while True:
        end = find_line(view, _END, index)
        if end < 0 or 0 <= next_begin < end:
            return -1  # no END at all, or the next block starts before this one ends
        if _label(view, end + len(_END)) == label:
            return end
        index = next_line(view, end)


def decode(view: memoryview, block: PemBlock, arena: Arena | None) -> SecureBytes:
    """The block's base64 body, decoded straight into locked memory (by the constant-time
    decoder behind :meth:`SecureBytes.from_base64`, which skips the line ends)."""
    failure: KeyFormatError
    try:
        return SecureBytes.from_base64(view[block.body : block.end], arena=arena)
    except ValueError as error:  # the codec's messages name offsets, never the text
        failure = KeyFormatError(
            f"the PEM block '{block.label}' is not valid base64 ({error}): is the file damaged?"
        )
    raise failure


def find_line(view: memoryview, prefix: bytes, start: int) -> int:
    """Offset of the first line at or after ``start`` that begins with ``prefix``, or -1."""
    index = start
    size = view.nbytes
    while index < size:
        if view[index : index + len(prefix)] == prefix:
            return index
        index = next_line(view, index)
    return -1


def next_line(view: memoryview, index: int) -> int:
    """The offset just after the ``\\n`` that ends the line holding ``index``."""
    size = view.nbytes
    while index < size and view[index] != 0x0A:
        index += 1
    return index + 1
