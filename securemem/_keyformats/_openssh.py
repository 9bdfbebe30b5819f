"""OpenSSH private keys (``-----BEGIN OPENSSH PRIVATE KEY-----``), parsed in locked memory.

cryptography's own ``load_ssh_private_key`` is Python that decodes the file into ``bytes``,
decrypts into ``bytes`` and turns RSA, DSA and ECDSA secrets into Python ints: copies nobody
can wipe. Here the decoded container stays in a :class:`~securemem.SecureBytes`, the private
section is decrypted by cryptography's ``update_into`` into another one, and its fields are
re-encoded as the DER that OpenSSL loads (PKCS#1 RSA, SEC 1 EC, OpenSSL DSA) in locked memory,
or handed over as a view (Ed25519). Container layout: OpenSSH's PROTOCOL.key.

What cannot be avoided: ``bcrypt.kdf`` takes the passphrase only as ``bytes`` and returns the
derived AES key and IV as ``bytes`` (both stay in freed heap memory).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from securemem._arena import Arena
from securemem._errors import KeyFormatError, PasswordMismatch
from securemem._keyformats import _bignum, _der, _limits
from securemem._keyformats._decrypt import decrypt_into_locked
from securemem._securebytes import SecureBytes

_MAGIC = b"openssh-key-v1\x00"
_MAX_RSA_BYTES = 2048  # 16,384 bits: OpenSSL's OPENSSL_RSA_MAX_MODULUS_BITS
_NONE = b"none"
_BCRYPT = b"bcrypt"
# bcrypt_pbkdf hashes the salt on every round: ssh-keygen writes 16 bytes; a long one is
# damage, or a way around the round limit.
_MAX_SALT = 64
_T = TypeVar("_T")


@dataclass(frozen=True)
class _Cipher:
    key_size: int
    iv_size: int
    block_size: int
    mode: str  # "ctr", "cbc" or "gcm"
    tag_size: int = 0


# The ciphers ssh-keygen offers for key files (ssh-keygen -Z) that cryptography implements.
_CIPHERS = {
    b"aes128-ctr": _Cipher(16, 16, 16, "ctr"),
    b"aes192-ctr": _Cipher(24, 16, 16, "ctr"),
    b"aes256-ctr": _Cipher(32, 16, 16, "ctr"),
    b"aes128-cbc": _Cipher(16, 16, 16, "cbc"),
    b"aes192-cbc": _Cipher(24, 16, 16, "cbc"),
    b"aes256-cbc": _Cipher(32, 16, 16, "cbc"),
    b"aes128-gcm@openssh.com": _Cipher(16, 12, 16, "gcm", 16),
    b"aes256-gcm@openssh.com": _Cipher(32, 12, 16, "gcm", 16),
}
_CURVES = {  # SSH curve name: (OID of the named curve, DER-encoded; private scalar size)
    b"nistp256": (bytes.fromhex("06082a8648ce3d030107"), 32),
    b"nistp384": (bytes.fromhex("06052b81040022"), 48),
    b"nistp521": (bytes.fromhex("06052b81040023"), 66),
}


class Reader:
    """SSH wire-format fields (uint32, string) read from a memoryview without copying (the
    PuTTY reader's blobs too: ``key`` names the format in a message)."""

    def __init__(self, view: memoryview, what: str, key: str = "OpenSSH") -> None:
        self._view = view
        self._offset = 0
        self._what = what
        self._key = key

    def u32(self) -> int:
        """A length, a count or a round count: never secret."""
        return int.from_bytes(self.take(4), "big")

    def string(self) -> memoryview:
        return self.take(self.u32())

    def take(self, size: int) -> memoryview:
        if self._offset + size > self._view.nbytes:
            raise KeyFormatError(f"the {self._key} key is truncated or corrupt ({self._what})")
        piece = self._view[self._offset : self._offset + size]
        self._offset += size
        return piece

    def left(self) -> int:
        return self._view.nbytes - self._offset

    def rest(self) -> memoryview:
        return self.take(self.left())


@dataclass(frozen=True)
class Header:
    """The public part of the container: how the private section is protected, and the
    public key."""

    cipher: str
    kdf: str

    @property
    def encrypted(self) -> bool:
        return self.cipher != "none"

    def describe(self) -> str:
        if self.encrypted:
            return f"OpenSSH, passphrase-protected ({self.cipher}, {self.kdf} KDF)"
        return "OpenSSH, not encrypted"


_NAME_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789@.-")


def _name(field: memoryview) -> str:
    """A cipher, KDF or key-type name for a message. In a damaged file a length may point
    anywhere, even into an unencrypted private section, so only what looks like a name
    (short, lower-case ASCII) is shown."""
    if 0 < field.nbytes <= 40 and all(code in _NAME_BYTES for code in field):
        return field.tobytes().decode("ascii")
    return "<unreadable>"


def _is(field: memoryview, name: bytes) -> bool:
    """``field == name`` compared in place."""
    return field == memoryview(name)


def _lookup(table: dict[bytes, _T], field: memoryview) -> _T | None:
    """``table[field]``, compared in place: in a damaged file the field may span key bytes,
    which a ``bytes`` key for the lookup would copy."""
    for name, value in table.items():
        if _is(field, name):
            return value
    return None


def header(container: memoryview) -> Header:
    """The container's protection, for error messages (raises ValueError if it is none)."""
    if container[: len(_MAGIC)] != _MAGIC:
        raise KeyFormatError(
            "the OPENSSH PRIVATE KEY block does not start with 'openssh-key-v1': is the file "
            "damaged?"
        )
    reader = Reader(container[len(_MAGIC) :], "header")
    return Header(_name(reader.string()), _name(reader.string()))


def load(
    container: SecureBytes,
    password: memoryview | None,
    *,
    unsafe_skip_rsa_key_validation: bool,
    arena: Arena | None,
    limits: _limits.KdfLimits,
) -> PrivateKeyTypes:
    """The key in a decoded OpenSSH container (the PEM body, already in locked memory)."""
    with container.view() as view:
        protection = header(view)
        reader = Reader(view[len(_MAGIC) :], "header")
        cipher_name, kdf_name, kdf_options = reader.string(), reader.string(), reader.string()
        if reader.u32() != 1:
            raise KeyFormatError("the OpenSSH file holds several keys: only one key is supported")
        public = reader.string()
        private = reader.string()
        if protection.encrypted:
            section = _decrypt(
                cipher_name, kdf_name, kdf_options, private, reader.rest(), password, arena, limits
            )
        else:
            if password is not None:
                raise PasswordMismatch(
                    "a password was given but the OpenSSH key is not passphrase-protected: "
                    "pass password=None"
                )
            if reader.rest().nbytes:
                raise KeyFormatError("the OpenSSH key has data after its private section")
            section = SecureBytes(private, arena=arena)
        try:
            with section.view() as plain:
                key = _private_key(plain, unsafe_skip_rsa_key_validation, arena)
        finally:
            section.close()
        if public_blob(key) != public:
            raise KeyFormatError(
                "the OpenSSH key's private part does not match its public part: the file "
                "is corrupt"
            )
        return key


def _decrypt(
    cipher_name: memoryview,
    kdf_name: memoryview,
    kdf_options: memoryview,
    encrypted: memoryview,
    trailer: memoryview,
    password: memoryview | None,
    arena: Arena | None,
    limits: _limits.KdfLimits,
) -> SecureBytes:
    """The private section, decrypted into locked memory."""
    cipher = _lookup(_CIPHERS, cipher_name)
    if cipher is None:
        raise KeyFormatError(
            f"the OpenSSH key is encrypted with {_name(cipher_name)!r}, which cryptography "
            "does not implement: re-encrypt it with `ssh-keygen -p -Z aes256-ctr -f FILE`"
        )
    if kdf_name != _BCRYPT:
        raise KeyFormatError(f"the OpenSSH key uses the unknown KDF {_name(kdf_name)!r}")
    if password is None:
        raise PasswordMismatch(
            "the OpenSSH key is passphrase-protected: pass its passphrase as password= "
            "(read it with securemem.getpass)"
        )
    if encrypted.nbytes % cipher.block_size or trailer.nbytes != cipher.tag_size:
        raise KeyFormatError(
            "the OpenSSH key's encrypted section has the wrong size: it is corrupt"
        )
    options = Reader(kdf_options, "bcrypt options")
    salt, rounds = options.string(), options.u32()
    # Before any derivation: bcrypt runs in C, where Ctrl-C does not reach it.
    _limits.check("OpenSSH", "bcrypt_rounds", rounds, limits.bcrypt_rounds)
    if salt.nbytes > _MAX_SALT:
        raise KeyFormatError(
            f"the OpenSSH key's bcrypt salt is {salt.nbytes} bytes (ssh-keygen writes 16, "
            f"securemem reads up to {_MAX_SALT}): is the file damaged?"
        )
    size = cipher.key_size + cipher.iv_size
    seed = _bcrypt_seed(password, salt.tobytes(), size, rounds, arena)
    try:
        with seed.view() as material:
            key, iv = material[: cipher.key_size], material[cipher.key_size :]
            mode: modes.Mode
            if cipher.mode == "ctr":
                mode = modes.CTR(iv)
            elif cipher.mode == "cbc":
                mode = modes.CBC(iv)
            else:
                mode = modes.GCM(iv, trailer.tobytes())  # the tag: not secret
            decryptor = Cipher(algorithms.AES(key), mode).decryptor()
            try:
                section = decrypt_into_locked(decryptor, encrypted, cipher.block_size, arena)
            except InvalidTag:
                raise KeyFormatError(
                    "wrong passphrase for the OpenSSH key (or the key is corrupt)"
                ) from None
    finally:
        seed.close()
    with section.view() as plain:
        checks_match = plain.nbytes >= 8 and plain[0:4] == plain[4:8]
    if not checks_match:
        section.close()
        raise KeyFormatError("wrong passphrase for the OpenSSH key (or the key is corrupt)")
    return section


def _bcrypt_seed(
    password: memoryview, salt: bytes, size: int, rounds: int, arena: Arena | None
) -> SecureBytes:
    try:
        import bcrypt  # imported here: only passphrase-protected OpenSSH keys need it
    except ImportError:
        raise KeyFormatError(
            "a passphrase-protected OpenSSH key needs the bcrypt package: "
            "pip install 'securemem[crypto]' (or pip install bcrypt)"
        ) from None
    # Unavoidable copies: bcrypt accepts the passphrase only as bytes, and returns bytes.
    passphrase = password.tobytes()
    try:
        derived = bcrypt.kdf(passphrase, salt, size, rounds, ignore_few_rounds=True)
    finally:
        del passphrase
    try:
        return SecureBytes(derived, arena=arena)
    finally:
        del derived


def _private_key(
    section: memoryview, unsafe_skip_rsa_key_validation: bool, arena: Arena | None
) -> PrivateKeyTypes:
    reader = Reader(section, "private section")
    reader.take(8)  # the two check values, compared already
    key_type = reader.string()
    if _is(key_type, b"ssh-ed25519"):
        public, pair = reader.string(), reader.string()
        if pair.nbytes != 64 or pair[32:] != public:
            raise KeyFormatError("the OpenSSH Ed25519 key is corrupt (its key pair does not match)")
        key: PrivateKeyTypes = ed25519.Ed25519PrivateKey.from_private_bytes(pair[:32])
    elif _is(key_type[:11], b"ecdsa-sha2-"):
        curve_name, point, scalar = reader.string(), reader.string(), reader.string()
        key = load_der(ec_der(curve_name, point, scalar, arena), False)
    elif _is(key_type, b"ssh-rsa"):
        n, e, d, iqmp, p, q = (reader.string() for _ in range(6))
        key = load_der(rsa_der(n, e, d, iqmp, p, q, arena), unsafe_skip_rsa_key_validation)
    elif _is(key_type, b"ssh-dss"):
        p, q, g, y, x = (reader.string() for _ in range(5))
        key = load_der(dsa_der(p, q, g, y, x, arena), False)
    else:
        raise KeyFormatError(
            f"OpenSSH key type {_name(key_type)!r} is not supported (security-key types keep "
            "their private key on the token; there is nothing to load)"
        )
    reader.string()  # the comment
    padding = reader.rest()
    if any(padding[index] != index + 1 for index in range(padding.nbytes)):
        raise KeyFormatError("the OpenSSH key's padding is wrong: the file is corrupt")
    return key


def ec_der(
    curve_name: memoryview, point: memoryview, scalar: memoryview, arena: Arena | None
) -> SecureBytes:
    """SEC 1 ECPrivateKey: version 1, the scalar at the curve's size, curve OID, point."""
    curve = _lookup(_CURVES, curve_name)
    if curve is None:
        raise KeyFormatError(f"OpenSSH ECDSA curve {_name(curve_name)!r} is not supported")
    oid, size = curve
    # An mpint carries a sign byte; SEC 1 wants exactly `size` bytes.
    fixed = _der.fixed_size(scalar, size)
    if fixed is None:
        raise KeyFormatError("the OpenSSH ECDSA key is corrupt (its private scalar is too long)")
    structure = _der.sequence(
        _der.small_integer(1),
        _der.octet_string(fixed),
        _der.explicit(0, [oid]),
        _der.explicit(1, _der.bit_string(point)),
    )
    return _der.write(structure, arena)


def dsa_der(
    p: memoryview, q: memoryview, g: memoryview, y: memoryview, x: memoryview, arena: Arena | None
) -> SecureBytes:
    """OpenSSL's traditional DSA structure: version 0, p, q, g, y, x."""
    fields = [_der.integer(value) for value in (p, q, g, y, x)]
    return _der.write(_der.sequence(_der.small_integer(0), *fields), arena)


def rsa_der(
    n: memoryview,
    e: memoryview,
    d: memoryview,
    iqmp: memoryview,
    p: memoryview,
    q: memoryview,
    arena: Arena | None,
) -> SecureBytes:
    """PKCS#1 RSAPrivateKey; the CRT exponents d mod (p-1), d mod (q-1) computed in locked
    memory (OpenSSH does not store them)."""
    # The division costs |d| x |p| in native code Ctrl-C does not reach: sizes are bounded
    # first (OpenSSL's own RSA maximum, and no part longer than the modulus).
    modulus = _bignum.significant_bytes(n)
    if modulus > _MAX_RSA_BYTES:
        raise KeyFormatError(
            f"the RSA modulus in the key has {modulus * 8} bits, above the {_MAX_RSA_BYTES * 8} "
            "OpenSSL accepts: is the file damaged?"
        )
    if any(_bignum.significant_bytes(part) > modulus for part in (e, d, iqmp, p, q)):
        raise KeyFormatError(
            "a number in the RSA key is longer than its modulus: the key is corrupt"
        )
    dmp1 = _bignum.mod_prime_minus_one(d, p, arena)
    try:
        dmq1 = _bignum.mod_prime_minus_one(d, q, arena)
    except BaseException:
        dmp1.close()
        raise
    try:
        with dmp1.view() as dp, dmq1.view() as dq:
            structure = _der.sequence(
                _der.small_integer(0),
                *(_der.integer(field) for field in (n, e, d, p, q, dp, dq, iqmp)),
            )
            return _der.write(structure, arena)
    finally:
        dmp1.close()
        dmq1.close()


def load_der(der: SecureBytes, unsafe_skip_rsa_key_validation: bool) -> PrivateKeyTypes:
    try:
        with der.view() as view:
            return serialization.load_der_private_key(
                view, None, unsafe_skip_rsa_key_validation=unsafe_skip_rsa_key_validation
            )
    finally:
        der.close()


def public_blob(key: PrivateKeyTypes) -> bytes:
    """The key's public half in SSH wire format (public data)."""
    line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return base64.b64decode(line.split()[1])
