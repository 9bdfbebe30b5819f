"""Sealed streams (securemem.Stream) on the real kernel: round trips through next,
read_into and flush, source wiping, bad input, locked memory while holding a large
sealed value, and what a stream refuses to reveal."""

from __future__ import annotations

import array
import copy
import pickle
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemem import Enclave, EnclaveError, SecureBytes, Stream, _procfs


def drained_by_next(stream: Stream) -> bytes:
    out = bytearray()
    while True:
        try:
            secret = stream.next()
        except EOFError:
            return bytes(out)
        with secret, secret.view() as view:
            out += view  # test data only: never do this with a real secret


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.binary(max_size=600), max_size=6),
    st.integers(min_value=1, max_value=300),
    st.sampled_from(["next", "read_into", "flush"]),
    st.integers(min_value=1, max_value=700),
)
def test_writes_read_back_in_order(
    pieces: list[bytes], chunk_size: int, how: str, read_size: int
) -> None:
    stream = Stream(chunk_size)
    for piece in pieces:
        stream.write(bytearray(piece))
    expected = b"".join(pieces)
    assert len(stream) == len(expected)
    assert repr(stream) == (
        f"<Stream size={len(expected)} "
        f"chunks={sum(-(-len(p) // chunk_size) for p in pieces)}>"
    )
    if how == "next":
        got = drained_by_next(stream)
    elif how == "flush":
        with stream.flush() as whole:
            got = bytes(whole.view())
    else:
        out = bytearray()
        while True:
            buffer = bytearray(read_size)
            count = stream.read_into(buffer)
            assert count == min(read_size, len(expected) - len(out))
            out += buffer[:count]
            assert len(stream) == len(expected) - len(out)
            if count == 0:
                break
        got = bytes(out)
    assert got == expected
    assert len(stream) == 0 and repr(stream) == "<Stream size=0 chunks=0>"


def test_next_returns_each_chunk_then_eof() -> None:
    stream = Stream(4)
    stream.write(bytearray(b"0123456789"))
    sizes = []
    for expected in (b"0123", b"4567", b"89"):
        with stream.next() as chunk:
            assert isinstance(chunk, SecureBytes) and chunk == expected
            sizes.append(len(stream))
    assert sizes == [6, 2, 0]
    with pytest.raises(EOFError, match="empty"):
        stream.next()


def test_a_partly_read_chunk_is_sealed_again_with_the_rest() -> None:
    stream = Stream(8)
    stream.write(bytearray(b"abcdefgh"))
    first = stream._chunks[0]
    buffer = bytearray(3)
    assert stream.read_into(buffer) == 3 and buffer == b"abc"
    assert stream._chunks[0] is not first and len(stream._chunks[0]) == 5
    assert repr(stream) == "<Stream size=5 chunks=1>"
    with stream.flush() as rest:
        assert rest == b"defgh"


def test_read_into_a_noaccess_guarded_securebytes_opens_it_for_the_write() -> None:
    stream = Stream(2)
    stream.write(bytearray(b"secret"))
    with SecureBytes(4, guarded=True) as target:
        target.protect("noaccess")
        assert stream.read_into(target) == 4
        assert target.protection == "noaccess"
        with target.accessible("readonly"):
            assert target == b"secr"


@pytest.mark.parametrize(
    "make",
    [
        lambda: bytearray(b"0123456789"),
        lambda: memoryview(bytearray(b"0123456789")),
        lambda: array.array("B", b"0123456789"),
    ],
    ids=["bytearray", "memoryview", "array"],
)
def test_write_wipes_a_writable_source(make: object) -> None:
    source = make()  # type: ignore[operator]
    stream = Stream(3)
    stream.write(source)
    assert bytes(source) == bytes(10)
    with stream.flush() as whole:
        assert whole == b"0123456789"


def test_write_leaves_a_securebytes_as_it_was() -> None:
    stream = Stream(3)
    with SecureBytes(b"0123456789") as source:
        stream.write(source)
        assert not source.closed and source == b"0123456789"
    with stream.flush() as whole:
        assert whole == b"0123456789"


@pytest.mark.parametrize(
    "source",
    [b"secret", memoryview(b"secret"), memoryview(bytearray(b"s-e-c-r-e-t-"))[::2]],
    ids=["bytes", "readonly-memoryview", "strided"],
)
def test_write_refuses_a_source_it_cannot_wipe(source: bytes | memoryview) -> None:
    stream = Stream()
    with pytest.raises(TypeError, match=r"Stream\.write\(\)"):
        stream.write(source)
    assert len(stream) == 0 and repr(stream) == "<Stream size=0 chunks=0>"


@pytest.mark.parametrize("bad", ["text", 5, None, object()])
def test_write_and_read_into_refuse_a_non_buffer_by_name(bad: object) -> None:
    stream = Stream()
    stream.write(bytearray(b"kept"))
    with pytest.raises(TypeError, match=type(bad).__name__):
        stream.write(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=type(bad).__name__):
        stream.read_into(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="wiped"):
        stream.read_into(b"read-only")
    assert len(stream) == 4


@pytest.mark.parametrize(
    ("chunk_size", "error", "message"),
    [(0, ValueError, "at least 1"), (-5, ValueError, "at least 1"),
     (2.5, TypeError, "float"), ("4096", TypeError, "str"), (True, TypeError, "bool")],
)
def test_bad_chunk_sizes_are_refused(chunk_size: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        Stream(chunk_size)  # type: ignore[arg-type]


def test_a_chunk_that_fails_to_open_stays_and_flush_leaves_the_stream_as_it_was() -> None:
    stream = Stream(4)
    stream.write(bytearray(b"01234567"))
    chunk = stream._chunks[0]
    assert chunk._ciphertext is not None
    chunk._ciphertext[0] ^= 1  # tampered in place
    with pytest.raises(EnclaveError):
        stream.flush()
    with pytest.raises(EnclaveError):
        stream.next()
    assert len(stream) == 8 and repr(stream) == "<Stream size=8 chunks=2>"


def test_ten_mib_sealed_costs_no_locked_memory() -> None:
    Enclave(b"make sure the process key exists")
    before = _procfs.process_locked_bytes()
    assert before is not None
    stream = Stream()
    stream.write(bytearray(10 * 1024 * 1024))
    assert len(stream) == 10 * 1024 * 1024
    assert repr(stream) == "<Stream size=10485760 chunks=2560>"
    assert _procfs.process_locked_bytes() == before, "sealed chunks live in ordinary memory"
    buffer = bytearray(8192)
    assert stream.read_into(buffer) == 8192 and len(stream) == 10 * 1024 * 1024 - 8192


def test_repr_equality_hash_pickle_and_copy_refuse_the_contents() -> None:
    stream = Stream(4)
    stream.write(bytearray(b"hunter2hunter2"))
    assert repr(stream) == str(stream) == "<Stream size=14 chunks=4>"
    with pytest.raises(TypeError, match="compared"):
        _ = stream == stream
    with pytest.raises(TypeError, match="compared"):
        _ = stream != Stream()
    with pytest.raises(TypeError, match="unhashable"):
        hash(stream)
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(stream)
    with pytest.raises(TypeError, match="pickled"):
        copy.copy(stream)
    with pytest.raises(TypeError, match="pickled"):
        copy.deepcopy(stream)


def test_threads_writing_and_reading_one_stream_lose_nothing() -> None:
    stream = Stream(7)
    writers, per_writer = 4, 50
    read: list[bytes] = []
    read_lock = threading.Lock()

    def write(index: int) -> None:
        for _ in range(per_writer):
            stream.write(bytearray(bytes([index]) * 10))

    def read_some() -> None:
        for _ in range(100):
            buffer = bytearray(13)
            count = stream.read_into(buffer)
            with read_lock:
                read.append(bytes(buffer[:count]))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    threads += [threading.Thread(target=read_some) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rest = drained_by_next(stream)
    everything = b"".join(read) + rest
    assert len(everything) == writers * per_writer * 10
    for index in range(writers):
        assert everything.count(bytes([index])) == per_writer * 10


def test_chunks_read_are_closed_and_their_ciphertext_wiped() -> None:
    stream = Stream(4)
    stream.write(bytearray(b"0123456789ab"))
    first, second, third = stream._chunks
    # The enclaves' own ciphertext buffers, watched: closing must zero them in place.
    ciphertexts = [chunk._ciphertext for chunk in (first, second, third)]
    assert all(ciphertext is not None and any(ciphertext) for ciphertext in ciphertexts)
    stream.next().close()
    assert first.closed and not second.closed
    assert stream.read_into(bytearray(2)) == 2
    assert second.closed and not stream._chunks[0].closed  # replaced by what was left
    stream.flush().close()
    assert third.closed and len(stream) == 0
    for ciphertext in ciphertexts:
        assert ciphertext is not None and not any(ciphertext), "the ciphertext must be wiped"
