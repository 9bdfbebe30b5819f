"""The public SecureBytes contract, as a user meets it (real kernel, default arena)."""

from __future__ import annotations

import copy
import gc
import pickle
import traceback

import pytest

import securemem
from securemem import (
    AllocationError,
    MemoryLockError,
    SecureBytes,
    SecureBytesClosedError,
    SecureMemoryError,
    _procfs,
)

SECRET = b"correct horse battery staple"


def test_size_gives_that_many_zero_bytes_in_a_locked_page() -> None:
    with SecureBytes(32) as secret:
        assert len(secret) == 32
        assert bytes(secret.view()) == bytes(32)
        mapping = _procfs.mapping_at(secret.address)
        assert mapping is not None and mapping.locked


@pytest.mark.parametrize("source", [SECRET, bytearray(SECRET), memoryview(SECRET)])
def test_buffer_is_copied_in(source: bytes | bytearray | memoryview) -> None:
    with SecureBytes(source) as secret:
        assert len(secret) == len(SECRET)
        assert secret == SECRET


def test_multidimensional_and_strided_buffers_are_copied_flat() -> None:
    import array

    words = array.array("I", [1, 2, 3])
    with SecureBytes(words) as secret:
        assert secret == words.tobytes()
    strided = memoryview(b"a1b2c3")[::2]
    with SecureBytes(strided) as secret:
        assert secret == b"abc"


def test_source_buffer_is_left_untouched() -> None:
    source = bytearray(SECRET)
    SecureBytes(source).close()
    assert source == SECRET


def test_zero_size_is_allowed() -> None:
    with SecureBytes(0) as empty, SecureBytes(b"") as empty_copy:
        assert len(empty) == 0 and empty == b"" and empty == empty_copy


def test_negative_size_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="negative"):
        SecureBytes(-1)


@pytest.mark.parametrize("bad", ["text", 1.5, None, object(), True, [1, 2]])
def test_wrong_types_are_type_errors_that_say_what_is_accepted(bad: object) -> None:
    with pytest.raises(TypeError, match="size \\(int\\) or a bytes-like object"):
        SecureBytes(bad)  # type: ignore[arg-type]


def test_str_error_suggests_encoding_without_echoing_the_text() -> None:
    with pytest.raises(TypeError) as info:
        SecureBytes("my password")  # type: ignore[arg-type]
    assert "my password" not in str(info.value)
    assert "encode" in str(info.value)


def test_impossible_size_is_a_memory_error_subclass() -> None:
    with pytest.raises(MemoryError) as info:
        SecureBytes(1 << 60)
    assert isinstance(info.value, (AllocationError, MemoryLockError))
    assert isinstance(info.value, SecureMemoryError)


def test_index_and_slice_reads_and_writes() -> None:
    with SecureBytes(b"abcdef") as secret:
        assert secret[0] == ord("a") and secret[-1] == ord("f")
        secret[1] = ord("B")
        secret[2:4] = b"CD"
        assert secret == b"aBCDef"
        part = secret[1:4]
        assert isinstance(part, SecureBytes) and part == b"BCD"
        part.close()
        every_other = secret[::2]
        assert isinstance(every_other, SecureBytes) and every_other == b"aCe"
        every_other.close()
        assert list(secret) == list(b"aBCDef")
        secret[0:2] = SecureBytes(b"xy")
        assert secret == b"xyCDef"


def test_bad_index_and_value_errors_do_not_echo_values() -> None:
    with SecureBytes(4) as secret:
        with pytest.raises(IndexError, match=r"index 4 is out of range for its 4 bytes"):
            secret[4]
        with pytest.raises(IndexError):
            secret[-5] = 1
        with pytest.raises(ValueError) as info:
            secret[0] = 4242
        assert "4242" not in str(info.value)
        with pytest.raises(TypeError):
            secret[0] = b"x"  # type: ignore[call-overload]
        with pytest.raises(TypeError):
            secret["0"]  # type: ignore[call-overload]
        with pytest.raises(ValueError, match="never changes size"):
            secret[0:2] = b"abc"
        with pytest.raises(TypeError, match="bytes-like"):
            secret[0:2] = "ab"  # type: ignore[call-overload]


def test_view_is_writable_and_shares_memory() -> None:
    with SecureBytes(4) as secret:
        view = secret.view()
        assert not view.readonly and view.format == "B" and view.nbytes == 4
        view[:] = b"wxyz"
        assert secret == b"wxyz"
        view.release()


def test_address_points_at_the_bytes() -> None:
    from securemem._native import ffi

    with SecureBytes(b"\x07\x08") as secret:
        assert ffi.cast("unsigned char *", secret.address)[1] == 8


def test_wipe_zeroes_and_keeps_it_usable() -> None:
    with SecureBytes(SECRET) as secret:
        secret.wipe()
        assert secret == bytes(len(SECRET))
        secret[0] = 1
        assert secret[0] == 1


def test_close_wipes_is_idempotent_and_later_use_raises_value_error() -> None:
    secret = SecureBytes(SECRET)
    secret.close()
    secret.close()
    assert secret.closed
    for use in (
        lambda: len(secret),
        lambda: secret[0],
        lambda: secret.view(),
        lambda: secret.address,
        lambda: secret.wipe(),
        lambda: secret == SECRET,
        lambda: secret.__setitem__(0, 1),
        lambda: secret.__enter__(),
        lambda: copy.copy(secret),
    ):
        with pytest.raises(ValueError) as info:
            use()
        assert isinstance(info.value, SecureBytesClosedError)


def test_with_block_closes_even_on_error() -> None:
    with pytest.raises(RuntimeError), SecureBytes(SECRET) as secret:
        raise RuntimeError("boom")
    assert secret.closed


def test_garbage_collected_secret_is_wiped_and_released() -> None:
    before = securemem.stats().allocations
    secret = SecureBytes(SECRET)
    address = secret.address
    neighbour = SecureBytes(len(SECRET))  # keeps the page mapped so we can look
    del secret
    gc.collect()
    from tests.conftest import read_raw

    assert read_raw(address, len(SECRET)) == bytes(len(SECRET))
    assert securemem.stats().allocations == before + 1
    neighbour.close()


def test_equality_with_secure_bytes_and_bytes_likes() -> None:
    with SecureBytes(b"abc") as a, SecureBytes(b"abc") as b, SecureBytes(b"abd") as c:
        assert a == b and a != c
        assert a == b"abc" and a == bytearray(b"abc") and a == memoryview(b"abc")
        assert a != b"abcd" and a != b"ab"
        with pytest.raises(TypeError, match="not str"):  # as hmac.compare_digest: encode first
            a != "abc"  # noqa: B015
        assert (a == 5) is False


def test_hash_is_refused() -> None:
    with SecureBytes(b"k") as secret, pytest.raises(TypeError, match="unhashable"):
        hash(secret)


def test_repr_and_str_show_size_and_state_only() -> None:
    secret = SecureBytes(SECRET)
    for text in (repr(secret), str(secret), f"{secret}", f"{secret}"):
        assert text == f"<SecureBytes size={len(SECRET)} open>"
        assert "horse" not in text
    secret.close()
    assert repr(secret) == f"<SecureBytes size={len(SECRET)} closed>"


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickling_is_refused(protocol: int) -> None:
    with SecureBytes(SECRET) as secret, pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret, protocol=protocol)


def test_copy_gives_an_independent_secure_bytes() -> None:
    with SecureBytes(SECRET) as secret:
        for duplicate in (copy.copy(secret), copy.deepcopy(secret)):
            assert isinstance(duplicate, SecureBytes)
            assert duplicate == secret and duplicate.address != secret.address
            duplicate[0] = 0
            assert secret == SECRET
            duplicate.close()


def test_traceback_with_locals_never_shows_the_secret() -> None:
    def use(secret: SecureBytes) -> None:
        raise RuntimeError("failed while holding a key")

    secret = SecureBytes(SECRET)
    try:
        use(secret)
    except RuntimeError as error:
        rendered = "".join(
            traceback.TracebackException.from_exception(error, capture_locals=True).format()
        )
    secret.close()
    assert "SecureBytes size=" in rendered
    assert "horse" not in rendered


def test_random_fills_from_the_csprng() -> None:
    with SecureBytes.random(32) as first, SecureBytes.random(32) as second:
        assert first != second
        assert first != bytes(32)


def test_errors_subclass_the_builtins_callers_already_catch() -> None:
    assert issubclass(MemoryLockError, MemoryError) and issubclass(MemoryLockError, OSError)
    assert issubclass(AllocationError, MemoryError)
    assert issubclass(SecureBytesClosedError, ValueError)
    for error in (MemoryLockError, AllocationError, SecureBytesClosedError):
        assert issubclass(error, SecureMemoryError)


def test_stats_is_a_frozen_snapshot() -> None:
    import dataclasses

    before = securemem.stats()
    with SecureBytes(100) as secret:
        during = securemem.stats()
        assert during.allocations == before.allocations + 1
        assert during.in_use_bytes == before.in_use_bytes + 100
        assert during.locked_bytes >= 4096 and during.mapped_bytes >= during.locked_bytes
        assert during.regions >= 1
        with pytest.raises(dataclasses.FrozenInstanceError):
            during.allocations = 0  # type: ignore[misc]
        del secret
    after = securemem.stats()
    assert after.allocations == before.allocations


def test_memlock_limit_is_reported_like_getrlimit() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    expected = None if soft == resource.RLIM_INFINITY else soft
    assert securemem.stats().memlock_limit == expected


def test_buffer_protocol_is_native_on_every_python() -> None:
    with SecureBytes(b"ab") as secret:
        assert memoryview(secret).tobytes() == b"ab"
