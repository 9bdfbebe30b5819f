"""The key-derivation cost an encrypted PKCS#8 key asks for, read before cryptography derives.

cryptography (and OpenSSL under it) decrypts encrypted PKCS#8 itself, running whatever PBKDF2
iteration count or scrypt ``N``, ``r``, ``p`` the file names; a hostile file can ask for hours
of CPU or gigabytes of memory. So before any DER goes to cryptography's loader, this module
reads the ``EncryptedPrivateKeyInfo``'s ``AlgorithmIdentifier`` (RFC 5958, with the parameter
structures of RFC 8018 and RFC 7914) with the strict DER reader of ``_derwalk``, and
refuses costs above the :class:`~securemem._keyformats._limits.KdfLimits` in force.

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
from securemem._keyformats import _derwalk as walk
from securemem._keyformats._limits import KdfLimits, check

_MAX_KEY_LENGTH = 64  # bytes; no cipher a PKCS#8 key uses needs a longer key

_PKCS5 = "1.2.840.113549.1.5."
_PBES2 = walk.oid(_PKCS5 + "13")
_PBKDF2 = walk.oid(_PKCS5 + "12")
_SCRYPT = walk.oid("1.3.6.1.4.1.11591.4.11")
# PBES1 (RFC 8018 A.3: MD2/MD5/SHA-1 with DES or RC2) and PKCS#12's PBE (RFC 7292 C) schemes:
# the same parameters, a salt and an iteration count.
_PBES1 = tuple(walk.oid(f"{_PKCS5}{number}") for number in (1, 3, 4, 6, 10, 11))
_PKCS12_PBE = tuple(walk.oid(f"1.2.840.113549.1.12.1.{number}") for number in range(1, 7))


def looks_encrypted(der: memoryview) -> bool:
    """Whether cryptography's DER loader could take ``der`` for encrypted PKCS#8."""
    # The outer length is skipped leniently (long, indefinite or not minimal): whatever it
    # says, data whose first inner element is a SEQUENCE is checked, strictly.
    try:
        return der[0] == walk.SEQUENCE and der[walk.contents_offset(der, 0)] == walk.SEQUENCE
    except IndexError:
        return False


def check_kdf(der: memoryview, limits: KdfLimits) -> None:
    """Refuse, before any key derivation, an encrypted PKCS#8 key whose KDF asks for more
    than ``limits`` (KdfLimitError) or whose algorithm cannot be read (KeyFormatError).
    DER that is not encrypted PKCS#8 passes untouched."""
    if not looks_encrypted(der):
        return
    try:
        _check_algorithm(der, limits)
    except walk.Malformed:
        raise KeyFormatError(
            "the data starts like encrypted PKCS#8 (a SEQUENCE inside a SEQUENCE) but its "
            "encryption algorithm and parameters are not valid DER: is the file damaged, or "
            "not a private key (a certificate starts the same way)?"
        ) from None


def _check_algorithm(der: memoryview, limits: KdfLimits) -> None:
    # Only the AlgorithmIdentifier is read: what follows it (the encrypted data, and any
    # bytes after the structure) is cryptography's to refuse.
    outer = walk.expect(walk.element(der, 0, der.nbytes), walk.SEQUENCE, "the key")
    identifier = walk.element(der, outer.begin, outer.end)
    scheme, parameters = walk.shaped(der, identifier, "the algorithm", walk.OID, walk.SEQUENCE)
    if walk.is_oid(der, scheme, _PBES2):
        _check_pbes2(der, parameters, limits)
    elif _one_of(der, scheme, _PBES1 + _PKCS12_PBE):
        name = "PBES1" if _one_of(der, scheme, _PBES1) else "PKCS#12 PBE"
        _salt, iterations = walk.shaped(
            der, parameters, "the parameters", walk.OCTET_STRING, walk.INTEGER
        )
        check(f"the encrypted PKCS#8 ({name})", "pbkdf2_iterations",
              walk.integer(der, iterations, "the iterations"), limits.pbkdf2_iterations)
    else:
        raise KeyFormatError(
            "the encrypted PKCS#8 key uses an encryption scheme securemem does not know (not "
            "PBES2, PBES1 or PKCS#12 PBE), so the work it asks for cannot be checked: "
            "re-encrypt it with `openssl pkcs8 -topk8 -v2 aes-256-cbc`"
        )


def _one_of(der: memoryview, item: walk.Element, known: tuple[bytes, ...]) -> bool:
    """Compared in place (a ``bytes`` copy of a field is not made for a lookup)."""
    return any(walk.is_oid(der, item, candidate) for candidate in known)


def _check_pbes2(der: memoryview, parameters: walk.Element, limits: KdfLimits) -> None:
    # The encryption scheme (the second field) is cryptography's to check.
    kdf, _scheme = walk.shaped(der, parameters, "PBES2", walk.SEQUENCE, walk.SEQUENCE)
    kdf_id, options = walk.shaped(der, kdf, "the KDF", walk.OID, walk.SEQUENCE)
    if walk.is_oid(der, kdf_id, _PBKDF2):
        values = walk.fields(der, options, walk.SEQUENCE, "the PBKDF2 parameters", 2)
        # salt (or its "otherSource" choice, a SEQUENCE), iterationCount, keyLength OPTIONAL,
        # then the PRF's AlgorithmIdentifier (HMAC-SHA-1 when absent): cryptography reads it.
        if values[0].tag not in (walk.OCTET_STRING, walk.SEQUENCE):
            raise walk.Malformed(f"the PBKDF2 salt at offset {values[0].start}")
        iterations = walk.integer(der, values[1], "the iterations")
        if len(values) > 2 and values[2].tag == walk.INTEGER:
            _check_key_length(walk.integer(der, values[2], "the key length"))
        check("the encrypted PKCS#8 (PBES2, PBKDF2)", "pbkdf2_iterations", iterations,
              limits.pbkdf2_iterations)
    elif walk.is_oid(der, kdf_id, _SCRYPT):
        values = walk.fields(der, options, walk.SEQUENCE, "the scrypt parameters", 4)
        walk.expect(values[0], walk.OCTET_STRING, "the scrypt salt")
        if len(values) > 5:  # salt, N, r, p, keyLength OPTIONAL
            raise walk.Malformed(f"the scrypt parameters at offset {options.start}")
        n, r, p, *length = (walk.integer(der, value, "a scrypt parameter") for value in values[1:])
        if length:
            _check_key_length(length[0])
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
