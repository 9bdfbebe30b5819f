"""pyca/cryptography with keys and plaintexts in locked memory.

cryptography accepts any buffer-protocol object for keys, plaintexts and key material, and its
``*_into`` methods (``encrypt_into``, ``decrypt_into``, ``derive_into``) write their output into
a buffer the caller provides. This module hands cryptography memoryviews over
:class:`~securemem.SecureBytes`, so neither the secret going in nor the secret coming out is
ever a Python ``bytes`` object. Install with ``pip install securemem[crypto]``.

What cryptography (48, on OpenSSL 3.2 or later) still copies, measured by the tests in
``tests/test_crypto.py`` and listed in ``docs/secrets-in-and-out.md``:

* An AEAD object keeps the key (OpenSSL's expanded key schedule, which starts with the key
  itself) in OpenSSL's ordinary heap for as long as the object lives; OpenSSL wipes it when
  the object is freed. ``AESCCM`` (and ``AESGCM``/``ChaCha20Poly1305`` on OpenSSL before 3.2)
  instead keeps a *reference* to the key buffer and reads it on every call: :func:`aead` gives
  those a private locked copy, so closing your key can never turn theirs into zeros.
* ChaCha20Poly1305: encrypting or decrypting leaves a copy of the key on the C stack, below
  the Python frames (native code in cryptography/OpenSSL; overwritten only when later calls
  reuse that stack).
* Argon2id leaves one copy of the password in freed heap memory; HKDF, PBKDF2HMAC and Scrypt
  leave none.
* Loading an *encrypted* PKCS#8 key leaves the decrypted key in freed heap memory (a buffer
  that cryptography/OpenSSL frees without wiping); an unencrypted DER key leaves none once
  the key object is freed. Any key object keeps its key in OpenSSL's (unlocked) heap while
  it lives.
* Serialising a private key returns ``bytes`` (there is no ``private_bytes_into``), and
  ``BestAvailableEncryption`` accepts only a ``bytes`` password: both stay in the heap until
  it is reused. :func:`private_key_bytes` moves the result into locked memory at once, but
  cannot wipe the ``bytes`` cryptography made.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal, Protocol, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from securemem._arena import Arena
from securemem._securebytes import Buffer, SecureBytes, as_byte_view

__all__ = [
    "aead",
    "decrypt",
    "decrypt_into",
    "derive",
    "encrypt",
    "load_private_key",
    "private_key_bytes",
]

AEAD = TypeVar("AEAD")
_TAG_LENGTH = 16  # every AEAD in cryptography except AESCCM built with a shorter tag_length
_BUFFER_SIZE = re.compile(r"buffer must be (\d+) bytes")


class _AEADLike(Protocol):
    def encrypt_into(self, *args: Any) -> int: ...
    def decrypt_into(self, *args: Any) -> int: ...


class _KDFLike(Protocol):
    def derive_into(self, key_material: Any, buffer: Any) -> int: ...


def aead(algorithm: type[AEAD], key: SecureBytes, **options: Any) -> AEAD:
    """Build a cryptography AEAD (``AESGCM``, ``ChaCha20Poly1305``, ``AESSIV``, ``AESOCB3``,
    ``AESGCMSIV``, ``AESCCM``, ...) from a key in locked memory, without a ``bytes`` copy.

    ``options`` go to the constructor (``tag_length=8`` for ``AESCCM``). The AEAD gets a
    private locked copy of the key, released when the AEAD is: you may close ``key`` right
    after this call. Some AEADs read the key buffer on every call rather than copying it at
    construction; the private copy means closing ``key`` cannot make them encrypt under a
    wiped, all-zero key.
    """
    if not isinstance(key, SecureBytes):
        raise TypeError(
            f"aead() takes the key as a SecureBytes, not {type(key).__name__}: "
            "create it with SecureBytes.random(32) or SecureBytes.from_file(path)"
        )
    private = key[:]  # a new SecureBytes: locked, and owned by nobody but the AEAD's view
    try:
        # The view keeps `private` alive (and open) for as long as the AEAD holds it; when
        # the AEAD lets go, `private` is collected, which wipes it.
        return algorithm(private.view(), **options)  # type: ignore[call-arg]
    finally:
        del private


def _aead_arguments(
    cipher: _AEADLike, nonce: Buffer | None, associated_data: Any
) -> tuple[tuple[Any, ...], Any]:
    """(the arguments before the data, the associated data) for ``*_into``."""
    if isinstance(cipher, AESSIV):
        # AES-SIV takes no nonce argument: RFC 5297 (section 3) passes a nonce as the last
        # component of the associated-data vector, so that is where it goes.
        parts: list[Any]
        if associated_data is None:
            parts = []
        # A vector of items; a memoryview is one item, though it is a registered Sequence.
        elif isinstance(associated_data, Sequence) and not isinstance(
            associated_data, (bytes, bytearray, memoryview)
        ):
            parts = list(associated_data)
        else:
            parts = [associated_data]
        if nonce is not None:
            parts.append(nonce)
        return (), parts or None
    if nonce is None:
        raise TypeError(f"{type(cipher).__name__} needs a nonce")
    return (nonce,), associated_data


def encrypt(
    cipher: _AEADLike,
    nonce: Buffer | None,
    plaintext: SecureBytes | Buffer,
    associated_data: Any = None,
    *,
    tag_length: int = _TAG_LENGTH,
) -> bytearray:
    """Encrypt a plaintext held in locked memory; returns ciphertext + tag.

    The plaintext is read in place through ``encrypt_into`` (cryptography never copies it
    into a ``bytes``). The ciphertext is not secret and comes back as a ``bytearray``.
    ``tag_length`` matters only for an ``AESCCM`` built with a shorter tag. For ``AESSIV``
    ``nonce`` may be ``None``; if given, it is passed as the last associated-data item.
    """
    leading, associated = _aead_arguments(cipher, nonce, associated_data)
    source = as_byte_view(plaintext)
    output = bytearray(source.nbytes + tag_length)
    try:
        cipher.encrypt_into(*leading, source, associated, output)
    except ValueError as error:
        raise _explain_size(error, "encrypt") from None
    finally:
        source.release()
    return output


def decrypt_into(
    cipher: _AEADLike,
    nonce: Buffer | None,
    data: Buffer,
    associated_data: Any,
    out: SecureBytes,
) -> None:
    """Decrypt ``data`` straight into ``out`` (``len(data) - tag_length`` bytes).

    On ``InvalidTag`` cryptography has already written the *unauthenticated* plaintext into
    the output buffer; ``out`` is wiped before the exception reaches you, so a forged or
    corrupted message never leaves attacker-chosen or half-decrypted bytes behind.
    """
    if not isinstance(out, SecureBytes):
        raise TypeError(f"decrypt_into() writes into a SecureBytes, not {type(out).__name__}")
    leading, associated = _aead_arguments(cipher, nonce, associated_data)
    target = out.view()
    try:
        cipher.decrypt_into(*leading, data, associated, target)
    except BaseException as error:
        # InvalidTag: the unauthenticated plaintext is in the buffer; any other failure
        # (KeyboardInterrupt mid-call included) may have left part of one there.
        out.wipe()
        if isinstance(error, ValueError):
            raise _explain_size(error, "decrypt") from None
        raise
    finally:
        target.release()


def decrypt(
    cipher: _AEADLike,
    nonce: Buffer | None,
    data: Buffer,
    associated_data: Any = None,
    *,
    tag_length: int = _TAG_LENGTH,
    arena: Arena | None = None,
) -> SecureBytes:
    """Decrypt and authenticate ``data`` into a new SecureBytes.

    Raises ``cryptography.exceptions.InvalidTag`` if the message is not authentic; the
    unauthenticated plaintext cryptography wrote is wiped and released first.
    ``tag_length`` matters only for an ``AESCCM`` built with a shorter tag.
    """
    size = as_byte_view(data).nbytes - tag_length
    if size < 0:
        raise InvalidTag  # shorter than a tag: cannot be authentic (what cryptography does)
    plaintext = SecureBytes(size, arena=arena)
    try:
        decrypt_into(cipher, nonce, data, associated_data, plaintext)
    except BaseException:
        plaintext.close()
        raise
    return plaintext


def _explain_size(error: ValueError, operation: str) -> ValueError:
    if _BUFFER_SIZE.search(str(error)):
        return ValueError(
            f"cannot {operation}: the output size does not match the AEAD ({error}); "
            "an AESCCM built with tag_length=N needs tag_length=N here too"
        )
    return error


def derive(
    kdf: _KDFLike,
    key_material: SecureBytes | Buffer,
    length: int,
    *,
    arena: Arena | None = None,
) -> SecureBytes:
    """Run a KDF (``HKDF``, ``Scrypt``, ``Argon2id``, ``PBKDF2HMAC``, ``X963KDF``, ...) with
    ``derive_into``: key material read in place, derived key written into locked memory.

    ``length`` must be the length the KDF was built with: cryptography does not expose it,
    and a wrong size uses the KDF up (``derive_into`` finalizes it before checking the size),
    so it cannot be probed.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive int (the KDF's length), not {length!r}")
    material = as_byte_view(key_material)
    try:
        derived = SecureBytes(length, arena=arena)
        try:
            with derived.view() as target:
                kdf.derive_into(material, target)
        except BaseException as error:
            derived.close()
            if isinstance(error, ValueError) and _BUFFER_SIZE.search(str(error)):
                raise ValueError(
                    f"length={length} does not match the KDF ({error}); pass the length the "
                    f"{type(kdf).__name__} was built with (the KDF is used up now: build a new one)"
                ) from None
            raise
        return derived
    finally:
        material.release()


def load_private_key(
    data: SecureBytes,
    password: SecureBytes | None = None,
    *,
    encoding: Literal["pem", "der"] = "pem",
    unsafe_skip_rsa_key_validation: bool = False,
    arena: Arena | None = None,
) -> PrivateKeyTypes:
    """Load a PEM or DER private key held in locked memory, with an optional password.

    The key file and the password reach cryptography as views of locked memory, never as
    ``bytes``. PEM is decoded here, into locked memory, and handed to cryptography as DER:
    cryptography's own PEM decoder leaves the decoded key in freed heap memory. (A legacy
    OpenSSL PEM with ``Proc-Type``/``DEK-Info`` headers cannot be turned into DER; it goes to
    cryptography's PEM loader, with that copy.)

    The key object then lives in OpenSSL's memory (not locked) until it is garbage-collected;
    OpenSSL wipes private key material when it frees it. Be aware: for an *encrypted* key,
    one copy of the decrypted key stays in freed heap memory (measured with cryptography 48);
    an unencrypted key leaves none.
    """
    if not isinstance(data, SecureBytes):
        raise TypeError(
            f"load_private_key() takes the key as a SecureBytes, not {type(data).__name__}: "
            "read it with SecureBytes.from_file(path)"
        )
    if encoding not in ("pem", "der"):
        raise ValueError(f"encoding must be 'pem' or 'der', not {encoding!r}")
    der = _pem_to_der(data, arena) if encoding == "pem" else None
    loader = serialization.load_der_private_key
    if encoding == "pem" and der is None:
        loader = serialization.load_pem_private_key  # legacy headers: cryptography decodes
    source = (der if der is not None else data).view()
    secret = None
    try:
        # Inside the try: a closed password must not leave `der` (the decoded key) open.
        if password is not None:
            secret = password.view()
        # cryptography's stubs say `bytes | None`, but the Rust side takes any buffer.
        return loader(
            source,
            secret,  # type: ignore[arg-type]
            unsafe_skip_rsa_key_validation=unsafe_skip_rsa_key_validation,
        )
    finally:
        source.release()
        if secret is not None:
            secret.release()
        if der is not None:
            der.close()


_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BASE64 = bytes(
    _BASE64_ALPHABET.index(code) if code in _BASE64_ALPHABET else 0xFF for code in range(256)
)
_WHITESPACE = frozenset(b" \t\r\n")


def _pem_to_der(pem: SecureBytes, arena: Arena | None) -> SecureBytes | None:
    """The first PEM block's body, base64-decoded straight into locked memory.

    Pure Python on purpose: ``base64``/``binascii`` return ``bytes``. Every value the loop
    handles is kept within 0..255, so it only ever uses CPython's cached small ints and no
    int object holding key bits is allocated. None for a legacy PEM with headers.
    """
    view = pem.view()
    try:
        begin = _find_line(view, b"-----BEGIN ", 0)
        if begin < 0:
            raise ValueError(
                "no '-----BEGIN ...' line: this is not a PEM key (pass encoding='der' for DER)"
            )
        body = _next_line(view, begin)
        end = _find_line(view, b"-----END ", body)
        if end < 0:
            raise ValueError("the PEM key has no '-----END ...' line: is the file complete?")
        if any(view[index] == 0x3A for index in range(body, end)):
            return None  # ':' -- RFC 1421 headers (Proc-Type, DEK-Info): a legacy PEM
        sextets = 0
        for index in range(body, end):
            code = view[index]
            if _BASE64[code] != 0xFF:
                sextets += 1
            elif code != 0x3D and code not in _WHITESPACE:  # '=' is padding
                raise ValueError(f"the PEM key's body holds a non-base64 byte at offset {index}")
        der = SecureBytes(sextets * 6 // 8, arena=arena)
        with der.view() as out:
            written = position = previous = 0
            for index in range(body, end):
                value = _BASE64[view[index]]
                if value == 0xFF:
                    continue
                if position == 1:
                    out[written] = ((previous & 0x3F) << 2) | (value >> 4)
                    written += 1
                elif position == 2:
                    out[written] = ((previous & 0x0F) << 4) | (value >> 2)
                    written += 1
                elif position == 3:
                    out[written] = ((previous & 0x03) << 6) | value
                    written += 1
                previous = value
                position = (position + 1) & 3
        return der
    finally:
        view.release()


def _find_line(view: memoryview, prefix: bytes, start: int) -> int:
    """Offset of the first line at or after ``start`` that begins with ``prefix``, or -1."""
    index = start
    size = view.nbytes
    while index < size:
        if view[index : index + len(prefix)] == prefix:
            return index
        index = _next_line(view, index)
    return -1


def _next_line(view: memoryview, index: int) -> int:
    size = view.nbytes
    while index < size and view[index] != 0x0A:
        index += 1
    return index + 1


def private_key_bytes(
    key: PrivateKeyTypes,
    encoding: serialization.Encoding = serialization.Encoding.PEM,
    format: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8,
    password: SecureBytes | None = None,
    *,
    arena: Arena | None = None,
) -> SecureBytes:
    """Serialise a private key into locked memory.

    Be aware: cryptography returns the serialised key as ``bytes`` and has no ``*_into``
    variant, so one unwipeable copy exists in the ordinary heap until Python reuses that
    memory; this function moves it into a SecureBytes and drops the ``bytes`` at once. With
    a ``password`` it is worse: ``BestAvailableEncryption`` accepts only ``bytes``, so the
    password is copied into a ``bytes`` object too. Prefer an unencrypted key in locked
    memory (or on an encrypted disk) over an encrypted one whose password leaks.
    """
    if password is None:
        encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    else:
        # Unavoidable: cryptography checks isinstance(password, bytes). See the docstring.
        encryption = serialization.BestAvailableEncryption(bytes(password.view()))
    try:
        # The serialised key is only ever a temporary, dropped as soon as it is copied.
        return SecureBytes(key.private_bytes(encoding, format, encryption), arena=arena)
    finally:
        # Drop the password copy now, even when private_bytes fails: a traceback would
        # otherwise keep this frame, and the `bytes` in it, alive.
        del encryption
