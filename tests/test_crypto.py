"""securemem.crypto against the real pyca/cryptography, with memory scans for stray copies.

What securemem promises here needs nothing of cryptography: no copy on the stack or in a
closed SecureBytes, none once the AEAD is freed, the output wiped on InvalidTag. The copies
cryptography and OpenSSL keep meanwhile (key schedules, Argon2's freed password buffer) are
bounded in tests/copy_bounds.py and asserted by tests/test_handoffs.py in a fresh process;
``python -m benchmarks.audit`` prints how many the installed releases keep.
"""

from __future__ import annotations

import gc
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

pytest.importorskip("cryptography")

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import aead as algorithms
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from securemem import SecureBytes, _procfs, crypto
from securemem._scrub import scrub_after_native
from tests import stackview
from tests.conftest import REPO
from tests.memscan import Marker, assert_only_in_and_gone_after_close

NONCE = b"\x01" * 12
KEY_SIZES: dict[type[Any], int] = {
    algorithms.AESGCM: 32,
    algorithms.AESOCB3: 32,
    algorithms.AESGCMSIV: 32,
    algorithms.AESCCM: 16,
    algorithms.AESSIV: 64,
    algorithms.ChaCha20Poly1305: 32,
}


def algorithm_name(cls: type[Any]) -> str:
    return cls.__name__


def released() -> None:
    """Let cryptography's objects go now (their OpenSSL contexts wipe themselves on free)."""
    gc.collect()


def assert_nowhere(marker: Marker) -> None:
    result = marker.scan()
    assert result.found == [], f"copies of the secret remain at {result.describe()}"


def where(addresses: list[int]) -> tuple[int, int, int]:
    """(copies in locked memory, on the main thread's stack, anywhere else)."""
    locked = stack = 0
    for address in addresses:
        mapping = _procfs.mapping_at(address)
        if mapping is not None and mapping.locked:
            locked += 1
        elif stackview.mapping_name(address) == "[stack]":
            stack += 1
    return locked, stack, len(addresses) - locked - stack


def key_markers(markers: ExitStack, algorithm: type[Any]) -> list[Marker]:
    """The AEAD's key as markers of at most 32 bytes. AES-SIV splits its 64-byte key into two
    32-byte AES keys that OpenSSL stores apart, so a 64-byte needle would never match: each
    half is a marker of its own."""
    size = KEY_SIZES[algorithm]
    return [markers.enter_context(Marker(min(size, 32))) for _ in range(max(1, size // 32))]


def key_from(pieces: list[Marker]) -> SecureBytes:
    key = SecureBytes(sum(piece.length for piece in pieces))
    with key.view() as view:
        offset = 0
        for piece in pieces:
            view[offset : offset + piece.length] = piece.view()
            offset += piece.length
    return key


# -- AEAD keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", list(KEY_SIZES), ids=algorithm_name)
def test_aead_key_leaves_no_copy_once_the_aead_is_freed(algorithm: type[Any]) -> None:
    # While the AEAD lives: OpenSSL's key schedules in its (unlocked) heap (their bound is
    # tests/test_handoffs.py's, case aead.<algorithm>) and, for the AEADs that keep a
    # reference to the key buffer, crypto.aead()'s private locked copy: at most that one.
    # Once the AEAD is freed: no copy anywhere (the stack and the registers included: crypto
    # scrubs them after each call).
    with ExitStack() as markers:
        pieces = key_markers(markers, algorithm)
        key = key_from(pieces)
        cipher = crypto.aead(algorithm, key)
        key.close()
        with SecureBytes(b"x" * 40) as plaintext:
            ciphertext = crypto.encrypt(cipher, NONCE, plaintext)
        crypto.decrypt(cipher, NONCE, ciphertext).close()
        for piece in pieces:
            result = piece.scan()
            locked, on_stack, _ = where(result.found)
            assert on_stack == 0, f"the key is on the stack: {result.describe()}"
            assert locked <= 1, f"more locked copies than the AEAD's own: {result.describe()}"
        del cipher
        released()
        for piece in pieces:
            assert_nowhere(piece)


def test_aesccm_reads_the_key_buffer_on_every_call_so_aead_gives_it_a_private_copy() -> None:
    reference = algorithms.AESCCM(b"\x07" * 16)
    expected = reference.encrypt(NONCE, b"message", None)
    # What cryptography does with a borrowed buffer: closing the key wipes it to zeros, and
    # AESCCM silently encrypts under the all-zero key from then on.
    key = SecureBytes(b"\x07" * 16)
    borrowed = algorithms.AESCCM(key.view())
    key.close()
    assert borrowed.encrypt(NONCE, b"message", None) == algorithms.AESCCM(
        bytes(16)
    ).encrypt(NONCE, b"message", None)
    # Through crypto.aead the AEAD owns a locked copy: closing the caller's key is safe.
    key = SecureBytes(b"\x07" * 16)
    cipher = crypto.aead(algorithms.AESCCM, key)
    key.close()
    assert crypto.encrypt(cipher, NONCE, SecureBytes(b"message")) == expected


def test_aead_takes_constructor_options_and_refuses_a_bytes_key() -> None:
    with SecureBytes.random(16) as key:
        cipher = crypto.aead(algorithms.AESCCM, key, tag_length=8)
        message = b"a message longer than a tag"
        ciphertext = crypto.encrypt(cipher, NONCE, message, tag_length=8)
        assert len(ciphertext) == len(message) + 8
        with crypto.decrypt(cipher, NONCE, ciphertext, tag_length=8) as plaintext:
            assert plaintext == message
        with pytest.raises(ValueError, match="tag_length=N"):
            crypto.decrypt(cipher, NONCE, ciphertext)
    with pytest.raises(TypeError, match="SecureBytes"):
        crypto.aead(algorithms.AESGCM, b"k" * 32)  # type: ignore[arg-type]


# -- decrypt / encrypt --------------------------------------------------------------------


def round_trip(algorithm: type[Any], plaintext_marker: Marker) -> None:
    with SecureBytes.random(KEY_SIZES[algorithm]) as key:
        cipher = crypto.aead(algorithm, key)
    with SecureBytes(plaintext_marker.view()) as plaintext:
        ciphertext = crypto.encrypt(cipher, NONCE, plaintext, b"header")
    decrypted = crypto.decrypt(cipher, NONCE, ciphertext, b"header")
    assert isinstance(decrypted, SecureBytes)
    assert decrypted == plaintext_marker.view()
    decrypted.close()
    del cipher
    released()


@pytest.mark.parametrize("algorithm", list(KEY_SIZES), ids=algorithm_name)
def test_decrypt_leaves_no_copy_of_the_plaintext(algorithm: type[Any]) -> None:
    # 45 bytes: not a multiple of the AES block, so OCB's partial-block path runs too.
    with Marker(45) as plaintext_marker:
        round_trip(algorithm, plaintext_marker)
        assert_nowhere(plaintext_marker)


def test_aessiv_takes_the_nonce_as_the_last_associated_data_item() -> None:
    with SecureBytes.random(64) as key:
        cipher = crypto.aead(algorithms.AESSIV, key)
        ciphertext = crypto.encrypt(cipher, b"nonce", SecureBytes(b"secret"), [b"a", b"b"])
        assert bytes(ciphertext) == cipher.encrypt(b"secret", [b"a", b"b", b"nonce"])
        with crypto.decrypt(cipher, b"nonce", ciphertext, [b"a", b"b"]) as plaintext:
            assert plaintext == b"secret"
        with pytest.raises(InvalidTag):
            crypto.decrypt(cipher, None, ciphertext, [b"a", b"b"])


def test_aessiv_takes_one_memoryview_as_one_associated_data_item() -> None:
    # A memoryview is a registered Sequence: it must not be split into its bytes.
    with SecureBytes.random(64) as key:
        cipher = crypto.aead(algorithms.AESSIV, key)
        ciphertext = crypto.encrypt(cipher, None, SecureBytes(b"secret"), memoryview(b"ad"))
        assert bytes(ciphertext) == cipher.encrypt(b"secret", [b"ad"])
        with crypto.decrypt(cipher, None, ciphertext, memoryview(b"ad")) as plaintext:
            assert plaintext == b"secret"


def tampered(ciphertext: bytearray) -> bytes:
    forged = bytearray(ciphertext)
    forged[-1] ^= 1  # flip a tag bit: the ciphertext itself still decrypts to the plaintext
    return bytes(forged)


def test_invalid_tag_wipes_the_output_and_raises() -> None:
    # Whatever cryptography writes into the output before it raises (the unauthenticated
    # plaintext, or nothing), securemem wipes all of it: the output starts full of 0xff,
    # so a decrypt_into that did not wipe leaves bytes that are not zero.
    message = b"attack at dawn, bring the secret"
    with SecureBytes.random(32) as key:
        cipher = crypto.aead(algorithms.AESGCM, key)
    forged = tampered(crypto.encrypt(cipher, NONCE, message))
    with SecureBytes(b"\xff" * len(message)) as out:
        with pytest.raises(InvalidTag):
            crypto.decrypt_into(cipher, NONCE, forged, None, out)
        assert out == bytes(len(message)), "the output was not wiped on InvalidTag"


def test_invalid_tag_in_decrypt_leaves_no_copy_of_the_plaintext() -> None:
    with Marker(40) as plaintext_marker:
        with SecureBytes.random(32) as key:
            cipher = crypto.aead(algorithms.AESGCM, key)
        with SecureBytes(plaintext_marker.view()) as plaintext:
            forged = tampered(crypto.encrypt(cipher, NONCE, plaintext))
        with pytest.raises(InvalidTag):
            crypto.decrypt(cipher, NONCE, forged)
        del cipher
        released()
        assert_nowhere(plaintext_marker)
        with pytest.raises(InvalidTag):
            crypto.decrypt(algorithms.AESGCM(bytes(32)), NONCE, b"short")


# -- key derivation -----------------------------------------------------------------------

KDFS: dict[str, Callable[[], Any]] = {
    "HKDF": lambda: HKDF(hashes.SHA256(), 32, b"salt", b"info"),
    "PBKDF2HMAC": lambda: PBKDF2HMAC(hashes.SHA256(), 32, b"s" * 16, 1000),
    "Scrypt": lambda: Scrypt(b"s" * 16, 32, 1024, 8, 1),
    "Argon2id": lambda: Argon2id(
        salt=b"s" * 16, length=32, iterations=1, lanes=1, memory_cost=64
    ),
}


@pytest.mark.parametrize("name", KDFS)
def test_derive_leaves_no_copy_of_the_key_material(name: str) -> None:
    # No copy locked or on the stack. What OpenSSL leaves in its heap (Argon2id frees a
    # buffer holding the password without wiping it) is bounded in tests/copy_bounds.py and
    # asserted by tests/test_handoffs.py, case kdf.<name>, in a fresh process.
    with Marker(24) as password_marker:
        kdf = KDFS[name]()
        with SecureBytes(password_marker.view()) as password:
            derived = crypto.derive(kdf, password, 32)
        assert isinstance(derived, SecureBytes)
        with SecureBytes(password_marker.view()) as password:
            # Same result as the plain API (whose bytes result is a copy of the derived key on
            # purpose: only the input is checked here).
            assert derived == KDFS[name]().derive(password.view())
        derived.close()
        del kdf
        released()
        result = password_marker.scan()
        locked, on_stack, _ = where(result.found)
        assert locked == 0, f"a closed SecureBytes still holds the password: {result.describe()}"
        assert on_stack == 0, f"the password is on the stack: {result.describe()}"


@pytest.mark.parametrize("name", KDFS)
def test_derive_writes_the_derived_key_only_into_locked_memory(name: str) -> None:
    with Marker(24) as password_marker, SecureBytes(password_marker.view()) as password:
        derived = crypto.derive(KDFS[name](), password, 32)
    assert_only_in_and_gone_after_close(derived)


def test_derive_explains_a_wrong_length() -> None:
    with SecureBytes(b"password") as password:
        with pytest.raises(ValueError, match="length=16 does not match the KDF"):
            crypto.derive(KDFS["HKDF"](), password, 16)
        with pytest.raises(ValueError, match="positive int"):
            crypto.derive(KDFS["HKDF"](), password, 0)


# -- what native code leaves on the stack and in the registers ----------------------------
#
# securemem.crypto calls sm_scrub_after_native after every call into cryptography: it zeroes
# the vector registers and wipes the stack the call used (securemem/_scrub.py). The stack is
# read from a second thread while the calling thread blocks (tests/stackview.py): a scan run
# on the calling thread would overwrite, with its own frames, what lies a few KiB deep. The
# control is a copy the tests' own native helper leaves about 3 KiB deep (deeper than the
# partial block cryptography leaves, when it leaves one): the reader must find it, and must
# not once the scrub has run. What cryptography alone leaves, per release, is what
# ``python -m benchmarks.audit`` reports (cases stack.<algorithm>, registers.<algorithm>).

needs_stackview = pytest.mark.skipif(
    not stackview.supported(), reason="reads the stack through /proc on x86-64/AArch64 Linux"
)
PARTIAL = 15  # the last, partial block of a 47-byte message: 2 AES blocks and 15 bytes


@pytest.fixture
def partial_block() -> Iterator[tuple[Marker, SecureBytes]]:
    """A 47-byte plaintext whose last 15 bytes are a marker."""
    with Marker(PARTIAL) as marker, SecureBytes(32 + PARTIAL) as plaintext:
        with plaintext.view() as view:
            view[:32] = os.urandom(32)
            view[32:] = marker.view()
        yield marker, plaintext


@needs_stackview
def test_the_stack_reader_finds_a_leftover_and_the_scrub_removes_it() -> None:
    with Marker(PARTIAL) as marker, marker.view() as needle:
        left = stackview.stack_depths_after(lambda: stackview.leave_on_stack(needle), needle)

        def leave_then_scrub() -> None:
            stackview.leave_on_stack(needle)
            scrub_after_native()

        scrubbed = stackview.stack_depths_after(leave_then_scrub, needle)
    assert len(left) == 1, f"the reader did not find the copy the test left: {left}"
    assert scrubbed == [], f"the scrub left the copy {scrubbed} bytes deep"


@needs_stackview
@pytest.mark.parametrize("algorithm", list(KEY_SIZES), ids=algorithm_name)
def test_encrypt_and_decrypt_leave_no_plaintext_on_the_stack(
    algorithm: type[Any], partial_block: tuple[Marker, SecureBytes]
) -> None:
    marker, plaintext = partial_block
    with SecureBytes.random(KEY_SIZES[algorithm]) as key:
        cipher = crypto.aead(algorithm, key)
    ciphertext = bytes(crypto.encrypt(cipher, NONCE, plaintext))
    forged = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
    with SecureBytes(len(plaintext)) as out:

        def decrypt_forged() -> None:
            with pytest.raises(InvalidTag):
                crypto.decrypt_into(cipher, NONCE, forged, None, out)

        with marker.view() as needle:  # released before any assertion can fail
            # The control, in this very state: a copy the test leaves is found.
            control = stackview.stack_depths_after(
                lambda: stackview.leave_on_stack(needle), needle
            )
            # Each call starts clean: the control's copy (and making the plaintext) must
            # not be counted against the call.
            through_encrypt = stackview.stack_depths_after(
                lambda: crypto.encrypt(cipher, NONCE, plaintext), needle, clean_start=True
            )
            through_decrypt = stackview.stack_depths_after(
                lambda: crypto.decrypt_into(cipher, NONCE, ciphertext, None, out),
                needle,
                clean_start=True,
            )
            through_invalid_tag = stackview.stack_depths_after(
                decrypt_forged, needle, clean_start=True
            )
    assert len(control) == 1, f"the reader did not find the copy the test left: {control}"
    assert through_encrypt == [], f"crypto.encrypt left plaintext {through_encrypt} bytes deep"
    assert through_decrypt == [], f"crypto.decrypt_into left it {through_decrypt} bytes deep"
    assert through_invalid_tag == [], f"InvalidTag left plaintext {through_invalid_tag} deep"


@needs_stackview
@pytest.mark.parametrize("algorithm", list(KEY_SIZES), ids=algorithm_name)
def test_aead_construction_and_use_leave_no_key_on_the_stack(algorithm: type[Any]) -> None:
    with ExitStack() as stack:
        pieces = key_markers(stack, algorithm)
        key = stack.enter_context(key_from(pieces))
        plaintext = stack.enter_context(SecureBytes(b"y" * 47))
        ciphers: list[Any] = []
        for piece in pieces:
            found = stackview.stack_depths_after(
                lambda: ciphers.append(crypto.aead(algorithm, key)), piece.view()
            )
            assert found == [], f"crypto.aead left the key {found} bytes deep"
            found = stackview.stack_depths_after(
                lambda: crypto.encrypt(ciphers[-1], NONCE, plaintext), piece.view()
            )
            assert found == [], f"crypto.encrypt left the key {found} bytes deep"


@needs_stackview
@pytest.mark.parametrize("name", KDFS)
def test_derive_leaves_no_key_material_on_the_stack(name: str) -> None:
    with Marker(24) as password_marker, SecureBytes(password_marker.view()) as password:
        found = stackview.stack_depths_after(
            lambda: crypto.derive(KDFS[name](), password, 32).close(), password_marker.view()
        )
    assert found == [], f"crypto.derive left the password {found} bytes deep"


def test_scrub_is_clamped_to_a_small_thread_stack() -> None:
    # 16 KiB of burn on a 64 KiB thread stack (Python's default minimum is 32 KiB): the wipe
    # is clamped to what lies below, never past the stack's end.
    results: list[bool] = []

    def work() -> None:
        with SecureBytes.random(32) as key, SecureBytes(b"message") as message:
            cipher = crypto.aead(algorithms.AESGCM, key)
            ciphertext = crypto.encrypt(cipher, NONCE, message)
            with crypto.decrypt(cipher, NONCE, ciphertext) as plaintext:
                results.append(plaintext == b"message")

    previous = threading.stack_size(64 * 1024)
    try:
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    finally:
        threading.stack_size(previous)
    assert results == [True]


def test_the_page_of_copies_names_only_tests_that_exist() -> None:
    page = (REPO / "docs" / "secrets-in-and-out.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(?:tests/test_\w+\.py::)?(test_\w+)(?:\[[^\]]*\])?`", page))
    assert named, "docs/secrets-in-and-out.md no longer names its tests"
    sources = "".join(path.read_text(encoding="utf-8") for path in (REPO / "tests").glob("*.py"))
    missing = sorted(name for name in named if f"def {name}(" not in sources)
    assert not missing, f"docs/secrets-in-and-out.md names tests that do not exist: {missing}"
