"""Keep an AES-256-GCM key in locked memory and encrypt/decrypt with it.

    python examples/aes_gcm_key.py [KEYFILE]

With KEYFILE (32 raw bytes, mode 600) the key is read straight into locked memory;
without, a fresh random key is made in locked memory. Needs `pip install securemem[crypto]`.
"""

from __future__ import annotations

import os
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from securemem import SecureBytes, crypto


def main(argv: list[str]) -> None:
    key = SecureBytes.from_file(argv[1], max_size=32) if len(argv) > 1 else SecureBytes.random(32)
    with key:
        if len(key) != 32:
            raise SystemExit(f"an AES-256 key is 32 bytes, {argv[1]} holds {len(key)}")
        cipher = crypto.aead(AESGCM, key)  # the AEAD keeps its own copy: key may close now

    nonce = os.urandom(12)
    # A literal is an unwipeable bytes copy already: real data would come in through
    # SecureBytes.from_file, securemem.getpass or readinto on a view, never as bytes.
    with SecureBytes(b"the launch code is 0000") as message:
        ciphertext = crypto.encrypt(cipher, nonce, message, b"example header")
    print(f"ciphertext: {len(ciphertext)} bytes")

    with crypto.decrypt(cipher, nonce, ciphertext, b"example header") as plaintext:
        print(f"decrypted {len(plaintext)} bytes into locked memory")

    ciphertext[0] ^= 1  # a forged message: decrypt wipes what it wrote, then raises
    try:
        crypto.decrypt(cipher, nonce, ciphertext, b"example header")
    except InvalidTag as error:
        print(f"forged message rejected: {type(error).__name__}")


if __name__ == "__main__":
    main(sys.argv)
