"""pyca/cryptography with keys and plaintexts in locked memory.

cryptography accepts any buffer-protocol object for keys, plaintexts and key material, and its
``*_into`` methods (``encrypt_into``, ``decrypt_into``, ``derive_into``) write their output into
a buffer the caller provides. This module hands cryptography memoryviews over
:class:`~securemem.SecureBytes`, so neither the secret going in nor the secret coming out is
ever a Python ``bytes`` object. Install with ``pip install 'securemem[crypto]'``.

After every call into cryptography (constructing the AEAD in :func:`aead`, which expands the
key; :func:`encrypt`; :func:`decrypt`/:func:`decrypt_into`, also when they raise; :func:`derive`)
this module clears the CPU's vector registers and wipes 16 KiB of the stack the call used
(``securemem/_scrub.py``): called directly, OpenSSL returns with the AES key in vector registers
(the next register save puts it on the stack) and cryptography leaves the last partial
plaintext block in a stack buffer. Measured by the stack tests in ``tests/test_crypto.py``.

What cryptography still copies is up to each of its releases; ``docs/secrets-in-and-out.md``
states the bounds securemem documents for any release (asserted by ``tests/test_handoffs.py``
from ``tests/copy_bounds.py``) and the counts ``python -m benchmarks.audit`` measured on
cryptography 47.0.0, 50.0.2 and 51.0.1:

* An AEAD object keeps the key (OpenSSL's expanded key schedule, which starts with the key
  itself) in OpenSSL's ordinary heap for as long as the object lives: at most 2 copies
  (encryption and decryption context; AES-SIV: of each half of its key); 2 up to 50.0.2, 1
  from 51.0.1 (AESOCB3: 2), none for ``AESCCM``. OpenSSL wipes them when the object is freed
  (``test_aead_key_leaves_no_copy_once_the_aead_is_freed``). ``AESCCM`` keeps a *reference* to
  the key buffer and reads it on every call; from cryptography 49 on every other AEAD holds a
  reference to it too, for as long as it lives (without reading it again). :func:`aead` gives
  each AEAD a private locked copy, so closing your key can never turn theirs into zeros.
* Argon2id leaves at most 1 copy of the password in freed heap memory; HKDF, PBKDF2HMAC and
  Scrypt leave none.
* Decrypting leaves no copy of the plaintext outside the SecureBytes it is written into
  (``test_decrypt_leaves_no_copy_of_the_plaintext``).
* Loading an *encrypted* PKCS#8 key may leave the decrypted key in freed heap memory (at
  most one copy: a buffer that cryptography/OpenSSL frees without wiping); an unencrypted
  DER key leaves none once the key object is freed. Any key object keeps its key in
  OpenSSL's (unlocked) heap while it lives.
* Serialising a private key returns ``bytes`` (there is no ``private_bytes_into``), and
  ``BestAvailableEncryption`` accepts only a ``bytes`` password: both stay in the heap until
  it is reused. :func:`private_key_bytes` moves the result into locked memory at once, but
  cannot wipe the ``bytes`` cryptography made.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal, Protocol, TypeAlias, TypeVar

from securemem._arena import Arena
from securemem._errors import KdfLimitError, KeyFormatError
from securemem._extras import needs_crypto_extra
from securemem._public import claim_public_names
from securemem._scrub import scrub_after_native
from securemem._securebytes import SecureBytes, as_byte_view
from securemem._types import Buffer

# Without cryptography this import fails with the command that installs it.
with needs_crypto_extra("securemem.crypto"):
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV

    from securemem import _keyformats
    from securemem._fernet import fernet_decrypt, fernet_encrypt
    from securemem._keyformats._limits import DEFAULT_KDF_LIMITS, KdfLimits

__all__ = [
    "KdfLimitError",
    "KdfLimits",
    "KeyFormatError",
    "aead",
    "decrypt",
    "decrypt_into",
    "derive",
    "encrypt",
    "fernet_decrypt",
    "fernet_encrypt",
    "load_private_key",
    "private_key_bytes",
]

AEAD = TypeVar("AEAD")
# One item, or (AES-SIV) a sequence of items authenticated in order.
AssociatedData: TypeAlias = Buffer | Sequence[Buffer] | None
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
        # Expanding the key (OpenSSL's key schedule) ran through the registers and stack.
        scrub_after_native()
        del private


def _aead_arguments(
    cipher: _AEADLike, nonce: Buffer | None, associated_data: AssociatedData
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
    associated_data: AssociatedData = None,
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
        scrub_after_native()  # the key schedule and the plaintext passed through both
        source.release()
    return output


def decrypt_into(
    cipher: _AEADLike,
    nonce: Buffer | None,
    data: Buffer,
    associated_data: AssociatedData,
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
        scrub_after_native()  # first: nothing below may run with the plaintext in registers
        # InvalidTag: the unauthenticated plaintext is in the buffer; any other failure
        # (KeyboardInterrupt mid-call included) may have left part of one there.
        out.wipe()
        if isinstance(error, ValueError):
            raise _explain_size(error, "decrypt") from None
        raise
    else:
        scrub_after_native()
    finally:
        target.release()


def decrypt(
    cipher: _AEADLike,
    nonce: Buffer | None,
    data: Buffer,
    associated_data: AssociatedData = None,
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
                try:
                    kdf.derive_into(material, target)
                finally:
                    scrub_after_native()  # the key material and the derived key passed here
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
    password: SecureBytes | bytes | bytearray | memoryview | None = None,
    *,
    encoding: Literal["auto", "pem", "der", "raw"] = "auto",
    algorithm: Literal["ed25519", "x25519", "ed448", "x448"] | None = None,
    unsafe_skip_rsa_key_validation: bool = False,
    kdf_limits: KdfLimits = DEFAULT_KDF_LIMITS,
    arena: Arena | None = None,
) -> PrivateKeyTypes:
    """Load a private key held in locked memory, in any common format, with an optional
    password.

    ``encoding="auto"`` (the default) finds the first private key in PEM data (PKCS#8 plain
    or encrypted, traditional RSA/EC/DSA, OpenSSH; CRLF, a byte-order mark, text and other
    blocks such as certificates around it), a PuTTY ``.ppk`` file (versions 2 and 3), or takes
    DER (PKCS#8 or traditional, or the key of a PKCS#12 bundle: ``password=None`` for an
    empty password). A raw key
    needs ``encoding="raw", algorithm="ed25519"`` (or ``"x25519"``, ``"ed448"``, ``"x448"``).
    ``password`` may be a SecureBytes (best), ``bytes``, ``bytearray`` or ``memoryview``;
    a ``str`` raises TypeError. ``kdf_limits`` caps the key-derivation work an encrypted file
    may ask for; a file above it raises KdfLimitError before anything is derived.

    PEM bodies are decoded into locked memory, and OpenSSH and PuTTY keys are decrypted and
    re-encoded in locked memory, before cryptography sees them. The key object then lives in
    OpenSSL's memory (not locked) until it is garbage-collected; OpenSSL wipes private key
    material when it frees it. What cryptography itself still leaves, per format and
    release: docs/key-formats.md.

    An encrypted key file names its own key-derivation cost (OpenSSH's bcrypt rounds, PKCS#8's
    PBKDF2 iterations or scrypt parameters); a cost above ``kdf_limits`` (by default
    :class:`KdfLimits`, which accepts what the tools write by default and with common
    hardening) is refused with :class:`KdfLimitError` before any derivation starts. Pass
    ``kdf_limits=KdfLimits(bcrypt_rounds=2000)`` (say) for a file you trust.

    Errors: bad key data (not a private key, a format or algorithm securemem cannot load, a
    damaged file, a wrong password, a cost above the limits) raises :class:`KeyFormatError`, a
    ``ValueError`` and a :class:`securemem.SecureMemoryError`; ``TypeError`` means an argument
    of the wrong type, or a password given for a key that is not encrypted (or none for one
    that is); ``ValueError`` an ``encoding`` or ``algorithm`` that does not exist. Messages
    name the format detected and never hold a byte of the key or the password.
    """
    return _keyformats.load_private_key(
        data,
        password,
        encoding=encoding,
        algorithm=algorithm,
        unsafe_skip_rsa_key_validation=unsafe_skip_rsa_key_validation,
        kdf_limits=kdf_limits,
        arena=arena,
    )


def private_key_bytes(
    key: PrivateKeyTypes,
    encoding: serialization.Encoding = serialization.Encoding.PEM,
    format: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8,
    password: SecureBytes | bytes | bytearray | memoryview | None = None,
    *,
    arena: Arena | None = None,
) -> SecureBytes:
    """Serialise a private key into locked memory, in any format :func:`load_private_key`
    reads (PEM/DER PKCS#8, traditional, ``PrivateFormat.OpenSSH``, ``Encoding.Raw`` with
    ``PrivateFormat.Raw``).

    Be aware: cryptography returns the serialised key as ``bytes`` and has no ``*_into``
    variant, so one unwipeable copy exists in the ordinary heap until Python reuses that
    memory; this function moves it into a SecureBytes and drops the ``bytes`` at once. With
    a ``password`` it is worse: ``BestAvailableEncryption`` accepts only ``bytes``, so the
    password is copied into a ``bytes`` object too. Prefer an unencrypted key in locked
    memory (or on an encrypted disk) over an encrypted one whose password leaks.
    """
    return _keyformats.private_key_bytes(key, encoding, format, password, arena)


claim_public_names(globals(), __all__, __name__)
