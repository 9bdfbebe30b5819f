"""SecureBytes.take (move a writable buffer into locked memory) and SecureBytes.randomize,
on the real kernel, with memory scans where a test claims no copy is left."""

from __future__ import annotations

import array
import mmap
from typing import Any

import pytest

from securemem import Arena, MemoryLockError, SecureBytes, SecureBytesClosedError, _procfs
from securemem.testing import SimulatedKernel
from tests.memscan import Marker

TEXT = b"a secret typed into a bytearray!"  # 32 bytes


def private_mmap(data: bytes) -> mmap.mmap:
    region = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    region[: len(data)] = data
    return region


@pytest.mark.parametrize(
    "make",
    [
        lambda: bytearray(TEXT),
        lambda: memoryview(bytearray(TEXT)),
        lambda: array.array("I", TEXT),
        lambda: memoryview(bytearray(TEXT)).cast("B", (4, 8)),  # two-dimensional, contiguous
    ],
    ids=["bytearray", "memoryview", "array", "2d-memoryview"],
)
def test_take_copies_then_wipes_the_source(make: Any) -> None:
    source = make()
    with SecureBytes.take(source) as secret:
        assert secret == TEXT and len(secret) == 32
        assert memoryview(source).tobytes() == bytes(32)


def test_take_wipes_an_mmap() -> None:
    with private_mmap(TEXT) as region, SecureBytes.take(region) as secret:
        assert len(secret) == 4096 and secret[:32] == TEXT
        assert region[:] == bytes(4096)


def test_take_leaves_the_secret_only_in_locked_memory() -> None:
    with Marker(32) as marker:
        source = bytearray(marker.view())
        assert len(marker.scan().found) == 1  # the bytearray
        secret = SecureBytes.take(source)
        assert marker.scan().found == [secret.address]
        mapping = _procfs.mapping_at(secret.address)
        assert mapping is not None and {"lo", "dd", "wf"} <= mapping.flags
        secret.close()
        assert marker.scan().found == []


def test_take_into_a_guarded_secret() -> None:
    source = bytearray(TEXT)
    with SecureBytes.take(source, guarded=True) as secret:
        secret.protect("readonly")
        assert secret == TEXT and source == bytes(32)


@pytest.mark.parametrize(
    "make",
    [
        lambda: TEXT,
        lambda: memoryview(bytearray(TEXT)).toreadonly(),
    ],
    ids=["bytes", "readonly-memoryview"],
)
def test_take_refuses_a_read_only_source_and_says_why(make: Any) -> None:
    source = make()
    with pytest.raises(TypeError, match="cannot be wiped") as caught:
        SecureBytes.take(source)
    assert "bytes object" in str(caught.value)
    assert memoryview(source).tobytes() == TEXT


def test_take_refuses_a_read_only_mmap(tmp_path: Any) -> None:
    path = tmp_path / "key"
    path.write_bytes(TEXT)
    with (
        open(path, "rb") as file,
        mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as region,
        pytest.raises(TypeError, match="read-only mmap cannot be wiped"),
    ):
        SecureBytes.take(region)


@pytest.mark.parametrize("bad", ["text", 32, None])
def test_take_refuses_what_is_not_a_buffer(bad: object) -> None:
    with pytest.raises(TypeError, match=f"not {type(bad).__name__}"):
        SecureBytes.take(bad)  # type: ignore[arg-type]


def test_take_refuses_a_securebytes_and_a_strided_view() -> None:
    with SecureBytes(TEXT) as secret, pytest.raises(TypeError, match="there already"):
        SecureBytes.take(secret)
    strided = memoryview(bytearray(TEXT))[::2]
    with pytest.raises(TypeError, match="contiguous"):
        SecureBytes.take(strided)
    assert strided.obj == TEXT


def test_a_failed_take_leaves_the_source_untouched() -> None:
    arena = Arena(kernel=SimulatedKernel("linux", memlock_limit=0))
    source = bytearray(TEXT)
    with pytest.raises(MemoryLockError):
        SecureBytes.take(source, arena=arena)
    assert source == TEXT  # nothing was taken, so nothing was wiped


# -- randomize --------------------------------------------------------------------------


def test_randomize_refills_in_place() -> None:
    with SecureBytes(bytes(64)) as secret:
        address, view = secret.address, secret.view()
        secret.randomize()
        assert secret.address == address and len(secret) == 64
        assert secret != bytes(64)
        first = view.tobytes()
        secret.randomize()
        assert view.tobytes() != first  # equal with probability 2**-512
        del view


def test_randomize_leaves_nothing_of_the_old_bytes() -> None:
    with Marker(32) as marker:
        secret = SecureBytes(marker.view())
        assert marker.scan().found == [secret.address]
        secret.randomize()
        assert marker.scan().found == []
        secret.close()


def test_randomize_a_protected_guarded_secret_keeps_its_protection() -> None:
    with SecureBytes(bytes(32), guarded=True) as secret:
        secret.protect("noaccess")
        secret.randomize()
        assert secret.protection == "noaccess"
        mapping = _procfs.mapping_at(secret.address)
        assert mapping is not None and not mapping.flags & {"rd", "wr"}
        with secret.accessible("readonly"):
            assert secret != bytes(32)


def test_randomize_an_empty_secret_does_nothing() -> None:
    with SecureBytes(0) as secret:
        secret.randomize()
        assert len(secret) == 0


def test_randomize_a_closed_secret_raises() -> None:
    secret = SecureBytes(16)
    secret.close()
    with pytest.raises(SecureBytesClosedError):
        secret.randomize()


def test_randomized_bytes_look_random() -> None:
    # 64 KiB of CSPRNG output: every byte value appears (a zero-filling bug would not).
    with SecureBytes(65536) as secret:
        secret.randomize()
        counts = [0] * 256
        for byte in secret.view():
            counts[byte] += 1
        assert min(counts) > 128 and max(counts) < 400
