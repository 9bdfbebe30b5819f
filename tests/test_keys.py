"""Private keys in every common format, against real ssh-keygen and real cryptography.

Keys are made in other processes (ssh-keygen, and a Python that uses cryptography), so this
process never holds one as ``bytes``: a process scan for the key then finds only the copies
that loading made. Each format also round-trips: what securemem writes, ssh-keygen and
cryptography (in another process) read, and what they write, securemem reads.
"""

from __future__ import annotations

import base64
import gc
import json
import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("cryptography")
pytest.importorskip("bcrypt")

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from securemem import SecureBytes, SecureMemoryError, crypto
from securemem._binding import ffi, lib
from securemem._keyformats import _bignum, _pem
from securemem.crypto import KeyFormatError
from tests import stackview
from tests.conftest import run_python
from tests.copy_bounds import KEY_FILES, PPK_FILES, assert_within
from tests.memscan import Marker

PASSWORD_SEED = 1313  # the password is Marker(20, seed=PASSWORD_SEED): letters and digits
Enc = serialization.Encoding
Fmt = serialization.PrivateFormat

# -- keys made elsewhere ------------------------------------------------------------------

MAKE_KEYS = r'''
    import subprocess, sys
    from pathlib import Path
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization as s
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
    from tests.memscan import Marker

    from tests.copy_bounds import PPK_TYPES
    out = Path(sys.argv[1])
    password = bytes(Marker(20, seed=int(sys.argv[2])).view())
    made = {}  # name -> the key object, to write its secret and public halves

    def ssh_keygen(name, *options):
        subprocess.run(["ssh-keygen", "-q", "-C", "", "-f", str(out / name), *options],
                       check=True, capture_output=True)
        (out / (name + ".pub")).unlink()
        data = (out / name).read_bytes()
        secret = password if name.endswith("-password") else None
        if b"OPENSSH" in data:
            made[name] = s.load_ssh_private_key(data, secret)
        else:
            made[name] = s.load_pem_private_key(data, secret)

    def write(name, key, encoding, fmt, encrypted=False, prefix=b""):
        encryption = s.BestAvailableEncryption(password) if encrypted else s.NoEncryption()
        (out / name).write_bytes(prefix + key.private_bytes(encoding, fmt, encryption))
        made[name] = key

    pw = password.decode()
    ssh_keygen("openssh-ed25519", "-t", "ed25519", "-N", "")
    ssh_keygen("openssh-ed25519-password", "-t", "ed25519", "-N", pw)
    ssh_keygen("openssh-ecdsa256-password", "-t", "ecdsa", "-b", "256", "-N", pw)
    ssh_keygen("openssh-ecdsa384", "-t", "ecdsa", "-b", "384", "-N", "", "-C", "someone@example")
    ssh_keygen("openssh-ecdsa521-gcm-password", "-t", "ecdsa", "-b", "521", "-N", pw,
               "-Z", "aes256-gcm@openssh.com")
    ssh_keygen("openssh-rsa3072-password", "-t", "rsa", "-b", "3072", "-N", pw)
    ssh_keygen("openssh-rsa2048-cbc-password", "-t", "rsa", "-b", "2048", "-N", pw,
               "-Z", "aes256-cbc")
    ssh_keygen("pem-traditional-rsa", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "")
    ssh_keygen("pem-traditional-ec", "-t", "ecdsa", "-m", "PEM", "-N", "")
    ssh_keygen("pem-legacy-rsa-password", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", pw)
    ssh_keygen("pem-pkcs8-ecdsa-password", "-t", "ecdsa", "-m", "PKCS8", "-N", pw)
    ssh_keygen("pem-legacy-ec-password", "-t", "ecdsa", "-m", "PEM", "-N", pw)

    ed = ed25519.Ed25519PrivateKey.generate()
    p256 = ec.generate_private_key(ec.SECP256R1())
    write("pem-pkcs8-ed25519", ed, s.Encoding.PEM, s.PrivateFormat.PKCS8)
    write("pem-pkcs8-ed25519-password", ed, s.Encoding.PEM, s.PrivateFormat.PKCS8, True)
    write("pem-traditional-dsa", dsa.generate_private_key(1024), s.Encoding.PEM,
          s.PrivateFormat.TraditionalOpenSSL)
    write("pem-legacy-dsa-password", dsa.generate_private_key(1024), s.Encoding.PEM,
          s.PrivateFormat.TraditionalOpenSSL, True)  # AES-256-CBC
    write("der-pkcs8-ec", p256, s.Encoding.DER, s.PrivateFormat.PKCS8)
    write("der-pkcs8-ec-password", p256, s.Encoding.DER, s.PrivateFormat.PKCS8, True)
    write("der-traditional-ec", p256, s.Encoding.DER, s.PrivateFormat.TraditionalOpenSSL)
    write("der-traditional-rsa", made["pem-traditional-rsa"], s.Encoding.DER,
          s.PrivateFormat.TraditionalOpenSSL)
    for cls in (x25519.X25519PrivateKey, ed448.Ed448PrivateKey, x448.X448PrivateKey):
        write("pem-pkcs8-" + cls.__name__[:-10].lower(), cls.generate(), s.Encoding.PEM,
              s.PrivateFormat.PKCS8)
    for cls in (ed25519.Ed25519PrivateKey, x25519.X25519PrivateKey, ed448.Ed448PrivateKey,
                x448.X448PrivateKey):
        write("raw-" + cls.__name__[:-10].lower(), cls.generate(), s.Encoding.Raw,
              s.PrivateFormat.Raw)

    # PuTTY .ppk files from puttygen: every key type it makes, format versions 2 and 3, plain
    # and with a passphrase (v3: Argon2id, and Argon2i/Argon2d once). The key they must hold
    # is puttygen's own OpenSSH export of the same file, read by cryptography.
    (out / "ppk-passphrase").write_bytes(password)
    (out / "ppk-none").write_bytes(b"")

    def ssh_ed448(data):
        # cryptography reads no ssh-ed448: take the seed from the unencrypted container.
        import base64
        body = memoryview(base64.b64decode(b"".join(data.splitlines()[1:-1])))
        at = len(b"openssh-key-v1\0")
        def string():
            nonlocal at
            size = int.from_bytes(body[at:at + 4], "big")
            at += 4 + size
            return body[at - size:at]
        string(), string(), string()  # cipher "none", KDF "none", no KDF options
        at += 4  # the number of keys: 1
        string()  # the public key
        section = string()  # check values (8), "ssh-ed448" (4+9), public (4+57), seed||public
        seed = bytes(section[8 + 4 + 9 + 4 + 57 + 4:][:57])
        return ed448.Ed448PrivateKey.from_private_bytes(seed)

    def puttygen(name, kind, *parameters):
        passfile = out / ("ppk-passphrase" if name.endswith("-password") else "ppk-none")
        command = ["puttygen", "-q", *PPK_TYPES[kind], "-C", "securemem test key",
                   "-o", str(out / name), "--new-passphrase", str(passfile)]
        subprocess.run(command + ["--ppk-param", ",".join(parameters)], check=True,
                       capture_output=True)
        exported = out / (name + ".openssh")
        subprocess.run(["puttygen", str(out / name), "--old-passphrase", str(passfile),
                        "-O", "private-openssh-new", "-o", str(exported),
                        "--new-passphrase", str(out / "ppk-none")], check=True,
                       capture_output=True)
        data = exported.read_bytes()
        exported.unlink()
        made[name] = ssh_ed448(data) if kind == "ed448" else s.load_ssh_private_key(data, None)

    for version in (2, 3):
        for kind in PPK_TYPES:
            for suffix in ("", "-password"):
                puttygen(f"ppk{version}-{kind}{suffix}", kind, f"version={version}")
    for flavour in ("argon2i", "argon2d"):
        puttygen(f"ppk3-ed25519-{flavour}-password", "ed25519", f"kdf={flavour}")
    # CR+LF line ends (a .ppk copied through Windows tools)
    crlf = (out / "ppk3-ecdsa256-password").read_bytes().replace(b"\n", b"\r\n")
    (out / "ppk3-ecdsa256-crlf-password").write_bytes(crlf)
    made["ppk3-ecdsa256-crlf-password"] = made["ppk3-ecdsa256-password"]

    # Legacy PEM with DES-EDE3-CBC (old `openssl rsa -des3`), written by hand here: no tool
    # in the test setup writes one. cryptography reading it back shows the file is right.
    import base64, hashlib, os
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, modes
    der = rsa.generate_private_key(65537, 2048).private_bytes(
        s.Encoding.DER, s.PrivateFormat.TraditionalOpenSSL, s.NoEncryption())
    iv, wrapping, digest = os.urandom(8), b"", b""
    while len(wrapping) < 24:  # EVP_BytesToKey, MD5, one round
        digest = hashlib.md5(digest + password + iv).digest()
        wrapping += digest
    padder = padding.PKCS7(64).padder()
    encryptor = Cipher(TripleDES(wrapping[:24]), modes.CBC(iv)).encryptor()
    body = encryptor.update(padder.update(der) + padder.finalize()) + encryptor.finalize()
    des3 = (b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: DES-EDE3-CBC,"
            + iv.hex().upper().encode() + b"\n\n" + base64.encodebytes(body)
            + b"-----END RSA PRIVATE KEY-----\n")
    (out / "pem-legacy-rsa-des3-password").write_bytes(des3)
    made["pem-legacy-rsa-des3-password"] = s.load_pem_private_key(des3, password)

    # Text around the key: a byte-order mark, a comment, CRLF line ends.
    crlf = p256.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption())
    (out / "pem-bom-text-crlf").write_bytes(
        b"\xef\xbb\xbfkey for the tests\r\n" + crlf.replace(b"\n", b"\r\n"))
    made["pem-bom-text-crlf"] = p256
    # Bundles: EC PARAMETERS before EC PRIVATE KEY (openssl ecparam -genkey), and a
    # certificate before its key.
    parameters = b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
    write("pem-bundle-ec-parameters", p256, s.Encoding.PEM, s.PrivateFormat.TraditionalOpenSSL,
          prefix=parameters)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "securemem")])
    import datetime
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(ed.public_key()).serial_number(1).not_valid_before(now)
                   .not_valid_after(now + datetime.timedelta(days=1)).sign(ed, None))
    write("pem-bundle-certificate", ed, s.Encoding.PEM, s.PrivateFormat.PKCS8,
          prefix=certificate.public_bytes(s.Encoding.PEM))

    for name, key in made.items():
        if isinstance(key, (ed25519.Ed25519PrivateKey, x25519.X25519PrivateKey,
                            ed448.Ed448PrivateKey, x448.X448PrivateKey)):
            secret = key.private_bytes(s.Encoding.Raw, s.PrivateFormat.Raw, s.NoEncryption())
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            secret = key.private_numbers().private_value.to_bytes(
                (key.curve.key_size + 7) // 8, "big")
        elif isinstance(key, rsa.RSAPrivateKey):
            p = key.private_numbers().p
            secret = p.to_bytes((p.bit_length() + 7) // 8, "big")
        else:
            x = key.private_numbers().x
            secret = x.to_bytes((x.bit_length() + 7) // 8, "big")
        (out / (name + ".secret")).write_bytes(secret)
        (out / (name + ".public")).write_bytes(key.public_key().public_bytes(
            s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo))
    for path in out.iterdir():
        path.chmod(0o600)
    '''


def _ppk_kind(name: str) -> type[Any]:
    for part, kind in (("rsa", rsa.RSAPrivateKey), ("dsa", dsa.DSAPrivateKey),
                       ("ecdsa", ec.EllipticCurvePrivateKey),
                       ("ed25519", ed25519.Ed25519PrivateKey), ("ed448", ed448.Ed448PrivateKey)):
        if f"-{part}" in name:
            return kind
    raise AssertionError(name)


@dataclass(frozen=True)
class Case:
    name: str
    kind: type[Any]
    encrypted: bool = False
    encoding: Literal["auto", "pem", "der", "raw"] = "auto"
    algorithm: Literal["ed25519", "x25519", "ed448", "x448"] | None = None


CASES = [
    Case("openssh-ed25519", ed25519.Ed25519PrivateKey),
    Case("openssh-ed25519-password", ed25519.Ed25519PrivateKey, True),
    Case("openssh-ecdsa256-password", ec.EllipticCurvePrivateKey, True),
    Case("openssh-ecdsa384", ec.EllipticCurvePrivateKey),
    Case("openssh-ecdsa521-gcm-password", ec.EllipticCurvePrivateKey, True),
    Case("openssh-rsa3072-password", rsa.RSAPrivateKey, True),
    Case("openssh-rsa2048-cbc-password", rsa.RSAPrivateKey, True),
    Case("pem-traditional-rsa", rsa.RSAPrivateKey),
    Case("pem-traditional-ec", ec.EllipticCurvePrivateKey),
    Case("pem-traditional-dsa", dsa.DSAPrivateKey),
    Case("pem-legacy-rsa-password", rsa.RSAPrivateKey, True),
    Case("pem-legacy-ec-password", ec.EllipticCurvePrivateKey, True),
    Case("pem-legacy-dsa-password", dsa.DSAPrivateKey, True),
    Case("pem-legacy-rsa-des3-password", rsa.RSAPrivateKey, True),
    Case("pem-pkcs8-ecdsa-password", ec.EllipticCurvePrivateKey, True),
    Case("pem-pkcs8-ed25519", ed25519.Ed25519PrivateKey),
    Case("pem-pkcs8-ed25519-password", ed25519.Ed25519PrivateKey, True),
    Case("pem-pkcs8-x25519", x25519.X25519PrivateKey),
    Case("pem-pkcs8-ed448", ed448.Ed448PrivateKey),
    Case("pem-pkcs8-x448", x448.X448PrivateKey),
    Case("pem-bom-text-crlf", ec.EllipticCurvePrivateKey),
    Case("pem-bundle-ec-parameters", ec.EllipticCurvePrivateKey),
    Case("pem-bundle-certificate", ed25519.Ed25519PrivateKey),
    Case("der-pkcs8-ec", ec.EllipticCurvePrivateKey),
    Case("der-pkcs8-ec-password", ec.EllipticCurvePrivateKey, True),
    Case("der-traditional-ec", ec.EllipticCurvePrivateKey),
    Case("der-traditional-rsa", rsa.RSAPrivateKey),
    *(Case(name, _ppk_kind(name), name.endswith("-password")) for name in PPK_FILES),
    *(
        Case(f"raw-{name}", kind, encoding="raw", algorithm=name)  # type: ignore[arg-type]
        for name, kind in (
            ("ed25519", ed25519.Ed25519PrivateKey),
            ("x25519", x25519.X25519PrivateKey),
            ("ed448", ed448.Ed448PrivateKey),
            ("x448", x448.X448PrivateKey),
        )
    ),
]
CASES_BY_NAME = {case.name: case for case in CASES}


def made_by_the_tools(
    tmp_path_factory: pytest.TempPathFactory, name: str, script: str, password_seed: int
) -> Path:
    """A new directory of key files that ``script`` writes with the real tools (ssh-keygen,
    openssl, puttygen), run in a child with the directory and the password's seed."""
    directory = tmp_path_factory.mktemp(name)
    made = run_python(script, str(directory), str(password_seed), timeout=300)
    assert made.returncode == 0, made.stderr
    return directory


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return made_by_the_tools(tmp_path_factory, "keys", MAKE_KEYS, PASSWORD_SEED)


def password_marker() -> Marker:
    return Marker(20, seed=PASSWORD_SEED)


def secret_marker(keys: Path, case: Case) -> Marker:
    """A needle holding the key's secret (Ed/X raw key, EC scalar, RSA prime p, DSA x)."""
    with SecureBytes.from_file(keys / f"{case.name}.secret") as secret:
        return Marker.copy_of(secret.view())


def load(keys: Path, case: Case, password: Any = None) -> PrivateKeyTypes:
    """Load the case's key file from locked memory with securemem."""
    with SecureBytes.from_file(keys / case.name) as data:
        if case.encrypted and password is None:
            with password_marker() as marker, SecureBytes(marker.view()) as secret:
                return crypto.load_private_key(
                    data, secret, encoding=case.encoding, algorithm=case.algorithm
                )
        return crypto.load_private_key(
            data, password, encoding=case.encoding, algorithm=case.algorithm
        )


def public_der(key: PrivateKeyTypes) -> bytes:
    return key.public_key().public_bytes(Enc.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def released() -> None:
    gc.collect()


# -- loading what other tools write -------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_loads_what_ssh_keygen_and_cryptography_write(keys: Path, case: Case) -> None:
    key = load(keys, case)
    assert isinstance(key, case.kind)
    assert public_der(key) == (keys / f"{case.name}.public").read_bytes()


# Each scan runs in a fresh process: a copy that one load left in freed memory would
# otherwise be counted again by the next test that loads the same key or password.
SCAN = """
    import gc, json, sys
    from pathlib import Path
    from tests.test_keys import CASES_BY_NAME, load, password_marker, secret_marker
    from securemem._scrub import scrub_after_native
    keys, case = Path(sys.argv[1]), CASES_BY_NAME[sys.argv[2]]
    # Warm up: cffi builds its wrapper for the scrub on the first call, with a malloc that
    # can land on (and overwrite) a buffer OpenSSL freed during the load, making the count
    # depend on whether this is the process's first scrub.
    scrub_after_native()
    with secret_marker(keys, case) as key_marker, password_marker() as password:
        key = load(keys, case)
        # The key object keeps the key in OpenSSL's heap while it lives (every cryptography
        # key object does); once it is freed, what remains was left by loading.
        del key
        gc.collect()
        key_copies, password_copies = key_marker.scan(), password.scan()
        print(json.dumps({"key": key_copies.describe(),
                          "key_count": len(key_copies.found),
                          "password": password_copies.describe(),
                          "password_count": len(password_copies.found)}))
    """


def scan_after_loading(keys: Path, case: Case) -> dict[str, Any]:
    scanned = run_python(SCAN, str(keys), case.name)
    assert scanned.returncode == 0, scanned.stderr
    return json.loads(scanned.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_the_copy_table_lists_exactly_these_key_files() -> None:
    assert [case.name for case in CASES] == list(KEY_FILES)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_loading_leaves_no_more_copies_than_documented(keys: Path, case: Case) -> None:
    # Copies of the key and of the password once the key object is freed, within the bound
    # of tests/copy_bounds.py (encrypted PKCS#8: cryptography/OpenSSL may leave the decrypted
    # key in a buffer they free unwiped; every other format: none).
    found = scan_after_loading(keys, case)
    for what in ("key", "password"):
        assert_within(
            (f"keys.{case.name}", f"{what}_after"), found[f"{what}_count"], found[what]
        )


def test_the_scan_after_loading_finds_a_copy_the_test_leaves(keys: Path) -> None:
    # The control for every count above: the same child, holding a bytes copy of the key's
    # secret of its own while it scans, finds it.
    control = SCAN.replace(
        "del key\n",
        "del key\n        leaked = bytes(key_marker.view())\n",
    )
    assert control != SCAN
    scanned = run_python(control, str(keys), "pem-pkcs8-ed25519")
    assert scanned.returncode == 0, scanned.stderr
    assert json.loads(scanned.stdout.strip().splitlines()[-1])["key_count"] >= 1


@pytest.mark.parametrize(
    "name", ["pem-legacy-rsa-password", "pem-legacy-dsa-password", "pem-legacy-rsa-des3-password"]
)
def test_legacy_pem_is_decrypted_by_securemem_not_by_cryptographys_pem_loader(
    keys: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # cryptography's PEM loader decodes and decrypts outside locked memory; legacy PEM with
    # AES-CBC (ssh-keygen -m PEM, cryptography's TraditionalOpenSSL) or DES-EDE3-CBC must
    # never reach it.
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the legacy PEM went to cryptography's PEM loader")

    monkeypatch.setattr(serialization, "load_pem_private_key", refuse)
    key = load(keys, CASES_BY_NAME[name])
    assert public_der(key) == (keys / f"{name}.public").read_bytes()


@pytest.mark.skipif(
    not stackview.supported(), reason="reads the stack through /proc on x86-64/AArch64 Linux"
)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_loading_leaves_no_key_on_the_stack(keys: Path, case: Case) -> None:
    # Read from a second thread while this one blocks right after the load (tests/stackview):
    # nothing the load ran, native or Python, left the key's secret on this thread's stack.
    # The load starts clean: making the marker moved the secret through the registers.
    # Without it the test failed in about one run of four of ci/oldest-tests.txt (on the
    # main of before too), always the first encrypted RSA key, never in isolation.
    with secret_marker(keys, case) as marker, marker.view() as needle:
        found = stackview.stack_depths_after(lambda: load(keys, case), needle, clean_start=True)
    assert found == [], f"loading {case.name} left the key {found} bytes below the stack pointer"


# -- writing what other tools read --------------------------------------------------------

WRITTEN = [
    ("pem-pkcs8", Enc.PEM, Fmt.PKCS8),
    ("der-pkcs8", Enc.DER, Fmt.PKCS8),
    ("pem-traditional", Enc.PEM, Fmt.TraditionalOpenSSL),
    ("der-traditional", Enc.DER, Fmt.TraditionalOpenSSL),
    ("openssh", Enc.PEM, Fmt.OpenSSH),
]
READ_BACK = """
    import sys
    from pathlib import Path
    from cryptography.hazmat.primitives import serialization as s
    data = Path(sys.argv[1]).read_bytes()
    password = sys.argv[2].encode() or None
    if sys.argv[3] == "raw":
        from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, x448, x25519
        kinds = {"ed25519": ed25519.Ed25519PrivateKey, "x25519": x25519.X25519PrivateKey,
                 "ed448": ed448.Ed448PrivateKey, "x448": x448.X448PrivateKey}
        key = kinds[sys.argv[4]].from_private_bytes(data)
    elif b"OPENSSH" in data:
        key = s.load_ssh_private_key(data, password)
    elif data.startswith(b"-----"):
        key = s.load_pem_private_key(data, password)
    else:
        key = s.load_der_private_key(data, password)
    sys.stdout.write(key.public_key().public_bytes(
        s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo).hex())
    """
WRITE_PASSWORD = b"written-by-securemem"


def save(secret: SecureBytes, path: Path) -> Path:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with secret.view() as view:
            os.write(descriptor, view)
    finally:
        os.close(descriptor)
    return path


def cryptography_reads(path: Path, password: bytes, *raw: str) -> bytes:
    read = run_python(READ_BACK, str(path), password.decode(), *(raw or ("file",)))
    assert read.returncode == 0, read.stderr
    return bytes.fromhex(read.stdout)


def ssh_keygen_reads(path: Path, password: bytes, key: PrivateKeyTypes) -> None:
    """ssh-keygen -y prints the public key of the private key it read."""
    shown = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(path), "-P", password.decode()],
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    expected = key.public_key().public_bytes(
        Enc.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert shown.stdout.split()[:2] == expected.decode().split()[:2]


WRITE_KEYS: dict[str, Callable[[], PrivateKeyTypes]] = {
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "ecdsa": lambda: ec.generate_private_key(ec.SECP384R1()),
    "rsa": lambda: rsa.generate_private_key(65537, 2048),
}


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "password"])
@pytest.mark.parametrize("kind", list(WRITE_KEYS))
@pytest.mark.parametrize(("name", "encoding", "fmt"), WRITTEN, ids=[w[0] for w in WRITTEN])
def test_what_securemem_writes_loads_in_cryptography_ssh_keygen_and_securemem(
    tmp_path: Path,
    name: str,
    encoding: serialization.Encoding,
    fmt: serialization.PrivateFormat,
    kind: str,
    encrypted: bool,
) -> None:
    key = WRITE_KEYS[kind]()
    if fmt is Fmt.TraditionalOpenSSL and kind == "ed25519":
        pytest.skip("Ed25519 has no traditional format (only PKCS#8 and OpenSSH)")
    if encrypted and encoding is Enc.DER and fmt is Fmt.TraditionalOpenSSL:
        pytest.skip("traditional DER cannot be encrypted (cryptography refuses it)")
    password = WRITE_PASSWORD if encrypted else b""
    with SecureBytes(password) as secret:
        written = crypto.private_key_bytes(key, encoding, fmt, secret if encrypted else None)
    path = save(written, tmp_path / name)
    assert cryptography_reads(path, password) == public_der(key)
    # ssh-keygen reads OpenSSH files and PEM (PKCS#8, traditional); Debian 12's OpenSSH 9.2
    # reads no Ed25519 key in PEM (OpenSSH 9.6 added that).
    if fmt is Fmt.OpenSSH or (encoding is Enc.PEM and kind != "ed25519"):
        ssh_keygen_reads(path, password, key)
    with written:
        loaded = crypto.load_private_key(written, password if encrypted else None)
    assert public_der(loaded) == public_der(key)


@pytest.mark.parametrize("algorithm", ["ed25519", "x25519", "ed448", "x448"])
def test_raw_keys_round_trip(tmp_path: Path, algorithm: str) -> None:
    kinds: dict[str, Any] = {
        "ed25519": ed25519.Ed25519PrivateKey,
        "x25519": x25519.X25519PrivateKey,
        "ed448": ed448.Ed448PrivateKey,
        "x448": x448.X448PrivateKey,
    }
    key = kinds[algorithm].generate()
    written = crypto.private_key_bytes(key, Enc.Raw, Fmt.Raw)
    path = save(written, tmp_path / algorithm)
    assert cryptography_reads(path, b"", "raw", algorithm) == public_der(key)
    with written:
        loaded = crypto.load_private_key(written, encoding="raw", algorithm=algorithm)  # type: ignore[arg-type]
    assert public_der(loaded) == public_der(key)


# -- passwords ----------------------------------------------------------------------------


@pytest.mark.parametrize("make", [bytes, bytearray, memoryview, SecureBytes])
@pytest.mark.parametrize("name", ["openssh-ed25519-password", "pem-pkcs8-ed25519-password"])
def test_password_may_be_any_bytes_like_type(keys: Path, name: str, make: Any) -> None:
    with password_marker() as marker:
        password = make(bytes(marker.view()))
    key = load(keys, CASES_BY_NAME[name], password)
    assert public_der(key) == (keys / f"{name}.public").read_bytes()


@pytest.mark.parametrize("password", ["text", 42, [1, 2]])
def test_password_of_another_type_is_refused(keys: Path, password: Any) -> None:
    with pytest.raises(TypeError, match="encode it" if isinstance(password, str) else "bytes"):
        load(keys, CASES_BY_NAME["pem-pkcs8-ed25519-password"], password)


# -- errors name the format and hold no key bytes -----------------------------------------


def chain(error: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = error
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def assert_holds_no_key_bytes(
    error: BaseException, key_file: bytes, secret: bytes | None = None
) -> None:
    """Nothing of the key in the messages or arguments of the error and its whole chain:
    no 8-character run of the file's base64 text (or of any other long token in it), no
    6-byte run of a binary (DER, raw) file, and no 6-byte run of the key's secret. PEM labels
    and headers, cipher and key-type names are public framing and may be named."""
    windows: set[bytes] = set()
    if key_file[:1] in (b"-", b"\xef") or key_file[:1].isalpha():
        for line in key_file.splitlines():
            if line.startswith(b"-----") or b":" in line:
                continue  # BEGIN/END lines and RFC 1421 headers: public framing
            for token in line.split():
                windows.update(token[i : i + 8] for i in range(len(token) - 7))
    else:
        windows.update(key_file[i : i + 6] for i in range(len(key_file) - 5))
    if secret is not None:
        windows.update(secret[i : i + 6] for i in range(len(secret) - 5))
    assert windows or len(key_file) < 8, "nothing to look for: the check would prove nothing"
    for link in chain(error):
        text = (str(link) + repr(link.args)).encode("utf-8", "backslashreplace")
        leaked = [window for window in windows if window in text]
        assert not leaked, f"{type(link).__name__} echoes key bytes"


def assert_unchained(error: BaseException) -> None:
    """No cause or context: an original exception could hold what ours leaves out."""
    assert error.__cause__ is None and error.__context__ is None, list(chain(error))


def corrupt(data: bytes, where: str) -> bytes:
    """Change 8 characters (a PEM body stays base64) in the middle of the key, or at the
    start of its body (the structure's header: an Ed25519 key's middle is just another key)."""
    if where == "middle":
        start = len(data) // 2
    else:  # the body's first characters, or a DER structure's first header bytes
        start = data.index(b"\n") + 1 if data.startswith(b"-----") else 2
    swapped = bytes(0x42 if c == 0x41 else 0x41 for c in data[start : start + 8])
    return data[:start] + swapped + data[start + 8 :]


ERRORS = [
    ("openssh-ed25519-password", b"wrong password", KeyFormatError, "OpenSSH, passphrase-prot"),
    ("openssh-ed25519-password", None, TypeError, "passphrase-protected"),
    ("openssh-ed25519", b"unexpected", TypeError, "not passphrase-protected"),
    ("pem-pkcs8-ed25519-password", b"wrong password", KeyFormatError, "PEM, encrypted PKCS#8"),
    ("der-pkcs8-ec-password", b"wrong password", KeyFormatError, "DER, encrypted PKCS#8"),
    ("pem-legacy-rsa-password", b"wrong password", KeyFormatError, "legacy OpenSSL encryption"),
    ("pem-legacy-dsa-password", None, TypeError, "legacy OpenSSL encryption"),
    ("pem-traditional-ec", b"unexpected", TypeError, "PEM, traditional EC"),
    ("ppk3-ed25519-password", b"wrong password", ValueError, "wrong passphrase for the PuTTY"),
    ("ppk2-rsa-password", b"wrong password", ValueError, r"PuTTY \.ppk v2, ssh-rsa, passph"),
    ("ppk3-ecdsa384-password", None, TypeError, "PuTTY key is passphrase-protected"),
    ("ppk2-ed448", b"unexpected", TypeError, "PuTTY key is not passphrase-protected"),
]


@pytest.mark.parametrize(("name", "password", "error", "message"), ERRORS)
def test_wrong_or_missing_passwords_say_which_format(
    keys: Path, name: str, password: bytes | None, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as raised:
        load(keys, dataclass_replace(CASES_BY_NAME[name], encrypted=False), password)
    assert_holds_no_key_bytes(
        raised.value, (keys / name).read_bytes(), (keys / f"{name}.secret").read_bytes()
    )
    assert_unchained(raised.value)


def dataclass_replace(case: Case, **changes: Any) -> Case:
    import dataclasses

    return dataclasses.replace(case, **changes)


@pytest.mark.parametrize("name", PPK_FILES)
def test_a_ppk_key_is_the_key_puttygen_exports(keys: Path, name: str) -> None:
    # The .secret and .public files come from puttygen's own OpenSSH export of the same .ppk
    # (read by cryptography): the private value (Ed seed, EC scalar, RSA p, DSA x) and the
    # public key securemem read must be those.
    key = load(keys, CASES_BY_NAME[name])
    assert public_der(key) == (keys / f"{name}.public").read_bytes()
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        secret = key.private_bytes_raw()
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        secret = key.private_numbers().private_value.to_bytes((key.curve.key_size + 7) // 8, "big")
    elif isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        assert numbers.dmp1 == numbers.d % (numbers.p - 1)  # computed by securemem's C
        assert numbers.dmq1 == numbers.d % (numbers.q - 1)
        secret = numbers.p.to_bytes((numbers.p.bit_length() + 7) // 8, "big")
    else:
        assert isinstance(key, dsa.DSAPrivateKey)
        x = key.private_numbers().x
        secret = x.to_bytes((x.bit_length() + 7) // 8, "big")
    assert secret == (keys / f"{name}.secret").read_bytes()


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("openssh-ed25519", "middle"),
        ("openssh-ed25519", "start"),
        ("openssh-ecdsa256-password", "middle"),
        ("openssh-rsa3072-password", "middle"),
        ("pem-pkcs8-ed25519", "start"),
        ("pem-traditional-rsa", "middle"),
        ("der-traditional-rsa", "middle"),
        ("der-pkcs8-ec", "start"),
        ("ppk3-ed25519", "middle"),
        ("ppk2-rsa", "middle"),
        ("ppk3-ecdsa521-password", "middle"),
    ],
)
def test_a_corrupt_key_is_refused_naming_its_format(keys: Path, name: str, where: str) -> None:
    data = corrupt((keys / name).read_bytes(), where)
    case = CASES_BY_NAME[name]
    with (
        SecureBytes(data) as damaged,
        password_marker() as marker,
        SecureBytes(marker.view()) as password,
        pytest.raises(KeyFormatError) as raised,
    ):
        crypto.load_private_key(damaged, password if case.encrypted else None)
    assert "cannot load the private key (" in str(raised.value) or "corrupt" in str(raised.value)
    assert_holds_no_key_bytes(raised.value, data, (keys / f"{name}.secret").read_bytes())
    assert_unchained(raised.value)


def test_an_openssh_cipher_cryptography_lacks_is_refused_with_the_fix(tmp_path: Path) -> None:
    # OpenSSH's own chacha20-poly1305 key encryption: not in cryptography. The error names it
    # and the command that re-encrypts the key.
    path = tmp_path / "chacha"
    made = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "passphrase", "-C", "", "-f", str(path),
         "-Z", "chacha20-poly1305@openssh.com"],
        capture_output=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    with SecureBytes.from_file(path) as data, pytest.raises(KeyFormatError) as raised:
        crypto.load_private_key(data, b"passphrase")
    message = str(raised.value)
    assert "chacha20-poly1305@openssh.com" in message and "ssh-keygen -p -Z aes256-ctr" in message
    assert_holds_no_key_bytes(raised.value, path.read_bytes())
    assert_unchained(raised.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PuTTY-User-Key-File-3: ssh-ed25519\nPrivate-Lines: 1\nAAAAIDvx7zK2VwBCIEIQ\n", "PuTTY"),
        (b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG public", "public key"),
        (b"MC4CAQAwBQYDK2VwBCIEIQvx7z", "neither PEM"),
        (b"-----BEGIN CERTIFICATE-----\nMIIBQvx7zK2V\n-----END CERTIFICATE-----\n", "'CERTIF"),
        (b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYD\n", "no '-----END PRIVATE KEY-----'"),
        (b"-----BEGIN PRIVATE KEY-----\nMC4CAQ!wBQYD\n-----END PRIVATE KEY-----\n", "base64"),
        (b"-----BEGIN PGP PRIVATE KEY BLOCK-----\nMC4CAQAwBQYD\n-----END PGP PRIVATE KEY "
         b"BLOCK-----\n", "'PGP PRIVATE KEY BLOCK' but no private key"),
        (b"\x30\x03\x02\x01", "DER \\(truncated\\)|DER"),
    ],
)
def test_unsupported_or_broken_data_gets_a_clear_error(data: bytes, message: str) -> None:
    with SecureBytes(data) as source, pytest.raises(KeyFormatError, match=message) as raised:
        crypto.load_private_key(source)
    # One family: a ValueError and a SecureMemoryError, whatever raised it underneath.
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, SecureMemoryError)
    assert_holds_no_key_bytes(raised.value, data)
    assert_unchained(raised.value)


def test_pem_encoding_refuses_der_and_raw_needs_an_algorithm() -> None:
    with SecureBytes(b"\x30\x03\x02\x01\x00") as der:
        with pytest.raises(KeyFormatError, match="not a PEM key"):
            crypto.load_private_key(der, encoding="pem")
        with pytest.raises(TypeError, match="algorithm"):
            crypto.load_private_key(der, encoding="raw")
        with pytest.raises(TypeError, match="algorithm"):
            crypto.load_private_key(der, algorithm="ed25519")
        with pytest.raises(KeyFormatError, match="is 32 bytes; this one is 5"):
            crypto.load_private_key(der, encoding="raw", algorithm="ed25519")
        with pytest.raises(ValueError, match="'auto', 'pem', 'der' or 'raw'"):
            crypto.load_private_key(der, encoding="jwk")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="SecureBytes"):
        crypto.load_private_key(b"-----BEGIN PRIVATE KEY-----")  # type: ignore[arg-type]


# -- the PEM decoder ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 2, 3, 31, 32, 33, 48, 100, 1000])
def test_pem_decoding_matches_base64(size: int) -> None:
    data = os.urandom(size)
    body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    pem = b"comment\n-----BEGIN PRIVATE KEY-----\r\n" + body + b"-----END PRIVATE KEY-----\n"
    with SecureBytes(pem) as source, source.view() as view:
        [block] = list(_pem.blocks(view))
        assert block.label == "PRIVATE KEY"
        with _pem.decode(view, block, None) as der:
            assert der == data


def test_pem_blocks_are_found_in_order_with_text_between() -> None:
    pem = (
        b"\xef\xbb\xbfBag Attributes\r\n-----BEGIN CERTIFICATE-----\r\nAAAA\r\n"
        b"-----END CERTIFICATE-----\r\nnote\n-----BEGIN EC PRIVATE KEY-----\nAAAA\n"
        b"-----END EC PRIVATE KEY-----\n"
    )
    with SecureBytes(pem) as source, source.view() as view:
        assert [block.label for block in _pem.blocks(view)] == ["CERTIFICATE", "EC PRIVATE KEY"]


# -- damaged containers: any byte anywhere ------------------------------------------------


def pem_with_body(label: bytes, body: bytes) -> bytes:
    return b"-----BEGIN %s-----\n%s-----END %s-----\n" % (label, base64.encodebytes(body), label)


@pytest.mark.parametrize(
    "name", ["openssh-ecdsa384", "openssh-ed25519", "pem-traditional-ec", "der-traditional-ec"]
)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_damage_to_the_decoded_key_gives_a_documented_error(
    keys: Path, name: str, data: st.DataObject
) -> None:
    # The parser walks lengths and fields that a damaged file controls: whatever they say,
    # loading raises one of the documented errors (or loads a key), never anything else.
    original = (keys / name).read_bytes()
    der = name.startswith("der-")
    body = original if der else base64.b64decode(b"".join(original.splitlines()[1:-1]))
    decoded = bytearray(body)
    for _ in range(data.draw(st.integers(1, 4))):
        decoded[data.draw(st.integers(0, len(decoded) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del decoded[data.draw(st.integers(0, len(decoded) - 1)) :]
    if not der:
        label = original.split(b"-----")[1].removeprefix(b"BEGIN ")
        decoded = bytearray(pem_with_body(label, bytes(decoded)))
    with SecureBytes(decoded) as damaged:
        try:
            crypto.load_private_key(damaged)
        except (KeyFormatError, TypeError) as error:
            assert str(error)
            assert_unchained(error)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400))
def test_any_bytes_give_a_key_or_a_documented_error(data: bytes) -> None:
    with SecureBytes(data) as source:
        try:
            crypto.load_private_key(source)
        except (KeyFormatError, TypeError) as error:
            assert_unchained(error)


def odd(number: int) -> int:
    return 2 * number + 1


@settings(max_examples=200, deadline=None)
@given(
    d=st.integers(0, (1 << 600) - 1),
    prime=st.integers(1, (1 << 300) - 1).map(odd),
)
def test_crt_exponent_in_locked_memory_matches_python_ints(d: int, prime: int) -> None:
    d_bytes = d.to_bytes(75, "big")
    prime_bytes = b"\x00" + prime.to_bytes(38, "big")  # an mpint may carry a sign byte
    with _bignum.mod_prime_minus_one(
        memoryview(d_bytes), memoryview(prime_bytes), None
    ) as remainder:
        assert int.from_bytes(remainder.view(), "big") == d % (prime - 1)


@settings(max_examples=20, deadline=None)
@given(
    d=st.integers(0, (1 << 4096) - 1),
    prime=st.integers(1 << 2046, (1 << 2047) - 1).map(odd),
    misalignment=st.integers(0, 3),
)
def test_crt_exponent_of_a_4096_bit_key_with_any_scratch_alignment(
    d: int, prime: int, misalignment: int
) -> None:
    # The C division takes its limbs from wherever the scratch buffer starts.
    prime_bytes = prime.to_bytes(256, "big")
    scratch = bytearray(lib.sm_mod_prime_minus_one_scratch(256) + misalignment)
    out = bytearray(256)
    status = lib.sm_mod_prime_minus_one(
        *(ffi.from_buffer(out), 256, ffi.from_buffer(d.to_bytes(512, "big")), 512),
        *(ffi.from_buffer(prime_bytes), 256),
        *(ffi.from_buffer(scratch) + misalignment, len(scratch) - misalignment),
    )
    assert status == lib.SM_BIGNUM_OK
    assert int.from_bytes(out, "big") == d % (prime - 1)
    assert not any(scratch), "the scratch buffer must be left zeroed"


def test_crt_exponent_refuses_bad_arguments() -> None:
    out = ffi.new("unsigned char[]", 8)
    scratch = ffi.new("unsigned char[]", lib.sm_mod_prime_minus_one_scratch(8))
    prime, d = ffi.from_buffer((2**61 - 1).to_bytes(8, "big")), ffi.from_buffer(b"\x12" * 16)
    bad = lib.SM_BIGNUM_BAD_ARGUMENT
    assert lib.sm_mod_prime_minus_one(ffi.NULL, 8, d, 16, prime, 8, scratch, len(scratch)) == bad
    assert lib.sm_mod_prime_minus_one(out, 7, d, 16, prime, 8, scratch, len(scratch)) == bad
    assert lib.sm_mod_prime_minus_one(out, 8, d, 16, prime, 8, scratch, len(scratch) - 1) == bad
    assert lib.sm_mod_prime_minus_one(out, 0, d, 16, prime, 0, scratch, len(scratch)) == bad
    one = ffi.from_buffer((1).to_bytes(8, "big"))  # prime - 1 = 0: no modulus
    assert lib.sm_mod_prime_minus_one(out, 8, d, 16, one, 8, scratch, len(scratch)) == bad
    even_bytes = (2**61).to_bytes(8, "big")
    even = ffi.from_buffer(even_bytes)
    assert (
        lib.sm_mod_prime_minus_one(out, 8, d, 16, even, 8, scratch, len(scratch))
        == lib.SM_BIGNUM_EVEN_PRIME
    )
    assert not any(out), "nothing is written on a refusal"
    with pytest.raises(ValueError, match="not odd"):
        _bignum.mod_prime_minus_one(memoryview(b"\x12" * 16), memoryview(even_bytes), None)


@pytest.mark.parametrize(
    "name", ["openssh-ed25519-password", "pem-legacy-ec-password", "pem-pkcs8-ed25519-password"]
)
def test_closing_the_key_or_password_from_another_thread_mid_load(keys: Path, name: str) -> None:
    # Another thread closes the caller's SecureBytes while the load reads them: the load
    # either finishes with the right key or fails with a documented error; it never reads
    # freed memory, crashes, or leaves the arena inconsistent (the autouse fixture checks).
    expected = (keys / f"{name}.public").read_bytes()
    for delay in (0.0, 0.0005, 0.002, 0.01, 0.05):
        with password_marker() as marker:
            data = SecureBytes.from_file(keys / name)
            password = SecureBytes(marker.view())
        closer = threading.Timer(delay, lambda d=data, p=password: (d.close(), p.close()))
        closer.start()
        try:
            key = crypto.load_private_key(data, password)
        except (ValueError, TypeError) as error:  # SecureBytesClosedError is a ValueError
            assert_unchained(error)
        else:
            assert public_der(key) == expected
        closer.join()
        assert data.closed and password.closed


def test_the_key_formats_page_names_only_tests_that_exist() -> None:
    page = (Path(__file__).parent.parent / "docs" / "key-formats.md").read_text()
    named = set(re.findall(r"`(test_\w+)", page))
    assert named, "the page names no test"
    defined = {  # the tests of every test module (the limit tests live in their own)
        name
        for module in Path(__file__).parent.glob("test_*.py")
        for name in re.findall(r"^def (test_\w+)", module.read_text(), re.MULTILINE)
    }
    missing = sorted(name for name in named if name not in defined)
    assert not missing, f"docs/key-formats.md names tests that do not exist: {missing}"
