"""SecureBytes is one native type: the methods written in Python are its own, and subclasses
of it keep working (real kernel, default arena)."""

from __future__ import annotations

import gc
import weakref

import pytest

from securemem import SecureBytes, SecureBytesClosedError


def test_a_secret_is_of_the_public_class_itself() -> None:
    with SecureBytes(8) as secret:
        assert type(secret) is SecureBytes
        assert type(secret[:4]) is SecureBytes
        assert type(SecureBytes.random(4)) is SecureBytes
        assert type(SecureBytes.from_hex("00ff")) is SecureBytes
    assert SecureBytes.__module__ == "securemem"
    assert SecureBytes.__qualname__ == "SecureBytes"
    assert "locked memory" in (SecureBytes.__doc__ or "")


def test_a_secret_is_never_in_the_garbage_collectors_lists() -> None:
    # It holds no references to other Python objects but its arena, so it can be in no
    # cycle: the collector has nothing to find, and a collection never visits a secret.
    with SecureBytes(8) as secret:
        assert not gc.is_tracked(secret)


def test_python_written_methods_work_on_the_native_type() -> None:
    source = bytearray(b"\x01\x02\x03")
    with SecureBytes.take(source) as taken:
        assert source == bytearray(3)  # wiped
        assert list(taken) == [1, 2, 3]
        assert bytes(taken.to_hex().view()) == b"010203"
    with SecureBytes(4, guarded=True) as guarded:
        guarded.protect("noaccess")
        with guarded.accessible("readonly"):
            assert guarded[0] == 0
        assert guarded.protection == "noaccess"


class Tracked(SecureBytes):
    """A subclass with a __dict__ (and so garbage-collected), as users write them."""

    def __init__(self, size_or_buffer: int | bytes, label: str) -> None:
        super().__init__(size_or_buffer)
        self.label = label


def test_a_subclass_gets_its_own_class_from_every_constructor() -> None:
    class Key(SecureBytes):
        __slots__ = ()

    with Key(4) as key:
        assert type(key) is Key
        assert type(key[:2]) is Key
    assert type(Key.random(4)) is Key
    assert type(Key.from_hex("abcd")) is Key
    assert type(Key.from_base64("AAEC")) is Key
    assert type(Key.take(bytearray(2))) is Key


def test_a_subclass_with_a_dict_is_wiped_and_released_like_the_base() -> None:
    key = Tracked(b"secret", "signing")
    assert key.label == "signing" and bytes(key.view()) == b"secret"
    assert gc.is_tracked(key)  # its __dict__ may hold cycles: the collector sees it
    view = key.view()
    gone = weakref.ref(key)
    key.close()
    assert bytes(view) == bytes(6)  # wiped at close, while a view still holds it
    view.release()
    del key
    gc.collect()
    assert gone() is None


def test_a_bare_new_secret_is_closed_and_cannot_be_initialised_twice() -> None:
    bare = SecureBytes.__new__(SecureBytes)
    assert bare.closed
    with pytest.raises(SecureBytesClosedError):
        len(bare)
    secret = SecureBytes(4)
    with pytest.raises(TypeError):
        secret.__init__(4)  # type: ignore[misc]
    secret.close()


def test_exit_closes_whatever_the_block_raised() -> None:
    with pytest.raises(KeyError), SecureBytes(4) as secret:
        raise KeyError("inside")
    assert secret.closed
    other = SecureBytes(4)
    other.__exit__(None, None, None)  # returns nothing true: an exception is never swallowed
    assert other.closed
