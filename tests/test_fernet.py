"""securemem.crypto.fernet_encrypt / fernet_decrypt: Fernet with the key and the plaintext in
locked memory, interchangeable with cryptography's Fernet. The copies it leaves (none) are
counted in tests/test_handoffs.py (case securemem.fernet)."""

from __future__ import annotations

import base64
import struct
import time
from contextlib import ExitStack

import pytest

pytest.importorskip("cryptography")

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from securemem import SecureBytes, SecureBytesClosedError, crypto
from tests import stackview
from tests.memscan import Marker, assert_only_in_and_gone_after_close


@pytest.fixture
def keys() -> tuple[bytes, SecureBytes]:
    """(cryptography's base64 key, the same key decoded into locked memory)."""
    text = Fernet.generate_key()
    return text, SecureBytes.from_base64(text, urlsafe=True)


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 100])
def test_tokens_interchange_with_cryptographys_fernet(
    keys: tuple[bytes, SecureBytes], size: int
) -> None:
    text, key = keys
    message = bytes(range(size))
    assert Fernet(text).decrypt(crypto.fernet_encrypt(key, message)) == message
    theirs = Fernet(text).encrypt(message)
    with crypto.fernet_decrypt(key, theirs) as plaintext:
        assert plaintext == message
    with crypto.fernet_decrypt(key, theirs.decode("ascii")) as plaintext:
        assert plaintext == message


def test_the_plaintext_is_only_in_locked_memory(keys: tuple[bytes, SecureBytes]) -> None:
    _, key = keys
    with Marker(45) as marker:
        plaintext = SecureBytes(marker.view())
    # Neither the marker nor the plaintext exists any more: the decrypted secret must be the
    # only copy in the process, and gone once it is closed.
    with plaintext:
        token = crypto.fernet_encrypt(key, plaintext)
    decrypted = crypto.fernet_decrypt(key, token)
    assert_only_in_and_gone_after_close(decrypted)


@pytest.mark.skipif(
    not stackview.supported(), reason="reads the stack through /proc on x86-64/AArch64 Linux"
)
def test_nothing_of_the_key_or_the_plaintext_is_left_on_the_stack() -> None:
    # Read from a second thread while this one blocks (tests/stackview.py; that the reader
    # finds what native code leaves is shown in tests/test_crypto.py). Needles: each key half,
    # and the last, partial block of a 47-byte plaintext (the bytes CBC padding touches).
    with ExitStack() as stack:
        key_marker = stack.enter_context(Marker(32))
        key = stack.enter_context(SecureBytes(key_marker.view()))
        halves = [
            stack.enter_context(Marker.copy_of(key.view()[:16])),
            stack.enter_context(Marker.copy_of(key.view()[16:])),
        ]
        tail = stack.enter_context(Marker(15))
        plaintext = stack.enter_context(SecureBytes(47))
        plaintext[:32] = bytes(32)
        plaintext[32:] = tail.view()
        token = crypto.fernet_encrypt(key, plaintext)
        found = {}
        needles = {"signing half": halves[0], "encryption half": halves[1], "plaintext tail": tail}
        for name, needle in needles.items():
            with needle.view() as view:
                found[f"{name} after encrypt"] = stackview.stack_depths_after(
                    lambda: crypto.fernet_encrypt(key, plaintext), view
                )
                found[f"{name} after decrypt"] = stackview.stack_depths_after(
                    lambda: crypto.fernet_decrypt(key, token).close(), view
                )
    assert {name: depths for name, depths in found.items() if depths} == {}


def flipped(token: bytes, index: int) -> bytes:
    data = bytearray(base64.urlsafe_b64decode(token))
    data[index] ^= 1
    return base64.urlsafe_b64encode(bytes(data))


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda t: flipped(t, 0), id="version"),
        pytest.param(lambda t: flipped(t, 5), id="timestamp"),
        pytest.param(lambda t: flipped(t, 30), id="ciphertext"),
        pytest.param(lambda t: flipped(t, -1), id="mac"),
        pytest.param(lambda t: t[:-8], id="truncated"),
        pytest.param(lambda t: b"!" + t[1:], id="not-base64"),
        pytest.param(lambda t: base64.urlsafe_b64encode(b"\x80" + bytes(40)), id="too-short"),
    ],
)
def test_a_forged_or_broken_token_is_an_invalid_token(
    keys: tuple[bytes, SecureBytes], forge: object
) -> None:
    text, key = keys
    token = crypto.fernet_encrypt(key, b"attack at dawn")
    forged = forge(token)  # type: ignore[operator]
    with pytest.raises(InvalidToken):
        Fernet(text).decrypt(forged)  # the reference agrees it is invalid
    with pytest.raises(InvalidToken):
        crypto.fernet_decrypt(key, forged)


def test_bad_padding_under_a_valid_mac_is_refused(keys: tuple[bytes, SecureBytes]) -> None:
    # A token only the key holder could make: authentic, but its plaintext is not padded.
    _, key = keys
    iv = bytes(16)
    header = struct.pack(">BQ", 0x80, int(time.time())) + iv
    encryptor = Cipher(algorithms.AES(key.view()[16:]), modes.CBC(iv)).encryptor()
    body = header + encryptor.update(b"sixteen bytes!!\x00") + encryptor.finalize()
    mac = hmac.HMAC(key.view()[:16], hashes.SHA256())
    mac.update(body)
    token = base64.urlsafe_b64encode(body + mac.finalize())
    with pytest.raises(InvalidToken):
        crypto.fernet_decrypt(key, token)


def test_ttl_and_clock_skew_as_cryptography_checks_them(keys: tuple[bytes, SecureBytes]) -> None:
    text, key = keys
    token = crypto.fernet_encrypt(key, b"message", current_time=1_000_000)
    for now, ttl, valid in [
        (1_000_010, 10, True),
        (1_000_011, 10, False),
        (999_940, None, True),  # 60 s in the future: allowed skew
        (999_939, None, False),
    ]:
        reference_valid = True
        try:
            Fernet(text).decrypt_at_time(token, ttl if ttl is not None else 10**9, now)
        except InvalidToken:
            reference_valid = False
        assert reference_valid == valid, (now, ttl)
        if valid:
            crypto.fernet_decrypt(key, token, ttl=ttl, current_time=now).close()
        else:
            with pytest.raises(InvalidToken):
                crypto.fernet_decrypt(key, token, ttl=ttl, current_time=now)


def test_the_key_must_be_32_bytes_of_locked_memory(keys: tuple[bytes, SecureBytes]) -> None:
    text, key = keys
    with pytest.raises(TypeError, match=r"SecureBytes\.from_base64"):
        crypto.fernet_encrypt(base64.urlsafe_b64decode(text), b"x")  # type: ignore[arg-type]
    with SecureBytes(text) as encoded, pytest.raises(ValueError, match="from_base64") as error:
        crypto.fernet_decrypt(encoded, b"token")
    assert text.decode() not in str(error.value) and "44" in str(error.value)
    with SecureBytes(16) as short, pytest.raises(ValueError, match="32 bytes, not 16"):
        crypto.fernet_encrypt(short, b"x")
    closed = SecureBytes(b"plaintext")
    closed.close()
    with pytest.raises(SecureBytesClosedError):
        crypto.fernet_encrypt(key, closed)
    key.close()
    with pytest.raises(SecureBytesClosedError):
        crypto.fernet_encrypt(key, b"x")


def test_a_token_of_the_wrong_type_says_so(keys: tuple[bytes, SecureBytes]) -> None:
    _, key = keys
    with pytest.raises(TypeError, match="bytes or str"):
        crypto.fernet_decrypt(key, memoryview(b"token"))  # type: ignore[arg-type]
