"""What a DER structure or PEM block is when it is not a private key: a certificate, a public
key, a certificate request, a CRL, a PKCS#7 bundle. Recognised from the shape of the framing
alone (tags, in place: ``_derwalk``), so a user who picked the wrong file is told which file
it is instead of a parse error from inside a private key loader.
"""

from __future__ import annotations

from securemem._keyformats import _derwalk as der

# PEM labels of things that are not private keys, as a message names them.
PEM_LABELS = {
    "CERTIFICATE": "X.509 certificate",
    "TRUSTED CERTIFICATE": "X.509 certificate",
    "X509 CERTIFICATE": "X.509 certificate",
    "PUBLIC KEY": "public key (SubjectPublicKeyInfo)",
    "RSA PUBLIC KEY": "RSA public key (PKCS#1)",
    "CERTIFICATE REQUEST": "certificate signing request (PKCS#10)",
    "NEW CERTIFICATE REQUEST": "certificate signing request (PKCS#10)",
    "X509 CRL": "certificate revocation list (CRL)",
    "PKCS7": "PKCS#7 bundle",
    "CMS": "PKCS#7 bundle",
}
_TIMES = (0x17, 0x18)  # UTCTime, GeneralizedTime
_PKCS7 = der.oid("1.2.840.113549.1.7.2"), der.oid("1.2.840.113549.1.7.3")  # signed, enveloped


def pem(labels: list[str]) -> str | None:
    """``this is a PEM X.509 certificate only, not a private key`` when every block is a known
    non-key; None when some block is something else."""
    named = [PEM_LABELS.get(label) for label in labels]
    if not named or None in named:
        return None
    what = " and ".join(dict.fromkeys(str(name) for name in named))
    return f"this is a PEM {what} only, not a private key"


def der_data(view: memoryview) -> str | None:
    """``this is a DER X.509 certificate, not a private key``, or None when the DER may be a
    private key (or is not well-formed enough to say)."""
    try:
        what = _what(view)
    except der.Malformed:
        return None
    return None if what is None else f"this is a DER {what}, not a private key"


def _what(view: memoryview) -> str | None:
    top = der.whole(view)
    if top.tag != der.SEQUENCE:
        return None
    parts = der.children(view, top)
    tags = [part.tag for part in parts]
    if tags == [der.SEQUENCE, der.SEQUENCE, der.BIT_STRING]:  # signed: tbs, algorithm, signature
        return _signed(view, parts[0])
    if tags == [der.SEQUENCE, der.BIT_STRING]:
        return "public key (SubjectPublicKeyInfo)"
    if tags == [der.INTEGER, der.INTEGER]:
        return "RSA public key (PKCS#1)"
    if tags == [der.OID, der.explicit(0)] and any(der.is_oid(view, parts[0], o) for o in _PKCS7):
        return "PKCS#7 bundle (a .p7b of certificates, or signed or enveloped data)"
    return None


def _signed(view: memoryview, tbs: der.Element) -> str:
    tags = [part.tag for part in der.children(view, tbs)]
    if tags[:1] == [der.explicit(0)]:
        return "X.509 certificate"
    if len(tags) == 4 and tags[0] == der.INTEGER and tags[3] == der.explicit(0):
        return "certificate signing request (PKCS#10)"
    if any(tag in _TIMES for tag in tags[2:4]):
        return "certificate revocation list (CRL)"
    return "X.509 certificate"
