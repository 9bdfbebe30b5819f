"""The most copies of a secret each path may leave: the bounds the docs promise for any release.

Where a securemem promise rests on a dependency (what cryptography, its OpenSSL, CPython's
``ssl``/``hashlib`` or paramiko keep of a secret handed to them), the tests assert that the
copies they measure stay *within* the bound given here, never an exact count: a release that
keeps fewer copies passes, and one that keeps more fails the bound test of that path with a
message naming the path, the installed releases and both numbers. That failure is a finding
for users (a dependency started keeping a secret it did not), not noise: the docs then change.

The counts themselves, for the releases at hand, are measured by ``python -m benchmarks.audit``
(which prints this table next to what it measured); docs/secrets-in-and-out.md,
docs/other-libraries.md and docs/key-formats.md show that output and state these bounds.

A path is ``(case, moment)``: a case of tests/handoff_cases.py (or a key file of
tests/test_keys.py, ``keys.<file>``) and the moment its copies are counted. Paths of cases
that show what another library does on its own, without securemem (cryptography's own
``Fernet`` or PEM loader, ``bytes.fromhex``), have no bound: securemem promises nothing
about them, and only the audit reports them.
"""

from __future__ import annotations

import platform
import ssl
from typing import Final

Path = tuple[str, str]

AEADS: Final = ("AESGCM", "AESOCB3", "AESGCMSIV", "AESCCM", "AESSIV", "ChaCha20Poly1305")
KDFS: Final = ("HKDF", "PBKDF2HMAC", "Scrypt", "Argon2id")

# PuTTY .ppk files made by puttygen (tests/test_keys.py): each type (puttygen -t, -b) in
# format versions 2 and 3, plain and with a passphrase, then two more Argon2 flavours and CRLF.
PPK_TYPES: Final = {
    "rsa": ("-t", "rsa", "-b", "2048"),
    "dsa": ("-t", "dsa", "-b", "1024"),  # what OpenSSH (and cryptography's SSH loader) accept
    **{f"ecdsa{bits}": ("-t", "ecdsa", "-b", str(bits)) for bits in (256, 384, 521)},
    "ed25519": ("-t", "ed25519"),
    "ed448": ("-t", "ed448"),
}
PPK_FILES: Final = (
    *(
        f"ppk{version}-{kind}{suffix}"
        for version in (2, 3)
        for kind in PPK_TYPES
        for suffix in ("", "-password")
    ),
    *("ppk3-ed25519-argon2i-password", "ppk3-ed25519-argon2d-password"),
    "ppk3-ecdsa256-crlf-password",
)
# Encrypted v3 files: OpenSSL's Argon2 frees a buffer holding the passphrase without wiping it.
PPK_ARGON2: Final = tuple(
    name for name in PPK_FILES if name.startswith("ppk3-") and name.endswith("-password")
)

# The key files tests/test_keys.py loads (it checks that its cases are exactly these), and the
# ones whose loading may leave a copy of the key: encrypted PKCS#8.
KEY_FILES: Final = (
    *("openssh-ed25519", "openssh-ed25519-password", "openssh-ecdsa256-password"),
    *("openssh-ecdsa384", "openssh-ecdsa521-gcm-password", "openssh-rsa3072-password"),
    *("openssh-rsa2048-cbc-password", "pem-traditional-rsa", "pem-traditional-ec"),
    *("pem-traditional-dsa", "pem-legacy-rsa-password", "pem-legacy-ec-password"),
    *("pem-legacy-dsa-password", "pem-legacy-rsa-des3-password"),
    *("pem-pkcs8-ecdsa-password", "pem-pkcs8-ed25519"),
    *("pem-pkcs8-ed25519-password", "pem-pkcs8-x25519", "pem-pkcs8-ed448", "pem-pkcs8-x448"),
    *("pem-bom-text-crlf", "pem-bundle-ec-parameters", "pem-bundle-certificate"),
    *("der-pkcs8-ec", "der-pkcs8-ec-password", "der-traditional-ec", "der-traditional-rsa"),
    *PPK_FILES,
    *("raw-ed25519", "raw-x25519", "raw-ed448", "raw-x448"),
)
# The PKCS#12 bundles tests/test_keys_pkcs12.py loads (openssl pkcs12 -export).
PKCS12_FILES: Final = (
    *("pkcs12-ec", "pkcs12-ec-legacy", "pkcs12-rsa", "pkcs12-rsa-legacy"),
    *("pkcs12-ec-empty-password", "pkcs12-ec-nomac", "pkcs12-ec-legacy-nomac"),
)
# EC keys whose scalar is not the curve's size (tests/test_keys_ec_scalar.py: puttygen).
EC_SCALAR_FILES: Final = (
    *("puttygen-ecdsa256-33", "puttygen-ecdsa384-49", "puttygen-ecdsa521-65"),
    *("puttygen-ecdsa256-33-password", "pkcs8-ecdsa256-33.der", "pkcs8-ecdsa256-33.pem"),
    "puttygen-openssh-ecdsa256",
)
ENCRYPTED_PKCS8: Final = (
    *("pem-pkcs8-ed25519-password", "pem-pkcs8-ecdsa-password", "der-pkcs8-ec-password"),
)


def _moments(case: str, **bounds: int) -> dict[Path, int]:
    return {(case, moment): bound for moment, bound in bounds.items()}


BOUNDS: Final[dict[Path, int]] = {
    # hashlib keeps an input shorter than its block in the context until it is freed.
    **_moments("hashlib.sha256", alive=1, after=0),
    **_moments("hashlib.sha256_whole_block", alive=0, after=0),
    # pbkdf2_hmac returns the derived key as bytes: that one copy is the call's result.
    **_moments("hashlib.pbkdf2_hmac", password_after=0, derived_alive=1),
    **_moments("hmac.digest", after=0),
    # hmac.new copies a bytearray key the caller wipes right after: CPython 3.11 to 3.14 keep
    # none of it in the HMAC object, 3.15 keeps one copy while the object lives.
    **_moments("hmac.new_from_bytearray", alive=1, after=0),
    **_moments("cryptography.hmac", alive=0, after=0),
    # crypto.aead: OpenSSL's key schedules (an encryption and a decryption context, each
    # starting with the key) while the AEAD lives, per 32-byte key piece (AES-SIV: per half);
    # none once it is freed, and never the plaintext. securemem's own locked copy is not one.
    **{
        path: bound
        for name in AEADS
        for path, bound in _moments(f"aead.{name}", key_alive=2, key_after=0, plaintext=0).items()
    },
    # crypto.derive: OpenSSL's Argon2 frees a buffer holding the password without wiping it.
    **{
        path: bound
        for name in KDFS
        for path, bound in _moments(
            f"kdf.{name}", password=1 if name == "Argon2id" else 0, derived=0
        ).items()
    },
    # securemem.crypto leaves nothing on the stack or in the vector registers.
    **{path: 0 for name in AEADS for path in _moments(f"stack.{name}", securemem=0)},
    **{path: 0 for name in AEADS for path in _moments(f"registers.{name}.securemem", stack=0)},
    **_moments(
        "securemem.fernet",
        key_alive=0,
        signing_half_alive=0,
        encryption_half_alive=0,
        plaintext_alive=0,
        key_after=0,
        signing_half_after=0,
        encryption_half_after=0,
        plaintext_after=0,
    ),
    # While a key object lives OpenSSL holds the key; encrypted PKCS#8 is decrypted by
    # cryptography/OpenSSL into a buffer they free without wiping.
    **_moments("securemem.load_private_key", alive=1, after=0),
    **_moments("securemem.load_private_key_pkcs8_password", after=1, password_after=0),
    **_moments("securemem.load_private_key_openssh_password", after=0, password_after=0),
    # PKCS#12: OpenSSL decrypts the shrouded key bag as it does encrypted PKCS#8.
    **_moments("securemem.load_private_key_pkcs12_password", after=1, password_after=0),
    # PuTTY: v3's Argon2 (OpenSSL's) frees a buffer holding the passphrase unwiped.
    **_moments("securemem.load_private_key_ppk_password", after=0, password_after=1),
    **_moments("securemem.load_private_key_ppk2_password", after=0, password_after=0),
    # ssl reads the key only from a path; what OpenSSL keeps of it is OpenSSL's.
    **_moments("ssl.secret_file", key_alive=3, pem_text_alive=1, key_after=2, pem_text_after=1),
    # paramiko with a key object from crypto.load_private_key: OpenSSL's BIGNUMs only.
    **_moments(
        "paramiko.rsa_from_key_object",
        big_endian_alive=0,
        little_endian_alive=2,
        text_alive=0,
        big_endian_after=0,
        little_endian_after=0,
        text_after=0,
    ),
    **_moments(
        "paramiko.ecdsa_from_key_object",
        big_endian_alive=0,
        little_endian_alive=1,
        text_alive=0,
        big_endian_after=0,
        little_endian_after=0,
        text_after=0,
    ),
    **_moments("os.write", after=0),
    **_moments("socket.sendall", after=0),
    **_moments("ssl.sendall_recv_into", connection_alive=0, after_close=0),
    # The text of an environment variable: the C environment block (never freed) and
    # os.environ's bytes; what securemem decodes is never outside locked memory.
    **{
        path: bound
        for case in ("env.from_hex", "env.from_base64")
        for path, bound in _moments(
            case,
            environ_block=1,
            python_text=1,
            decoded=0,
            environ_block_after_del=1,
            decoded_after=0,
        ).items()
    },
    # json.loads: the document str and the value str, both still referenced.
    **_moments("json.from_hex", text_alive=2, decoded=0, decoded_after=0),
    **_moments("file.from_hex", text=0, decoded=0),
    # tests/test_keys.py: copies once the key object is freed, per key file.
    **{
        path: bound
        for name in KEY_FILES
        for path, bound in _moments(
            f"keys.{name}",
            key_after=1 if name in ENCRYPTED_PKCS8 else 0,
            password_after=1 if name in PPK_ARGON2 else 0,
        ).items()
    },
    # tests/test_keys_pkcs12.py: OpenSSL decrypts the shrouded key bag into a buffer it frees
    # without wiping, as for encrypted PKCS#8 (measured: 1 for P-256, 0 for RSA's p).
    **{
        path: bound
        for name in PKCS12_FILES
        for path, bound in _moments(f"keys.{name}", key_after=1, password_after=0).items()
    },
    # tests/test_keys_ec_scalar.py: the scalar is rewritten in locked memory; none left.
    **{path: 0 for name in EC_SCALAR_FILES for path in _moments(f"keys.{name}", key_after=0)},
}

WHERE = "tests/copy_bounds.py and the docs that state it (docs/secrets-in-and-out.md)"


def releases() -> str:
    """The releases whose copies are measured: cryptography and the OpenSSL it runs on,
    CPython and the OpenSSL its ssl and hashlib modules run on, the platform."""
    try:
        import cryptography
        from cryptography.hazmat.backends.openssl.backend import backend

        crypto = f"cryptography {cryptography.__version__} ({backend.openssl_version_text()})"
    except ImportError:
        crypto = "cryptography not installed"
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{crypto}, {python} ({ssl.OPENSSL_VERSION}), {platform.platform()}"


def excess(path: Path, measured: int, where: str = "") -> str | None:
    """None when ``measured`` is within the bound of ``path``; else the finding, naming the
    path, the installed releases and both numbers (``where``: where the copies were found)."""
    bound = BOUNDS[path]
    if measured <= bound:
        return None
    case, moment = path
    found = f" (found at {where})" if where else ""
    return (
        f"{case} [{moment}]: {measured} copies, more than the documented bound of {bound}, "
        f"with {releases()}{found}. This release keeps more copies of the secret than "
        f"securemem documents: check the release, then raise the bound in {WHERE} or "
        "report it upstream"
    )


def assert_within(path: Path, measured: int, where: str = "") -> None:
    problem = excess(path, measured, where)
    assert problem is None, problem
