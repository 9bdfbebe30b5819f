"""Traditional PEM keys with OpenSSL's legacy encryption (``Proc-Type: 4,ENCRYPTED`` and
``DEK-Info`` headers, what ``ssh-keygen -m PEM`` and ``openssl rsa -aes128`` write), decrypted
into locked memory.

The body is the traditional DER key encrypted with AES-CBC (or, from old ``openssl`` commands,
DES-EDE3-CBC) under a key derived from the password by OpenSSL's ``EVP_BytesToKey`` (MD5, one
round, the first 8 bytes of the IV as salt). The decrypted DER only ever exists in a
:class:`~securemem.SecureBytes`. What cannot be avoided: ``hashlib`` returns the derived key as
``bytes`` (the key that wraps the private key, not the private key; it stays in freed heap
memory). Other ciphers are left to cryptography's PEM loader.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, CipherAlgorithm, algorithms, modes

from securemem._arena import Arena
from securemem._errors import KeyFormatError
from securemem._keyformats import _pem
from securemem._keyformats._decrypt import decrypt_into_locked
from securemem._securebytes import SecureBytes


@dataclass(frozen=True)
class LegacyCipher:
    key_size: int
    block_size: int  # also the IV's size
    algorithm: Callable[[Any], CipherAlgorithm]  # called with a view of the key


_CIPHERS = {
    b"AES-128-CBC": LegacyCipher(16, 16, algorithms.AES),
    b"AES-192-CBC": LegacyCipher(24, 16, algorithms.AES),
    b"AES-256-CBC": LegacyCipher(32, 16, algorithms.AES),
    b"DES-EDE3-CBC": LegacyCipher(24, 8, TripleDES),
}


_COLON = ord(":")
_BLANK = frozenset(b" \t\r\n")


def headers(view: memoryview, block: _pem.PemBlock) -> tuple[dict[bytes, bytes], int]:
    """The RFC 1421 headers (public) and the offset where the base64 body starts."""
    found: dict[bytes, bytes] = {}
    index = block.body
    while index < block.end:
        following = _pem.next_line(view, index)
        # A line without ':' is not a header but the body (no blank line before it: not RFC
        # 1421, but be lenient): asked of the view, so no body line is ever copied out.
        if _COLON not in view[index:following]:
            if any(byte not in _BLANK for byte in view[index:following]):
                break
            return found, following  # the blank line that ends the headers
        line = view[index:following].tobytes().strip()  # a header line: public text
        name, _, value = line.partition(b":")
        found[name.strip()] = value.strip()
        index = following
    return found, index


def cipher(found: dict[bytes, bytes]) -> tuple[LegacyCipher, bytes] | None:
    """(the cipher, its IV) from the DEK-Info header, or None when securemem does not know
    the cipher."""
    name, _, iv_hex = found.get(b"DEK-Info", b"").partition(b",")
    known = _CIPHERS.get(name.strip())
    if known is None:
        return None
    try:
        iv = bytes.fromhex(iv_hex.strip().decode("ascii"))
    except ValueError:
        iv = b""
    if len(iv) != known.block_size:
        raise KeyFormatError(
            f"the PEM key's DEK-Info header has no {known.block_size}-byte IV: is the file "
            "damaged?"
        )
    return known, iv


def decrypt(
    view: memoryview,
    block: _pem.PemBlock,
    body: int,
    cipher: tuple[LegacyCipher, bytes],
    password: memoryview,
    arena: Arena | None,
) -> SecureBytes:
    """The traditional DER key, decrypted into locked memory."""
    known, iv = cipher
    block_size = known.block_size
    after_headers = dataclasses.replace(block, body=body, has_headers=False)
    encrypted = _pem.decode(view, after_headers, arena)
    key = _bytes_to_key(password, iv[:8], known.key_size, arena)
    try:
        with encrypted.view() as ciphertext, key.view() as key_view:
            if ciphertext.nbytes == 0 or ciphertext.nbytes % block_size:
                raise KeyFormatError("the encrypted PEM key's body is not whole blocks: damaged?")
            decryptor = Cipher(known.algorithm(key_view), modes.CBC(iv)).decryptor()
            return decrypt_into_locked(
                decryptor, ciphertext, block_size, arena, lambda plain: _unpadded(plain, block_size)
            )
    finally:
        key.close()
        encrypted.close()


def _bytes_to_key(password: memoryview, salt: bytes, size: int, arena: Arena | None) -> SecureBytes:
    """OpenSSL's EVP_BytesToKey with MD5 and one round: D1 = MD5(password || salt),
    Di = MD5(Di-1 || password || salt), concatenated."""
    key = SecureBytes(size, arena=arena)
    with key.view() as out:
        written = 0
        previous = b""
        while written < size:
            digest = hashlib.md5(previous, usedforsecurity=False)
            digest.update(password)
            digest.update(salt)
            # Unavoidable: hashlib returns the digest as bytes (part of the wrapping key).
            previous = digest.digest()
            take = min(len(previous), size - written)
            out[written : written + take] = memoryview(previous)[:take]
            written += take
        del previous
    return key


def _unpadded(plain: memoryview, block_size: int) -> int:
    """The length without the PKCS#7 padding. Wrong padding (a wrong password, almost always)
    raises KeyFormatError. Only the padding bytes are looked at."""
    pad = plain[plain.nbytes - 1]
    if not 1 <= pad <= block_size or any(
        plain[plain.nbytes - offset] != pad for offset in range(1, pad + 1)
    ):
        raise KeyFormatError("wrong password for the encrypted PEM key (or the key is corrupt)")
    return plain.nbytes - pad
