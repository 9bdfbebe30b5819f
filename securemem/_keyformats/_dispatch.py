"""Private keys in and out of locked memory, in every common format: the logic behind
:func:`securemem.crypto.load_private_key` and :func:`securemem.crypto.private_key_bytes`.

Format detection and dispatch live here; each format's reader is a sibling module of this
package (see :mod:`securemem._keyformats`).
What stays outside locked memory, per format, is listed in ``docs/key-formats.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeAlias, TypeVar

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from securemem._arena import Arena
from securemem._errors import KeyFormatError, PasswordMismatch, SecureMemoryError
from securemem._keyformats import (
    _derwalk,
    _ecscalar,
    _identify,
    _legacypem,
    _openssh,
    _pem,
    _pkcs8,
    _pkcs12,
    _putty,
)
from securemem._keyformats._limits import DEFAULT_KDF_LIMITS, KdfLimits
from securemem._scrub import scrub_after_native
from securemem._securebytes import SecureBytes, as_byte_view

Password: TypeAlias = SecureBytes | bytes | bytearray | memoryview
Encoding = Literal["auto", "pem", "der", "raw"]
RawAlgorithm = Literal["ed25519", "x25519", "ed448", "x448"]

# PEM labels of private keys, and how to name them in a message.
_PRIVATE_LABELS = {
    "PRIVATE KEY": "PEM, PKCS#8",
    "ENCRYPTED PRIVATE KEY": "PEM, encrypted PKCS#8",
    "RSA PRIVATE KEY": "PEM, traditional RSA (PKCS#1)",
    "EC PRIVATE KEY": "PEM, traditional EC (SEC 1)",
    "DSA PRIVATE KEY": "PEM, traditional DSA",
    "OPENSSH PRIVATE KEY": "OpenSSH",
}
_RAW: dict[str, tuple[int, Callable[[memoryview], PrivateKeyTypes]]] = {
    "ed25519": (32, ed25519.Ed25519PrivateKey.from_private_bytes),
    "x25519": (32, x25519.X25519PrivateKey.from_private_bytes),
    "ed448": (57, ed448.Ed448PrivateKey.from_private_bytes),
    "x448": (56, x448.X448PrivateKey.from_private_bytes),
}
_T = TypeVar("_T")
# What a loader may raise for bad key data (cryptography's loaders included): _guarded turns
# each into securemem's one family, KeyFormatError (TypeError stays TypeError: a password
# given for a key that has none, or missing for one that has).
_LOADING_ERRORS = (ValueError, TypeError, UnsupportedAlgorithm)
# What a library's error says, in our words: its own message is never passed on (the fuzz
# target found cryptography's PEM loader quoting a damaged file's base64 body, key bytes
# and all, and its DER loader names OIDs read from the data).
_LIBRARY_TYPE_ERROR = "a password for a key that is not encrypted, or none for an encrypted one"
_LIBRARY_UNSUPPORTED = "cryptography does not support its key type or its encryption"
_LIBRARY_VALUE_ERROR = (
    "cryptography could not read or decrypt it: the data is damaged or not a key of this "
    "format, or the password is wrong"
)
_PREFIX = "cannot load the private key ("
# PEM labels that hold PKCS#8, which may be encrypted and so name a KDF's cost.
_PKCS8_LABELS = ("PRIVATE KEY", "ENCRYPTED PRIVATE KEY")


def password_view(password: Password | None) -> memoryview | None:
    """A byte view of a password in any accepted type, without copying it."""
    if password is None:
        return None
    if isinstance(password, str):
        raise TypeError(
            "the password must be bytes-like, not str: encode it (password.encode()) or, "
            "better, read it straight into locked memory with securemem.getpass()"
        )
    if not isinstance(password, (SecureBytes, bytes, bytearray, memoryview)):
        raise TypeError(
            "the password must be a SecureBytes, bytes, bytearray or memoryview, not "
            f"{type(password).__name__}"
        )
    return as_byte_view(password)


def load_private_key(
    data: SecureBytes,
    password: Password | None,
    *,
    encoding: Encoding,
    algorithm: RawAlgorithm | None,
    unsafe_skip_rsa_key_validation: bool,
    kdf_limits: KdfLimits = DEFAULT_KDF_LIMITS,
    arena: Arena | None,
) -> PrivateKeyTypes:
    if not isinstance(data, SecureBytes):
        raise TypeError(
            f"load_private_key() takes the key as a SecureBytes, not {type(data).__name__}: "
            "read it with SecureBytes.from_file(path)"
        )
    if encoding not in ("auto", "pem", "der", "raw"):
        raise ValueError(f"encoding must be 'auto', 'pem', 'der' or 'raw', not {encoding!r}")
    if (encoding == "raw") != (algorithm is not None):
        raise TypeError(
            "a raw key needs its algorithm and only a raw key takes one: pass "
            "encoding='raw', algorithm='ed25519' (or 'x25519', 'ed448', 'x448')"
        )
    if not isinstance(kdf_limits, KdfLimits):
        raise TypeError(
            f"kdf_limits must be a securemem.crypto.KdfLimits, not {type(kdf_limits).__name__}"
        )
    secret = password_view(password)
    try:
        with data.view() as view:
            if encoding == "raw":
                assert algorithm is not None
                return _load_raw(view, algorithm, secret)
            if encoding == "der" or (encoding == "auto" and _looks_like_der(view)):
                if _pkcs12.looks_like(view):
                    return _pkcs12.load(view, secret, kdf_limits)
                if (other := _identify.der_data(view)) is not None:
                    raise KeyFormatError(other)
                return _guarded(
                    _describe_der(view),
                    lambda: _load_der(
                        view, secret, unsafe_skip_rsa_key_validation, kdf_limits, arena
                    ),
                )
            if encoding == "auto" and _putty.is_ppk(view):
                described = _guarded("PuTTY .ppk", lambda: _putty.header(view)).describe()
                return _guarded(
                    described,
                    lambda: _putty.load(
                        view,
                        secret,
                        unsafe_skip_rsa_key_validation=unsafe_skip_rsa_key_validation,
                        arena=arena,
                        limits=kdf_limits,
                    ),
                )
            return _load_pem(
                view, secret, unsafe_skip_rsa_key_validation, kdf_limits, arena, encoding
            )
    finally:
        # Every native call above (base64, AES, bcrypt, MD5, OpenSSL's key parsing) ran from
        # this C frame (Python-to-Python calls add none): wipe the stack they used and the
        # vector registers, as securemem.crypto does after each call into cryptography.
        scrub_after_native()
        if secret is not None:
            secret.release()


def _load_raw(
    view: memoryview, algorithm: str, password: memoryview | None
) -> PrivateKeyTypes:
    if algorithm not in _RAW:
        raise ValueError(
            f"algorithm must be 'ed25519', 'x25519', 'ed448' or 'x448', not {algorithm!r}"
        )
    size, build = _RAW[algorithm]
    if password is not None:
        raise TypeError("a raw key is never encrypted: pass password=None")
    if view.nbytes != size:
        raise KeyFormatError(
            f"a raw {algorithm} private key is {size} bytes; this one is {view.nbytes} bytes"
        )
    return _guarded(f"raw {algorithm}", lambda: build(view))


def _looks_like_der(view: memoryview) -> bool:
    return view.nbytes > 0 and view[0] == _derwalk.SEQUENCE


def _load_der(
    der: memoryview,
    password: memoryview | None,
    unsafe_skip_rsa_key_validation: bool,
    limits: KdfLimits,
    arena: Arena | None,
) -> PrivateKeyTypes:
    """cryptography's DER loader, after the KDF cost of encrypted PKCS#8 is checked (and an
    EC scalar of another size than the curve's rewritten, in locked memory)."""
    _pkcs8.check_kdf(der, limits)
    try:
        return _ecscalar.load_der_private_key(
            der,
            password,
            unsafe_skip_rsa_key_validation=unsafe_skip_rsa_key_validation,
            arena=arena,
        )
    except ValueError:
        if password is None or not _pkcs8.looks_encrypted(der):
            raise
        # Its algorithm and parameters were read and are sound: what failed is decryption.
        raise KeyFormatError(
            "wrong password for the encrypted PKCS#8 key (or the key is corrupt)"
        ) from None


def _load_pem(
    view: memoryview,
    password: memoryview | None,
    unsafe_skip_rsa_key_validation: bool,
    limits: KdfLimits,
    arena: Arena | None,
    encoding: Encoding,
) -> PrivateKeyTypes:
    labels: list[str] = []
    for block in _pem.blocks(view):
        if block.label in _PRIVATE_LABELS:
            break
        labels.append(block.label)
    else:
        raise KeyFormatError(_not_a_key(view, labels, encoding))
    described = _PRIVATE_LABELS[block.label]
    if block.has_headers:
        if block.label in _PKCS8_LABELS:
            # No tool writes headers on PKCS#8; cryptography's PEM loader would skip them and
            # derive whatever the body asks for, unchecked.
            raise KeyFormatError(
                f"cannot load the private key ({described}): the block has RFC 1421 header "
                "lines (with ':'), which PKCS#8 never has: is the file damaged?"
            )
        return _load_legacy(
            view, block, described, password, unsafe_skip_rsa_key_validation, arena
        )
    decoded = _pem.decode(view, block, arena)
    try:
        with decoded.view() as der:
            if block.label == "OPENSSH PRIVATE KEY":
                described = _guarded(described, lambda: _openssh.header(der)).describe()
                return _guarded(
                    described,
                    lambda: _openssh.load(
                        decoded,
                        password,
                        unsafe_skip_rsa_key_validation=unsafe_skip_rsa_key_validation,
                        arena=arena,
                        limits=limits,
                    ),
                )
            return _guarded(
                described,
                lambda: _load_der(der, password, unsafe_skip_rsa_key_validation, limits, arena),
            )
    finally:
        decoded.close()


def _load_legacy(
    view: memoryview,
    block: _pem.PemBlock,
    described: str,
    password: memoryview | None,
    unsafe_skip_rsa_key_validation: bool,
    arena: Arena | None,
) -> PrivateKeyTypes:
    """A traditional PEM key with RFC 1421 encryption headers (Proc-Type/DEK-Info)."""
    described += " with legacy OpenSSL encryption (Proc-Type/DEK-Info)"
    legacy = _guarded(described, lambda: _legacy_der(view, block, password, arena))
    if legacy is None:
        # Handed to cryptography's PEM loader only when it is what the fallback is for: a
        # traditional key encrypted with a cipher securemem does not know. Anything else
        # with header lines is refused: cryptography's parser finds blocks securemem's does
        # not (a BEGIN line inside another block's body), whose KDF cost nobody checked, and
        # would decode an unencrypted key outside locked memory.
        found, _ = _legacypem.headers(view, block)
        if block.label == "OPENSSH PRIVATE KEY" or not (
            b"ENCRYPTED" in found.get(b"Proc-Type", b"") and b"DEK-Info" in found
        ):
            raise KeyFormatError(
                f"cannot load the private key ({described}): the block has RFC 1421 header "
                "lines (with ':') but no legacy encryption (Proc-Type: 4,ENCRYPTED and "
                "DEK-Info): is the file damaged?"
            )
        # A cipher securemem does not know (DES-CBC, ...): cryptography's PEM loader decodes
        # and decrypts it, outside locked memory (see docs/key-formats.md).
        return _guarded(
            described,
            lambda: serialization.load_pem_private_key(
                view[block.begin : block.after],
                password,  # type: ignore[arg-type]
                unsafe_skip_rsa_key_validation=unsafe_skip_rsa_key_validation,
            ),
        )
    try:
        with legacy.view() as der:
            return _guarded(
                described,
                lambda: _ecscalar.load_der_private_key(
                    der,
                    None,
                    unsafe_skip_rsa_key_validation=unsafe_skip_rsa_key_validation,
                    arena=arena,
                ),
            )
    finally:
        legacy.close()


def _legacy_der(
    view: memoryview, block: _pem.PemBlock, password: memoryview | None, arena: Arena | None
) -> SecureBytes | None:
    """The DER inside a PEM block with legacy encryption (AES-CBC, DES-EDE3-CBC), decrypted
    into locked memory; None for a cipher securemem leaves to cryptography."""
    found, body = _legacypem.headers(view, block)
    cipher = _legacypem.cipher(found)
    if cipher is None or b"ENCRYPTED" not in found.get(b"Proc-Type", b""):
        return None
    if password is None:
        raise PasswordMismatch("the key is encrypted: pass its password as password=")
    return _legacypem.decrypt(view, block, body, cipher, password, arena)


def _not_a_key(view: memoryview, labels: list[str], encoding: Encoding) -> str:
    if labels:
        other = _identify.pem(labels)
        return (
            (f"{other}: " if other else "")
            + f"the PEM data holds {', '.join(repr(label) for label in labels)} but no private "
            f"key block (one of {', '.join(repr(label) for label in _PRIVATE_LABELS)})"
        )
    if _putty.is_ppk(view):
        return "this is a PuTTY .ppk key, not PEM: pass encoding='auto' to load it"
    if any(_starts_with(view, prefix) for prefix in (b"ssh-", b"ecdsa-sha2-", b"sk-")):
        return "this is an OpenSSH public key (a .pub file), not a private key"
    if encoding == "pem":
        return "no '-----BEGIN ...' line: this is not a PEM key (pass encoding='der' for DER)"
    return (
        "the data is neither PEM (no '-----BEGIN ...' line) nor DER (it does not start with "
        "a SEQUENCE); for a raw key pass encoding='raw' and its algorithm"
    )


def _starts_with(view: memoryview, prefix: bytes) -> bool:
    """Compared in place: the data may be a raw key, and a ``bytes`` slice would copy it."""
    return view[: len(prefix)] == prefix


def _describe_der(view: memoryview) -> str:
    """Which DER private key structure this is, from its public framing (tags, version)."""
    try:
        first = _derwalk.contents_offset(view, 0)  # the first element inside the SEQUENCE
        if view[first] == _derwalk.SEQUENCE:
            return "DER, encrypted PKCS#8"  # AlgorithmIdentifier, then the encrypted data
        if view[first] != _derwalk.INTEGER or view[first + 1] & 0x80:
            return "DER"
        second = view[first + 2 + view[first + 1]]  # the element after the version
    except IndexError:
        return "DER (truncated)"
    if second == _derwalk.SEQUENCE:
        return "DER, PKCS#8"
    if second == _derwalk.OCTET_STRING:
        return "DER, traditional EC (SEC 1)"
    if second == _derwalk.INTEGER:
        return "DER, traditional RSA (PKCS#1) or DSA"
    return "DER"


def _guarded(described: str, load: Callable[[], _T]) -> _T:
    """Run ``load``; an error comes back as one of the documented errors, naming the format,
    with no exception chain (the original's message is kept: cryptography's messages name no
    key bytes, and the tests and the fuzz target check that ours do not either)."""
    failure: Exception
    try:
        return load()
    except _LOADING_ERRORS as error:
        if isinstance(error, SecureMemoryError) and not isinstance(error, KeyFormatError):
            raise  # not the key data's fault: the caller closed a SecureBytes mid-load
        failure = _renamed(error, described)
    raise failure


def _renamed(error: Exception, described: str) -> Exception:
    """The one place errors become the documented family. securemem's own errors keep their
    message (built from names and counts, never from key bytes): a KeyFormatError (or
    KdfLimitError) stays one, a reader's password mismatch becomes a plain TypeError. Any
    other error, from cryptography, bcrypt or the standard library, gets a fixed message for
    its class: a TypeError stays a TypeError (cryptography's password mismatch), a
    ValueError or UnsupportedAlgorithm becomes a KeyFormatError."""
    if isinstance(error, KeyFormatError):
        message = str(error)
        if message.startswith(_PREFIX):
            return type(error)(message)  # it names its format already (an inner _guarded)
        return type(error)(f"{_PREFIX}{described}): {message}")
    if isinstance(error, PasswordMismatch):
        return TypeError(f"{_PREFIX}{described}): {error}")
    if isinstance(error, TypeError):
        return TypeError(f"{_PREFIX}{described}): {_LIBRARY_TYPE_ERROR}")
    if isinstance(error, UnsupportedAlgorithm):
        return KeyFormatError(f"{_PREFIX}{described}): {_LIBRARY_UNSUPPORTED}")
    return KeyFormatError(f"{_PREFIX}{described}): {_LIBRARY_VALUE_ERROR}")


def private_key_bytes(
    key: PrivateKeyTypes,
    encoding: serialization.Encoding,
    format: serialization.PrivateFormat,
    password: Password | None,
    arena: Arena | None,
) -> SecureBytes:
    secret = password_view(password)
    if secret is None:
        encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    else:
        # Unavoidable: cryptography checks isinstance(password, bytes).
        encryption = serialization.BestAvailableEncryption(secret.tobytes())
        secret.release()
    try:
        # The serialised key is only ever a temporary, dropped as soon as it is copied.
        return SecureBytes(key.private_bytes(encoding, format, encryption), arena=arena)
    finally:
        scrub_after_native()  # private_bytes ran the key through OpenSSL's encoders
        # Drop the password copy now, even when private_bytes fails: a traceback would
        # otherwise keep this frame, and the `bytes` in it, alive.
        del encryption
