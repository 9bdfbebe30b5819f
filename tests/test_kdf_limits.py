"""Hostile key files: the key-derivation cost a file names is checked before any work (issue 23).

Every file here is written by a real tool (ssh-keygen, openssl) and then, for the hostile
cases, one cost field is rewritten: the OpenSSH bcrypt rounds of the issue (536,870,914, one
base64 character away from a real key), a PKCS#8 PBKDF2 iteration count, a PKCS#8 scrypt N.
Each hostile load runs in a child process with a timeout, so a missing check fails the test
instead of hanging the suite. The Argon2 limit (PuTTY v3 keys) is tested with the PuTTY reader.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("cryptography")
pytest.importorskip("bcrypt")

from cryptography.hazmat.primitives import serialization

from securemem import SecureBytes, SecureMemoryError, crypto
from securemem.crypto import KdfLimitError, KdfLimits, KeyFormatError
from tests import derbytes
from tests.conftest import run_python
from tests.test_keys import assert_holds_no_key_bytes, assert_unchained

PASSWORD = "correct horse 1313"
HOSTILE_TIMEOUT = 60.0  # seconds; the refusal is immediate, a missing check runs for hours

# -- files the tools write ------------------------------------------------------------------


def ssh_keygen(path: Path, *options: str) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", PASSWORD, "-C", "", "-f", str(path),
         *options],
        check=True,
        capture_output=True,
    )
    path.with_suffix(".pub").unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)
    return path


def openssl_pkcs8(directory: Path, name: str, *options: str) -> Path:
    """An Ed25519 key made by openssl, encrypted by `openssl pkcs8 -topk8 OPTIONS`."""
    plain, path = directory / f"{name}.plain", directory / name
    if not plain.exists():
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(plain)],
                       check=True, capture_output=True)
    subprocess.run(
        ["openssl", "pkcs8", "-topk8", "-in", str(plain), "-passout", f"pass:{PASSWORD}",
         "-out", str(path), *options],
        check=True,
        capture_output=True,
    )
    plain.unlink()
    return path


@pytest.fixture(scope="module")
def tool_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """What the tools write by default and with common hardening."""
    out = tmp_path_factory.mktemp("kdf-keys")
    return {
        "ssh-keygen (its default rounds)": ssh_keygen(out / "openssh-default"),
        "ssh-keygen -a 64": ssh_keygen(out / "openssh-a64", "-a", "64"),
        "ssh-keygen -a 256": ssh_keygen(out / "openssh-a256", "-a", "256"),
        "openssl pkcs8 (default: PBKDF2, 2048 iterations)": openssl_pkcs8(out, "pkcs8-default"),
        "openssl pkcs8 -iter 1000000": openssl_pkcs8(out, "pkcs8-iter", "-iter", "1000000"),
        "openssl pkcs8 -v2prf hmacWithSHA1 -v2 des3": openssl_pkcs8(
            out, "pkcs8-sha1", "-v2prf", "hmacWithSHA1", "-v2", "des3"
        ),
        "openssl pkcs8 -scrypt (N=16384, r=8, p=1)": openssl_pkcs8(out, "pkcs8-scrypt", "-scrypt"),
        "openssl pkcs8 -v1 PBE-SHA1-3DES (PKCS#12 PBE)": openssl_pkcs8(
            out, "pkcs8-pkcs12", "-v1", "PBE-SHA1-3DES"
        ),
    }


def public_key_from_the_tool(path: Path) -> bytes:
    """The public key as the tool that wrote the file reads it (SSH wire format)."""
    if b"OPENSSH" in path.read_bytes():
        line = subprocess.run(
            ["ssh-keygen", "-y", "-f", str(path), "-P", PASSWORD],
            check=True, capture_output=True, text=True,
        ).stdout
    else:
        spki = subprocess.run(
            ["openssl", "pkey", "-in", str(path), "-passin", f"pass:{PASSWORD}", "-pubout",
             "-outform", "DER"],
            check=True, capture_output=True,
        ).stdout
        line = serialization.load_der_public_key(spki).public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ).decode()
    return base64.b64decode(line.split()[1])


def load(path: Path, limits: KdfLimits | None = None) -> bytes:
    """Load with securemem (default limits unless given); the public key, SSH wire format."""
    with SecureBytes.from_file(path) as data, SecureBytes(PASSWORD.encode()) as password:
        if limits is None:
            key = crypto.load_private_key(data, password)
        else:
            key = crypto.load_private_key(data, password, kdf_limits=limits)
    line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return base64.b64decode(line.split()[1])


def test_the_default_limits_load_what_the_tools_write(tool_files: dict[str, Path]) -> None:
    for what, path in tool_files.items():
        assert load(path) == public_key_from_the_tool(path), what


# -- hostile files: one cost field rewritten --------------------------------------------------


def openssh_with_rounds(path: Path, rounds: int) -> bytes:
    """The OpenSSH file with its bcrypt rounds (a uint32 in the kdfoptions) set to ``rounds``."""
    lines = path.read_bytes().splitlines()
    container = bytearray(base64.b64decode(b"".join(lines[1:-1])))
    at = len(b"openssh-key-v1\x00")
    for _ in range(2):  # the cipher name, the KDF name
        at += 4 + int.from_bytes(container[at : at + 4], "big")
    at += 4  # the kdfoptions string's length; then the salt string, then the rounds
    at += 4 + int.from_bytes(container[at : at + 4], "big")
    # The field the offsets lead to is a rounds count (what ssh-keygen writes by default
    # changes with its release: 16, later more), not some other bytes of the container.
    assert 1 <= int.from_bytes(container[at : at + 4], "big") <= 1024
    container[at : at + 4] = rounds.to_bytes(4, "big")
    text = base64.b64encode(bytes(container))
    width = len(lines[1])  # ssh-keygen's line length, kept
    body = [text[start : start + width] for start in range(0, len(text), width)]
    return b"\n".join([lines[0], *body, lines[-1]])


def pkcs8_with(path: Path, field: int, value: int) -> bytes:
    """The encrypted PKCS#8 PEM with the ``field``-th element of its PBES2 KDF parameters
    (1: PBKDF2's iteration count, scrypt's N; 2: scrypt's r; 3: scrypt's p) set to ``value``."""
    lines = path.read_bytes().splitlines()
    tree = derbytes.tree(base64.b64decode(b"".join(lines[1:-1])))
    # EncryptedPrivateKeyInfo > AlgorithmIdentifier > PBES2-params > keyDerivationFunc > params
    info: Any = tree[0][1]
    pbes2: Any = info[0][1][1][1]
    kdf_parameters: Any = pbes2[0][1][1][1]
    assert kdf_parameters[field][0] == 0x02  # an INTEGER
    kdf_parameters[field] = (0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))
    body = base64.encodebytes(derbytes.from_tree(tree)).splitlines()
    return b"\n".join([lines[0], *body, lines[-1]])


LOAD_IN_A_CHILD = r"""
    import json, sys
    from securemem import SecureBytes, crypto
    with SecureBytes.from_file(sys.argv[1]) as data:
        try:
            crypto.load_private_key(data, sys.argv[2].encode())
        except Exception as error:
            print(json.dumps({
                "type": type(error).__name__,
                "limit": isinstance(error, crypto.KdfLimitError),
                "message": str(error),
                "chained": error.__cause__ is not None or error.__context__ is not None,
            }))
        else:
            print(json.dumps({"type": None}))
"""


def load_in_a_child(path: Path) -> dict[str, object]:
    """Load ``path`` in a fresh interpreter; a missing check hits the timeout (TimeoutExpired
    fails the test) instead of hanging the suite."""
    child = run_python(LOAD_IN_A_CHILD, str(path), PASSWORD, timeout=HOSTILE_TIMEOUT)
    assert child.returncode == 0, child.stderr
    result: dict[str, object] = json.loads(child.stdout)
    return result


HOSTILE = [
    # (the tool file, how it is rewritten, the format named, the parameter, the value asked for)
    ("ssh-keygen (its default rounds)", "rounds", "OpenSSH", "bcrypt_rounds", 536_870_914),
    ("openssl pkcs8 (default: PBKDF2, 2048 iterations)", 1, "PBKDF2", "pbkdf2_iterations",
     2_000_000_000),
    ("openssl pkcs8 -scrypt (N=16384, r=8, p=1)", 1, "scrypt N=1073741824", "scrypt_memory_bytes",
     128 * 8 * 2**30),
    ("openssl pkcs8 -v1 PBE-SHA1-3DES (PKCS#12 PBE)", "pkcs12", "PKCS#12 PBE",
     "pbkdf2_iterations", 2**31 - 1),
]


def hostile_file(source: Path, how: object, value: int, out: Path) -> Path:
    if how == "rounds":
        data = openssh_with_rounds(source, value)
    elif how == "pkcs12":  # PKCS#12 PBE: AlgorithmIdentifier > params SEQUENCE { salt, count }
        lines = source.read_bytes().splitlines()
        tree = derbytes.tree(base64.b64decode(b"".join(lines[1:-1])))
        parameters: Any = tree[0][1][0][1][1][1]
        parameters[1] = (0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))
        data = b"\n".join([lines[0], *base64.encodebytes(derbytes.from_tree(tree)).splitlines(),
                           lines[-1]])
    else:
        assert isinstance(how, int)
        n = value // (128 * 8) if "scrypt" in source.name else value
        data = pkcs8_with(source, how, n)
    out.write_bytes(data + b"\n")
    out.chmod(0o600)
    return out


@pytest.mark.parametrize(("tool_file", "how", "named", "parameter", "value"), HOSTILE)
def test_a_hostile_cost_is_refused_before_any_work(
    tool_files: dict[str, Path], tmp_path: Path, tool_file: str, how: object, named: str,
    parameter: str, value: int,
) -> None:
    hostile = hostile_file(tool_files[tool_file], how, value, tmp_path / "hostile")
    result = load_in_a_child(hostile)
    assert result["type"] == "KdfLimitError" and result["limit"], result
    message = str(result["message"])
    # The format, the parameter and its value, the keyword that raises the limit.
    assert named in message and f"{parameter}={value}" in message, message
    assert "kdf_limits=KdfLimits(" in message, message
    assert not result["chained"]
    # ...and never a byte of the key file or the password.
    error = KdfLimitError(message)
    assert_holds_no_key_bytes(error, hostile.read_bytes(), PASSWORD.encode())


# -- the keyword: a lowered limit refuses a real file, raising it back loads it ----------------

AT_THE_LIMIT = [
    ("ssh-keygen -a 64", "bcrypt_rounds", 64),
    ("openssl pkcs8 (default: PBKDF2, 2048 iterations)", "pbkdf2_iterations", 2048),
    ("openssl pkcs8 -iter 1000000", "pbkdf2_iterations", 1_000_000),
    ("openssl pkcs8 -scrypt (N=16384, r=8, p=1)", "scrypt_memory_bytes", 128 * 16384 * 8),
    ("openssl pkcs8 -v1 PBE-SHA1-3DES (PKCS#12 PBE)", "pbkdf2_iterations", 2048),
]


@pytest.mark.parametrize(("tool_file", "parameter", "cost"), AT_THE_LIMIT)
def test_kdf_limits_keyword_sets_the_limit(
    tool_files: dict[str, Path], tool_file: str, parameter: str, cost: int
) -> None:
    path = tool_files[tool_file]
    with pytest.raises(KdfLimitError, match=f"{parameter}={cost}, above the limit of {cost - 1}"):
        load(path, KdfLimits(**{parameter: cost - 1}))
    assert load(path, KdfLimits(**{parameter: cost})) == public_key_from_the_tool(path)


def test_kdf_limits_refuses_what_is_not_a_limit() -> None:
    with pytest.raises(TypeError, match="bcrypt_rounds"):
        KdfLimits(bcrypt_rounds="16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pbkdf2_iterations"):
        KdfLimits(pbkdf2_iterations=-1)
    with SecureBytes(b"-----BEGIN PRIVATE KEY-----\n") as data, pytest.raises(TypeError):
        crypto.load_private_key(data, kdf_limits={"bcrypt_rounds": 16})  # type: ignore[arg-type]


# -- encrypted PKCS#8 whose cost cannot be read is refused, not handed on ---------------------


def pem(label: bytes, der: bytes, headers: bytes = b"") -> bytes:
    body = base64.encodebytes(der)
    return b"-----BEGIN %s-----\n%s%s-----END %s-----\n" % (label, headers, body, label)


def test_encrypted_pkcs8_whose_cost_cannot_be_read_is_refused(
    tool_files: dict[str, Path],
) -> None:
    real = tool_files["openssl pkcs8 (default: PBKDF2, 2048 iterations)"].read_bytes()
    lines = real.splitlines()
    der = base64.b64decode(b"".join(lines[1:-1]))
    tree = derbytes.tree(der)
    info: Any = tree[0][1]
    unknown_scheme = [(info[0][0], [(0x06, bytes.fromhex("2a864886f70d01050e")), info[0][1][1]]),
                      info[1]]
    kdf: Any = info[0][1][1][1][0][1]
    kdf_parameters: Any = kdf[1][1]
    damaged = [  # what is refused, and a word of the message
        (
            pem(b"ENCRYPTED PRIVATE KEY", derbytes.from_tree([(0x30, unknown_scheme)])),
            "does not know",
        ),
        (pem(b"ENCRYPTED PRIVATE KEY", der, b"Proc-Type: 4,ENCRYPTED\n\n"), "header"),
        (pem(b"ENCRYPTED PRIVATE KEY", der[:40]), "not valid DER"),
    ]
    kdf[0] = (0x06, bytes.fromhex("2a864886f70d0105ff"))  # a KDF that is not PBKDF2 or scrypt
    damaged.append((pem(b"ENCRYPTED PRIVATE KEY", derbytes.from_tree(tree)), "does not know"))
    kdf[0] = (0x06, bytes.fromhex("2a864886f70d01050c"))
    kdf_parameters[1] = (0x02, b"\x00\x08\x00")  # not minimal DER
    damaged.append((derbytes.from_tree(tree), "not valid DER"))
    kdf_parameters[1] = (0x02, b"\xf8\x00")  # negative: a count never is
    damaged.append((derbytes.from_tree(tree), "not valid DER"))
    kdf_parameters[1] = (0x02, b"\x08\x00")
    kdf_parameters.insert(2, (0x02, b"\x10\x00"))  # keyLength 4096
    damaged.append((derbytes.from_tree(tree), "4096-byte key"))
    for data, word in damaged:
        with SecureBytes(data) as source, pytest.raises(KeyFormatError, match=word) as raised:
            crypto.load_private_key(source, PASSWORD.encode())
        assert not isinstance(raised.value, KdfLimitError)
        assert_unchained(raised.value)


def test_what_cryptography_raises_underneath_is_a_key_format_error() -> None:
    # A PKCS#8 key of an algorithm cryptography does not know: it raises UnsupportedAlgorithm,
    # which reaches the caller as a KeyFormatError (a ValueError, a SecureMemoryError).
    unknown_algorithm = bytes.fromhex("3010020100300506032a0304040400000000")
    with SecureBytes(unknown_algorithm) as data, pytest.raises(KeyFormatError) as raised:
        crypto.load_private_key(data)
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, SecureMemoryError)
    assert "DER, PKCS#8" in str(raised.value)
    assert_unchained(raised.value)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(iterations=st.one_of(st.integers(0, 4096), st.integers(0, 2**127 - 1)))
def test_the_limit_compares_the_count_the_file_holds(
    tool_files: dict[str, Path], iterations: int
) -> None:
    # Any count, of any length up to 16 bytes: above the limit refused, at or below it tried
    # (and then the real file's 2048 loads; another count derives another key, which fails).
    source = tool_files["openssl pkcs8 (default: PBKDF2, 2048 iterations)"]
    limits = KdfLimits(pbkdf2_iterations=3000)
    with SecureBytes(pkcs8_with(source, 1, iterations)) as data:
        try:
            crypto.load_private_key(data, PASSWORD.encode(), kdf_limits=limits)
        except KdfLimitError as error:
            assert iterations > 3000 and f"pbkdf2_iterations={iterations}," in str(error)
        except KeyFormatError:
            assert iterations <= 3000 and iterations != 2048
        else:
            assert iterations == 2048
