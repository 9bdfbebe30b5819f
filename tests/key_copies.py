"""Copies of a key or a password that loading leaves outside locked memory, counted exactly.

Only copies that neither securemem nor the caller can avoid are listed: ones made inside
cryptography/OpenSSL (or bcrypt) that are freed without being wiped. Each entry maps the first
cryptography major release it applies to onto (count, why); a test asserts the count for the
installed release, so a release that adds or removes a copy fails it with the reason. Anything
not listed is expected to leave no copy at all.
"""

from __future__ import annotations

import cryptography

RELEASE = int(cryptography.__version__.split(".")[0])

NONE = (0, "securemem keeps every decoded or decrypted copy in locked memory")

_ENCRYPTED_PKCS8 = {
    47: (
        1,
        "cryptography/OpenSSL decrypt an encrypted PKCS#8 key into a buffer they free without "
        "wiping (measured on 47, 48 and 50)",
    )
}

# "key NAME" / "password NAME": NAME is a case in tests/test_keys.py.
COPIES: dict[str, dict[int, tuple[int, str]]] = {
    "key pem-pkcs8-ed25519-password": _ENCRYPTED_PKCS8,
    "key pem-pkcs8-ecdsa-password": _ENCRYPTED_PKCS8,
    "key der-pkcs8-ec-password": _ENCRYPTED_PKCS8,
}


def expected_copies(name: str) -> tuple[int, str]:
    """(count, why) for the installed cryptography release."""
    table = COPIES.get(name)
    if not table:
        return NONE
    applicable = [release for release in table if release <= RELEASE]
    return table[max(applicable)] if applicable else NONE
