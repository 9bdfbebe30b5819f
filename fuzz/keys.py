"""Fuzzing the key loaders: seeds the tools write, and the check every input must pass.

Both the atheris harness (fuzz_keys.py) and the test suite (tests/test_fuzz_keys.py) drive
this. The seeds are made at run time, by ssh-keygen, openssl and puttygen, in a temporary directory
(no private key is committed to the repository), with low key-derivation costs so that the
fuzzer runs fast; the loader runs under matching low :class:`KdfLimits`, so a mutated cost
field meets the same check as in real use, scaled down.

An input is one byte of options (the password: none, the right one, a wrong one; the
encoding: auto, pem, der) and then the key data. Allowed outcomes: a key, a
:class:`KeyFormatError`, or a ``TypeError`` (a password that does not fit the key).
Anything else is a bug, as is an error message (or its ``args``) holding a byte of a seed
key's secret or of the password, an exception chain, or a SecureBytes left in the arena.
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from securemem import Arena, SecureBytes
from securemem.crypto import KdfLimits, KeyFormatError, load_private_key

PASSWORD = b"Zq7Xv2Lk9Wm4Rt8Y3s"  # no English: a word of a message is no leak
WRONG_PASSWORD = b"Ab3dE5gH7jK9mN1pQ"
# What the seeds ask for, and a little more: a mutated cost costs at most milliseconds.
LIMITS = KdfLimits(
    bcrypt_rounds=4,
    pbkdf2_iterations=4096,
    scrypt_memory_bytes=1 << 20,
    argon2_memory_kib=1024,
    argon2_passes=4,
    argon2_lanes=2,
)
EXPECTED_ERRORS = (KeyFormatError, TypeError)
ENCODINGS: tuple[Literal["auto", "pem", "der"], ...] = ("auto", "pem", "der", "auto")
WINDOW = 8  # a secret's run of this many bytes in a message counts as a leak


@dataclass
class Seeds:
    """The seed inputs and every secret they hold, for the message check."""

    inputs: dict[str, bytes] = field(default_factory=dict)
    secrets: set[bytes] = field(default_factory=set)

    def windows(self) -> set[bytes]:
        """Every run of WINDOW bytes of a secret, as raw bytes, inside base64 text (at each
        alignment) and as hex: the forms a message could quote it in."""
        found: set[bytes] = set()
        for secret in self.secrets:
            forms = [secret, secret.hex().encode(), secret.hex().upper().encode()]
            forms += [base64.b64encode(secret[shift:])[:-4] for shift in range(3)]
            for form in forms:
                found.update(form[at : at + WINDOW] for at in range(len(form) - WINDOW + 1))
        return found


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True)


def make_seeds(directory: Path) -> Seeds:
    """Key files written by ssh-keygen, openssl and puttygen into ``directory``, each also saved as
    a seed input (options byte + file) there."""
    directory.mkdir(parents=True, exist_ok=True)
    password = PASSWORD.decode()

    def ssh_keygen(name: str, *options: str) -> None:
        path = directory / name
        _run("ssh-keygen", "-q", "-C", "", "-f", str(path), *options)
        Path(f"{path}.pub").unlink()

    ssh_keygen("openssh-ed25519", "-t", "ed25519", "-N", "")
    ssh_keygen("openssh-ed25519-password", "-t", "ed25519", "-N", password, "-a", "1")
    ssh_keygen("openssh-ecdsa-gcm-password", "-t", "ecdsa", "-N", password, "-a", "2",
               "-Z", "aes256-gcm@openssh.com")
    ssh_keygen("openssh-rsa", "-t", "rsa", "-b", "1024", "-N", "")
    ssh_keygen("pem-legacy-ec-password", "-t", "ecdsa", "-m", "PEM", "-N", password)
    ssh_keygen("pem-traditional-rsa", "-t", "rsa", "-b", "1024", "-m", "PEM", "-N", "")
    plain = directory / "pem-pkcs8-ed25519"
    _run("openssl", "genpkey", "-algorithm", "ed25519", "-out", str(plain))
    _run("openssl", "pkey", "-in", str(plain), "-outform", "DER",
         "-out", str(directory / "der-pkcs8-ed25519"))
    ec_plain = directory / "pem-pkcs8-ec"
    _run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", str(ec_plain))
    for name, source, options in [
        ("pem-pkcs8-pbkdf2-password", plain, ["-iter", "16"]),
        ("pem-pkcs8-scrypt-password", ec_plain, ["-scrypt", "-scrypt_N", "16", "-scrypt_r", "8"]),
        ("pem-pkcs8-pkcs12-password", plain, ["-v1", "PBE-SHA1-3DES", "-iter", "16"]),
        ("der-pkcs8-pbkdf2-password", ec_plain, ["-iter", "16", "-outform", "DER"]),
    ]:
        _run("openssl", "pkcs8", "-topk8", "-in", str(source), "-passout", f"pass:{password}",
             "-out", str(directory / name), *options)

    # PuTTY .ppk (v3 with a small Argon2, v2) and PKCS#12, written from keys made above:
    # cryptography reads neither .ppk, so a file's secrets are those of the key it came from.
    made_from: dict[str, Path] = {}
    ed25519_source = directory / "openssh-ed25519"
    (directory / "passphrase").write_text(password)
    for name, options in [
        ("ppk3-ed25519-password", ["--ppk-param", "kdf=argon2id,memory=8,passes=1,parallelism=1"]),
        ("ppk2-ed25519-password", ["--ppk-param", "version=2"]),
    ]:
        _run("puttygen", str(ed25519_source), "-O", "private", "-o", str(directory / name),
             "--new-passphrase", str(directory / "passphrase"), *options)
        made_from[name] = ed25519_source
    _run("puttygen", str(ed25519_source), "-O", "private", "-o", str(directory / "ppk3-ed25519"))
    made_from["ppk3-ed25519"] = ed25519_source
    (directory / "passphrase").unlink()
    _run("openssl", "pkcs12", "-export", "-nocerts", "-inkey", str(ec_plain), "-iter", "16",
         "-passout", f"pass:{password}", "-out", str(directory / "pkcs12-ec-password"))
    made_from["pkcs12-ec-password"] = ec_plain
    sources = {name: path.read_bytes() for name, path in made_from.items()}

    seeds = Seeds(secrets={PASSWORD})
    for path in sorted(directory.iterdir()):
        if path.name.startswith("seed-"):
            continue
        data = path.read_bytes()
        encrypted = path.name.endswith("-password")
        if path.name in sources:
            seeds.secrets.update(_secrets(_load_with_cryptography(sources[path.name], False)))
        else:
            seeds.secrets.update(_secrets(_load_with_cryptography(data, encrypted)))
        seed = bytes((1 if encrypted else 0,)) + data
        seeds.inputs[path.name] = seed
        (directory / f"seed-{path.name}").write_bytes(seed)
        path.unlink()  # only the seed inputs stay: a corpus directory
    return seeds


def _load_with_cryptography(data: bytes, encrypted: bool) -> object:
    password = PASSWORD if encrypted else None
    if b"OPENSSH PRIVATE KEY" in data:
        return serialization.load_ssh_private_key(data, password)
    if data.startswith(b"-----"):
        return serialization.load_pem_private_key(data, password)
    return serialization.load_der_private_key(data, password)


def _secrets(key: object) -> list[bytes]:
    """The secret values of a seed key, as bytes (big-endian for numbers)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return [key.private_bytes_raw()]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        value = key.private_numbers().private_value
        return [value.to_bytes((key.curve.key_size + 7) // 8, "big")]
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        return [
            number.to_bytes((number.bit_length() + 7) // 8, "big")
            for number in (numbers.p, numbers.q, numbers.d, numbers.dmp1, numbers.dmq1)
        ]
    raise AssertionError(f"no seed of type {type(key).__name__}")


def run_one(data: bytes, windows: set[bytes], arena: Arena) -> str:
    """Load one input; returns the outcome ("key", or the error's type name). Raises
    AssertionError (or the unexpected exception) on a bug."""
    if not data:
        return "empty"
    options, body = data[0], data[1:]
    password = (None, PASSWORD, WRONG_PASSWORD, None)[options & 3]
    encoding = ENCODINGS[(options >> 2) & 3]
    outcome = "key"
    with SecureBytes(body, arena=arena) as source:
        try:
            load_private_key(source, password, encoding=encoding, kdf_limits=LIMITS, arena=arena)
        except EXPECTED_ERRORS as error:
            outcome = type(error).__name__
            _check_error(error, windows)
    leftover = arena.stats().allocations
    assert leftover == 0, f"{leftover} SecureBytes left in the arena after a load"
    return outcome


def _check_error(error: BaseException, windows: set[bytes]) -> None:
    assert str(error), f"{type(error).__name__} without a message"
    assert error.__cause__ is None and error.__context__ is None, "an exception chain"
    blobs: list[bytes] = []
    for part in (str(error), *error.args):
        if isinstance(part, (bytes, bytearray, memoryview)):
            blobs.append(bytes(part))
        else:  # latin-1 too: a message built from bytes.decode("latin-1") holds them as is
            text = str(part)
            blobs += [text.encode("utf-8", "backslashreplace"), text.encode("latin-1", "replace")]
    leaked = [window for window in windows for blob in blobs if window in blob]
    assert not leaked, f"{type(error).__name__} message holds a secret: {error!r}"
