"""The canary of a guarded secret covers all of its slack: every byte of its data pages in
front of the data, whatever the size.

A guarded secret is right-aligned against its trailing guard page, so a write one past the
data faults (SIGSEGV) and a write anywhere before it, down to the first byte of the data
pages, lands in the random canary: ``check()``, ``close()`` and release by garbage
collection must all see it. tests/test_guarded.py already covers the layout for one size,
one byte past the data for 16 bytes, a close after an underrun by one byte (-1) and a
collection after one at -3; this file covers every offset of the slack for any size, the
sizes where the data fills whole pages, ``check()`` in every protection, and what the error
gives away.
"""

from __future__ import annotations

import ctypes
import gc
import mmap
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import securemem
from securemem import CanaryError, SecureBytes, _procfs
from securemem._core import CANARY_SIZE
from tests.conftest import read_raw, run_python

PAGE = mmap.PAGESIZE
SIZES = st.integers(min_value=1, max_value=3 * PAGE)
# Letters the error messages never use: any of them in a message came from the secret.
MARKER = b"ZQXJ"


def marked(size: int) -> SecureBytes:
    """A guarded secret filled with a recognisable marker."""
    return SecureBytes((MARKER * (size // len(MARKER) + 1))[:size], guarded=True)


def data_pages_start(secret: SecureBytes) -> int:
    """Where the kernel says the secret's data pages begin (its own locked mapping, between
    the two PROT_NONE guard pages), checked against the layout the design promises."""
    data = _procfs.mapping_at(secret.address)
    assert data is not None
    guard = _procfs.mapping_at(secret.address + len(secret))
    assert guard is not None and "rd" not in guard.flags  # the guard page follows the data
    assert guard.start == secret.address + len(secret) == data.end
    assert data.start % PAGE == 0
    return data.start


def slack_of(secret: SecureBytes) -> int:
    """Bytes between the first byte of the data pages and the first byte of the data."""
    slack = secret.address - data_pages_start(secret)
    assert CANARY_SIZE <= slack < PAGE + CANARY_SIZE  # at least a whole canary, never a page more
    return slack


def flip_byte_at(address: int) -> None:
    """Write, through a raw pointer as native code would, a byte that differs from the one
    there (its complement), so the write is a real change whatever the canary holds."""
    byte = ctypes.c_ubyte.from_address(address)
    byte.value ^= 0xFF


def assert_tells_nothing(text: str, size: int) -> None:
    assert f"{size} bytes" in text, text
    assert not set(text) & set(MARKER.decode()), text


@contextmanager
def unraisables() -> Iterator[list[BaseException | None]]:
    seen: list[BaseException | None] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda info: seen.append(info.exc_value)
    try:
        yield seen
    finally:
        sys.unraisablehook = previous


def held() -> tuple[int, int, int, int | None]:
    """What the default arena and the kernel say is held: secrets, bytes, mappings, VmLck."""
    stats = securemem.stats()
    return (
        stats.allocations,
        stats.locked_bytes,
        stats.mapped_bytes,
        _procfs.process_locked_bytes(),
    )


@settings(max_examples=60, deadline=None)
@given(size=SIZES, data=st.data())
@example(size=PAGE - CANARY_SIZE, data=None)  # the smallest slack: the canary alone
@example(size=PAGE, data=None)  # a whole page of slack
@example(size=PAGE - CANARY_SIZE + 1, data=None)  # one byte too many for one page
def test_a_write_anywhere_in_the_slack_is_caught_by_check_and_close(
    size: int, data: st.DataObject | None
) -> None:
    before = held()
    secret = marked(size)
    slack = slack_of(secret)
    start = secret.address - slack
    # hypothesis picks the offset; the explicit examples try both ends of the slack
    offsets = [data.draw(st.integers(1, slack), label="k")] if data else [1, slack]
    view = secret.view()  # keeps the pages mapped after close, to see that they were wiped
    for k in offsets:
        flip_byte_at(secret.address - k)
        with pytest.raises(CanaryError) as checked:
            secret.check()
        assert_tells_nothing(str(checked.value), size)
        assert not secret.closed and secret == (MARKER * size)[:size]  # check() only reports
        flip_byte_at(secret.address - k)  # undone: intact again
        secret.check()
    flip_byte_at(secret.address - offsets[0])
    with pytest.raises(CanaryError) as closed:
        secret.close()
    assert_tells_nothing(str(closed.value), size)
    assert_tells_nothing(repr(closed.value), size)
    assert secret.closed and "Z" not in repr(secret)
    assert read_raw(start, slack + size) == bytes(slack + size)  # data and canary wiped
    del view
    assert held() == before  # the mapping and its lock are given back
    assert _procfs.mapping_at(start) is None


@settings(max_examples=25, deadline=None)
@given(size=SIZES, data=st.data())
def test_a_write_in_the_slack_is_reported_when_the_secret_is_collected(
    size: int, data: st.DataObject
) -> None:
    before = held()
    secret = marked(size)
    slack = slack_of(secret)
    start = secret.address - slack
    flip_byte_at(secret.address - data.draw(st.integers(1, slack), label="k"))
    with unraisables() as seen:
        del secret
        gc.collect()
    assert len(seen) == 1 and isinstance(seen[0], CanaryError)
    assert_tells_nothing(str(seen[0]), size)
    assert held() == before
    assert _procfs.mapping_at(start) is None


@pytest.mark.parametrize(
    ("size", "slack"),
    [
        (PAGE, PAGE),  # a whole page of data: a whole page of canary in front
        (2 * PAGE, PAGE),
        (PAGE - CANARY_SIZE, CANARY_SIZE),  # fits one page with exactly the canary in front
        (2 * PAGE - CANARY_SIZE, CANARY_SIZE),
        (PAGE - CANARY_SIZE + 1, 2 * PAGE - (PAGE - CANARY_SIZE + 1)),  # takes another page
    ],
)
def test_data_filling_whole_pages_still_has_a_checked_canary(size: int, slack: int) -> None:
    # No guard page is adjacent to the front of the data here: only the canary guards it.
    secret = marked(size)
    assert slack_of(secret) == slack
    for k in (1, CANARY_SIZE, slack):
        flip_byte_at(secret.address - k)
        with pytest.raises(CanaryError):
            secret.check()
        flip_byte_at(secret.address - k)
    secret.check()
    secret.close()


@pytest.mark.parametrize("size", [1, PAGE - CANARY_SIZE, PAGE, PAGE + 1, 3 * PAGE])
def test_one_byte_past_the_data_is_the_guard_page(size: int) -> None:
    result = run_python(
        f"""
        import ctypes
        from securemem import SecureBytes
        secret = SecureBytes({size}, guarded=True)
        ctypes.c_ubyte.from_address(secret.address + {size} - 1).value = 1
        print("last byte written", flush=True)
        ctypes.c_ubyte.from_address(secret.address + {size}).value = 1
        print("survived", flush=True)
        """
    )
    assert result.stdout.split() == ["last", "byte", "written"]
    assert result.returncode == -signal.SIGSEGV, result.stderr


@settings(max_examples=40, deadline=None)
@given(size=SIZES, fill=st.integers(0, 255))
def test_an_intact_canary_never_raises_in_any_protection(size: int, fill: int) -> None:
    before = held()
    secret = marked(size)
    secret[:] = bytes([fill]) * size  # the whole data, up to its first byte, is the secret's
    secret.check()
    secret.randomize()
    secret.wipe()
    secret.check()
    secret.protect("readonly")
    secret.check()
    secret.protect("noaccess")
    secret.check()  # opens the pages to read the canary, then shuts them again
    assert secret.protection == "noaccess"
    with secret.accessible("readwrite"):
        secret[0] = fill
        secret.check()
    assert secret.protection == "noaccess"
    secret.check()
    secret.close()
    assert held() == before


def test_check_on_a_no_access_secret_restores_the_protection() -> None:
    # check() must open the pages to read a no-access canary; afterwards they are shut again.
    result = run_python(
        """
        from securemem import SecureBytes
        secret = SecureBytes(b"abc", guarded=True)
        secret.protect("noaccess")
        secret.check()
        print(secret.protection, flush=True)
        secret[0]
        """
    )
    assert result.stdout.split() == ["noaccess"]
    assert result.returncode == -signal.SIGSEGV, result.stderr


def test_check_on_a_closed_or_packed_secret() -> None:
    packed = SecureBytes(b"abc")
    packed.check()  # no canary to check: nothing to report
    packed.close()
    with pytest.raises(securemem.SecureBytesClosedError):
        packed.check()
    guarded = SecureBytes(b"abc", guarded=True)
    guarded.close()
    with pytest.raises(securemem.SecureBytesClosedError):
        guarded.check()
