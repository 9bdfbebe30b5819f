"""Every path a secret takes into another library, each measured by a process scan in a fresh
child: the measurements both tests/test_handoffs.py (which asserts the documented bounds,
tests/copy_bounds.py) and ``python -m benchmarks.audit`` (which prints the counts) run.

Each case puts a marker (tests/memscan.py) through one library call and returns how many
copies of it the scan finds outside locked memory, at named moments ("alive": while the
library's object holds the secret; "after": once everything is dropped and collected).
:func:`measure` runs a case with ``python -m tests.handoff_cases CASE KEYDIR`` in a fresh
interpreter: a fresh heap makes "a freed buffer nobody reused yet" the same on every run, so
a count is the same on every run of the same releases. Cases that read the stack
(``stack.*``, ``registers.*``) also report ``control``: a copy the case left there itself,
which their scan must find.

The key files in KEYDIR are made by :func:`make_keys` in yet another process, so no process
that is scanned ever held a key as ``bytes`` before the call under test.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import hmac
import io
import json
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

from securemem import SecureBytes
from securemem._arena import default_arena
from tests.memscan import Marker

_REPO = Path(__file__).resolve().parent.parent

Counts = dict[str, int]
CASES: dict[str, Callable[[Path], Counts]] = {}

MESSAGE = b"a message that is not secret"
NONCE = b"\x01" * 12
# An Ed25519 PKCS#8 PEM: "-----BEGIN PRIVATE KEY-----\n", then one base64 line whose first 22
# characters encode the fixed PKCS#8 header; characters 24..60 encode only key bits.
PEM_TEXT_SLICE = slice(28 + 24, 28 + 60)
# The fifth body line of an OpenSSH key file (36-byte header line, 76-character lines): the
# base64 of the Ed25519 seed.
OPENSSH_TEXT_SLICE = slice(36 + 77 * 4, 36 + 77 * 4 + 48)
# The sixth body line of a traditional RSA PEM (32-byte header line, 64-character lines).
RSA_TEXT_SLICE = slice(32 + 65 * 5, 32 + 65 * 5 + 48)
# A P-256 PKCS#8 PEM: the private value's base64 starts 48 characters into the body.
EC_TEXT_SLICE = slice(28 + 48, 28 + 64)


def case(function: Callable[[Path], Counts]) -> Callable[[Path], Counts]:
    CASES[function.__name__.removeprefix("case_").replace("__", ".")] = function
    return function


def released() -> None:
    gc.collect()


def outside(marker: Marker) -> int:
    """Copies of the marker outside locked memory (the default arena's regions).

    A copy in locked memory is one securemem holds on purpose (the secret itself, the private
    key copy :func:`securemem.crypto.aead` gives an AEAD): it is wiped on release. The other
    live markers' workspaces are the measurement's own, not copies the code under test made.
    """
    return sum(1 for found in marker.scan().found if not _in_locked_or_marker(found, marker))


def inside(marker: Marker, *objects: bytes | str) -> int:
    """Copies of the marker inside the data of these live ``bytes``/ASCII ``str`` objects.

    For copies a library keeps in Python objects: those are counted exactly, while copies in
    objects already freed are not (whether the allocator reused that memory before the scan
    depends on everything the process allocated since; such counts flip between runs).
    """
    spans = []
    for item in objects:
        start = id(item) + sys.getsizeof(type(item)()) - 1  # CPython: data after the header
        spans.append((start, start + len(item)))
    return sum(1 for found in marker.scan().found if any(lo <= found < hi for lo, hi in spans))


def _in_locked_or_marker(address: int, marker: Marker) -> bool:
    ranges = [(base, base + length) for base, length in default_arena().mapped_ranges()]
    # Other markers' own workspaces (a marker of a whole key holds each of its halves).
    ranges += [o._range for o in gc.get_objects() if isinstance(o, Marker) and o is not marker]
    return any(low <= address < high for low, high in ranges)


def read(keys: Path, name: str) -> SecureBytes:
    return SecureBytes.from_file(keys / name)


def seed_marker(keys: Path) -> Marker:
    with read(keys, "ed25519.seed") as seed:
        return Marker.copy_of(seed.view())


def reversed_marker(secret: SecureBytes) -> Marker:
    """A marker of the secret's bytes in reverse order: how OpenSSL's BIGNUMs (little-endian
    64-bit limbs, least significant first) hold a big-endian number in memory."""
    with SecureBytes(len(secret)) as flipped:
        for index in range(len(secret)):
            flipped[index] = secret[len(secret) - 1 - index]
        return Marker.copy_of(flipped.view())


def text_marker(keys: Path, name: str = "ed25519.pem", where: slice = PEM_TEXT_SLICE) -> Marker:
    """A marker of key-dependent base64 text of a key file."""
    with read(keys, name) as pem:
        return Marker.copy_of(pem.view()[where])


@contextmanager
def secret_marker(length: int = 32) -> Iterator[tuple[Marker, SecureBytes]]:
    with Marker(length) as marker, SecureBytes(marker.view()) as secret:
        yield marker, secret


# -- hashlib ----------------------------------------------------------------------------------


def _hash_counts(length: int) -> Counts:
    with secret_marker(length) as (marker, secret):
        digest = hashlib.sha256(secret.view())
        alive = outside(marker)
        digest.digest()
        del digest
        released()
        return {"alive": alive, "after": outside(marker)}


@case
def case_hashlib__sha256(keys: Path) -> Counts:
    return _hash_counts(32)  # shorter than a block: kept in the context's block buffer


@case
def case_hashlib__sha256_whole_block(keys: Path) -> Counts:
    return _hash_counts(64)  # one whole block: hashed at once, nothing buffered


@case
def case_hashlib__pbkdf2_hmac(keys: Path) -> Counts:
    with secret_marker(24) as (marker, password):
        derived = hashlib.pbkdf2_hmac("sha256", password.view(), b"salt" * 4, 1000)
        with Marker.copy_of(derived) as derived_marker:
            derived_alive = outside(derived_marker)  # the result is a bytes object
            del derived
            released()
            return {"password_after": outside(marker), "derived_alive": derived_alive}


# -- hmac -------------------------------------------------------------------------------------


@case
def case_hmac__digest(keys: Path) -> Counts:
    with secret_marker() as (marker, key):
        hmac.digest(key.view(), MESSAGE, "sha256")
        released()
        return {"after": outside(marker)}


@case
def case_hmac__new_from_bytearray(keys: Path) -> Counts:
    """hmac.new takes only bytes or bytearray: a bytearray copy, wiped right after."""
    with secret_marker() as (marker, key):
        copy = bytearray(key.view())
        mac = hmac.new(copy, MESSAGE, "sha256")
        copy[:] = bytes(len(copy))
        alive = outside(marker)
        mac.digest()
        del mac, copy
        released()
        return {"alive": alive, "after": outside(marker)}


# -- cryptography -----------------------------------------------------------------------------


@case
def case_cryptography__hmac(keys: Path) -> Counts:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import hmac as crypto_hmac

    with secret_marker() as (marker, key):
        mac = crypto_hmac.HMAC(key.view(), hashes.SHA256())
        mac.update(MESSAGE)
        alive = outside(marker)
        mac.finalize()
        del mac
        released()
        return {"alive": alive, "after": outside(marker)}


# The AEADs' key sizes; AES-SIV's 64-byte key is two 32-byte AES keys that OpenSSL stores apart,
# so each half is a needle of its own and a count is the most copies of any one piece.
AEAD_KEY_SIZES = {
    "AESGCM": 32,
    "AESOCB3": 32,
    "AESGCMSIV": 32,
    "AESCCM": 16,
    "AESSIV": 64,
    "ChaCha20Poly1305": 32,
}


def _aead_class(name: str) -> Any:
    from cryptography.hazmat.primitives.ciphers import aead

    return getattr(aead, name)


def _nonce_and_data(name: str) -> tuple[tuple[bytes, ...], list[bytes] | None]:
    """(the arguments before the data, the associated data) of a direct ``*_into`` call that
    matches what securemem.crypto passes (AES-SIV: the nonce as the last associated item)."""
    return ((), [NONCE]) if name == "AESSIV" else ((NONCE,), None)


def _aead_counts(name: str) -> Counts:
    from securemem import crypto

    size = AEAD_KEY_SIZES[name]
    pieces = [Marker(min(size, 32)) for _ in range(max(1, size // 32))]
    with Marker(45) as plaintext_marker:  # 45: not a whole AES block, so partial paths run
        key = SecureBytes(size)
        for index, piece in enumerate(pieces):
            key[index * 32 : index * 32 + piece.length] = piece.view()
        cipher = crypto.aead(_aead_class(name), key)
        key.close()
        alive = max(outside(piece) for piece in pieces)
        with SecureBytes(plaintext_marker.view()) as plaintext:
            ciphertext = crypto.encrypt(cipher, NONCE, plaintext)
        crypto.decrypt(cipher, NONCE, ciphertext).close()
        del cipher
        released()
        counts = {
            "key_alive": alive,
            "key_after": max(outside(piece) for piece in pieces),
            "plaintext": outside(plaintext_marker),
        }
    for piece in pieces:
        piece.close()
    return counts


def _stack_counts(name: str) -> Counts:
    """The last partial block of a 47-byte plaintext on this thread's stack right after a
    call (read from another thread, tests/stackview.py): cryptography called directly, and
    securemem.crypto's encrypt, decrypt and a decrypt that raises InvalidTag. ``control``: a
    copy this case leaves on the stack itself, which the reader must find."""
    from cryptography.exceptions import InvalidTag

    from securemem import crypto
    from tests import stackview

    leading, associated = _nonce_and_data(name)
    with Marker(15) as marker, SecureBytes(47) as plaintext, SecureBytes(47) as out:
        plaintext[32:] = marker.view()
        with SecureBytes.random(AEAD_KEY_SIZES[name]) as key:
            cipher = crypto.aead(_aead_class(name), key)
        ciphertext = bytes(crypto.encrypt(cipher, NONCE, plaintext))
        forged = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])

        def forged_decrypt() -> None:
            with suppress(InvalidTag):
                crypto.decrypt_into(cipher, NONCE, forged, None, out)

        with marker.view() as needle:
            control = stackview.stack_depths_after(lambda: stackview.leave_on_stack(needle), needle)
            alone_encrypt = stackview.stack_depths_after(
                lambda: cipher.encrypt_into(*leading, plaintext.view(), associated, bytearray(63)),
                needle,
                clean_start=True,
            )
            alone_decrypt = stackview.stack_depths_after(
                lambda: cipher.decrypt_into(*leading, ciphertext, associated, out.view()),
                needle,
                clean_start=True,
            )
            through = [
                stackview.stack_depths_after(call, needle, clean_start=True)
                for call in (
                    lambda: crypto.encrypt(cipher, NONCE, plaintext),
                    lambda: crypto.decrypt_into(cipher, NONCE, ciphertext, None, out),
                    forged_decrypt,
                )
            ]
    return {
        "control": len(control),
        "alone_encrypt": len(alone_encrypt),
        "alone_decrypt": len(alone_decrypt),
        "securemem": sum(len(depths) for depths in through),
    }


def _register_counts(name: str, how: str) -> Counts:
    """The AEAD's key (its first 32-byte piece) on the stack after one encryption, in this
    fresh process: OpenSSL may return with round keys in vector registers, and the first
    lazily bound libc call after it (the dynamic linker saves every vector register on the
    stack) writes them there. ``control``: a copy of another needle that this case leaves on
    the stack itself, deeper than the scan's own frames reach, which the scan must find."""
    from securemem import crypto
    from tests import stackview

    size = AEAD_KEY_SIZES[name]
    leading, associated = _nonce_and_data(name)
    with Marker(min(size, 32)) as marker, SecureBytes(size) as key:
        key[: marker.length] = marker.view()
        cipher = crypto.aead(_aead_class(name), key)
        with SecureBytes(b"y" * 47) as plaintext:
            if how == "alone":
                cipher.encrypt_into(*leading, plaintext.view(), associated, bytearray(63))
            else:
                crypto.encrypt(cipher, NONCE, plaintext)
            stack = _on_the_stack(marker)
        with Marker(min(size, 32)) as control, control.view() as needle:
            stackview.leave_on_stack(needle, depth=48 * 1024)
            return {"stack": stack, "control": _on_the_stack(control)}


def _on_the_stack(marker: Marker) -> int:
    from tests import stackview

    return sum(stackview.mapping_name(found) == "[stack]" for found in marker.scan().found)


for _name in AEAD_KEY_SIZES:
    CASES[f"aead.{_name}"] = partial(lambda keys, name: _aead_counts(name), name=_name)
    CASES[f"stack.{_name}"] = partial(lambda keys, name: _stack_counts(name), name=_name)
    for _how in ("alone", "securemem"):
        CASES[f"registers.{_name}.{_how}"] = partial(
            lambda keys, name, how: _register_counts(name, how), name=_name, how=_how
        )


def _kdf(name: str) -> Any:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    made: dict[str, Callable[[], Any]] = {
        "HKDF": lambda: HKDF(hashes.SHA256(), 32, b"salt", b"info"),
        "PBKDF2HMAC": lambda: PBKDF2HMAC(hashes.SHA256(), 32, b"s" * 16, 1000),
        "Scrypt": lambda: Scrypt(b"s" * 16, 32, 1024, 8, 1),
        "Argon2id": lambda: Argon2id(
            salt=b"s" * 16, length=32, iterations=1, lanes=1, memory_cost=64
        ),
    }
    return made[name]()


def _kdf_counts(name: str) -> Counts:
    from securemem import crypto

    kdf = _kdf(name)
    with secret_marker(24) as (marker, password):
        derived = crypto.derive(kdf, password, 32)
        with Marker.copy_of(derived.view()) as derived_marker:
            derived_outside = outside(derived_marker)
            derived.close()
            del kdf
            released()
            return {"password": outside(marker), "derived": derived_outside}


for _name in ("HKDF", "PBKDF2HMAC", "Scrypt", "Argon2id"):
    CASES[f"kdf.{_name}"] = partial(lambda keys, name: _kdf_counts(name), name=_name)


@case
def case_cryptography__fernet(keys: Path) -> Counts:
    """cryptography's own Fernet, for comparison: it takes the key only as base64 text. Counted
    while the Fernet object and the decrypted plaintext are alive, outside locked memory (that
    includes copies in objects already freed, so a count may vary between runs)."""
    import base64

    from cryptography.fernet import Fernet

    with secret_marker() as (marker, key), Marker(40) as plaintext_marker:
        signing = Marker.copy_of(key.view()[:16])
        encryption = Marker.copy_of(key.view()[16:])
        encoded = base64.urlsafe_b64encode(key.view())  # what Fernet wants: base64 bytes
        fernet = Fernet(encoded)
        token = fernet.encrypt(bytes(plaintext_marker.view()))
        decrypted = fernet.decrypt(token)
        counts = {
            "key_alive": outside(marker),
            "signing_half_alive": outside(signing),
            "encryption_half_alive": outside(encryption),
            "plaintext_returned": inside(plaintext_marker, decrypted),
        }
        del fernet, decrypted
        signing.close()
        encryption.close()
        return counts


@case
def case_securemem__fernet(keys: Path) -> Counts:
    """securemem.crypto's Fernet: the key, its halves and the plaintext stay in locked memory."""
    from securemem import crypto

    with secret_marker() as (marker, key), Marker(40) as plaintext_marker:
        signing = Marker.copy_of(key.view()[:16])
        encryption = Marker.copy_of(key.view()[16:])
        with SecureBytes(plaintext_marker.view()) as plaintext:
            token = crypto.fernet_encrypt(key, plaintext)
        decrypted = crypto.fernet_decrypt(key, token)
        assert decrypted == plaintext_marker.view()
        alive = {
            "key_alive": outside(marker),
            "signing_half_alive": outside(signing),
            "encryption_half_alive": outside(encryption),
            "plaintext_alive": outside(plaintext_marker),
        }
        decrypted.close()
        released()
        counts = {
            **alive,
            "key_after": outside(marker),
            "signing_half_after": outside(signing),
            "encryption_half_after": outside(encryption),
            "plaintext_after": outside(plaintext_marker),
        }
        signing.close()
        encryption.close()
        return counts


def _warm_up() -> None:
    """securemem's first native calls allocate (cffi builds its wrappers), and such an
    allocation can land on a buffer a load just freed, hiding the copy in it: make them first."""
    from securemem._scrub import scrub_after_native

    scrub_after_native()


@case
def case_cryptography__load_pem(keys: Path) -> Counts:
    """cryptography's own PEM loader, handed a view of the PEM file in locked memory."""
    from cryptography.hazmat.primitives import serialization

    _warm_up()
    with seed_marker(keys) as marker, read(keys, "ed25519.pem") as pem:
        key = serialization.load_pem_private_key(pem.view(), None)
        alive = outside(marker)
        del key
        released()
        return {"alive": alive, "after": outside(marker)}


@case
def case_cryptography__load_ssh_password(keys: Path) -> Counts:
    """cryptography's own OpenSSH loader, for a passphrase-protected Ed25519 key (it takes the
    passphrase only as bytes: this case's own copy, so the passphrase is not counted)."""
    from cryptography.hazmat.primitives import serialization

    _warm_up()
    with seed_marker(keys) as marker, read(keys, "ed25519-password.openssh") as text:
        with read(keys, "password") as password:
            passphrase = bytes(password.view())
        key = serialization.load_ssh_private_key(text.view(), passphrase)
        del key
        released()
        return {"after": outside(marker)}


@case
def case_securemem__load_private_key(keys: Path) -> Counts:
    from securemem import crypto

    _warm_up()
    with seed_marker(keys) as marker, read(keys, "ed25519.pem") as pem:
        key = crypto.load_private_key(pem)
        alive = outside(marker)
        del key
        released()
        return {"alive": alive, "after": outside(marker)}


def _load_with_password(keys: Path, name: str) -> Counts:
    from securemem import crypto

    _warm_up()
    with seed_marker(keys) as marker, read(keys, "password") as password, read(keys, name) as data:
        password_marker = Marker.copy_of(password.view())
        with password_marker:
            key = crypto.load_private_key(data, password)
            del key
            released()
            return {"after": outside(marker), "password_after": outside(password_marker)}


@case
def case_securemem__load_private_key_pkcs8_password(keys: Path) -> Counts:
    return _load_with_password(keys, "ed25519-password.pem")


@case
def case_securemem__load_private_key_openssh_password(keys: Path) -> Counts:
    return _load_with_password(keys, "ed25519-password.openssh")


@case
def case_securemem__load_private_key_pkcs12_password(keys: Path) -> Counts:
    return _load_with_password(keys, "ed25519-password.p12")


@case
def case_securemem__load_private_key_ppk_password(keys: Path) -> Counts:
    return _load_with_password(keys, "ed25519-password.ppk")


@case
def case_securemem__load_private_key_ppk2_password(keys: Path) -> Counts:
    return _load_with_password(keys, "ed25519-password-v2.ppk")


# -- ssl --------------------------------------------------------------------------------------


def _ssl_counts(load: Callable[[ssl.SSLContext], None], keys: Path) -> Counts:
    with seed_marker(keys) as marker, text_marker(keys) as text:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        load(context)
        alive = {"key_alive": outside(marker), "pem_text_alive": outside(text)}
        del context
        released()
        return {**alive, "key_after": outside(marker), "pem_text_after": outside(text)}


@case
def case_ssl__key_file(keys: Path) -> Counts:
    return _ssl_counts(
        lambda context: context.load_cert_chain(keys / "ed25519.crt", keys / "ed25519.pem"), keys
    )


@case
def case_ssl__secret_file(keys: Path) -> Counts:
    import securemem

    def load(context: ssl.SSLContext) -> None:
        with read(keys, "ed25519.pem") as pem, securemem.secret_file(pem) as path:
            context.load_cert_chain(keys / "ed25519.crt", path)

    return _ssl_counts(load, keys)


@case
def case_ssl__sendall_recv_into(keys: Path) -> Counts:
    """A secret sent over TLS (socket pair, TLS 1.3) and received into locked memory."""
    import threading

    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(keys / "ed25519.crt", keys / "ed25519.pem")
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.load_verify_locations(keys / "ed25519.crt")
    server_socket, client_socket = socket.socketpair()
    with secret_marker() as (marker, secret), SecureBytes(len(secret)) as received:
        errors: list[BaseException] = []
        tls_server: list[ssl.SSLSocket] = []

        def serve() -> None:
            try:
                tls = server_context.wrap_socket(server_socket, server_side=True)
                tls_server.append(tls)
                view = received.view()
                got = 0
                while got < len(received):
                    got += tls.recv_into(view[got:])
                view.release()
            except BaseException as error:
                errors.append(error)

        thread = threading.Thread(target=serve)
        thread.start()
        tls_client = client_context.wrap_socket(client_socket, server_hostname="localhost")
        tls_client.sendall(secret.view())
        thread.join(30)
        assert not errors and received == secret.view(), errors
        alive = outside(marker)
        tls_client.close()
        tls_server[0].close()
        tls_server.clear()
        del tls_client
        released()
        return {"connection_alive": alive, "after_close": outside(marker)}


# -- paramiko ---------------------------------------------------------------------------------


@case
def case_paramiko__ed25519_from_private_key(keys: Path) -> Counts:
    """paramiko's Ed25519 key takes only text lines; counted while the key object lives,
    outside locked memory (that includes copies in objects already freed: the count may vary
    between runs)."""
    import paramiko  # type: ignore[import-untyped, unused-ignore]

    with seed_marker(keys) as marker:
        with read(keys, "ed25519.openssh") as text:
            # paramiko reads text lines: the file has to become a str.
            key = paramiko.Ed25519Key.from_private_key(io.StringIO(str(text.view(), "ascii")))
        key.sign_ssh_data(MESSAGE)
        return {"alive": outside(marker)}


def _bignum_counts(
    make: Callable[[], Any],
    keys: Path,
    number: str,
    text: Marker,
    *algorithm: str,
    python_copies: bool = False,
) -> Counts:
    """Copies of a private number (file ``number``) and of the key file's text.

    Big-endian is how the file holds the number, little-endian how OpenSSL's BIGNUMs do (64-bit
    limbs, least significant first). ``python_copies``: the path decodes the file in Python
    objects that it frees again; their big-endian and text copies are then not counted (see
    :func:`inside`), only OpenSSL's.
    """
    with read(keys, number) as value:
        big = Marker.copy_of(value.view())
        little = reversed_marker(value)
    with big, little, text:
        key = make()
        key.sign_ssh_data(MESSAGE, *algorithm)
        counts = {"little_endian_alive": outside(little)}
        if not python_copies:
            counts |= {"big_endian_alive": outside(big), "text_alive": outside(text)}
        del key
        released()
        counts["little_endian_after"] = outside(little)
        if not python_copies:
            counts |= {"big_endian_after": outside(big), "text_after": outside(text)}
        return counts


@case
def case_paramiko__rsa_from_private_key(keys: Path) -> Counts:
    import paramiko  # type: ignore[import-untyped, unused-ignore]

    def make() -> Any:
        with read(keys, "rsa.pem") as text:
            return paramiko.RSAKey.from_private_key(io.StringIO(str(text.view(), "ascii")))

    return _bignum_counts(
        make, keys, "rsa.p", rsa_text(keys), "rsa-sha2-256", python_copies=True
    )


@case
def case_paramiko__rsa_from_key_object(keys: Path) -> Counts:
    import paramiko  # type: ignore[import-untyped, unused-ignore]

    from securemem import crypto

    def make() -> Any:
        with read(keys, "rsa.pem") as pem:
            return paramiko.RSAKey(key=crypto.load_private_key(pem))

    return _bignum_counts(make, keys, "rsa.p", rsa_text(keys), "rsa-sha2-256")


def rsa_text(keys: Path) -> Marker:
    return text_marker(keys, "rsa.pem", RSA_TEXT_SLICE)


@case
def case_paramiko__ecdsa_from_key_object(keys: Path) -> Counts:
    import paramiko  # type: ignore[import-untyped, unused-ignore]

    from securemem import crypto

    def make() -> Any:
        with read(keys, "ec.pem") as pem:
            key = crypto.load_private_key(pem)
        return paramiko.ECDSAKey(vals=(key, key.public_key()))

    return _bignum_counts(make, keys, "ec.d", text_marker(keys, "ec.pem", EC_TEXT_SLICE))


# -- os.write / sockets -----------------------------------------------------------------------


@case
def case_os__write(keys: Path) -> Counts:
    with secret_marker() as (marker, secret), SecureBytes(len(secret)) as received:
        read_end, write_end = os.pipe()
        try:
            written = os.write(write_end, secret.view())
            got = os.readv(read_end, [received.view()])
        finally:
            os.close(read_end)
            os.close(write_end)
        assert written == got == len(secret) and received == secret.view()
        return {"after": outside(marker)}


@case
def case_socket__sendall(keys: Path) -> Counts:
    with secret_marker() as (marker, secret), SecureBytes(len(secret)) as received:
        sender, receiver = socket.socketpair()
        with sender, receiver:
            sender.sendall(secret.view())
            got = receiver.recv_into(received.view(), len(received), socket.MSG_WAITALL)
        assert got == len(secret) and received == secret.view()
        return {"after": outside(marker)}


# -- configuration ----------------------------------------------------------------------------


def hex_marker(secret: SecureBytes) -> Marker:
    """A marker of the secret's lowercase hex text, built digit by digit (no text copy)."""
    digits = b"0123456789abcdef"
    with SecureBytes(2 * len(secret)) as text:
        for index in range(len(secret)):
            text[2 * index] = digits[secret[index] >> 4]
            text[2 * index + 1] = digits[secret[index] & 15]
        return Marker.copy_of(text.view())


def _count_decoded(text: str, marker: Marker, *, stdlib: bool) -> int:
    """Decode ``text`` into a SecureBytes; copies of the decoded secret outside locked memory
    while the decoder's result is still referenced (as it is in the caller's frame)."""
    if stdlib:
        decoded = bytes.fromhex(text)  # an unwipeable copy, until garbage is reused
        secret = SecureBytes(decoded)
    else:
        secret = SecureBytes.from_hex(text)
    with secret:
        return outside(marker)


def on_stack(marker: Marker) -> tuple[int, int]:
    """(copies on the main thread's stack, copies elsewhere outside locked memory)."""
    with open("/proc/self/maps", encoding="ascii") as maps:
        stacks = [
            tuple(int(part, 16) for part in line.split()[0].split("-"))
            for line in maps
            if line.rstrip().endswith("[stack]")
        ]
    found = [a for a in marker.scan().found if not _in_locked_or_marker(a, marker)]
    stacked = sum(1 for a in found if any(low <= a < high for low, high in stacks))
    return stacked, len(found) - stacked


def _env_counts(keys: Path, variable: str, text: Marker, *, stdlib: bool = False) -> Counts:
    """The secret arrives encoded in an environment variable.

    Counted apart: the C environment block (on the process's stack, put there by the kernel
    at exec) and Python's own copy. Once freed, whether Python's copy has been reused depends
    on everything the process allocated since, so only the environment block is counted after
    ``del os.environ[...]``: it is never freed, only unlinked.
    """
    with read(keys, "env.raw") as raw:
        marker = Marker.copy_of(raw.view())
    with marker, text:
        block, python = on_stack(text)
        value = os.environ[variable]
        if stdlib:
            decoded_bytes = bytes.fromhex(value)  # an unwipeable copy
            secret = SecureBytes(decoded_bytes)
        elif variable == "SECRET_B64":
            secret = SecureBytes.from_base64(value)
        else:
            secret = SecureBytes.from_hex(value)
        with secret:
            decoded = outside(marker)
        counts = {"environ_block": block, "python_text": python, "decoded": decoded}
        if stdlib:
            del decoded_bytes
        del value, os.environ[variable]
        released()
        counts["environ_block_after_del"] = on_stack(text)[0]
        if not stdlib:
            counts["decoded_after"] = outside(marker)
        return counts


def env_text(keys: Path, encoding: str) -> Marker:
    with read(keys, "env.raw") as raw:
        if encoding == "hex":
            return hex_marker(raw)
        with raw.to_base64() as encoded:
            return Marker.copy_of(encoded.view())


@case
def case_env__from_hex(keys: Path) -> Counts:
    return _env_counts(keys, "SECRET_HEX", env_text(keys, "hex"))


@case
def case_env__bytes_fromhex(keys: Path) -> Counts:
    return _env_counts(keys, "SECRET_HEX", env_text(keys, "hex"), stdlib=True)


@case
def case_env__from_base64(keys: Path) -> Counts:
    return _env_counts(keys, "SECRET_B64", env_text(keys, "base64"))


def _json_counts(keys: Path, *, stdlib: bool) -> Counts:
    """The secret arrives hex-encoded as a JSON string in a configuration file."""
    with read(keys, "env.raw") as raw:
        marker = Marker.copy_of(raw.view())
        text = hex_marker(raw)
    with marker, text:
        with read(keys, "config.json") as document:
            document_text = str(document.view(), "utf-8")  # json.loads takes no buffer
        config = json.loads(document_text)
        counts = {
            "text_alive": outside(text),  # the document and the value: both still referenced
            "decoded": _count_decoded(config["key"], marker, stdlib=stdlib),
        }
        del config, document_text
        released()
        if not stdlib:  # never copied: none after either (a freed copy is not counted)
            counts["decoded_after"] = outside(marker)
        return counts


@case
def case_json__from_hex(keys: Path) -> Counts:
    return _json_counts(keys, stdlib=False)


@case
def case_json__bytes_fromhex(keys: Path) -> Counts:
    return _json_counts(keys, stdlib=True)


@case
def case_file__from_hex(keys: Path) -> Counts:
    """The secret arrives as a hex text file, read and decoded without leaving locked memory."""
    with read(keys, "env.raw") as raw:
        marker = Marker.copy_of(raw.view())
        text = hex_marker(raw)
    with marker, text, read(keys, "secret.hex") as document:
        secret = SecureBytes.from_hex(document)
        with secret:
            counts = {"text": outside(text), "decoded": outside(marker)}
        released()
        return counts


# -- key files --------------------------------------------------------------------------------


MAKE_KEYS = """
import datetime, json, os, sys
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization as s
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
out = Path(sys.argv[1])
def write(name, data):
    (out / name).write_bytes(data)
    (out / name).chmod(0o600)
key = ed25519.Ed25519PrivateKey.generate()
write("ed25519.pem", key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
write("ed25519.seed", key.private_bytes(s.Encoding.Raw, s.PrivateFormat.Raw, s.NoEncryption()))
write("ed25519.openssh",
      key.private_bytes(s.Encoding.PEM, s.PrivateFormat.OpenSSH, s.NoEncryption()))
# A passphrase of letters and digits, and the same key encrypted with it (PKCS#8 and OpenSSH).
password = "".join(chr(c) for c in os.urandom(20) if chr(c).isalnum()).encode() or b"passphrase"
write("password", password)
locked = s.BestAvailableEncryption(password)
write("ed25519-password.pem", key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, locked))
write("ed25519-password.openssh",
      key.private_bytes(s.Encoding.PEM, s.PrivateFormat.OpenSSH, locked))
# The same key as PuTTY keeps it: puttygen converts the OpenSSH file (v3: Argon2id; and v2).
import subprocess
for name, version in (("ed25519-password.ppk", "3"), ("ed25519-password-v2.ppk", "2")):
    subprocess.run(["puttygen", str(out / "ed25519.openssh"), "-o", str(out / name),
                    "--new-passphrase", str(out / "password"), "--ppk-param",
                    "version=" + version], check=True, capture_output=True)
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
        .sign(key, None))
write("ed25519.crt", cert.public_bytes(s.Encoding.PEM))
# The key and its certificate as a password-protected PKCS#12 bundle (AES-256, PBKDF2).
from cryptography.hazmat.primitives.serialization import pkcs12
write("ed25519-password.p12",
      pkcs12.serialize_key_and_certificates(b"securemem", key, cert, None, locked))
# The file's length decides how big paramiko's buffers are, and so which freed memory is
# reused before the scan: the same length every run (most 2048-bit keys are 1675 bytes).
while True:
    rsa_key = rsa.generate_private_key(65537, 2048)
    rsa_pem = rsa_key.private_bytes(
        s.Encoding.PEM, s.PrivateFormat.TraditionalOpenSSL, s.NoEncryption())
    if len(rsa_pem) == 1675:
        break
write("rsa.pem", rsa_pem)
write("rsa.p", rsa_key.private_numbers().p.to_bytes(128, "big"))
ec_key = ec.generate_private_key(ec.SECP256R1())
write("ec.pem", ec_key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
write("ec.d", ec_key.private_numbers().private_value.to_bytes(32, "big"))
raw = os.urandom(32)
write("env.raw", raw)
write("secret.hex", raw.hex().encode() + bytes([10]))
write("config.json", json.dumps({"key": raw.hex(), "name": "service"}).encode())
"""


def measure(case: str, keys: Path) -> Counts:
    """Run ``case`` in a fresh interpreter (``python -m tests.handoff_cases CASE .`` in
    ``keys``) and return its counts.

    Freed memory is reused or not depending on what was allocated before: the same
    environment, working directory and hash seed on every run and machine keep that fixed.
    """
    environment = {"PYTHONPATH": str(_REPO), "PYTHONHASHSEED": "0", "LC_ALL": "C.UTF-8"}
    environment["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")  # cc, for the stack control
    if "SECUREMEM_STACK_HELPER" in os.environ:  # or its prebuilt copy (tests/stackview.py)
        environment["SECUREMEM_STACK_HELPER"] = os.environ["SECUREMEM_STACK_HELPER"]
    if case.startswith("env."):
        with read(keys, "env.raw") as raw:
            # Only the child is scanned; the caller hands it the text it would find.
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
    if result.returncode != 0:
        raise RuntimeError(f"the case {case} failed:\n{result.stderr}")
    counts: Counts = json.loads(result.stdout.strip().splitlines()[-1])
    return counts


def make_keys(keys: Path) -> None:
    """Write the key files, certificate and configuration secrets the cases read into ``keys``,
    from another process (this one never holds them as bytes)."""
    result = subprocess.run(
        [sys.executable, "-c", MAKE_KEYS, str(keys)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(_REPO)},
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"making the keys failed:\n{result.stderr}")


def main(argv: list[str]) -> None:
    name, keys = argv[1], Path(argv[2])
    print(json.dumps(CASES[name](keys)))


if __name__ == "__main__":
    main(sys.argv)
