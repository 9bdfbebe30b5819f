"""PKCS#12 (``.p12``/``.pfx``) bundles: the private key, loaded with cryptography's pkcs12 API
after every key-derivation cost the file names has been checked against the limits.

A PFX names its own costs in plain sight: the MAC's iteration count (MacData), and the
password-based encryption parameters of each encrypted content (``-legacy``: RC2 or 3DES with
the PKCS#12 KDF; today: PBES2 with PBKDF2) and of each shrouded key bag. :func:`costs` walks
the DER to them (``_derwalk``: in place, nothing copied) and :func:`load` refuses the file
before cryptography derives anything if one is above the limits. What cannot be seen before
decryption is a shrouded key bag *inside* an encrypted content: OpenSSL reaches it only with
the right password (the MAC and the decryption fail first otherwise), so only someone who
knows the password can hide a cost there (docs/key-formats.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from securemem._errors import KeyFormatError
from securemem._keyformats import _derwalk as der
from securemem._keyformats import _limits

NAME = "PKCS#12"
_PKCS7 = "1.2.840.113549.1.7."
_DATA = der.oid(_PKCS7 + "1")
_SIGNED_DATA = der.oid(_PKCS7 + "2")
_ENCRYPTED_DATA = der.oid(_PKCS7 + "6")
_SHROUDED_KEY_BAG = der.oid("1.2.840.113549.1.12.10.1.2")
_SAFE_CONTENTS_BAG = der.oid("1.2.840.113549.1.12.10.1.6")
# Password-based encryption whose parameters are (salt, iterations): PKCS#12's own
# pbeWithSHAAnd... (RC4, 3DES, 2-key 3DES, RC2) and PKCS#5 v1.5's PBES1.
_SALT_AND_ITERATIONS = frozenset(
    [der.oid(f"1.2.840.113549.1.12.1.{n}") for n in range(1, 7)]
    + [der.oid(f"1.2.840.113549.1.5.{n}") for n in (1, 3, 4, 6, 10, 11)]
)
_PBES2 = der.oid("1.2.840.113549.1.5.13")
_PBKDF2 = der.oid("1.2.840.113549.1.5.12")
_PBMAC1 = der.oid("1.2.840.113549.1.5.14")
_SCRYPT = der.oid("1.3.6.1.4.1.11591.4.11")
_NESTING = 4  # safeContentsBag inside safeContentsBag: deeper than any tool writes


@dataclass(frozen=True)
class Cost:
    where: str  # "the MAC", "the shrouded key bag at offset 1234"
    parameter: str  # a KdfLimits field
    value: int


def looks_like(view: memoryview) -> bool:
    """A PFX: SEQUENCE { INTEGER 3, ContentInfo { data or signedData, ... }, ... }. Read from
    the first bytes only, so that a truncated bundle, or one in BER, is still recognised (and
    refused as such by :func:`costs`)."""
    try:
        if view[0] != der.SEQUENCE:
            return False
        version = der.element(view, der.contents_offset(view, 0), view.nbytes)
        if version.tag != der.INTEGER or version.size != 1 or view[version.begin] != 3:
            return False
        if view[version.end] != der.SEQUENCE:
            return False
        content_type = der.element(view, der.contents_offset(view, version.end), view.nbytes)
    except (der.Malformed, IndexError):
        return False
    return der.is_oid(view, content_type, _DATA) or der.is_oid(view, content_type, _SIGNED_DATA)


def costs(view: memoryview) -> list[Cost]:
    """Every key derivation the PFX asks for before its key can be read (see the module's
    docstring for the one place this cannot look)."""
    pfx = der.fields(view, der.whole(view), der.SEQUENCE, "the PFX", 2)
    if der.integer(view, pfx[0], "the PFX version") != 3:
        raise der.Malformed("the PFX version is not 3")
    content_type, *content = der.fields(view, pfx[1], der.SEQUENCE, "the authSafe", 1)
    if der.is_oid(view, content_type, _SIGNED_DATA):
        raise der.Malformed(
            "public-key integrity mode (signedData) is not supported, only password integrity"
        )
    found = []
    if len(pfx) > 2:
        found += _mac_costs(view, pfx[2])
    for info in der.children(view, _wrapped_octets(view, content_type, content, "the authSafe")):
        info_type, *info_content = der.fields(view, info, der.SEQUENCE, "a ContentInfo", 1)
        if der.is_oid(view, info_type, _DATA):
            safe = _wrapped_octets(view, info_type, info_content, "a data ContentInfo")
            found += _bag_costs(view, safe, 0)
        elif der.is_oid(view, info_type, _ENCRYPTED_DATA):
            found += _encrypted_data_costs(view, info_content)
        # Anything else (envelopedData) is skipped by OpenSSL without a derivation.
    return found


def _wrapped_octets(
    view: memoryview, content_type: der.Element, content: list[der.Element], what: str
) -> der.Element:
    """The SEQUENCE inside ``[0] EXPLICIT OCTET STRING`` of a data ContentInfo."""
    if not der.is_oid(view, content_type, _DATA) or len(content) != 1:
        raise der.Malformed(f"{what} at offset {content_type.start} is not a data ContentInfo")
    [octets] = der.fields(view, content[0], der.explicit(0), what, 1, 1)
    der.expect(octets, der.OCTET_STRING, f"{what}'s content")
    return der.expect(der.element(view, octets.begin, octets.end), der.SEQUENCE, what)


def _mac_costs(view: memoryview, mac_data: der.Element) -> list[Cost]:
    mac, _salt, *iterations = der.fields(view, mac_data, der.SEQUENCE, "the MacData", 2)
    digest_algorithm, _digest = der.fields(view, mac, der.SEQUENCE, "the MAC", 2, 2)
    algorithm, *parameters = der.fields(
        view, digest_algorithm, der.SEQUENCE, "the MAC algorithm", 1
    )
    if der.is_oid(view, algorithm, _PBMAC1):  # RFC 9579: PBKDF2 names the cost
        pbmac1 = _only(parameters, "PBMAC1")
        kdf, _scheme = der.fields(view, pbmac1, der.SEQUENCE, "PBMAC1", 2, 2)
        return _kdf_costs(view, kdf, "the MAC (PBMAC1)")
    count = der.integer(view, iterations[0], "the MAC iterations") if iterations else 1
    return [Cost("the MAC", "pbkdf2_iterations", count)]


def _encrypted_data_costs(view: memoryview, content: list[der.Element]) -> list[Cost]:
    if len(content) != 1:
        raise der.Malformed("an encryptedData ContentInfo without its content")
    [encrypted_data] = der.fields(view, content[0], der.explicit(0), "an encryptedData", 1, 1)
    _version, info = der.fields(view, encrypted_data, der.SEQUENCE, "an EncryptedData", 2)[:2]
    _type, algorithm = der.fields(view, info, der.SEQUENCE, "an EncryptedContentInfo", 2)[:2]
    return _encryption_costs(view, algorithm, f"the encrypted content at offset {info.start}")


def _bag_costs(view: memoryview, safe_contents: der.Element, depth: int) -> list[Cost]:
    if depth > _NESTING:
        raise der.Malformed(f"safe contents nested more than {_NESTING} deep")
    found = []
    for bag in der.children(view, safe_contents):
        bag_id, value = der.fields(view, bag, der.SEQUENCE, "a SafeBag", 2)[:2]
        [inner] = der.fields(view, value, der.explicit(0), "a SafeBag's value", 1, 1)
        if der.is_oid(view, bag_id, _SHROUDED_KEY_BAG):
            algorithm = der.fields(view, inner, der.SEQUENCE, "a shrouded key bag", 2)[0]
            where = f"the shrouded key bag at offset {bag.start}"
            found += _encryption_costs(view, algorithm, where)
        elif der.is_oid(view, bag_id, _SAFE_CONTENTS_BAG):
            found += _bag_costs(view, der.expect(inner, der.SEQUENCE, "a bag"), depth + 1)
    return found


def _encryption_costs(view: memoryview, identifier: der.Element, where: str) -> list[Cost]:
    algorithm, *parameters = der.fields(
        view, identifier, der.SEQUENCE, f"the algorithm of {where}", 1
    )
    if any(der.is_oid(view, algorithm, known) for known in _SALT_AND_ITERATIONS):
        _salt, iterations = der.fields(
            view, _only(parameters, where), der.SEQUENCE, f"the parameters of {where}", 2
        )[:2]
        return [Cost(where, "pbkdf2_iterations", der.integer(view, iterations, "iterations"))]
    if der.is_oid(view, algorithm, _PBES2):
        kdf, _scheme = der.fields(view, _only(parameters, where), der.SEQUENCE, "PBES2", 2, 2)
        return _kdf_costs(view, kdf, where)
    raise der.Malformed(
        f"{where} is encrypted with {der.dotted(view, algorithm)}, an algorithm securemem does "
        "not know the cost of"
    )


def _kdf_costs(view: memoryview, identifier: der.Element, where: str) -> list[Cost]:
    kdf, *parameters = der.fields(view, identifier, der.SEQUENCE, f"the KDF of {where}", 1)
    values = der.fields(view, _only(parameters, where), der.SEQUENCE, "KDF parameters", 2)
    if der.is_oid(view, kdf, _PBKDF2):  # salt, iterationCount, ...
        return [Cost(where, "pbkdf2_iterations", der.integer(view, values[1], "iterations"))]
    if der.is_oid(view, kdf, _SCRYPT) and len(values) >= 4:  # salt, N, r, p, ...
        n, r, p = (der.integer(view, value, "a scrypt parameter") for value in values[1:4])
        # N*r*p, as for PKCS#8: 128*r*(N+p) is the memory OpenSSL counts, but a large p
        # costs time, not memory (p blocks of N*r work each, one after another).
        return [Cost(where, "scrypt_memory_bytes", 128 * n * r * p)]
    raise der.Malformed(
        f"{where} derives its key with {der.dotted(view, kdf)}, a KDF securemem does not know "
        "the cost of"
    )


def _only(parameters: list[der.Element], where: str) -> der.Element:
    if len(parameters) != 1:
        raise der.Malformed(f"the algorithm of {where} has no parameters")
    return parameters[0]


def load(
    view: memoryview, password: memoryview | None, limits: _limits.KdfLimits
) -> PrivateKeyTypes:
    """The private key of the PFX in ``view``; ``password`` None is the empty password."""
    malformed: KeyFormatError | None = None
    try:
        found = costs(view)
    except der.Malformed as error:
        malformed = KeyFormatError(f"cannot load the private key ({NAME}): {error}")
    if malformed is None and password is not None and 0 in password:
        # cryptography passes the password on as a C string: a NUL byte would end it (and
        # its Rust layer panics, quoting the password's bytes). Refused first.
        malformed = KeyFormatError(
            f"cannot load the private key ({NAME}): a PKCS#12 password cannot hold a NUL byte"
        )
    if malformed is not None:
        raise malformed  # out here: no chain back to the walk
    for cost in found:
        limit = getattr(limits, cost.parameter)
        _limits.check(f"{NAME} ({cost.where})", cost.parameter, cost.value, limit)
    empty = password is None or len(password) == 0
    for parameter in sorted({cost.parameter for cost in found}):
        # An empty password is tried twice for the MAC (OpenSSL: as no password, then as ""):
        # its MAC costs count twice.
        total = sum(
            cost.value * (2 if empty and cost.where.startswith("the MAC") else 1)
            for cost in found
            if cost.parameter == parameter
        )
        limit = getattr(limits, parameter)
        _limits.check(f"{NAME} (all its key derivations together)", parameter, total, limit)
    failure: KeyFormatError
    try:
        # Views of the caller's locked memory: cryptography reads any buffer.
        key, _certificate, _others = pkcs12.load_key_and_certificates(
            view,
            password if password is not None else b"",
        )
    except (KeyboardInterrupt, SystemExit):
        raise
    except UnsupportedAlgorithm:
        failure = KeyFormatError(
            f"cannot load the private key ({NAME}): the bundle is encrypted with an algorithm "
            "the installed cryptography/OpenSSL cannot decrypt"
        )
    except (ValueError, TypeError):
        failure = KeyFormatError(
            f"cannot load the private key ({NAME}): wrong or missing password for the "
            f"{NAME} bundle (or it is damaged)"
        )
    except BaseException:  # a panic of cryptography's Rust layer (not an Exception): its
        # message may quote the data, so it is replaced, chain and all
        failure = KeyFormatError(
            f"cannot load the private key ({NAME}): cryptography failed on the bundle"
        )
    else:
        if key is not None:
            return key
        failure = KeyFormatError(
            f"this is a {NAME} bundle without a private key (certificates only), not a "
            "private key"
        )
    raise failure
