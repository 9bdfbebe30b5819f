"""Fernet tokens with the key and the plaintext in locked memory.

cryptography's ``Fernet`` decodes its key into ``bytes``, keeps both halves as ``bytes``
attributes for its whole life, takes only ``bytes`` to encrypt and returns ``bytes`` when it
decrypts: none of it can be wiped (docs/other-libraries.md counts the copies). The format is
simple enough to build from cryptography's primitives, which all take buffers: HMAC-SHA256
keyed with a view of the first key half, AES-128-CBC keyed with a view of the second, and
``update_into`` writing the plaintext straight into a SecureBytes. Tokens are interchangeable
with cryptography's ``Fernet``.

Token layout (the Fernet specification): base64url of
``0x80 | timestamp (8 bytes, big-endian) | IV (16) | AES-128-CBC ciphertext | HMAC-SHA256 (32)``,
the HMAC over everything before it, the plaintext PKCS#7-padded.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
import time

from cryptography.exceptions import InvalidSignature
from cryptography.fernet import InvalidToken
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from securemem._arena import Arena
from securemem._scrub import scrub_after_native
from securemem._securebytes import SecureBytes, as_byte_view
from securemem._types import Buffer

_VERSION = 0x80
_BLOCK = 16
_HEADER = 1 + 8 + _BLOCK  # version, timestamp, IV
_MAC = 32
_MAX_CLOCK_SKEW = 60  # seconds a token may be from the future (cryptography's value)


def _key_halves(key: SecureBytes) -> tuple[memoryview, memoryview]:
    """(signing key, encryption key): views of the two halves of a 32-byte Fernet key."""
    if not isinstance(key, SecureBytes):
        raise TypeError(
            f"the Fernet key must be a SecureBytes, not {type(key).__name__}: decode the "
            "base64 key text with SecureBytes.from_base64(text, urlsafe=True)"
        )
    if len(key) != 32:
        hint = (
            ": this looks like the base64 text of a key; decode it first with "
            "SecureBytes.from_base64(text, urlsafe=True)"
            if len(key) == 44
            else ""
        )
        raise ValueError(f"a Fernet key is 32 bytes, not {len(key)}{hint}")
    view = key.view()
    return view[:16], view[16:]


def _mac(signing_key: memoryview, data: bytearray | memoryview) -> hmac.HMAC:
    mac = hmac.HMAC(signing_key, hashes.SHA256())
    mac.update(data)
    return mac


def fernet_encrypt(
    key: SecureBytes, plaintext: SecureBytes | Buffer, *, current_time: int | None = None
) -> bytes:
    """Encrypt into a Fernet token (URL-safe base64 ``bytes``, as ``Fernet.encrypt``).

    ``key`` is the 32-byte key in locked memory (``SecureBytes.from_base64(text,
    urlsafe=True)`` decodes the usual base64 form); ``plaintext`` is read in place. The padded
    plaintext is built in locked memory; the token is not secret.
    """
    signing_key, encryption_key = _key_halves(key)
    source = None
    try:
        source = as_byte_view(plaintext)  # inside: a closed plaintext must release the key
        pad = _BLOCK - source.nbytes % _BLOCK
        with SecureBytes(source.nbytes + pad) as padded:
            padded[: source.nbytes] = source
            padded[source.nbytes :] = bytes([pad]) * pad
            iv = os.urandom(_BLOCK)
            stamp = int(time.time()) if current_time is None else current_time
            token = bytearray(_HEADER + len(padded) + _BLOCK - 1)
            token[:_HEADER] = struct.pack(">BQ", _VERSION, stamp) + iv
            encryptor = Cipher(algorithms.AES(encryption_key), modes.CBC(iv)).encryptor()
            with padded.view() as data, memoryview(token) as out:
                written = encryptor.update_into(data, out[_HEADER:])
            encryptor.finalize()
        del token[_HEADER + written :]
        token += _mac(signing_key, token).finalize()
        return base64.urlsafe_b64encode(token)
    finally:
        if source is not None:
            source.release()
        signing_key.release()
        encryption_key.release()
        # OpenSSL's HMAC and AES left key and plaintext bits in the registers and on the stack
        # below this frame (every call above ran from it: Python calls add no C stack).
        scrub_after_native()


def fernet_decrypt(
    key: SecureBytes,
    token: bytes | str,
    *,
    ttl: int | None = None,
    current_time: int | None = None,
    arena: Arena | None = None,
) -> SecureBytes:
    """Check and decrypt a Fernet token into a new SecureBytes (as ``Fernet.decrypt``).

    Raises ``cryptography.fernet.InvalidToken`` when the token is malformed, not
    authentic, or older than ``ttl`` seconds. Nothing is decrypted before the HMAC is
    verified; the plaintext is written by ``update_into`` straight into locked memory and
    unpadded there, so no ``bytes`` copy of it exists.
    """
    signing_key, encryption_key = _key_halves(key)
    try:
        data = _decode_token(token)
        body = memoryview(data)[: len(data) - _MAC]
        try:
            _mac(signing_key, body).verify(data[len(data) - _MAC :])
        except InvalidSignature:
            raise InvalidToken from None
        _check_time(data, ttl, current_time)
        iv = data[1 + 8 : _HEADER]
        ciphertext = body[_HEADER:]
        padded = SecureBytes(len(ciphertext) + _BLOCK - 1, arena=arena)
        try:
            decryptor = Cipher(algorithms.AES(encryption_key), modes.CBC(iv)).decryptor()
            with padded.view() as out:
                written = decryptor.update_into(ciphertext, out)
            decryptor.finalize()
            pad = padded[written - 1]
            # Authentic tokens only reach this point (the HMAC was checked first), so the
            # padding check cannot become a padding oracle; it still refuses bad padding.
            if not 1 <= pad <= _BLOCK or any(
                padded[index] != pad for index in range(written - pad, written)
            ):
                raise InvalidToken
            plaintext: SecureBytes = padded[: written - pad]  # a memmove, no bytes
            return plaintext
        finally:
            padded.close()
    finally:
        signing_key.release()
        encryption_key.release()
        scrub_after_native()  # as in fernet_encrypt


def _decode_token(token: bytes | str) -> bytes:
    if not isinstance(token, (bytes, str)):
        raise TypeError(f"token must be bytes or str, not {type(token).__name__}")
    try:
        data = base64.urlsafe_b64decode(token)
    except (TypeError, ValueError, binascii.Error):
        raise InvalidToken from None
    if (
        len(data) < _HEADER + _BLOCK + _MAC
        or data[0] != _VERSION
        or (len(data) - _HEADER - _MAC) % _BLOCK
    ):
        raise InvalidToken
    return data


def _check_time(data: bytes, ttl: int | None, current_time: int | None) -> None:
    (stamp,) = struct.unpack(">Q", data[1:9])
    now = int(time.time()) if current_time is None else current_time
    if ttl is not None and stamp + ttl < now:
        raise InvalidToken
    if now + _MAX_CLOCK_SKEW < stamp:
        raise InvalidToken
