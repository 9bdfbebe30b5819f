"""Derive an encryption key from a password with Argon2id, both in locked memory.

    python examples/argon2id_derive.py

The password comes from securemem.getpass (terminal with echo off, or stdin without one);
the derived key is written by cryptography straight into locked memory (derive_into).
Needs `pip install securemem[crypto]` (cryptography >= 44 for Argon2id).
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

import securemem
from securemem import crypto

# RFC 9106's second recommended setting is 64 MiB; kept small here so the example is quick.
MEMORY_COST_KIB = 19 * 1024


def main() -> None:
    salt = os.urandom(16)  # store it next to the ciphertext; it is not secret
    kdf = Argon2id(salt=salt, length=32, iterations=2, lanes=1, memory_cost=MEMORY_COST_KIB)
    with securemem.getpass("Passphrase: ") as password:
        key = crypto.derive(kdf, password, 32)
    with key:
        cipher = crypto.aead(AESGCM, key)
    nonce = os.urandom(12)
    # A stand-in plaintext: secret data would be read into a SecureBytes (see aes_gcm_key.py).
    ciphertext = crypto.encrypt(cipher, nonce, b"data protected by the passphrase")
    print(f"derived a 32-byte key in locked memory; encrypted {len(ciphertext)} bytes")


if __name__ == "__main__":
    main()
