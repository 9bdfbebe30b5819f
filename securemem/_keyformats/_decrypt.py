"""Decrypting a key file's encrypted part into locked memory (OpenSSH, legacy PEM, PuTTY).

cryptography's ``update_into`` writes the plaintext into a buffer the caller gives, but wants
room for one block more than it writes; so the plaintext lands in a scratch SecureBytes and is
copied once, at its real length, into the SecureBytes returned. It never passes through a
``bytes`` object.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import CipherContext

from securemem._arena import Arena
from securemem._securebytes import SecureBytes


def decrypt_into_locked(
    decryptor: CipherContext,
    ciphertext: memoryview,
    block_size: int,
    arena: Arena | None,
    keep: Callable[[memoryview], int] | None = None,
) -> SecureBytes:
    """``ciphertext`` decrypted (and ``decryptor`` finalized) into a new SecureBytes: all of
    the plaintext, or its first ``keep(plaintext)`` bytes (legacy PEM drops its padding).
    What ``finalize`` or ``keep`` raises (a wrong GCM tag, bad padding) propagates."""
    room = SecureBytes(ciphertext.nbytes + block_size - 1, arena=arena)
    try:
        with room.view() as out:
            decryptor.update_into(ciphertext, out)
            decryptor.finalize()
            plain = out[: ciphertext.nbytes]
            length = plain.nbytes if keep is None else keep(plain)
            return SecureBytes(plain[:length], arena=arena)
    finally:
        room.close()
