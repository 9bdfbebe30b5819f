"""EC keys whose private scalar is not the curve's size, as the real ``puttygen -O
private-openssh`` writes them: a P-256 or P-384 scalar with its top bit set gets a leading
zero byte (33 or 49 bytes, as an SSH mpint), a P-521 scalar below 2**512 loses its top zero
byte (65 bytes). OpenSSL, and so ``ssh-keygen`` and ``openssl``, read them; securemem must too.

The files are real puttygen output: puttygen is run until it writes each size (a fair coin
per run, at most 64 runs). The PKCS#8 files are built by this test around puttygen's SEC 1
key (openssl re-encodes the scalar at its proper size when it converts), and ``openssl pkey``
reading them shows they are what OpenSSL accepts.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cryptography")

from cryptography.hazmat.primitives import serialization

from securemem import SecureBytes, crypto
from tests import stackview
from tests.conftest import run_python
from tests.copy_bounds import EC_SCALAR_FILES, assert_within
from tests.memscan import Marker
from tests.test_keys import (
    assert_holds_no_key_bytes,
    assert_unchained,
    made_by_the_tools,
    public_der,
)

PASSWORD_SEED = 2121

MAKE_KEYS = r'''
    import base64, subprocess, sys
    from pathlib import Path
    from tests.memscan import Marker

    out = Path(sys.argv[1])
    password = bytes(Marker(20, seed=int(sys.argv[2])).view())
    (out / "password").write_bytes(password)
    (out / "empty").write_bytes(b"")
    SIZES = {256: 32, 384: 48, 521: 66}

    def der_of(pem):
        lines = [line for line in pem.splitlines() if line and b":" not in line]
        return base64.b64decode(b"".join(lines[1:-1]))

    def describe(name, bits, passphrase_file):
        """The public key and the scalar (at the curve's size), as openssl reads them."""
        read = ["openssl", "ec", "-in", str(out / name)]
        if passphrase_file:
            read += ["-passin", "file:" + str(out / passphrase_file)]
        public = subprocess.run([*read, "-pubout", "-outform", "DER"], check=True,
                                capture_output=True).stdout
        (out / (name + ".public")).write_bytes(public)
        text = subprocess.run([*read, "-noout", "-text"], check=True, capture_output=True,
                              text=True).stdout
        digits = "".join(text.split("priv:")[1].split("pub:")[0].split()).replace(":", "")
        (out / (name + ".secret")).write_bytes(int(digits, 16).to_bytes(SIZES[bits], "big"))

    def puttygen(name, bits, scalar_size):
        # Run puttygen until it writes a scalar of `scalar_size` bytes (SEC 1: the OCTET
        # STRING right after the version).
        for _ in range(64):
            subprocess.run(["puttygen", "-q", "-t", "ecdsa", "-b", str(bits), "-O",
                            "private-openssh", "-o", str(out / name), "--new-passphrase",
                            str(out / "empty")], check=True, capture_output=True)
            (out / name).chmod(0o600)
            der = der_of((out / name).read_bytes())
            at = (2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)) + 3  # after SEQUENCE, version
            if der[at] == 4 and der[at + 1] == scalar_size:
                break
        else:
            raise SystemExit(f"puttygen wrote no {scalar_size}-byte scalar in 64 runs")
        describe(name, bits, None)
        return der

    sec1 = puttygen("puttygen-ecdsa256-33", 256, 33)
    puttygen("puttygen-ecdsa384-49", 384, 49)
    puttygen("puttygen-ecdsa521-65", 521, 65)
    # The 33-byte key given a passphrase by puttygen: legacy PEM, DES-EDE3-CBC, around the
    # same SEC 1 encoding (puttygen writes a key's scalar the same way every time).
    subprocess.run(["puttygen", str(out / "puttygen-ecdsa256-33"), "-P", "--new-passphrase",
                    str(out / "password"), "-O", "private-openssh",
                    "-o", str(out / "puttygen-ecdsa256-33-password")],
                   check=True, capture_output=True)
    (out / "puttygen-ecdsa256-33-password").chmod(0o600)
    describe("puttygen-ecdsa256-33-password", 256, "password")

    # PKCS#8 around puttygen's 33-byte SEC 1 key: version 0, id-ecPublicKey with P-256,
    # the SEC 1 structure as the OCTET STRING.
    def tlv(tag, body):
        size = len(body)
        head = bytes([size]) if size < 128 else bytes([0x81, size]) if size < 256 else \
            bytes([0x82]) + size.to_bytes(2, "big")
        return bytes([tag]) + head + body
    algorithm = bytes.fromhex("301306072a8648ce3d020106082a8648ce3d030107")
    pkcs8 = tlv(0x30, bytes.fromhex("020100") + algorithm + tlv(0x04, sec1))
    (out / "pkcs8-ecdsa256-33.der").write_bytes(pkcs8)
    pem = (b"-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(pkcs8)
           + b"-----END PRIVATE KEY-----\n")
    (out / "pkcs8-ecdsa256-33.pem").write_bytes(pem)
    def same_key(name):
        for suffix in (".public", ".secret"):
            original = out / ("puttygen-ecdsa256-33" + suffix)
            (out / (name + suffix)).write_bytes(original.read_bytes())
    same_key("pkcs8-ecdsa256-33.der")
    same_key("pkcs8-ecdsa256-33.pem")
    # A 33-byte scalar whose extra byte is not zero: not a P-256 scalar at all.
    bad = bytearray(der_of((out / "puttygen-ecdsa256-33").read_bytes()))
    bad[7] = 1
    (out / "sec1-ecdsa256-extra-byte.der").write_bytes(bytes(bad))
    # The same key as puttygen's OpenSSH format (the scalar as an mpint).
    subprocess.run(["puttygen", str(out / "puttygen-ecdsa256-33"), "-O", "private-openssh-new",
                    "-o", str(out / "puttygen-openssh-ecdsa256")], check=True,
                   capture_output=True)
    same_key("puttygen-openssh-ecdsa256")
    for path in out.iterdir():
        path.chmod(0o600)
    '''


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return made_by_the_tools(tmp_path_factory, "ec-scalar", MAKE_KEYS, PASSWORD_SEED)


def password(keys: Path, name: str) -> SecureBytes | None:
    if not name.endswith("-password"):
        return None
    with Marker(20, seed=PASSWORD_SEED) as marker:
        return SecureBytes(marker.view())


def load(keys: Path, name: str) -> Any:
    with SecureBytes.from_file(keys / name) as data:
        return crypto.load_private_key(data, password(keys, name))


@pytest.mark.parametrize("name", EC_SCALAR_FILES)
def test_loads_ec_keys_whose_scalar_is_not_the_curves_size(keys: Path, name: str) -> None:
    key = load(keys, name)
    assert public_der(key) == (keys / f"{name}.public").read_bytes()
    with SecureBytes.from_file(keys / f"{name}.secret") as secret:
        assert key.private_numbers().private_value == int.from_bytes(secret.view(), "big")


@pytest.mark.parametrize("name", [n for n in EC_SCALAR_FILES if n.startswith("puttygen-ecdsa")])
def test_ssh_keygen_reads_the_same_files(keys: Path, name: str) -> None:
    # What OpenSSL accepts: ssh-keygen -y prints the public key of the file it read.
    secret = "" if password(keys, name) is None else (keys / "password").read_text().strip()
    shown = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(keys / name), "-P", secret],
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    expected = load(keys, name).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert shown.stdout.split()[:2] == expected.decode().split()[:2]


@pytest.mark.parametrize("name", ["pkcs8-ecdsa256-33.der", "pkcs8-ecdsa256-33.pem"])
def test_openssl_reads_the_pkcs8_files_built_around_puttygens_key(keys: Path, name: str) -> None:
    form = "DER" if name.endswith(".der") else "PEM"
    read = subprocess.run(
        ["openssl", "pkey", "-inform", form, "-in", str(keys / name), "-pubout", "-outform", "DER"],
        capture_output=True,
        check=False,
    )
    assert read.returncode == 0, read.stderr
    assert read.stdout == (keys / f"{name}.public").read_bytes()


def test_the_sizes_are_the_ones_puttygen_wrote(keys: Path) -> None:
    # The control: each file holds the odd size it is named for (SEC 1: version, then the
    # OCTET STRING of the scalar), so the tests above load what cryptography alone refuses.
    for name, size in (
        ("puttygen-ecdsa256-33", 33),
        ("puttygen-ecdsa384-49", 49),
        ("puttygen-ecdsa521-65", 65),
    ):
        read = subprocess.run(
            ["openssl", "asn1parse", "-in", str(keys / name)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert f"l=  {size} prim: OCTET STRING" in read.stdout, name
        with SecureBytes.from_file(keys / name) as data:
            assert b"BEGIN EC PRIVATE KEY" in bytes(data.view()[:40])


@pytest.mark.parametrize("name", [n for n in EC_SCALAR_FILES if "openssh" not in n])
def test_what_cryptography_is_given_is_securemems_rewrite_of_the_scalar(
    keys: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The control: each file (the encrypted one too, once securemem has decrypted it) reaches
    # cryptography only as securemem's rewrite, its scalar at the curve's size. Whether
    # cryptography would read the original (it does not, today) is cryptography's business.
    from securemem._keyformats import _ecscalar

    real = _ecscalar.normalised
    rewritten: list[bool] = []

    def spy(der: memoryview, arena: Any) -> SecureBytes | None:
        result = real(der, arena)
        rewritten.append(result is not None)
        return result

    monkeypatch.setattr(_ecscalar, "normalised", spy)
    key = load(keys, name)
    assert rewritten == [True]
    assert public_der(key) == (keys / f"{name}.public").read_bytes()


def test_a_longer_scalar_whose_extra_byte_is_not_zero_is_refused(keys: Path) -> None:
    name = "sec1-ecdsa256-extra-byte.der"
    with SecureBytes.from_file(keys / name) as data, pytest.raises(ValueError) as raised:
        crypto.load_private_key(data)
    assert "extra leading bytes are not zero" in str(raised.value)
    assert "traditional EC" in str(raised.value)
    assert_holds_no_key_bytes(
        raised.value,
        (keys / name).read_bytes(),
        (keys / "puttygen-ecdsa256-33.secret").read_bytes(),
    )
    assert_unchained(raised.value)


SCAN = """
    import gc, json, sys
    from pathlib import Path
    from tests.test_keys_ec_scalar import load
    from tests.memscan import Marker
    from securemem import SecureBytes
    from securemem._scrub import scrub_after_native
    keys, name = Path(sys.argv[1]), sys.argv[2]
    scrub_after_native()  # warm up, as tests/test_keys.py's scan does
    with SecureBytes.from_file(keys / (name + ".secret")) as secret:
        key_marker = Marker.copy_of(secret.view())
    with key_marker:
        key = load(keys, name)
        del key
        gc.collect()
        found = key_marker.scan()
        print(json.dumps({"key": found.describe(), "key_count": len(found.found)}))
    """


@pytest.mark.parametrize("name", EC_SCALAR_FILES)
def test_rewriting_the_scalar_leaves_no_copy_outside_locked_memory(keys: Path, name: str) -> None:
    scanned = run_python(SCAN, str(keys), name)
    assert scanned.returncode == 0, scanned.stderr
    found = json.loads(scanned.stdout.strip().splitlines()[-1])
    assert_within((f"keys.{name}", "key_after"), found["key_count"], found["key"])


@pytest.mark.skipif(
    not stackview.supported(), reason="reads the stack through /proc on x86-64/AArch64 Linux"
)
@pytest.mark.parametrize("name", EC_SCALAR_FILES)
def test_loading_leaves_no_key_on_the_stack(keys: Path, name: str) -> None:
    # As tests/test_keys.py checks for every other format: read from a second thread right
    # after the load, the calling thread's stack holds no copy of the key's secret.
    with SecureBytes.from_file(keys / f"{name}.secret") as secret:
        marker = Marker.copy_of(secret.view())
    with marker, marker.view() as needle:
        found = stackview.stack_depths_after(lambda: load(keys, name), needle, clean_start=True)
    assert found == [], f"loading {name} left the key {found} bytes below the stack pointer"
