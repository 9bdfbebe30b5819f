# pyright: reportUnnecessaryTypeIgnoreComment=true
"""The public API's types as a type checker sees them, and true at run time too.

mypy --strict (CI's lint stage) and pyright (CI's type-completeness stage) check this file;
pytest runs it. ``assert_type`` fails the type check when a signature loosens (``s[0]`` typed
``Any`` again, say). A ``# type: ignore[...]`` marks a call the checkers must reject: both
fail on an ignore that is no longer needed, so a parameter that starts accepting anything
(``SecureBytes(3.5)``, ``Enclave.take(12345)``) fails CI, while the test shows the call
raising TypeError at run time.
"""

from __future__ import annotations

import array
from typing import assert_type

import pytest

import securemem
from securemem import ArenaStats, Enclave, SecureBytes, Stream


def test_an_index_reads_an_int_and_a_slice_is_a_new_secret() -> None:
    with SecureBytes(b"0123456789") as secret:
        assert assert_type(secret[0], int) == ord("0")
        with assert_type(secret[2:6], SecureBytes) as part:
            assert type(part) is SecureBytes and part == b"2345"
        secret[0] = 65
        secret[1:3] = b"xy"
        secret[3:5] = bytearray(b"zz")
        secret[5:7] = memoryview(b"ww")
        assert secret == b"Axyzzww789"


def test_a_subclass_slices_into_its_own_type() -> None:
    class Key(SecureBytes):
        __slots__ = ()

    with Key(b"0123") as key, assert_type(key[1:3], Key) as part:
        assert type(part) is Key


def test_constructors_and_views_have_their_precise_types() -> None:
    with assert_type(SecureBytes.random(16), SecureBytes) as random_secret:
        assert len(random_secret) == 16
        with assert_type(random_secret.view(), memoryview) as view:
            assert view.nbytes == 16
    with assert_type(SecureBytes.from_hex("00ff"), SecureBytes) as decoded:
        assert decoded == b"\x00\xff"
    with SecureBytes(4) as secret, secret as entered:
        assert assert_type(entered, SecureBytes) is secret
    assert isinstance(assert_type(securemem.stats(), ArenaStats), ArenaStats)
    assert isinstance(assert_type(securemem.__version__, str), str)


def test_every_kind_of_buffer_is_accepted_where_a_buffer_is_taken() -> None:
    with SecureBytes(b"abc") as other:
        sources = (b"abc", bytearray(b"abc"), memoryview(b"abc"), array.array("B", b"abc"), other)
        for source in sources:
            with SecureBytes(source) as copy:
                assert copy == b"abc"
    stream = Stream()
    stream.write(bytearray(b"abc"))
    with assert_type(stream.flush(), SecureBytes) as flushed:
        assert flushed == b"abc"


def test_an_enclave_opens_into_a_secret() -> None:
    pytest.importorskip("cryptography")
    enclave = Enclave.take(bytearray(b"sealed"))
    with assert_type(enclave.open(), SecureBytes) as opened:
        assert opened == b"sealed"


def test_what_the_types_reject_raises_type_error_at_run_time() -> None:
    with pytest.raises(TypeError):
        SecureBytes(3.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SecureBytes("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Enclave.take(12345)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Stream().write(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SecureBytes.from_hex(12)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        securemem.lock_memory(12345)  # type: ignore[arg-type]
    with SecureBytes(4) as secret:
        with pytest.raises(TypeError):
            secret["0"]  # type: ignore[call-overload]
        with pytest.raises(TypeError):
            secret[0] = b"x"  # type: ignore[call-overload]
        with pytest.raises(TypeError):
            secret[0:1] = "a"  # type: ignore[call-overload]
