"""The key-derivation cost an encrypted PKCS#8 key asks for, read before cryptography derives.

cryptography (and OpenSSL under it) decrypts encrypted PKCS#8 itself, running whatever PBKDF2
iteration count or scrypt ``N``, ``r``, ``p`` the file names; a hostile file can ask for hours
of CPU or gigabytes of memory. So before any DER goes to cryptography's loader, this module
reads the ``EncryptedPrivateKeyInfo``'s ``AlgorithmIdentifier`` (RFC 5958, with the parameter
structures of RFC 8018 and RFC 7914) with a small strict DER reader, and refuses costs above the
:class:`~securemem._keyformats._limits.KdfLimits` in force.

What counts as encrypted PKCS#8: any DER whose first element inside the outer SEQUENCE is itself
a SEQUENCE (plain PKCS#8 and the traditional RSA, EC and DSA structures start with an INTEGER).
Such data must then have an algorithm this module knows, with well-formed parameters, or it is
refused: work is bounded only for costs that were read, so nothing whose cost was not read is
handed on. cryptography decrypts no scheme beyond these (PBES2 with PBKDF2 or scrypt, PBES1,
PKCS#12 PBE), so refusing the rest loses no key it could load.

Everything read here is public framing (algorithm identifiers, salts, counts); no message holds
a byte of the file, only the names of known algorithms and the counts.
"""

from __future__ import annotations

from securemem._errors import KeyFormatError
from securemem._keyformats._limits import KdfLimits, check

_SEQUENCE = 0x30
_INTEGER = 0x02
_OCTET_STRING = 0x04
_OID = 0x06
_MAX_INTEGER_BYTES = 16  # far above any limit: a larger count is damage, not a cost
_MAX_KEY_LENGTH = 64  # bytes; no cipher a PKCS#8 key uses needs a longer key

_PKCS5 = bytes.fromhex("2a864886f70d0105")  # 1.2.840.113549.1.5
_PBES2 = _PKCS5 + b"\x0d"
_PBKDF2 = _PKCS5 + b"\x0c"
_SCRYPT = bytes.fromhex("2b06010401da47040b")  # 1.3.6.1.4.1.11591.4.11
# PBES1 (RFC 8018 A.3: MD2/MD5/SHA-1 with DES or RC2) and PKCS#12's PBE (RFC 7292 C) schemes:
# the same parameters, a salt and an iteration count.
_PBES1 = tuple(_PKCS5 + bytes((number,)) for number in (1, 3, 4, 6, 10, 11))
_PKCS12_PBE = tuple(bytes.fromhex("2a864886f70d010c01") + bytes((n,)) for n in range(1, 7))


class _Damaged(Exception):
    """The structure is not the strict DER it must be (turned into one KeyFormatError)."""


class _Der:
    """Strict DER elements read in order from a memoryview, each checked to lie inside it."""

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._at = 0

    def next_tag(self) -> int | None:
        return self._view[self._at] if self._at < self._view.nbytes else None

    def element(self, tag: int) -> memoryview:
        """The contents of the next element, which must have ``tag``."""
        if self.next_tag() != tag:
            raise _Damaged
        at = self._at + 1
        if at >= self._view.nbytes:
            raise _Damaged
        first = self._view[at]
        at += 1
        if first < 0x80:
            size = first
        else:
            count = first & 0x7F
            # No indefinite length (0x80), at most 4 length bytes, minimal (DER).
            if not 1 <= count <= 4 or at + count > self._view.nbytes:
                raise _Damaged
            size = int.from_bytes(self._view[at : at + count], "big")
            if size < 0x80 or size >> (8 * (count - 1)) == 0:
                raise _Damaged
            at += count
        if at + size > self._view.nbytes:
            raise _Damaged
        self._at = at + size
        return self._view[at : at + size]

    def integer(self) -> int:
        """A non-negative, minimally encoded INTEGER (a count: public)."""
        digits = self.element(_INTEGER)
        if digits.nbytes == 0 or digits[0] & 0x80:
            raise _Damaged
        if digits.nbytes > 1 and digits[0] == 0 and not digits[1] & 0x80:
            raise _Damaged
        if digits.nbytes > _MAX_INTEGER_BYTES:
            raise _Damaged
        return int.from_bytes(digits, "big")

    def done(self) -> None:
        if self._at != self._view.nbytes:
            raise _Damaged


def looks_encrypted(der: memoryview) -> bool:
    """Whether cryptography's DER loader could take ``der`` for encrypted PKCS#8."""
    if der.nbytes < 3 or der[0] != _SEQUENCE:
        return False
    # Skip the outer length leniently (long, indefinite or not minimal): whatever it says,
    # data whose first inner element is a SEQUENCE is checked, strictly.
    first = der[1]
    inner = 2 + (first & 0x7F if first > 0x80 else 0)
    return inner < der.nbytes and der[inner] == _SEQUENCE


def check_kdf(der: memoryview, limits: KdfLimits) -> None:
    """Refuse, before any key derivation, an encrypted PKCS#8 key whose KDF asks for more
    than ``limits`` (KdfLimitError) or whose algorithm cannot be read (KeyFormatError).
    DER that is not encrypted PKCS#8 passes untouched."""
    if not looks_encrypted(der):
        return
    try:
        _check_algorithm(der, limits)
    except _Damaged:
        raise KeyFormatError(
            "the data starts like encrypted PKCS#8 (a SEQUENCE inside a SEQUENCE) but its "
            "encryption algorithm and parameters are not valid DER: is the file damaged, or "
            "not a private key (a certificate starts the same way)?"
        ) from None


def _check_algorithm(der: memoryview, limits: KdfLimits) -> None:
    outer = _Der(_Der(der).element(_SEQUENCE))
    algorithm = _Der(outer.element(_SEQUENCE))
    scheme = algorithm.element(_OID)
    parameters = _Der(algorithm.element(_SEQUENCE))
    algorithm.done()
    if scheme == _PBES2:
        _check_pbes2(parameters, limits)
    elif _one_of(scheme, _PBES1 + _PKCS12_PBE):
        name = "PBES1" if _one_of(scheme, _PBES1) else "PKCS#12 PBE"
        parameters.element(_OCTET_STRING)  # the salt
        iterations = parameters.integer()
        parameters.done()
        check(f"the encrypted PKCS#8 ({name})", "pbkdf2_iterations", iterations,
              limits.pbkdf2_iterations)
    else:
        raise KeyFormatError(
            "the encrypted PKCS#8 key uses an encryption scheme securemem does not know (not "
            "PBES2, PBES1 or PKCS#12 PBE), so the work it asks for cannot be checked: "
            "re-encrypt it with `openssl pkcs8 -topk8 -v2 aes-256-cbc`"
        )


def _one_of(oid: memoryview, known: tuple[bytes, ...]) -> bool:
    """Compared in place (a ``bytes`` copy of a field is not made for a lookup)."""
    return any(oid == candidate for candidate in known)


def _check_pbes2(parameters: _Der, limits: KdfLimits) -> None:
    kdf = _Der(parameters.element(_SEQUENCE))
    parameters.element(_SEQUENCE)  # the encryption scheme: cryptography checks it
    parameters.done()
    kdf_id = kdf.element(_OID)
    options = _Der(kdf.element(_SEQUENCE))
    kdf.done()
    if kdf_id == _PBKDF2:
        if options.next_tag() == _OCTET_STRING:
            options.element(_OCTET_STRING)  # the salt
        else:
            options.element(_SEQUENCE)  # the salt's "otherSource" choice
        iterations = options.integer()
        if options.next_tag() == _INTEGER:
            _check_key_length(options.integer())
        # Then the PRF's AlgorithmIdentifier (HMAC-SHA-1 when absent): cryptography reads it.
        check("the encrypted PKCS#8 (PBES2, PBKDF2)", "pbkdf2_iterations", iterations,
              limits.pbkdf2_iterations)
    elif kdf_id == _SCRYPT:
        options.element(_OCTET_STRING)  # the salt
        n, r, p = options.integer(), options.integer(), options.integer()
        if options.next_tag() == _INTEGER:
            _check_key_length(options.integer())
        options.done()
        # Memory is 128 * r * N bytes (plus 128 * r * p); time grows with N * r * p. Their
        # product bounds both.
        check(f"the encrypted PKCS#8 (PBES2, scrypt N={n}, r={r}, p={p})",
              "scrypt_memory_bytes", 128 * n * r * p, limits.scrypt_memory_bytes)
    else:
        raise KeyFormatError(
            "the encrypted PKCS#8 key uses a PBES2 key derivation securemem does not know "
            "(not PBKDF2 or scrypt), so the work it asks for cannot be checked: re-encrypt it "
            "with `openssl pkcs8 -topk8 -v2 aes-256-cbc`"
        )


def _check_key_length(length: int) -> None:
    if length > _MAX_KEY_LENGTH:
        raise KeyFormatError(
            f"the encrypted PKCS#8 key asks its KDF for a {length}-byte key; no cipher it may "
            f"use needs more than {_MAX_KEY_LENGTH}: is the file damaged?"
        )
