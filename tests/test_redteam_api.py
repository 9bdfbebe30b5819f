"""Red team: the public API given what users (and attackers) actually pass (issue 14).

Options are checked, not truth-tested; a size is a size however it is spelled; a secret is
a buffer on every supported Python; misuse gets a clear error naming what was wrong, never
an AttributeError from the inside, a cffi message, or a silently wrong answer.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import securemem
from securemem import Arena, SecureBytes, SecureBytesClosedError
from tests.conftest import child_env
from tests.test_redteam_support import MINE, SIZE, child_exit, describe_exit, in_child

MODULE = "tests.test_redteam_api_attacks"

# The wrong types are the point of some calls: make them through untyped names.
AnyArena: Any = Arena
AnySecureBytes: Any = SecureBytes


# -- options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "option", "error"),
    [
        (lambda: AnyArena(prefetch="no"), "prefetch", TypeError),
        (lambda: AnyArena(reserve_pages=2.5), "reserve_pages", TypeError),
        (lambda: AnyArena(region_pages="4"), "region_pages", TypeError),
        (lambda: AnyArena(kernel="linux"), "kernel", TypeError),
        (lambda: AnyArena(on_lock_failure=None), "on_lock_failure", (TypeError, ValueError)),
        (lambda: AnyArena(backend="tmpfs"), "backend", ValueError),
        (lambda: AnyArena(reserve_pages=-1), "reserve_pages", ValueError),
        (lambda: AnySecureBytes(32, guarded="no"), "guarded", TypeError),
        (lambda: AnySecureBytes.random(32, guarded="no"), "guarded", TypeError),
        (lambda: AnySecureBytes(32, arena="default"), "arena", TypeError),
    ],
    ids=[
        "prefetch='no'",
        "reserve_pages=2.5",
        "region_pages='4'",
        "kernel='linux'",
        "on_lock_failure=None",
        "backend='tmpfs'",
        "reserve_pages=-1",
        "guarded='no'",
        "random(guarded='no')",
        "arena='default'",
    ],
)
def test_options_are_checked_and_the_error_names_the_option(
    make: Any, option: str, error: type[Exception] | tuple[type[Exception], ...]
) -> None:
    """Main: prefetch="no" turned prefetch on, guarded="no" guarded, reserve_pages=2.5 was
    accepted and kernel="linux" failed later with an AttributeError."""
    before = securemem.stats().allocations
    with pytest.raises(error) as raised:
        made = make()
        if isinstance(made, SecureBytes):
            made.close()
    assert option in str(raised.value), f"the error does not name {option}: {raised.value}"
    assert securemem.stats().allocations == before, "a refused call left a secret behind"


def test_doctor_refuses_an_empty_requirement_list() -> None:
    """Main: ``securemem doctor --require ''`` checked nothing and passed."""
    result = subprocess.run(
        [sys.executable, "-m", "securemem", "doctor", "--require", ""],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
        check=False,
    )
    assert result.returncode != 0, "an empty --require passed: it checks nothing"
    assert "require" in (result.stderr + result.stdout), result.stderr


# -- sizes -----------------------------------------------------------------------------


class _FalsyInt(int):
    """An int subclass that is false in a boolean context (numpy-like, or adversarial)."""

    def __bool__(self) -> bool:
        return False


class _Size:
    """A size spelled as an object with ``__index__`` only."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


def test_random_with_a_falsy_int_subclass_gives_random_bytes() -> None:
    """Main: ``SecureBytes.random(n)`` with such an ``n`` returned 32 zero bytes, a "random"
    key of zeros (``if size and ...`` skipped the CSPRNG)."""
    with SecureBytes.random(_FalsyInt(SIZE)) as key:
        assert len(key) == SIZE
        assert bytes(key.view()) != bytes(SIZE), "a random key of zeros"
    with SecureBytes(_FalsyInt(SIZE)) as zeros:
        assert len(zeros) == SIZE


def test_random_takes_any_index_as_its_size() -> None:
    """Main: ``SecureBytes.random(obj)`` with an ``__index__`` object gave cffi's "an integer
    is required" although ``SecureBytes(obj)`` accepts it."""
    with SecureBytes.random(_Size(SIZE)) as key:
        assert len(key) == SIZE
        assert bytes(key.view()) != bytes(SIZE)


def test_random_reads_a_hostile_size_once() -> None:
    """Random bytes written for a second, larger answer would overrun the 16-byte slot."""
    result = in_child(MODULE, "hostile_random_size")
    assert result["corrupted"] == 0, f"random bytes overran into other secrets: {result}"
    assert result["outcome"] == "made" and result["length"] == 16, result


# -- comparison and membership ------------------------------------------------------------


@pytest.mark.parametrize("text", ["text", "", "A" * SIZE])
def test_comparing_with_text_raises_type_error(text: str) -> None:
    """Main: ``s == "text"`` returned False silently (a bug hiding as a wrong password);
    ``hmac.compare_digest`` raises TypeError for str against bytes, and so must this."""
    with SecureBytes(bytes([MINE]) * SIZE) as secret:
        with pytest.raises(TypeError):
            secret == text  # noqa: B015 - the comparison itself must raise
        with pytest.raises(TypeError):
            secret != text  # noqa: B015


@pytest.mark.parametrize(
    ("needle", "expected"),
    [(b"\x02", True), (b"\x02\x03", True), (b"\x09", False), (2, True), (9, False)],
)
def test_membership_is_right_or_refused(needle: bytes | int, expected: bool) -> None:
    """Main: ``b"\\x02" in s`` was False while s held that byte (``in`` iterated ints)."""
    with SecureBytes(b"\x01\x02\x03") as secret:
        try:
            found = needle in secret
        except TypeError:
            return  # refused: a clear error, the other acceptable answer
        assert found is expected


# -- lifecycle misuse ---------------------------------------------------------------------


def test_reinit_of_a_live_secret_is_refused_or_releases_the_old_slot() -> None:
    """Main: the old slot leaked, unwiped, for the life of the process."""
    result = in_child(MODULE, "reinit_live_secret")
    assert result["content_ok"], f"the secret's content is neither old nor new: {result}"
    assert result["copies_left"] == 0, f"the old bytes stayed in memory: {result}"
    assert result["allocations_left"] == 0, f"a slot leaked: {result}"


def test_a_bare_new_secret_is_refused_or_behaves_as_closed() -> None:
    """Main: AttributeError from the inside on every use."""
    result = in_child(MODULE, "bare_new")
    allowed = {"ok", "SecureBytesClosedError", "TypeError", "ValueError"}
    wrong = {name: raised for name, raised in result["uses"].items() if raised not in allowed}
    assert wrong == {}, f"uses of a bare SecureBytes raised the wrong errors: {wrong}"
    if result["uses"]:
        assert result["uses"]["getitem"] == "SecureBytesClosedError", result


@pytest.mark.parametrize(
    "operation", ["s[0]", "s[0] = 1", "s[:4]", "s == data", "SecureBytes(s)", "bytes(s)"]
)
def test_using_a_noaccess_secret_ends_the_process_as_documented(operation: str) -> None:
    """A known limitation, asserted exactly: ``protect("noaccess")`` is documented as "any read
    or write kills the process with SIGSEGV", and securemem's own operations are no exception
    (on main and on the native core). A core that knows a secret's protection could raise a
    clear error from its own operations instead; when it does, this test fails: make it
    assert ``in_child(...)["outcome"]`` is an error and the secret intact."""
    returncode, stdout = child_exit(MODULE, "use_a_noaccess_secret", operation=operation)
    assert returncode == -signal.SIGSEGV, (
        f"{operation} on a noaccess secret: {describe_exit(returncode)}, {stdout[-300:]}"
    )


# -- the buffer protocol on every supported Python -----------------------------------------


KEY = bytes(range(1, SIZE + 1))


def test_a_secret_is_a_buffer_without_view() -> None:
    """Main on 3.11: every hand-off needed ``.view()`` (``memoryview(s)`` raised TypeError)."""
    with SecureBytes(KEY) as secret:
        buffer: Any = secret  # typeshed's hmac wants bytes; any buffer works at run time
        view = memoryview(buffer)
        assert (view.nbytes, view.readonly, view.format) == (SIZE, False, "B")
        view[0] = 0x7F
        assert secret[0] == 0x7F
        view[0] = KEY[0]
        view.release()
        assert hashlib.sha256(buffer).digest() == hashlib.sha256(KEY).digest()
        mac = hmac.digest(buffer, b"m", "sha256")
        assert mac == hmac.digest(KEY, b"m", "sha256")
        assert hmac.new(KEY, buffer, "sha256").digest() == hmac.new(KEY, KEY, "sha256").digest()
        read_end, write_end = os.pipe()
        try:
            assert os.write(write_end, buffer) == SIZE
            assert os.read(read_end, SIZE + 1) == KEY
        finally:
            os.close(read_end)
            os.close(write_end)


def test_cryptography_takes_a_secret_as_its_key() -> None:
    aead = pytest.importorskip("cryptography.hazmat.primitives.ciphers.aead")
    with SecureBytes(KEY) as secret:
        sealed = aead.AESGCM(secret).encrypt(b"\x00" * 12, b"message", None)
        assert aead.AESGCM(KEY).decrypt(b"\x00" * 12, sealed, None) == b"message"


def _python_calls_named(name: str, action: Any) -> int:
    """How many Python-level functions called ``name`` ran during ``action()``."""
    seen = [0]

    def profiler(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_name == name:
            seen[0] += 1

    sys.setprofile(profiler)
    try:
        action()
    finally:
        sys.setprofile(None)
    return seen[0]


@pytest.mark.parametrize("convert", [bytes, bytearray], ids=["bytes", "bytearray"])
def test_bytes_copies_through_the_buffer_not_byte_by_byte(convert: type) -> None:
    """Main on 3.11: ``bytes(s)`` ran ``__iter__``, one Python int per byte, with
    ``_check_open`` per byte: 4 KiB took milliseconds."""
    with SecureBytes(4096) as secret:
        secret[7] = 9
        copies: list[Any] = []
        assert _python_calls_named("__iter__", lambda: copies.append(convert(secret))) == 0
        assert copies[0] == bytes(7) + b"\x09" + bytes(4088)
    try:

        class Spy(SecureBytes):  # type: ignore[misc,unused-ignore]
            def __iter__(self) -> Any:
                raise AssertionError("bytes() iterated the secret")

    except TypeError:
        return  # a final type: nothing can override __iter__
    with Spy(b"\x01\x02") as spied:
        assert convert(spied) == b"\x01\x02"


def test_closed_secret_refuses_buffer_export() -> None:
    secret: Any = SecureBytes(KEY)
    secret.close()
    with pytest.raises(SecureBytesClosedError):
        memoryview(secret)
    with pytest.raises(SecureBytesClosedError):
        hashlib.sha256(secret)


# -- overlap and disclosure ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "source"),
    [
        (slice(1, None), slice(None, -1)),
        (slice(None, -1), slice(1, None)),
        (slice(None, None, 2), slice(1, None, 2)),
        (slice(2, None), slice(None, -2)),
    ],
    ids=["right by one", "left by one", "strided", "right by two"],
)
def test_slice_assignment_from_a_view_of_itself_behaves_as_bytearray(
    target: slice, source: slice
) -> None:
    """Overlapping source and target (a view of the same secret): the result must be what a
    bytearray gives (memmove semantics), not what a forward memcpy smears."""
    data = bytes(range(1, 17))
    expected = bytearray(data)
    expected[target] = memoryview(bytearray(data))[source]
    with SecureBytes(data) as secret:
        view = secret.view()
        secret[target] = view[source]
        view.release()
        assert bytes(secret.view()) == bytes(expected)


@pytest.mark.parametrize(
    ("target", "source"),
    [
        (slice(None, None, -1), slice(None)),
        (slice(None, None, 2), slice(None, 8)),
        (slice(15, None, -2), slice(8, None)),
    ],
    ids=["reversed onto itself", "every other from the front half", "backwards from the back"],
)
def test_overlapping_slice_assignment_with_a_step_behaves_as_bytearray(
    target: slice, source: slice
) -> None:
    data = bytes(range(1, 17))
    expected = bytearray(data)
    expected[target] = memoryview(bytearray(data))[source]
    with SecureBytes(data) as secret:
        with secret.view() as view:
            secret[target] = view[source]
        assert bytes(secret.view()) == bytes(expected)


@st.composite
def _overlapping_assignment(draw: st.DrawFn) -> tuple[int, slice, slice]:
    """A size, a target slice and a source slice of the same secret, of equal lengths."""
    size = draw(st.integers(1, 48))
    steps = st.integers(-5, 5).filter(bool)
    target = slice(draw(st.integers(-size, size)), draw(st.integers(-size, size)), draw(steps))
    length = len(range(*target.indices(size)))
    step = draw(steps)
    # a source start from which `length` elements of `step` stay inside the secret
    reach = (length - 1) * step
    low, high = (0, size - 1 - reach) if step > 0 else (-reach, size - 1)
    if length == 0 or low > high:
        return size, target, slice(0, 0)  # nothing to move: an empty source
    start = draw(st.integers(low, high))
    stop = start + length * step
    return size, target, slice(start, stop if stop >= 0 else None, step)


@settings(max_examples=400, deadline=None)
@given(_overlapping_assignment())
def test_any_overlapping_slice_assignment_behaves_as_bytearray(
    case: tuple[int, slice, slice],
) -> None:
    size, target, source = case
    data = bytes(range(1, size + 1))
    moved = data[source]  # bytearray semantics: the source as it was before the write
    if len(moved) != len(range(*target.indices(size))):
        return  # the strategy's empty fallback source for a target it could not fill
    expected = bytearray(data)
    expected[target] = moved
    with SecureBytes(data) as secret:
        with secret.view() as view, view[source] as part:
            secret[target] = part
        assert bytes(secret.view()) == bytes(expected)


def test_no_error_message_repr_or_str_shows_a_secret_byte() -> None:
    """Invariant 7, through every error a user can provoke on an open and a closed secret."""
    content = b"Zq7Zq7Zq7Zq7Zq7Zq7Zq7Zq7Zq7Zq7Zq7"[:SIZE]
    texts: list[str] = []
    secret: Any = SecureBytes(content)
    misuses: list[Callable[[], object]] = [
        lambda: secret[SIZE + 5],
        lambda: secret.__setitem__(0, 300),
        lambda: secret.__setitem__(0, "Z"),
        lambda: secret.__setitem__(slice(0, 3), b"toolong"),
        lambda: secret["key"],
        lambda: hash(secret),
        lambda: __import__("pickle").dumps(secret),
        lambda: secret == "text",
        lambda: secret.protect("noaccess"),
    ]
    texts += [repr(secret), str(secret), f"{secret}"]
    for misuse in misuses:
        try:
            misuse()
        except Exception as error:
            texts += [str(error), repr(error)]
    secret.close()
    texts += [repr(secret), str(secret)]
    for misuse in misuses[:5]:
        try:
            misuse()
        except Exception as error:
            texts += [str(error), repr(error)]
    leaked = [text for text in texts if "Zq7" in text or "5a7137" in text.lower()]
    assert leaked == [], f"secret bytes in messages: {leaked}"
