"""DER for the key tests: elements built, split and edited as ``bytes``.

Written here, not taken from securemem: the tests give these bytes to securemem's DER reader,
so they must not be made by it. Definite lengths only, as the tools write them.
"""

from __future__ import annotations

from typing import Any


def element(tag: int, *contents: bytes) -> bytes:
    """One element: ``tag``, the DER length of the joined ``contents``, the contents."""
    body = b"".join(contents)
    if len(body) < 0x80:
        return bytes((tag, len(body))) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + body


def split(data: bytes) -> tuple[int, bytes, int]:
    """The first element of ``data``: its tag, its contents, and where it ends."""
    size, start = data[1], 2
    if size & 0x80:
        start = 2 + (size & 0x7F)
        size = int.from_bytes(data[2:start], "big")
    return data[0], data[start : start + size], start + size


def children(contents: bytes) -> list[bytes]:
    """The elements, each whole (tag and length included), one after another in ``contents``."""
    found, offset = [], 0
    while offset < len(contents):
        _tag, _inner, end = split(contents[offset:])
        found.append(contents[offset : offset + end])
        offset += end
    return found


def tree(data: bytes) -> list[Any]:
    """The elements of ``data`` as a list of (tag, contents), constructed ones as lists."""
    nodes: list[Any] = []
    for whole in children(data):
        tag, inner, _end = split(whole)
        nodes.append((tag, tree(inner) if tag & 0x20 else inner))
    return nodes


def from_tree(nodes: list[Any]) -> bytes:
    return b"".join(
        element(tag, from_tree(body) if isinstance(body, list) else body) for tag, body in nodes
    )


def replaced(whole: bytes, path: tuple[int | str, ...], new: bytes) -> bytes:
    """``whole`` with the element at ``path`` (child indexes; "in" enters an OCTET STRING that
    holds DER) replaced by ``new`` (b"": removed), every length on the way fixed."""
    if not path:
        return new
    tag, contents, _end = split(whole)
    if path[0] == "in":
        return element(tag, replaced(contents, path[1:], new))
    parts = children(contents)
    index = int(path[0])
    parts[index] = replaced(parts[index], path[1:], new)
    return element(tag, *parts)


def oid(dotted: str) -> bytes:
    """An OBJECT IDENTIFIER element."""
    arcs = [int(arc) for arc in dotted.split(".")]
    encoded = b""
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        while arc := arc >> 7:
            chunk.append(0x80 | (arc & 0x7F))
        encoded += bytes(reversed(chunk))
    return element(0x06, encoded)


def integer(value: int) -> bytes:
    """A non-negative INTEGER element."""
    return element(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))
