"""PKCS#12 bundles written by the real ``openssl pkcs12 -export`` (with and without
``-legacy``), their KDF costs checked before any derivation, and files that are not private
keys (certificates, public keys, requests, CRLs, PKCS#7) named for what they are.

The bundles are made by openssl in another process, so this process never holds a key as
``bytes``: the scans after loading find only what loading left.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("cryptography")

from securemem import SecureBytes, crypto
from securemem.crypto import KdfLimitError, KdfLimits, KeyFormatError
from tests import stackview
from tests.conftest import run_python
from tests.copy_bounds import PKCS12_FILES, assert_within
from tests.derbytes import replaced
from tests.memscan import Marker
from tests.test_keys import (
    assert_holds_no_key_bytes,
    assert_unchained,
    made_by_the_tools,
    public_der,
)

PASSWORD_SEED = 1212  # the password is Marker(20, seed=PASSWORD_SEED)

MAKE_BUNDLES = r'''
    import subprocess, sys
    from pathlib import Path
    from cryptography.hazmat.primitives import serialization as s
    from tests.memscan import Marker

    out = Path(sys.argv[1])
    password = bytes(Marker(20, seed=int(sys.argv[2])).view()).decode()

    def openssl(*arguments):
        subprocess.run(["openssl", *arguments], check=True, capture_output=True, cwd=out)

    for name, algorithm in (("ec", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                            ("rsa", ["-newkey", "rsa:2048"])):
        openssl("req", "-x509", *algorithm, "-nodes", "-keyout", name + ".key",
                "-out", name + ".crt", "-subj", "/CN=securemem", "-days", "1")
    def export(name, key, *options, secret=password):
        openssl("pkcs12", "-export", "-inkey", key + ".key", "-in", key + ".crt",
                "-out", name, "-passout", "pass:" + secret, *options)
        made = s.load_pem_private_key((out / (key + ".key")).read_bytes(), None)
        if key == "ec":
            secret = made.private_numbers().private_value.to_bytes(32, "big")
        else:
            p = made.private_numbers().p
            secret = p.to_bytes((p.bit_length() + 7) // 8, "big")
        (out / (name + ".secret")).write_bytes(secret)
        (out / (name + ".public")).write_bytes(
            made.public_key().public_bytes(s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo))

    export("pkcs12-ec", "ec")
    export("pkcs12-ec-legacy", "ec", "-legacy")
    export("pkcs12-rsa", "rsa")
    export("pkcs12-rsa-legacy", "rsa", "-legacy")
    export("pkcs12-ec-empty-password", "ec", secret="")
    export("pkcs12-ec-nomac", "ec", "-nomac")
    export("pkcs12-ec-legacy-nomac", "ec", "-legacy", "-nomac")
    openssl("pkcs12", "-export", "-nokeys", "-in", "ec.crt", "-out", "pkcs12-certificate-only",
            "-passout", "pass:" + password)

    # What is not a private key, as openssl writes it.
    openssl("x509", "-in", "ec.crt", "-outform", "DER", "-out", "certificate.der")
    openssl("pkey", "-in", "ec.key", "-pubout", "-outform", "DER", "-out", "public-key.der")
    openssl("pkey", "-in", "ec.key", "-pubout", "-out", "public-key.pem")
    openssl("rsa", "-in", "rsa.key", "-RSAPublicKey_out", "-outform", "DER",
            "-out", "rsa-public-key.der")
    openssl("req", "-new", "-key", "ec.key", "-subj", "/CN=securemem", "-outform", "DER",
            "-out", "request.der")
    openssl("crl2pkcs7", "-nocrl", "-certfile", "ec.crt", "-outform", "DER", "-out", "bundle.p7b")
    (out / "index.txt").write_bytes(b"")
    (out / "crlnumber").write_bytes(b"01\n")
    (out / "ca.cnf").write_bytes(b"[ca]\ndefault_ca=c\n[c]\ndatabase=index.txt\n"
                                 b"crlnumber=crlnumber\ndefault_md=sha256\ndefault_crl_days=1\n")
    openssl("ca", "-gencrl", "-config", "ca.cnf", "-keyfile", "ec.key", "-cert", "ec.crt",
            "-out", "crl.pem")
    openssl("crl", "-in", "crl.pem", "-outform", "DER", "-out", "crl.der")
    (out / "password").write_bytes(password.encode())
    for path in out.iterdir():
        path.chmod(0o600)
    '''


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return made_by_the_tools(tmp_path_factory, "pkcs12", MAKE_BUNDLES, PASSWORD_SEED)


def password_marker() -> Marker:
    return Marker(20, seed=PASSWORD_SEED)


MARKER = "the test password"


def load(bundles: Path, name: str, password: Any = MARKER, **options: Any) -> Any:
    """Load a bundle from locked memory, with the test password (in locked memory) unless
    another is given."""
    with SecureBytes.from_file(bundles / name) as data:
        if password is MARKER:
            with password_marker() as marker, SecureBytes(marker.view()) as secret:
                return crypto.load_private_key(data, secret, **options)
        return crypto.load_private_key(data, password, **options)


# -- loading what openssl pkcs12 -export writes ---------------------------------------------

WITH_PASSWORD = [name for name in PKCS12_FILES if name != "pkcs12-ec-empty-password"]


@pytest.mark.parametrize("encoding", ["auto", "der"])
@pytest.mark.parametrize("name", WITH_PASSWORD)
def test_loads_the_key_of_what_openssl_pkcs12_export_writes(
    bundles: Path, name: str, encoding: str
) -> None:
    key = load(bundles, name, encoding=encoding)
    assert public_der(key) == (bundles / f"{name}.public").read_bytes()


@pytest.mark.parametrize("password", [None, b""], ids=["None", "empty"])
def test_a_bundle_exported_with_an_empty_password_loads_without_one(
    bundles: Path, password: bytes | None
) -> None:
    key = load(bundles, "pkcs12-ec-empty-password", password)
    assert public_der(key) == (bundles / "pkcs12-ec-empty-password.public").read_bytes()


@pytest.mark.parametrize("make", [bytes, bytearray, memoryview, SecureBytes])
def test_the_password_may_be_any_bytes_like_type(bundles: Path, make: Any) -> None:
    with password_marker() as marker:
        password = make(bytes(marker.view()))
    key = load(bundles, "pkcs12-ec", password)
    assert public_der(key) == (bundles / "pkcs12-ec.public").read_bytes()


def test_a_str_password_is_refused(bundles: Path) -> None:
    with pytest.raises(TypeError, match="encode it"):
        load(bundles, "pkcs12-ec", "text")


@pytest.mark.parametrize("password", [b"wrong password", None], ids=["wrong", "missing"])
@pytest.mark.parametrize("name", ["pkcs12-ec", "pkcs12-rsa-legacy"])
def test_a_wrong_or_missing_password_names_pkcs12(
    bundles: Path, name: str, password: bytes | None
) -> None:
    with pytest.raises(KeyFormatError, match=r"PKCS#12.*wrong or missing password") as raised:
        load(bundles, name, password)
    assert_holds_no_key_bytes(
        raised.value, (bundles / name).read_bytes(), (bundles / f"{name}.secret").read_bytes()
    )
    assert_unchained(raised.value)


def test_a_bundle_without_a_key_says_so(bundles: Path) -> None:
    with pytest.raises(KeyFormatError, match="PKCS#12 bundle without a private key"):
        load(bundles, "pkcs12-certificate-only")


def test_pem_encoding_does_not_take_a_bundle(bundles: Path) -> None:
    with pytest.raises(KeyFormatError, match="not a PEM key"):
        load(bundles, "pkcs12-ec", encoding="pem")


# -- KDF costs, checked before anything is derived -----------------------------------------


HUGE = bytes.fromhex("02047fffffff")  # INTEGER 2**31 - 1
LONG_OID = bytes((0x06, 100)) + b"\x81" * 99 + b"\x01"  # one 700-bit arc: well-formed DER
# Paths in openssl's PFX: version, authSafe (ContentInfo: data -> OCTET STRING ->
# AuthenticatedSafe: [0] the certificates, [1] the key's SafeContents), macData.
_AUTH_SAFE = (1, 1, 0, "in")
_KEY_BAG = (*_AUTH_SAFE, 1, 1, 0, "in", 0, 1, 0)  # the shrouded key bag's EncryptedPrivateKeyInfo
HOSTILE = {
    # The MAC's iteration count: OpenSSL would spend hours on it before anything else.
    "mac": ("pkcs12-ec", (2, 2), HUGE, "the MAC"),
    # PBES2: PBKDF2's iteration count of the shrouded key bag (no MAC: OpenSSL goes on to it).
    "shrouded-key-bag": ("pkcs12-ec-nomac", (*_KEY_BAG, 0, 1, 0, 1, 1), HUGE, "shrouded key bag"),
    # -legacy: pbeWithSHAAnd3-KeyTripleDES-CBC's iteration count.
    "legacy-shrouded-key-bag": (
        "pkcs12-ec-legacy-nomac", (*_KEY_BAG, 0, 1, 1), HUGE, "shrouded key bag"
    ),
    # -legacy: the RC2-encrypted certificates' iteration count, the MAC removed.
    "legacy-encrypted-content": (
        "pkcs12-ec-legacy", (*_AUTH_SAFE, 0, 1, 0, 1, 1, 1, 1), HUGE, "encrypted content"
    ),
}
LOAD_HOSTILE = """
    import json, sys
    from pathlib import Path
    from securemem import SecureBytes, crypto
    from securemem.crypto import KdfLimitError
    results = {}
    for path in sys.argv[1:]:
        try:
            crypto.load_private_key(SecureBytes.from_file(path), b"any password")
        except KdfLimitError as error:
            results[Path(path).name] = str(error)
        except Exception as error:
            results[Path(path).name] = f"{type(error).__name__}: {error}"
    print(json.dumps(results))
    """


def hostile(bundles: Path, tmp_path: Path, case: str) -> Path:
    name, path, new, _where = HOSTILE[case]
    data = (bundles / name).read_bytes()
    if case == "legacy-encrypted-content":
        data = replaced(data, (2,), b"")  # no MAC: OpenSSL decrypts without verifying one
    written = tmp_path / case
    written.write_bytes(replaced(data, path, new))
    written.chmod(0o600)
    return written


def test_huge_kdf_costs_are_refused_before_any_derivation(bundles: Path, tmp_path: Path) -> None:
    # 2**31 - 1 iterations where openssl wrote 2048, in each place a PFX names a cost. Without
    # the check, OpenSSL would run them (hours, in native code Ctrl-C does not reach): the
    # child's timeout is the guard, and a refusal is what passes.
    paths = [str(hostile(bundles, tmp_path, case)) for case in HOSTILE]
    result = run_python(LOAD_HOSTILE, *paths, timeout=120)
    assert result.returncode == 0, result.stderr
    refused = json.loads(result.stdout.strip().splitlines()[-1])
    for case, (_name, _path, _new, where) in HOSTILE.items():
        message = refused[case]
        assert message.startswith("PKCS#12 (") and where in message, (case, message)
        assert "pbkdf2_iterations=2147483647" in message, (case, message)


def test_a_hostile_edit_is_one_openssl_still_parses(bundles: Path, tmp_path: Path) -> None:
    # The control for the test above: the edits keep the PFX well-formed, so what refuses
    # them is the cost and nothing else. The same edit with a small count (0x0800, as openssl
    # wrote it) loads, where no MAC or one that is still right makes that possible.
    small = bytes.fromhex("02020800")
    for case in ("shrouded-key-bag", "legacy-shrouded-key-bag"):
        name, path, _new, _where = HOSTILE[case]
        data = replaced((bundles / name).read_bytes(), path, small)
        assert data == (bundles / name).read_bytes()  # the walk found openssl's 2048
        with (
            SecureBytes(data) as source,
            password_marker() as marker,
            SecureBytes(marker.view()) as password,
        ):
            key = crypto.load_private_key(source, password)
        assert public_der(key) == (bundles / f"{name}.public").read_bytes()


def test_the_limit_is_the_callers(bundles: Path) -> None:
    # openssl writes 2048 iterations for the MAC, the certificates and the key: 6144 in all.
    with pytest.raises(KdfLimitError, match=r"PKCS#12 \(the MAC\).*2048.*2047"):
        load(bundles, "pkcs12-ec", kdf_limits=KdfLimits(pbkdf2_iterations=2047))
    with pytest.raises(KdfLimitError, match=r"all its key derivations together.*6144"):
        load(bundles, "pkcs12-ec", kdf_limits=KdfLimits(pbkdf2_iterations=6143))
    key = load(bundles, "pkcs12-ec", kdf_limits=KdfLimits(pbkdf2_iterations=6144))
    assert public_der(key) == (bundles / "pkcs12-ec.public").read_bytes()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda data: data[:-1], "longer than what holds it|truncated"),
        (lambda data: data + b"\x00", "bytes after the end"),
        # An encryption algorithm securemem does not know the cost of (an OID changed).
        (
            lambda data: replaced(data, (*_KEY_BAG, 0, 0), bytes.fromhex("06032a0304")),
            "1.2.3.4, an algorithm securemem does not know",
        ),
        # An object identifier as long as a hostile file likes: named by its size only.
        (
            lambda data: replaced(data, (*_KEY_BAG, 0, 0), LONG_OID),
            "encrypted with a 100-byte object identifier, an algorithm",
        ),
        # BER's indefinite length on the outer SEQUENCE (openssl's is 4 bytes: 30 82 xx xx).
        (lambda data: b"\x30\x80" + data[4:] + b"\x00\x00", "indefinite length"),
        # A count is never negative, and DER writes it in its shortest form.
        (lambda data: replaced(data, (2, 2), bytes.fromhex("0201ff")), "MAC iterations.*negative"),
        (lambda data: replaced(data, (2, 2), bytes.fromhex("0203000800")), "shortest form"),
        # The MAC's DigestInfo with a third field (an empty digest, then a NULL).
        (lambda data: replaced(data, (2, 0, 1), bytes.fromhex("04000500")), "3 fields, not 2"),
    ],
    ids=[
        *("truncated", "trailing", "unknown-algorithm", "long-oid", "ber", "negative"),
        *("not-minimal", "extra-field"),
    ],
)
def test_a_damaged_bundle_is_refused_naming_pkcs12(
    bundles: Path, edit: Any, message: str
) -> None:
    data = edit((bundles / "pkcs12-ec").read_bytes())
    with SecureBytes(data) as source, pytest.raises(KeyFormatError, match=message) as raised:
        crypto.load_private_key(source, b"password")
    assert "PKCS#12" in str(raised.value)
    assert_holds_no_key_bytes(raised.value, data, (bundles / "pkcs12-ec.secret").read_bytes())
    assert_unchained(raised.value)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_damage_to_a_bundle_gives_a_key_or_a_documented_error(
    bundles: Path, data: st.DataObject
) -> None:
    damaged = bytearray((bundles / "pkcs12-ec-legacy").read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        damaged[data.draw(st.integers(0, len(damaged) - 1))] = data.draw(st.integers(0, 255))
    with (
        SecureBytes(damaged) as source,
        password_marker() as marker,
        SecureBytes(marker.view()) as password,
    ):
        try:
            crypto.load_private_key(source, password)
        except ValueError as error:  # KeyFormatError, or a damaged DER key's ValueError
            assert str(error)
            assert_unchained(error)


# -- copies left outside locked memory ------------------------------------------------------

SCAN = """
    import gc, json, sys
    from pathlib import Path
    from tests.test_keys_pkcs12 import MARKER, load, password_marker
    from tests.memscan import Marker
    from securemem import SecureBytes
    from securemem._scrub import scrub_after_native
    bundles, name = Path(sys.argv[1]), sys.argv[2]
    scrub_after_native()  # warm up, as tests/test_keys.py's scan does
    with SecureBytes.from_file(bundles / (name + ".secret")) as secret:
        key_marker = Marker.copy_of(secret.view())
    with key_marker, password_marker() as password:
        key = load(bundles, name, None if "empty" in name else MARKER)
        del key
        gc.collect()
        key_copies, password_copies = key_marker.scan(), password.scan()
        print(json.dumps({"key": key_copies.describe(), "key_count": len(key_copies.found),
                          "password": password_copies.describe(),
                          "password_count": len(password_copies.found)}))
    """


def scan_after_loading(bundles: Path, name: str) -> dict[str, Any]:
    scanned = run_python(SCAN, str(bundles), name)
    assert scanned.returncode == 0, scanned.stderr
    return json.loads(scanned.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", PKCS12_FILES)
def test_loading_a_bundle_leaves_no_more_copies_than_documented(bundles: Path, name: str) -> None:
    found = scan_after_loading(bundles, name)
    for what in ("key", "password"):
        assert_within(
            (f"keys.{name}", f"{what}_after"), found[f"{what}_count"], found[what]
        )


# -- what is not a private key says what it is ---------------------------------------------

NOT_KEYS = [
    ("certificate.der", "this is a DER X.509 certificate, not a private key"),
    ("public-key.der", "this is a DER public key \\(SubjectPublicKeyInfo\\), not a private key"),
    ("rsa-public-key.der", "this is a DER RSA public key \\(PKCS#1\\), not a private key"),
    ("request.der", "this is a DER certificate signing request \\(PKCS#10\\)"),
    ("crl.der", "this is a DER certificate revocation list \\(CRL\\)"),
    ("bundle.p7b", "this is a DER PKCS#7 bundle"),
    ("crl.pem", "this is a PEM certificate revocation list \\(CRL\\) only, not a private key"),
    ("public-key.pem", "this is a PEM public key \\(SubjectPublicKeyInfo\\) only"),
    ("ec.crt", "this is a PEM X.509 certificate only, not a private key"),
    ("pkcs12-certificate-only", "this is a PKCS#12 bundle without a private key"),
]


@pytest.mark.parametrize(("name", "message"), NOT_KEYS, ids=[name for name, _ in NOT_KEYS])
def test_what_is_not_a_private_key_says_what_it_is(
    bundles: Path, name: str, message: str
) -> None:
    with pytest.raises(KeyFormatError, match=message) as raised:
        load(bundles, name, MARKER if name.startswith("pkcs12") else None)
    assert_unchained(raised.value)


@pytest.mark.skipif(
    not stackview.supported(), reason="reads the stack through /proc on x86-64/AArch64 Linux"
)
@pytest.mark.parametrize("name", ["pkcs12-ec", "pkcs12-ec-legacy", "pkcs12-rsa"])
def test_loading_leaves_no_key_on_the_stack(bundles: Path, name: str) -> None:
    # As tests/test_keys.py checks for every other format: read from a second thread right
    # after the load, the calling thread's stack holds no copy of the key's secret.
    with SecureBytes.from_file(bundles / f"{name}.secret") as secret:
        marker = Marker.copy_of(secret.view())
    with marker, marker.view() as needle:
        found = stackview.stack_depths_after(lambda: load(bundles, name), needle, clean_start=True)
    assert found == [], f"loading {name} left the key {found} bytes below the stack pointer"
