"""EC private keys whose scalar is not exactly the curve's size, made loadable.

SEC 1 stores the private scalar as an OCTET STRING of the curve's size, but writers differ:
``puttygen -O private-openssh`` writes a P-256 scalar with its top bit set as 33 bytes (a
leading zero, as an SSH mpint has), and other tools drop leading zero bytes. OpenSSL (and so
``ssh-keygen`` and ``openssl``) reads both; cryptography refuses them. Such a key, plain
SEC 1 or inside plain PKCS#8, is rewritten here with the scalar at the curve's size: exactly
the leading zero bytes are dropped (a longer scalar with a non-zero extra byte is refused) or
added, in locked memory (``_der``), before cryptography sees it.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from securemem._arena import Arena
from securemem._errors import KeyFormatError
from securemem._keyformats import _der
from securemem._keyformats import _derwalk as walk
from securemem._securebytes import SecureBytes

_EC_PUBLIC_KEY = walk.oid("1.2.840.10045.2.1")
_SCALAR_SIZES = {  # named curve OID: the size of its order, in bytes
    walk.oid("1.2.840.10045.3.1.1"): 24,  # P-192
    walk.oid("1.3.132.0.33"): 28,  # P-224
    walk.oid("1.2.840.10045.3.1.7"): 32,  # P-256
    walk.oid("1.3.132.0.10"): 32,  # secp256k1
    walk.oid("1.3.132.0.34"): 48,  # P-384
    walk.oid("1.3.132.0.35"): 66,  # P-521
    walk.oid("1.3.36.3.3.2.8.1.1.7"): 32,  # brainpoolP256r1
    walk.oid("1.3.36.3.3.2.8.1.1.11"): 48,  # brainpoolP384r1
    walk.oid("1.3.36.3.3.2.8.1.1.13"): 64,  # brainpoolP512r1
}


def load_der_private_key(
    der: memoryview,
    password: memoryview | None,
    *,
    unsafe_skip_rsa_key_validation: bool,
    arena: Arena | None,
) -> PrivateKeyTypes:
    """cryptography's ``load_der_private_key``, with an EC scalar of another size first
    rewritten at the curve's size (in locked memory)."""
    rewritten = normalised(der, arena)
    if rewritten is None:
        return serialization.load_der_private_key(
            der,
            password,  # type: ignore[arg-type]  # any buffer works
            unsafe_skip_rsa_key_validation=unsafe_skip_rsa_key_validation,
        )
    try:
        with rewritten.view() as view:
            return serialization.load_der_private_key(
                view,
                password,  # type: ignore[arg-type]
                unsafe_skip_rsa_key_validation=unsafe_skip_rsa_key_validation,
            )
    finally:
        rewritten.close()


def normalised(der: memoryview, arena: Arena | None) -> SecureBytes | None:
    """The key rewritten with its scalar at the curve's size, or None when it needs no
    rewriting (or is not a plain EC key: cryptography then reads it, or says what is wrong)."""
    try:
        top = walk.whole(der)
        parts = walk.fields(der, top, walk.SEQUENCE, "the key", 2)
        if parts[1].tag == walk.SEQUENCE:  # PKCS#8: version, algorithm, privateKey, ...
            return _pkcs8(der, parts, arena)
        return _sec1(der, parts, None, arena)
    except walk.Malformed:
        return None


def _pkcs8(der: memoryview, parts: list[walk.Element], arena: Arena | None) -> SecureBytes | None:
    algorithm = walk.fields(der, parts[1], walk.SEQUENCE, "the algorithm", 2)
    if len(parts) < 3 or not walk.is_oid(der, algorithm[0], _EC_PUBLIC_KEY):
        return None
    size = _size(der, algorithm[1])
    octets = walk.expect(parts[2], walk.OCTET_STRING, "the private key")
    inner = walk.element(der, octets.begin, octets.end)
    if size is None or inner.end != octets.end:
        return None
    pieces = _sec1_pieces(der, walk.fields(der, inner, walk.SEQUENCE, "ECPrivateKey", 2), size)
    if pieces is None:
        return None
    return _der.write(
        _der.sequence(
            [_raw(der, parts[0]), _raw(der, parts[1])],
            _der.octet_string(pieces),
            [_raw(der, part) for part in parts[3:]],
        ),
        arena,
    )


def _sec1(
    der: memoryview, parts: list[walk.Element], size: int | None, arena: Arena | None
) -> SecureBytes | None:
    pieces = _sec1_pieces(der, parts, size)
    return None if pieces is None else _der.write(pieces, arena)


def _sec1_pieces(
    der: memoryview, parts: list[walk.Element], size: int | None
) -> list[_der.Piece] | None:
    """ECPrivateKey { version 1, privateKey OCTET STRING, [0] curve OPTIONAL, [1] point
    OPTIONAL } with the scalar at ``size`` (or the size of its own [0] curve)."""
    version, scalar = parts[0], parts[1]
    if walk.integer(der, version, "the version") != 1 or scalar.tag != walk.OCTET_STRING:
        return None
    for part in parts[2:]:
        if part.tag == walk.explicit(0):
            size = _size(der, walk.fields(der, part, part.tag, "the curve", 1)[0])
    if size is None or scalar.size == size:
        return None
    fixed = _der.fixed_size(der[scalar.begin : scalar.end], size)
    if fixed is None:
        raise KeyFormatError(
            f"the EC private key's scalar is {scalar.size} bytes, longer than its curve's "
            f"{size}, and its extra leading bytes are not zero: the key is corrupt"
        )
    return _der.sequence(
        [_raw(der, version)],
        _der.octet_string(fixed),
        [_raw(der, part) for part in parts[2:]],
    )


def _size(der: memoryview, curve: walk.Element) -> int | None:
    if curve.tag != walk.OID:
        return None
    return next(
        (size for oid, size in _SCALAR_SIZES.items() if walk.is_oid(der, curve, oid)), None
    )


def _raw(der: memoryview, part: walk.Element) -> memoryview:
    """An element as it is, header and all (a view: the key's bytes are not copied)."""
    return der[part.start : part.end]
