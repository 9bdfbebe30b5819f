"""Reading DER framing in place: tags, lengths, object identifiers and small public integers.

The one DER reader of the key formats (PKCS#12's costs, encrypted PKCS#8's KDF parameters,
EC scalars, telling a certificate from a key). The data walked may hold a private key (a
PKCS#12 key bag, an ECPrivateKey), so nothing here copies the contents of an element: an
:class:`Element` is offsets into the caller's view, and only object identifiers and integers
the caller asks for (iteration counts, versions: public framing) are ever turned into Python
values. Strict: single-byte tags, definite lengths in their shortest form, children that fill
their parent exactly, integers non-negative and minimal; anything else is :class:`Malformed`,
with an offset and never a byte of the data. (:func:`contents_offset` alone is lenient: it
only recognises a format from its first bytes.)
"""

from __future__ import annotations

from dataclasses import dataclass

INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
SEQUENCE = 0x30
SET = 0x31


def explicit(number: int) -> int:
    """The tag of a context-specific, constructed ``[number]``."""
    return 0xA0 | number


_LONGEST_LENGTH = 4  # length octets: a 4 GiB element is already far beyond any key file
_LARGEST_INTEGER = 16  # bytes of an integer read as a value (iteration counts, versions)
_LONGEST_OID = 32  # bytes of an object identifier a message writes out (algorithms: under 12)


class Malformed(Exception):
    """The DER is not what was expected; the message has an offset, never the data."""


@dataclass(frozen=True)
class Element:
    tag: int
    start: int  # the tag's offset
    begin: int  # the contents' offset
    end: int  # just past the contents

    @property
    def size(self) -> int:
        return self.end - self.begin


def element(view: memoryview, offset: int, limit: int) -> Element:
    """The element whose tag is at ``offset``, which must end by ``limit``."""
    if offset + 2 > limit:
        raise Malformed(f"truncated at offset {offset}")
    tag, first = view[offset], view[offset + 1]
    if tag & 0x1F == 0x1F:
        raise Malformed(f"a multi-byte tag at offset {offset}")
    begin = offset + 2
    if first < 0x80:
        size = first
    else:
        count = first & 0x7F
        if count == 0:
            raise Malformed(f"an indefinite length (BER, not DER) at offset {offset}")
        if count > _LONGEST_LENGTH or begin + count > limit:
            raise Malformed(f"a length that cannot be right at offset {offset}")
        size = 0
        for index in range(count):
            size = size << 8 | view[begin + index]
        if size < 0x80 or view[begin] == 0:
            raise Malformed(f"a length not in its shortest form at offset {offset}")
        begin += count
    if begin + size > limit:
        raise Malformed(f"an element longer than what holds it at offset {offset}")
    return Element(tag, offset, begin, begin + size)


def whole(view: memoryview) -> Element:
    """The one element that is all of ``view`` (no trailing bytes)."""
    top = element(view, 0, view.nbytes)
    if top.end != view.nbytes:
        raise Malformed(f"{view.nbytes - top.end} bytes after the end of the structure")
    return top


def children(view: memoryview, parent: Element) -> list[Element]:
    """The elements inside a constructed ``parent``, which they must fill exactly."""
    if not parent.tag & 0x20:
        raise Malformed(f"a primitive element where a constructed one belongs, at {parent.start}")
    found = []
    offset = parent.begin
    while offset < parent.end:
        child = element(view, offset, parent.end)
        found.append(child)
        offset = child.end
    return found


def expect(item: Element, tag: int, what: str) -> Element:
    if item.tag != tag:
        raise Malformed(f"{what} at offset {item.start} has tag 0x{item.tag:02x}, not 0x{tag:02x}")
    return item


def fields(
    view: memoryview, parent: Element, tag: int, what: str, least: int, most: int | None = None
) -> list[Element]:
    """The children of ``parent``, which must have ``tag``, and at least ``least`` of them
    (and at most ``most``)."""
    expect(parent, tag, what)
    found = children(view, parent)
    if len(found) < least or (most is not None and len(found) > most):
        wanted = least if len(found) < least else most
        raise Malformed(f"{what} at offset {parent.start} has {len(found)} fields, not {wanted}")
    return found


def shaped(view: memoryview, parent: Element, what: str, *tags: int) -> list[Element]:
    """The children of the SEQUENCE ``parent``: exactly as many as ``tags``, with those tags."""
    found = fields(view, parent, SEQUENCE, what, len(tags), len(tags))
    for item, tag in zip(found, tags, strict=True):
        expect(item, tag, f"a field of {what}")
    return found


def contents_offset(view: memoryview, offset: int) -> int:
    """Where the contents of the element at ``offset`` start, its length read leniently (long,
    indefinite or not in its shortest form): for recognising a format from its first bytes,
    never for reading it. IndexError when ``view`` ends first."""
    first = view[offset + 1]
    return offset + 2 + (first & 0x7F if first > 0x80 else 0)


def is_oid(view: memoryview, item: Element, encoded: bytes) -> bool:
    """Whether ``item`` is the OBJECT IDENTIFIER whose contents are ``encoded``
    (compared in place)."""
    return item.tag == OID and view[item.begin : item.end] == encoded


def oid(dotted: str) -> bytes:
    """The DER contents of an OBJECT IDENTIFIER written as ``1.2.840...``."""
    numbers = [int(part) for part in dotted.split(".")]
    arcs = [numbers[0] * 40 + numbers[1], *numbers[2:]]
    encoded = bytearray()
    for arc in arcs:
        septets = [arc & 0x7F]
        arc >>= 7
        while arc:
            septets.append(0x80 | (arc & 0x7F))
            arc >>= 7
        encoded.extend(reversed(septets))
    return bytes(encoded)


def dotted(view: memoryview, item: Element) -> str:
    """An OBJECT IDENTIFIER (public framing) written out, for messages; a long one (no
    algorithm's is) only by its size, so that a hostile file cannot fill the message."""
    expect(item, OID, "an object identifier")
    if item.size > _LONGEST_OID:
        return f"a {item.size}-byte object identifier"
    arcs, value = [], 0
    for index in range(item.begin, item.end):
        value = value << 7 | (view[index] & 0x7F)
        if not view[index] & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        return "?"
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in [first, arcs[0] - 40 * first, *arcs[1:]])


def integer(view: memoryview, item: Element, what: str) -> int:
    """The value of a public INTEGER (a version, an iteration count): non-negative, as every
    count and version is, and minimally encoded (DER)."""
    expect(item, INTEGER, what)
    if item.size == 0 or item.size > _LARGEST_INTEGER:
        raise Malformed(f"{what} at offset {item.start} is {item.size} bytes long")
    if view[item.begin] & 0x80:
        raise Malformed(f"{what} at offset {item.start} is negative")
    if item.size > 1 and view[item.begin] == 0 and not view[item.begin + 1] & 0x80:
        raise Malformed(f"{what} at offset {item.start} is not in its shortest form")
    return int.from_bytes(view[item.begin : item.end], "big")
