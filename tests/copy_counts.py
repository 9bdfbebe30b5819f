"""How many copies of a secret cryptography/OpenSSL leave, per cryptography release family.

The one table of these counts: the tests in tests/test_crypto.py (tests/test_keys.py for
private keys) assert each entry for the installed release (``assert_copies``), and
docs/secrets-in-and-out.md (docs/key-formats.md) quotes it. A count that
differs in either direction fails the test with a message saying what changed, so a release
that stops (or starts) making a copy is noticed the day it is installed, not papered over by
an expected failure.

A *release family* is a range of cryptography major releases measured to leave the same
counts for every entry. All four of 47, 48, 49 and 50 were measured (CPython 3.11, Linux
x86-64 with AVX-512 and VAES, the OpenSSL 4.0 that each release's wheel bundles). A release
newer than the table knows is checked against the newest family, and a failure says so.

Entries come in two kinds:

* ``held``/``freed``: copies neither securemem nor the caller can avoid (inside OpenSSL, in
  its ordinary heap), documented for users;
* ``alone``: what cryptography leaves on the stack (or in the vector registers, which the next
  register save puts on the stack) when called *directly*. securemem.crypto scrubs both after
  each call, and the tests assert that it then leaves none; these counts show that the tests
  can see what the scrub removes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cryptography


@dataclass(frozen=True)
class Family:
    """cryptography major releases ``first``..``last`` that behave alike."""

    name: str
    first: int
    last: int


FAMILIES = (Family("47-48", 47, 48), Family("49", 49, 49), Family("50", 50, 50))

_AEADS = ("AESGCM", "AESOCB3", "AESGCMSIV", "AESCCM", "AESSIV", "ChaCha20Poly1305")


def _same(count: int) -> dict[str, int]:
    return {family.name: count for family in FAMILIES}


def _by_family(early: int, middle: int, late: int) -> dict[str, int]:
    return dict(zip((family.name for family in FAMILIES), (early, middle, late), strict=True))


# The key files tests/test_keys.py loads (it checks that its cases are exactly these), and the
# ones whose loading leaves a copy of the key: encrypted PKCS#8.
KEY_FILES = (
    *("openssh-ed25519", "openssh-ed25519-password", "openssh-ecdsa256-password"),
    *("openssh-ecdsa384", "openssh-ecdsa521-gcm-password", "openssh-rsa3072-password"),
    *("openssh-rsa2048-cbc-password", "pem-traditional-rsa", "pem-traditional-ec"),
    *("pem-traditional-dsa", "pem-legacy-rsa-password", "pem-legacy-ec-password"),
    *("pem-legacy-dsa-password", "pem-legacy-rsa-des3-password"),
    *("pem-pkcs8-ecdsa-password", "pem-pkcs8-ed25519"),
    *("pem-pkcs8-ed25519-password", "pem-pkcs8-x25519", "pem-pkcs8-ed448", "pem-pkcs8-x448"),
    *("pem-bom-text-crlf", "pem-bundle-ec-parameters", "pem-bundle-certificate"),
    *("der-pkcs8-ec", "der-pkcs8-ec-password", "der-traditional-ec", "der-traditional-rsa"),
    *("raw-ed25519", "raw-x25519", "raw-ed448", "raw-x448"),
)
_ENCRYPTED_PKCS8 = (
    *("pem-pkcs8-ed25519-password", "pem-pkcs8-ecdsa-password", "der-pkcs8-ec-password"),
)

# (what) -> {family: count}. Every name is built from an algorithm name so a test can look it
# up; the meaning of each kind is in the comment above it.
COUNTS: dict[str, dict[str, int]] = {
    # OpenSSL's expanded key schedule (round key 0 is the key itself) in its ordinary heap, one
    # for encryption and one for decryption, while the AEAD object lives; wiped when it is
    # freed. AES-SIV: each 32-byte half of its 64-byte key (S2V and CTR keys), counted per half.
    # AES-CCM: none (cryptography reads the key buffer on each call instead).
    **{f"held: key in OpenSSL's heap, {name}": _same(2) for name in _AEADS if name != "AESCCM"},
    "held: key in OpenSSL's heap, AESCCM": _same(0),
    # Whether the AEAD keeps a reference to the key buffer it was built from (1) or copies the
    # key and lets go (0): with a reference, the private *locked* copy that crypto.aead() gives
    # it stays alive with the AEAD. 47-48: only AES-CCM keeps one; from 49 on, every AEAD does.
    **{
        f"held: locked key copy the AEAD keeps, {name}": _by_family(0, 1, 1)
        for name in _AEADS
        if name != "AESCCM"
    },
    "held: locked key copy the AEAD keeps, AESCCM": _same(1),
    # Key derivation: copies of the password (key material) left in freed heap memory after
    # derive_into returns. Argon2id (OpenSSL's) frees a buffer holding it without wiping it.
    "freed: password in the heap, HKDF": _same(0),
    "freed: password in the heap, PBKDF2HMAC": _same(0),
    "freed: password in the heap, Scrypt": _same(0),
    "freed: password in the heap, Argon2id": _same(1),
    # Called directly, cryptography leaves the last partial block of the plaintext (15 bytes
    # of a 47-byte message) in a stack buffer below the caller. securemem.crypto: none.
    **{f"alone: partial block on the stack after encrypt, {name}": _same(0) for name in _AEADS},
    "alone: partial block on the stack after encrypt, AESGCMSIV": _same(1),
    **{f"alone: partial block on the stack after decrypt, {name}": _same(0) for name in _AEADS},
    "alone: partial block on the stack after decrypt, AESGCMSIV": _same(1),
    "alone: partial block on the stack after decrypt, AESOCB3": _by_family(0, 0, 1),
    # Called directly, AES-GCM returns with the AES-256 key (round keys 0 and 1) in two vector
    # registers; the first lazily bound libc call after it (the dynamic linker saves every
    # vector register on the stack) writes the key there. Depends on the CPU's AES code path
    # (VAES/AVX-512 here). securemem.crypto clears the registers: none.
    **{f"alone: key on the stack from the vector registers, {name}": _same(0) for name in _AEADS},
    "alone: key on the stack from the vector registers, AESGCM": _same(1),
    # Private keys (tests/test_keys.py, docs/key-formats.md): copies of the key's secret and of
    # the password in this process once the loaded key object is freed. Encrypted PKCS#8:
    # cryptography/OpenSSL decrypt the key into a buffer they free without wiping it.
    **{f"freed: key in the heap, load {name}": _same(0) for name in KEY_FILES},
    **{f"freed: key in the heap, load {name}": _same(1) for name in _ENCRYPTED_PKCS8},
    **{f"freed: password in the heap, load {name}": _same(0) for name in KEY_FILES},
}

TABLE = "tests/copy_counts.py (COUNTS) and the tables in docs/secrets-in-and-out.md"


def installed_release() -> int:
    return int(cryptography.__version__.split(".")[0])


def family_of(release: int) -> tuple[Family, str]:
    """The family ``release`` belongs to, and a note when the table does not know it."""
    for family in FAMILIES:
        if family.first <= release <= family.last:
            return family, ""
    newest = FAMILIES[-1]
    if release > newest.last:
        return newest, (
            f"cryptography {release} is newer than the table, which was measured up to "
            f"{newest.last}: it is checked against the newest family, {newest.name}"
        )
    raise LookupError(f"cryptography {release} is older than securemem supports (47)")


def expected(what: str, release: int | None = None) -> int:
    """The count the table gives ``what`` for ``release`` (default: the installed one)."""
    family, _ = family_of(installed_release() if release is None else release)
    return COUNTS[what][family.name]


def mismatch(what: str, found: int, release: int, version: str) -> str | None:
    """None when ``found`` is the table's count for ``release``; else what to tell the reader."""
    family, note = family_of(release)
    count = COUNTS[what][family.name]
    if found == count:
        return None
    change = "makes a copy more" if found > count else "makes a copy fewer"
    message = (
        f"{what}: cryptography {version} leaves {found}, the table says {count} for release "
        f"family {family.name}, so this release {change} than measured. Re-measure on every "
        f"release, then update {TABLE} (a new family if the older releases still give {count})"
    )
    return f"{message}. {note}" if note else message


def assert_copies(what: str, found: int) -> None:
    """Fail, saying what changed and where to record it, unless ``found`` is the count the
    table gives ``what`` for the installed cryptography."""
    problem = mismatch(what, found, installed_release(), cryptography.__version__)
    assert problem is None, problem
