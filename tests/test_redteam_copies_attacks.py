"""The attacks of ``tests/test_redteam_copies.py``, each run in a child interpreter.

No pytest here: a child imports only this module and securemem, and starts in a fraction
of the time a pytest import takes (there are dozens of children).
"""

from __future__ import annotations

import mmap
from typing import Any

from securemem import SecureBytes

LENGTH = 48  # the needle
# The content is PAD bytes of padding, then the needle. A freed heap block is reused from its
# front: small ones by the next object of their size class, medium ones by the next malloc,
# such as the scan's own 8 KiB buffers for /proc/self/maps. 16 KiB in front keeps the
# needle's copy out of reach of both (and under glibc's 128 KiB mmap threshold, so free()
# does not unmap it). With 48 bytes of content the copy was there and the scan missed it.
PAD = 16000
CONTENT = PAD + LENGTH
FILLER = 0x2E


def _content(needle: memoryview, index: int) -> int:
    return FILLER if index < PAD else needle[index - PAD]


def _interleave_into(target: Any, needle: memoryview) -> None:
    """The content in every second byte of target (filler between), one int at a time."""
    for index in range(CONTENT):
        target[2 * index] = _content(needle, index)
        target[2 * index + 1] = FILLER


def strided_scenario(operation: str) -> dict[str, Any]:
    from tests.memscan import Marker

    marker = Marker(LENGTH)
    needle = marker.view()
    wanted: list[int] = []  # addresses where the operation was asked to put the needle
    keep: list[SecureBytes] = []
    if operation == "s[::2]":
        secret = SecureBytes(2 * CONTENT)
        _interleave_into(secret, needle)
        part = secret[::2]
        keep += [secret, part]
        wanted.append(part.address + PAD)
    elif operation == "s[::2] = data":
        secret = SecureBytes(2 * CONTENT)
        with SecureBytes(CONTENT) as source:
            for index in range(CONTENT):
                source[index] = _content(needle, index)
            secret[::2] = source
        keep.append(secret)
    elif operation in ("SecureBytes(strided)", "s == strided"):
        # The user's own buffer holds the secret strided (every second byte): it is not the
        # needle anywhere, and the operation must not make it one outside locked memory.
        backing = mmap.mmap(-1, 2 * CONTENT)
        _interleave_into(backing, needle)
        strided = memoryview(backing)[::2]
        if operation == "SecureBytes(strided)":
            copy = SecureBytes(strided)
            keep.append(copy)
            wanted.append(copy.address + PAD)
        else:
            secret = SecureBytes(CONTENT)
            for index in range(CONTENT):
                secret[index] = _content(needle, index)
            keep.append(secret)
            wanted.append(secret.address + PAD)
            assert secret == strided
    else:
        raise ValueError(operation)
    found_open = marker.scan().found
    for secret in keep:
        secret.close()
    found_closed = marker.scan().found
    return {
        "stray_while_open": sorted(set(found_open) - set(wanted)),
        "missing": sorted(set(wanted) - set(found_open)),
        "left_after_close": found_closed,
    }
