"""securemem.crypto against the real pyca/cryptography, with memory scans for stray copies.

Where cryptography or OpenSSL keeps a copy we cannot prevent, the test says so by name
(``xfail(strict=True)`` with the reason, or an assertion that the copy exists), so that the
day a new release stops making the copy, the test tells us.
"""

from __future__ import annotations

import base64
import gc
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

pytest.importorskip("cryptography")

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers import aead as algorithms
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from securemem import SecureBytes, crypto
from tests.conftest import run_python
from tests.memscan import Marker, assert_only_in_and_gone_after_close

NONCE = b"\x01" * 12
KEY_SIZES: dict[type[Any], int] = {
    algorithms.AESGCM: 32,
    algorithms.AESOCB3: 32,
    algorithms.AESGCMSIV: 32,
    algorithms.AESCCM: 16,
    algorithms.AESSIV: 64,
    algorithms.ChaCha20Poly1305: 32,
}


def algorithm_name(cls: type[Any]) -> str:
    return cls.__name__


def released() -> None:
    """Let cryptography's objects go now (their OpenSSL contexts wipe themselves on free)."""
    gc.collect()


def assert_nowhere(marker: Marker) -> None:
    result = marker.scan()
    assert result.found == [], f"copies of the secret remain at {result.describe()}"


# -- AEAD keys ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "algorithm",
    [
        *(cls for cls in KEY_SIZES if cls is not algorithms.ChaCha20Poly1305),
        pytest.param(
            algorithms.ChaCha20Poly1305,
            marks=pytest.mark.xfail(
                strict=True,
                raises=AssertionError,
                reason="ChaCha20-Poly1305 in cryptography/OpenSSL leaves a copy of the key on "
                "the C stack when it encrypts or decrypts (not wiped; overwritten only when "
                "deeper calls reuse it)",
            ),
        ),
    ],
    ids=algorithm_name,
)
def test_aead_key_leaves_no_copy_once_the_aead_is_freed(algorithm: type[Any]) -> None:
    with Marker(KEY_SIZES[algorithm]) as key_marker:
        key = SecureBytes(key_marker.view())
        cipher = crypto.aead(algorithm, key)
        key.close()
        with SecureBytes(b"x" * 40) as plaintext:
            ciphertext = crypto.encrypt(cipher, NONCE, plaintext)
        crypto.decrypt(cipher, NONCE, ciphertext).close()
        del cipher
        released()
        assert_nowhere(key_marker)


def test_aesgcm_keeps_its_key_in_openssls_heap_while_it_lives() -> None:
    # Documented copy: OpenSSL expands the key into its cipher context (round key 0 is the
    # key itself), in ordinary heap memory, once for encryption and once for decryption.
    with Marker(32) as key_marker, SecureBytes(key_marker.view()) as key:
        cipher = crypto.aead(algorithms.AESGCM, key)
        key.close()
        copies = key_marker.scan().found
        assert len(copies) >= 1, "OpenSSL no longer keeps the raw key: update the docs"
        del cipher
        released()
        assert_nowhere(key_marker)


def test_aesccm_reads_the_key_buffer_on_every_call_so_aead_gives_it_a_private_copy() -> None:
    reference = algorithms.AESCCM(b"\x07" * 16)
    expected = reference.encrypt(NONCE, b"message", None)
    # What cryptography does with a borrowed buffer: closing the key wipes it to zeros, and
    # AESCCM silently encrypts under the all-zero key from then on.
    key = SecureBytes(b"\x07" * 16)
    borrowed = algorithms.AESCCM(key.view())
    key.close()
    assert borrowed.encrypt(NONCE, b"message", None) == algorithms.AESCCM(
        bytes(16)
    ).encrypt(NONCE, b"message", None)
    # Through crypto.aead the AEAD owns a locked copy: closing the caller's key is safe.
    key = SecureBytes(b"\x07" * 16)
    cipher = crypto.aead(algorithms.AESCCM, key)
    key.close()
    assert crypto.encrypt(cipher, NONCE, SecureBytes(b"message")) == expected


def test_aead_takes_constructor_options_and_refuses_a_bytes_key() -> None:
    with SecureBytes.random(16) as key:
        cipher = crypto.aead(algorithms.AESCCM, key, tag_length=8)
        message = b"a message longer than a tag"
        ciphertext = crypto.encrypt(cipher, NONCE, message, tag_length=8)
        assert len(ciphertext) == len(message) + 8
        with crypto.decrypt(cipher, NONCE, ciphertext, tag_length=8) as plaintext:
            assert plaintext == message
        with pytest.raises(ValueError, match="tag_length=N"):
            crypto.decrypt(cipher, NONCE, ciphertext)
    with pytest.raises(TypeError, match="SecureBytes"):
        crypto.aead(algorithms.AESGCM, b"k" * 32)  # type: ignore[arg-type]


# -- decrypt / encrypt --------------------------------------------------------------------


def round_trip(algorithm: type[Any], plaintext_marker: Marker) -> None:
    with SecureBytes.random(KEY_SIZES[algorithm]) as key:
        cipher = crypto.aead(algorithm, key)
    with SecureBytes(plaintext_marker.view()) as plaintext:
        ciphertext = crypto.encrypt(cipher, NONCE, plaintext, b"header")
    decrypted = crypto.decrypt(cipher, NONCE, ciphertext, b"header")
    assert isinstance(decrypted, SecureBytes)
    assert decrypted == plaintext_marker.view()
    decrypted.close()
    del cipher
    released()


@pytest.mark.parametrize("algorithm", list(KEY_SIZES), ids=algorithm_name)
def test_decrypt_leaves_no_copy_of_the_plaintext(algorithm: type[Any]) -> None:
    # 45 bytes: not a multiple of the AES block, so OCB's partial-block path runs too.
    with Marker(45) as plaintext_marker:
        round_trip(algorithm, plaintext_marker)
        assert_nowhere(plaintext_marker)


def test_aessiv_takes_the_nonce_as_the_last_associated_data_item() -> None:
    with SecureBytes.random(64) as key:
        cipher = crypto.aead(algorithms.AESSIV, key)
        ciphertext = crypto.encrypt(cipher, b"nonce", SecureBytes(b"secret"), [b"a", b"b"])
        assert bytes(ciphertext) == cipher.encrypt(b"secret", [b"a", b"b", b"nonce"])
        with crypto.decrypt(cipher, b"nonce", ciphertext, [b"a", b"b"]) as plaintext:
            assert plaintext == b"secret"
        with pytest.raises(InvalidTag):
            crypto.decrypt(cipher, None, ciphertext, [b"a", b"b"])


def test_aessiv_takes_one_memoryview_as_one_associated_data_item() -> None:
    # A memoryview is a registered Sequence: it must not be split into its bytes.
    with SecureBytes.random(64) as key:
        cipher = crypto.aead(algorithms.AESSIV, key)
        ciphertext = crypto.encrypt(cipher, None, SecureBytes(b"secret"), memoryview(b"ad"))
        assert bytes(ciphertext) == cipher.encrypt(b"secret", [b"ad"])
        with crypto.decrypt(cipher, None, ciphertext, memoryview(b"ad")) as plaintext:
            assert plaintext == b"secret"


def tampered(ciphertext: bytearray) -> bytes:
    forged = bytearray(ciphertext)
    forged[-1] ^= 1  # flip a tag bit: the ciphertext itself still decrypts to the plaintext
    return bytes(forged)


def test_invalid_tag_wipes_the_output_and_raises() -> None:
    message = b"attack at dawn, bring the secret"
    with SecureBytes.random(32) as key:
        cipher = crypto.aead(algorithms.AESGCM, key)
    forged = tampered(crypto.encrypt(cipher, NONCE, message))
    # What cryptography alone does: the unauthenticated plaintext stays in the buffer.
    with SecureBytes(len(message)) as raw:
        with pytest.raises(InvalidTag):
            cipher.decrypt_into(NONCE, forged, None, raw.view())
        assert raw == message, "cryptography wipes on InvalidTag now: this test proves nothing"
    with SecureBytes(len(message)) as out:
        with pytest.raises(InvalidTag):
            crypto.decrypt_into(cipher, NONCE, forged, None, out)
        assert out == bytes(len(message)), "unauthenticated plaintext left in the output"


def test_invalid_tag_in_decrypt_leaves_no_copy_of_the_plaintext() -> None:
    with Marker(40) as plaintext_marker:
        with SecureBytes.random(32) as key:
            cipher = crypto.aead(algorithms.AESGCM, key)
        with SecureBytes(plaintext_marker.view()) as plaintext:
            forged = tampered(crypto.encrypt(cipher, NONCE, plaintext))
        with pytest.raises(InvalidTag):
            crypto.decrypt(cipher, NONCE, forged)
        del cipher
        released()
        assert_nowhere(plaintext_marker)
        with pytest.raises(InvalidTag):
            crypto.decrypt(algorithms.AESGCM(bytes(32)), NONCE, b"short")


# -- key derivation -----------------------------------------------------------------------

KDFS: dict[str, Callable[[], Any]] = {
    "HKDF": lambda: HKDF(hashes.SHA256(), 32, b"salt", b"info"),
    "PBKDF2HMAC": lambda: PBKDF2HMAC(hashes.SHA256(), 32, b"s" * 16, 1000),
    "Scrypt": lambda: Scrypt(b"s" * 16, 32, 1024, 8, 1),
    "Argon2id": lambda: Argon2id(
        salt=b"s" * 16, length=32, iterations=1, lanes=1, memory_cost=64
    ),
}


@pytest.mark.parametrize(
    "name",
    [
        "HKDF",
        "PBKDF2HMAC",
        "Scrypt",
        pytest.param(
            "Argon2id",
            marks=pytest.mark.xfail(
                strict=True,
                raises=AssertionError,
                reason="Argon2id in cryptography 48 / OpenSSL leaves one copy of the password "
                "in freed heap memory (a buffer reused by the next derivation, so only the "
                "latest password)",
            ),
        ),
    ],
)
def test_derive_leaves_no_copy_of_the_key_material(name: str) -> None:
    with Marker(24) as password_marker:
        kdf = KDFS[name]()
        with SecureBytes(password_marker.view()) as password:
            derived = crypto.derive(kdf, password, 32)
        assert isinstance(derived, SecureBytes)
        with SecureBytes(password_marker.view()) as password:
            # Same result as the plain API (whose bytes result is a copy of the derived key on
            # purpose: only the input is checked here).
            assert derived == KDFS[name]().derive(password.view())
        derived.close()
        del kdf
        released()
        assert_nowhere(password_marker)


@pytest.mark.parametrize("name", KDFS)
def test_derive_writes_the_derived_key_only_into_locked_memory(name: str) -> None:
    with Marker(24) as password_marker, SecureBytes(password_marker.view()) as password:
        derived = crypto.derive(KDFS[name](), password, 32)
    assert_only_in_and_gone_after_close(derived)


def test_derive_explains_a_wrong_length() -> None:
    with SecureBytes(b"password") as password:
        with pytest.raises(ValueError, match="length=16 does not match the KDF"):
            crypto.derive(KDFS["HKDF"](), password, 16)
        with pytest.raises(ValueError, match="positive int"):
            crypto.derive(KDFS["HKDF"](), password, 0)


# -- private keys -------------------------------------------------------------------------

MAKE_KEYS = """
    import sys
    from cryptography.hazmat.primitives import serialization as s
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from tests.memscan import Marker
    key = ed25519.Ed25519PrivateKey.generate()
    password = bytes(Marker(20, seed=int(sys.argv[2])).view())
    out = sys.argv[1]
    open(out + ".der", "wb").write(
        key.private_bytes(s.Encoding.DER, s.PrivateFormat.PKCS8, s.NoEncryption()))
    open(out + ".pem", "wb").write(key.private_bytes(
        s.Encoding.PEM, s.PrivateFormat.PKCS8, s.BestAvailableEncryption(password)))
    open(out + ".plain.pem", "wb").write(
        key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
    legacy = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        s.Encoding.PEM, s.PrivateFormat.TraditionalOpenSSL, s.BestAvailableEncryption(password))
    assert b"Proc-Type" in legacy
    open(out + ".legacy.pem", "wb").write(legacy)
    """


@pytest.fixture
def key_files(tmp_path: Path) -> Iterator[tuple[Path, Marker]]:
    """An Ed25519 key as DER and as password-encrypted PEM, made in another process so that
    this one never holds the key or the password as bytes."""
    with Marker(20) as password_marker:
        made = run_python(MAKE_KEYS, str(tmp_path / "key"), str(password_marker.seed))
        assert made.returncode == 0, made.stderr
        for path in tmp_path.iterdir():
            path.chmod(0o600)
        yield tmp_path / "key", password_marker


def raw_key_marker(key_path: Path) -> Marker:
    with SecureBytes.from_file(key_path.with_suffix(".der")) as der:
        # PKCS#8 for Ed25519: a 16-byte header, then the 32-byte private key itself.
        return Marker.copy_of(der.view()[16:])


# PEM: cryptography's own PEM loader leaves the decoded key in freed heap memory (measured);
# load_private_key decodes the PEM into locked memory itself and hands over DER.
@pytest.mark.parametrize(("suffix", "encoding"), [(".der", "der"), (".plain.pem", "pem")])
def test_load_private_key_from_locked_memory_leaves_no_copy(
    key_files: tuple[Path, Marker], suffix: str, encoding: Literal["der", "pem"]
) -> None:
    path, _ = key_files
    with raw_key_marker(path) as key_marker:
        data = SecureBytes.from_file(path.with_suffix(suffix))
        key = crypto.load_private_key(data, encoding=encoding)
        data.close()
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        assert len(key_marker.scan().found) >= 1, "OpenSSL holds the key while it lives"
        del key
        released()
        assert_nowhere(key_marker)


def test_cryptographys_own_pem_loader_leaves_the_decoded_key_in_the_heap(
    key_files: tuple[Path, Marker],
) -> None:
    # Why load_private_key decodes PEM itself. When this fails, cryptography stopped leaving
    # the copy: the decoder in securemem.crypto can go, and the docs table changes.
    path, _ = key_files
    with raw_key_marker(path) as key_marker:
        with SecureBytes.from_file(path.with_suffix(".plain.pem")) as pem:
            key = serialization.load_pem_private_key(pem.view(), None)
        del key
        released()
        assert len(key_marker.scan().found) >= 1


def load_encrypted(pem_path: Path, password_marker: Marker) -> Any:
    """Load a password-encrypted PEM key from the file, both read into locked memory."""
    with SecureBytes.from_file(pem_path) as pem, SecureBytes(password_marker.view()) as password:
        return crypto.load_private_key(pem, password)


def test_legacy_encrypted_pem_goes_to_cryptographys_pem_loader(
    key_files: tuple[Path, Marker],
) -> None:
    path, password_marker = key_files
    key = load_encrypted(path.with_suffix(".legacy.pem"), password_marker)
    assert isinstance(key, ec.EllipticCurvePrivateKey)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 31, 32, 33, 48, 100, 1000])
def test_pem_decoding_matches_base64(size: int) -> None:
    data = os.urandom(size)
    body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    pem = b"comment\n-----BEGIN PRIVATE KEY-----\r\n" + body + b"-----END PRIVATE KEY-----\n"
    with SecureBytes(pem) as source:
        der = crypto._pem_to_der(source, None)
        assert der is not None
        assert der == data


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        (b"MC4CAQAwBQYDK2VwBCIEI", "not a PEM key"),
        (b"-----BEGIN PRIVATE KEY-----\nMC4C\n", "no '-----END"),
        (b"-----BEGIN PRIVATE KEY-----\nMC!C\n-----END PRIVATE KEY-----\n", "non-base64"),
    ],
)
def test_pem_decoding_errors_say_what_is_wrong(pem: bytes, message: str) -> None:
    with SecureBytes(pem) as source, pytest.raises(ValueError, match=message) as error:
        crypto.load_private_key(source)
    assert "MC4C" not in str(error.value)


def test_load_encrypted_pem_leaves_no_copy_of_the_password(
    key_files: tuple[Path, Marker],
) -> None:
    path, password_marker = key_files
    key = load_encrypted(path.with_suffix(".pem"), password_marker)
    with SecureBytes.from_file(path.with_suffix(".der")) as der:
        public = serialization.Encoding.Raw, serialization.PublicFormat.Raw
        expected = crypto.load_private_key(der, encoding="der").public_key().public_bytes(*public)
    assert key.public_key().public_bytes(*public) == expected
    del key
    released()
    assert_nowhere(password_marker)


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="loading an encrypted PKCS#8 key leaves the decrypted private key in freed heap "
    "memory (cryptography/OpenSSL free that buffer without wiping it)",
)
def test_load_encrypted_pem_leaves_no_copy_of_the_key(key_files: tuple[Path, Marker]) -> None:
    path, password_marker = key_files
    with raw_key_marker(path) as key_marker:
        key = load_encrypted(path.with_suffix(".pem"), password_marker)
        del key
        released()
        assert_nowhere(key_marker)


def test_load_private_key_refuses_bytes_and_unknown_encodings() -> None:
    with pytest.raises(TypeError, match="SecureBytes"):
        crypto.load_private_key(b"-----BEGIN PRIVATE KEY-----")  # type: ignore[arg-type]
    with SecureBytes(b"x") as data, pytest.raises(ValueError, match="'pem' or 'der'"):
        crypto.load_private_key(data, encoding="jwk")  # type: ignore[arg-type]


def test_private_key_bytes_round_trips_through_locked_memory() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    with crypto.private_key_bytes(key) as pem:
        assert isinstance(pem, SecureBytes)
        assert pem[:27] == b"-----BEGIN PRIVATE KEY-----"
        loaded = crypto.load_private_key(pem)
    assert isinstance(loaded, ed25519.Ed25519PrivateKey)
    with SecureBytes(b"correct horse") as password:
        encrypted = crypto.private_key_bytes(key, password=password)
        with pytest.raises(ValueError):  # wrong password: cryptography's own error
            crypto.load_private_key(encrypted, SecureBytes(b"wrong horse"))
        assert isinstance(crypto.load_private_key(encrypted, password), ed25519.Ed25519PrivateKey)
        encrypted.close()


def test_serialising_with_a_password_needs_a_bytes_copy_of_it() -> None:
    # Why private_key_bytes(password=...) copies the password into bytes (documented):
    # cryptography refuses any other buffer. When this starts passing, drop the copy.
    with SecureBytes(b"password") as password, pytest.raises(ValueError, match="bytes"):
        serialization.BestAvailableEncryption(password.view())  # type: ignore[arg-type]
