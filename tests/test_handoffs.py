"""Every hand-off of a secret to another library, counted: docs/other-libraries.md.

Each case in tests/handoff_cases.py runs in a fresh interpreter (PYTHONHASHSEED=0, so the heap
is laid out the same way every run) and reports how many copies of a marker a scan of that
process finds outside locked memory. The counts are asserted exactly: a library release that
makes one copy more or one copy fewer fails here, with the case, the moment and both numbers,
and the page's table changes with it. Measured the same on cryptography 47, 48, 49 and 50
(CPython 3.11, OpenSSL 3, Linux x86-64); a count that comes to differ by release goes into a
per-release entry.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from securemem import SecureBytes
from tests.conftest import REPO, run_python
from tests.handoff_cases import CASES, MAKE_KEYS, Counts

# What each hand-off leaves: copies of the secret (or of its text) outside locked memory.
EXPECTED: dict[str, Counts] = {
    # hashlib keeps an input shorter than a block in its context until it is freed.
    "hashlib.sha256": {"alive": 1, "after": 0},
    "hashlib.sha256_whole_block": {"alive": 0, "after": 0},
    # The derived key comes back as bytes: one copy securemem cannot wipe.
    "hashlib.pbkdf2_hmac": {"password_after": 0, "derived_alive": 1},
    "hmac.digest": {"after": 0},
    "hmac.new_from_bytearray": {"alive": 0, "after": 0},
    "cryptography.hmac": {"alive": 0, "after": 0},
    # OpenSSL's key schedule (encrypt and decrypt context) while the AEAD lives.
    "cryptography.aesgcm": {"alive": 2, "after": 0, "plaintext": 0},
    "cryptography.chacha20poly1305": {"alive": 2, "after": 0, "plaintext": 0},
    "cryptography.hkdf": {"password": 0, "derived": 0},
    "cryptography.pbkdf2hmac": {"password": 0, "derived": 0},
    "cryptography.scrypt": {"password": 0, "derived": 0},
    # Argon2 in OpenSSL frees a buffer holding the password without wiping it.
    "cryptography.argon2id": {"password": 1, "derived": 0},
    # Fernet keeps both key halves as bytes attributes and returns the plaintext as bytes.
    "cryptography.fernet": {
        "signing_half_in_fernet": 1,
        "encryption_half_in_fernet": 1,
        "plaintext_returned": 1,
    },
    "securemem.fernet": {
        "key_alive": 0,
        "signing_half_alive": 0,
        "encryption_half_alive": 0,
        "plaintext_alive": 0,
        "key_after": 0,
        "signing_half_after": 0,
        "encryption_half_after": 0,
        "plaintext_after": 0,
    },
    "cryptography.load_pem": {"alive": 2, "after": 1},
    "securemem.load_private_key": {"alive": 1, "after": 0},
    "ssl.key_file": {"key_alive": 3, "pem_text_alive": 1, "key_after": 2, "pem_text_after": 1},
    "ssl.secret_file": {
        "key_alive": 3,
        "pem_text_alive": 1,
        "key_after": 2,
        "pem_text_after": 1,
    },
    # PyNaCl's SigningKey keeps the seed, and the seed + public key, as bytes attributes.
    "paramiko.ed25519_from_private_key": {"in_the_key_object": 2},
    # Decoded in Python objects (freed, not counted); OpenSSL's BIGNUMs while the key lives.
    "paramiko.rsa_from_private_key": {"little_endian_alive": 2, "little_endian_after": 0},
    "paramiko.rsa_from_key_object": {
        "big_endian_alive": 0,
        "little_endian_alive": 2,
        "text_alive": 0,
        "big_endian_after": 0,
        "little_endian_after": 0,
        "text_after": 0,
    },
    "paramiko.ecdsa_from_key_object": {
        "big_endian_alive": 0,
        "little_endian_alive": 1,
        "text_alive": 0,
        "big_endian_after": 0,
        "little_endian_after": 0,
        "text_after": 0,
    },
    "os.write": {"after": 0},
    "socket.sendall": {"after": 0},
    "ssl.sendall_recv_into": {"connection_alive": 0, "after_close": 0},
    # The C environment block on the stack (never freed, only unlinked by del) and Python's
    # bytes in os.environ; the stdlib decoder's bytes while it is referenced.
    "env.from_hex": {
        "environ_block": 1,
        "python_text": 1,
        "decoded": 0,
        "environ_block_after_del": 1,
        "decoded_after": 0,
    },
    "env.from_base64": {
        "environ_block": 1,
        "python_text": 1,
        "decoded": 0,
        "environ_block_after_del": 1,
        "decoded_after": 0,
    },
    "env.bytes_fromhex": {
        "environ_block": 1,
        "python_text": 1,
        "decoded": 1,
        "environ_block_after_del": 1,
    },
    # The document and the value, both referenced; freed copies are not counted (see inside()).
    "json.from_hex": {"text_alive": 2, "decoded": 0, "decoded_after": 0},
    "file.from_hex": {"text": 0, "decoded": 0},
    "json.bytes_fromhex": {"text_alive": 2, "decoded": 1},
}


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keys, a self-signed certificate and a configuration secret, made in another process."""
    keys = tmp_path_factory.mktemp("handoff-keys")
    made = run_python(MAKE_KEYS, str(keys))
    assert made.returncode == 0, made.stderr
    return keys


def measure(case: str, keys: Path) -> Counts:
    # Freed memory is reused or not depending on what was allocated before: the same
    # environment, working directory and hash seed on every run and machine keep that fixed.
    environment = {"PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0", "LC_ALL": "C.UTF-8"}
    if case.startswith("env."):
        with SecureBytes.from_file(keys / "env.raw") as raw:
            # Only the child is scanned; this process hands it the text it would find.
            environment["SECRET_HEX"] = raw.view().hex()
            environment["SECRET_B64"] = base64.b64encode(raw.view()).decode("ascii")
    result = subprocess.run(
        [sys.executable, "-m", "tests.handoff_cases", case, "."],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        cwd=keys,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    counts: Counts = json.loads(result.stdout.strip().splitlines()[-1])
    return counts


def needs(case: str) -> None:
    if case.startswith("paramiko."):
        pytest.importorskip("paramiko")
    if case.startswith("cryptography.") or case.startswith("securemem."):
        pytest.importorskip("cryptography")


def test_every_case_has_an_expectation() -> None:
    assert set(EXPECTED) == set(CASES)


@pytest.mark.parametrize("case", list(EXPECTED))
def test_copies_left_by(case: str, key_dir: Path) -> None:
    needs(case)
    counts = measure(case, key_dir)
    changed = {
        moment: f"expected {EXPECTED[case][moment]}, found {counts.get(moment)}"
        for moment in EXPECTED[case]
        if counts.get(moment) != EXPECTED[case][moment]
    }
    assert not changed and set(counts) == set(EXPECTED[case]), (
        f"{case}: the copies changed ({changed}); if a library release changed them, update "
        "EXPECTED and the table in docs/other-libraries.md"
    )


def test_the_scan_in_a_child_sees_a_copy_that_exists(key_dir: Path) -> None:
    # The control for every zero above: the stdlib hex decoder's bytes is found.
    counts = measure("env.bytes_fromhex", key_dir)
    assert counts["decoded"] == 1



def test_the_page_names_every_case_and_only_tests_that_exist() -> None:
    import re

    page = (REPO / "docs" / "other-libraries.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`\[([a-z0-9_.]+)\]`", page))
    named.discard("case")  # the explanation of the notation
    assert named == set(EXPECTED), (
        f"docs/other-libraries.md and EXPECTED disagree: page only {named - set(EXPECTED)}, "
        f"tests only {set(EXPECTED) - named}"
    )
    for path, name in re.findall(r"`(tests/[a-z_]+\.py)::(test_[a-z0-9_]+)`", page):
        source = (REPO / path).read_text(encoding="utf-8")
        assert f"def {name}(" in source, f"the page names {path}::{name}, which does not exist"
