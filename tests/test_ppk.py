"""PuTTY .ppk files that are damaged, tampered with or hostile, made from real puttygen output.

The files that load (every key type, v2 and v3, plain and with a passphrase) are in
tests/test_keys.py with the other formats; here each refusal is checked: what error, that it
names PuTTY, and that no key or passphrase byte is in it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("cryptography")

from cryptography.hazmat.primitives.asymmetric import ed25519

from securemem import SecureBytes, crypto
from securemem.crypto import KdfLimitError, KdfLimits, KeyFormatError
from tests.test_keys import assert_holds_no_key_bytes, assert_unchained

PASSPHRASE = b"correct horse 1313"


def puttygen(directory: Path, name: str, *options: str, passphrase: bytes = b"") -> bytes:
    passfile = directory / f"{name}.pass"
    passfile.write_bytes(passphrase)
    made = subprocess.run(
        ["puttygen", "-q", "-t", "ed25519", "-C", "a comment", "-o", str(directory / name),
         "--new-passphrase", str(passfile), *options],
        capture_output=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    return (directory / name).read_bytes()


@pytest.fixture(scope="module")
def ppk(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    directory = tmp_path_factory.mktemp("ppk")
    return {
        "v3-plain": puttygen(directory, "v3-plain"),
        "v2-plain": puttygen(directory, "v2-plain", "--ppk-param", "version=2"),
        "v3": puttygen(directory, "v3", passphrase=PASSPHRASE),
        "v2": puttygen(directory, "v2", "--ppk-param", "version=2", passphrase=PASSPHRASE),
    }


def load(data: bytes, password: bytes | None = None, **options: object) -> object:
    with SecureBytes(data) as secret:
        return crypto.load_private_key(secret, password, **options)  # type: ignore[arg-type]


def refused(
    data: bytes,
    error: type[Exception] | tuple[type[Exception], ...],
    password: bytes | None = None, **options: object
) -> Exception:
    with pytest.raises(error) as raised:
        load(data, password, **options)
    assert_holds_no_key_bytes(raised.value, data, PASSPHRASE)
    assert_unchained(raised.value)
    return raised.value


def replace_line(data: bytes, name: bytes, value: bytes) -> bytes:
    line = rb"(?m)^" + re.escape(name) + rb": [^\n]*$"
    changed, count = re.subn(line, name + b": " + value, data)
    assert count == 1, name
    return changed


@pytest.mark.parametrize("name", ["v3", "v2"])
def test_a_wrong_passphrase_names_putty_and_is_caught_by_the_mac(
    ppk: dict[str, bytes], name: str
) -> None:
    assert isinstance(load(ppk[name], PASSPHRASE), ed25519.Ed25519PrivateKey)
    error = refused(ppk[name], KeyFormatError, PASSPHRASE + b"!")
    assert "wrong passphrase for the PuTTY key" in str(error)
    assert f"PuTTY .ppk {name}, ssh-ed25519, passphrase-protected" in str(error)


@pytest.mark.parametrize("name", ["v3-plain", "v2-plain", "v3", "v2"])
@pytest.mark.parametrize("field", [b"Private-MAC", b"Comment", b"Public-Lines"])
def test_any_change_the_mac_covers_is_refused(
    ppk: dict[str, bytes], name: str, field: bytes
) -> None:
    # The MAC covers the header fields, the public key and the private key: one changed
    # character anywhere is refused before the private key is used.
    data = ppk[name]
    line = re.search(rb"(?m)^" + field + rb": .*\n", data)
    assert line is not None
    # A character inside the value (MAC, comment) or inside the first public base64 line.
    at = line.end() + 5 if field == b"Public-Lines" else line.end() - 3
    old = data[at : at + 1].lower()
    if field == b"Private-MAC":
        new = b"0" if old != b"0" else b"1"  # a hex digit of another value
    else:
        new = b"B" if old != b"b" else b"C"
    flipped = data[:at] + new + data[at + 1 :]
    password = PASSPHRASE if "plain" not in name else None
    error = refused(flipped, KeyFormatError, password)
    assert "PuTTY" in str(error)
    if "plain" in name:
        assert "MAC does not match" in str(error)


def test_a_changed_private_blob_is_refused_by_the_mac(ppk: dict[str, bytes]) -> None:
    data = ppk["v3-plain"]
    private = data.index(b"Private-Lines: 1\n") + len(b"Private-Lines: 1\n")
    at = private + 20  # inside the seed
    flipped = data[:at] + (b"A" if data[at : at + 1] != b"A" else b"B") + data[at + 1 :]
    error = refused(flipped, KeyFormatError)
    assert "MAC does not match" in str(error)


@pytest.mark.parametrize("name", ["v3-plain", "v2-plain", "v2", "v3"])
def test_every_truncation_is_a_clear_error(ppk: dict[str, bytes], name: str) -> None:
    data = ppk[name]
    password = PASSPHRASE if "plain" not in name else None
    mac_line = data.index(b"Private-MAC: ")
    # Every cut of a plain file; for encrypted ones (each cut past the Argon2 lines costs a
    # derivation) the line starts and a few cuts inside the MAC.
    if "plain" in name:
        cuts = list(range(len(data) - 1))
    else:
        lines = [m.start() for m in re.finditer(rb"(?m)^", data[:-1])]
        cuts = [*lines, mac_line + 20, len(data) - 3]
    for cut in cuts:
        with pytest.raises((ValueError, TypeError)) as raised:
            load(data[:cut], password)
        if cut >= len(b"PuTTY-User-Key-File-"):
            assert isinstance(raised.value, KeyFormatError), (cut, raised.value)
            assert "PuTTY" in str(raised.value), cut
        assert_holds_no_key_bytes(raised.value, data, PASSPHRASE)
        assert_unchained(raised.value)


@pytest.mark.parametrize(
    ("parameter", "field"),
    [
        ("argon2_memory_kib", b"Argon2-Memory"),
        ("argon2_passes", b"Argon2-Passes"),
        ("argon2_lanes", b"Argon2-Parallelism"),
    ],
)
def test_a_hostile_argon2_cost_is_refused_before_deriving(
    ppk: dict[str, bytes], parameter: str, field: bytes
) -> None:
    # 2**31 KiB is 2 TiB of memory, 2**31 passes days of CPU: deriving would not return.
    hostile = replace_line(ppk["v3"], field, str(2**31).encode())
    error = refused(hostile, KdfLimitError, PASSPHRASE)
    assert f"{parameter}={2**31}" in str(error) and "PuTTY" in str(error)


def test_the_argon2_limits_are_the_callers(ppk: dict[str, bytes]) -> None:
    data = ppk["v3"]
    passes = int(re.search(rb"Argon2-Passes: (\d+)", data).group(1))  # type: ignore[union-attr]
    refused(data, KdfLimitError, PASSPHRASE, kdf_limits=KdfLimits(argon2_passes=passes - 1))
    key = load(data, PASSPHRASE, kdf_limits=KdfLimits(argon2_passes=passes))
    assert isinstance(key, ed25519.Ed25519PrivateKey)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (b"Argon2-Parallelism", b"0"),
        (b"Argon2-Memory", b"1"),
        (b"Argon2-Salt", b"zz"),
        (b"Argon2-Passes", b"-1"),
        (b"Private-MAC", b"not hex"),
        (b"Encryption", b"aes256-cbc-but-longer"),
    ],
)
def test_bad_header_values_are_refused(ppk: dict[str, bytes], field: bytes, value: bytes) -> None:
    error = refused(
        replace_line(ppk["v3"], field, value), KeyFormatError, PASSPHRASE
    )
    assert "PuTTY" in str(error)


def test_other_format_versions_and_kdfs_are_refused_saying_what_is_read(
    ppk: dict[str, bytes],
) -> None:
    old = ppk["v2-plain"].replace(b"PuTTY-User-Key-File-2:", b"PuTTY-User-Key-File-1:")
    assert "only 2 and 3" in str(refused(old, KeyFormatError))
    scrypt = replace_line(ppk["v3"], b"Key-Derivation", b"scrypt")
    assert "Argon2id, Argon2i and Argon2d" in str(refused(scrypt, KeyFormatError, PASSPHRASE))


def test_passwords_must_match_the_protection(ppk: dict[str, bytes]) -> None:
    assert "passphrase-protected" in str(refused(ppk["v3"], TypeError))
    assert "not passphrase-protected" in str(refused(ppk["v2-plain"], TypeError, PASSPHRASE))


def test_only_auto_detects_a_ppk(ppk: dict[str, bytes]) -> None:
    assert "encoding='auto'" in str(refused(ppk["v3-plain"], ValueError, encoding="pem"))


def test_crlf_and_cr_line_ends_load(ppk: dict[str, bytes]) -> None:
    # PuTTY writes LF and reads CR+LF and a lone CR too (a file moved through other systems).
    for ending in (b"\r\n", b"\r"):
        for name, password in (("v3-plain", None), ("v2", PASSPHRASE)):
            key = load(ppk[name].replace(b"\n", ending), password)
            assert isinstance(key, ed25519.Ed25519PrivateKey), (name, ending)


EDIT = st.tuples(st.integers(0, 10_000), st.integers(0, 255))  # (where, the new byte)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(edits=st.lists(EDIT, min_size=1, max_size=4))
def test_any_damage_is_refused_or_changes_nothing(
    ppk: dict[str, bytes], edits: list[tuple[int, int]]
) -> None:
    # Bytes changed anywhere in a plain v2 file (its MAC is keyed by a constant: no
    # derivation per example): the load gives the same key (a change that does not matter,
    # such as the case of a MAC hex digit) or a documented error, never another exception.
    original = ppk["v2-plain"]
    data = bytearray(original)
    for at, value in edits:
        data[at % len(data)] = value
    expected = load(original)
    assert isinstance(expected, ed25519.Ed25519PrivateKey)
    try:
        key = load(bytes(data))
    except (KeyFormatError, TypeError) as error:
        assert_holds_no_key_bytes(error, original)
        assert_unchained(error)
    else:
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        assert key.private_bytes_raw() == expected.private_bytes_raw()
