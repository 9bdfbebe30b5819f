"""Workload 8: loading an OpenSSH RSA-3072 key, securemem against cryptography's own loader.

Both read the same file (written once by cryptography, ``PrivateFormat.OpenSSH``), plain and
passphrase-protected (bcrypt, cryptography's default 16 rounds). securemem decodes, decrypts
and re-encodes the key in locked memory and computes the CRT exponents the file lacks;
cryptography's ``load_ssh_private_key`` does it with ``bytes`` and Python ints. The two loads
take turns, so a busy spell of the machine falls on both alike; each side reports its best
(timeit's convention: noise only ever adds time), in CPU time of this thread (OpenSSL runs
the load on the calling thread).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from securemem import SecureBytes, crypto

PASSPHRASE = b"benchmark passphrase"


def _timed(load: Callable[[], object], timings: list[int]) -> None:
    started = time.thread_time_ns()
    load()
    timings.append(time.thread_time_ns() - started)


def openssh_rsa(bits: int, repeats: int) -> dict[str, Any]:
    """Per protection ("plain", "passphrase"): each loader's best and median ns, and the
    ratio securemem / cryptography of the bests."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    results: dict[str, Any] = {"bits": bits, "repeats": repeats}
    for protection, password in (("plain", None), ("passphrase", PASSPHRASE)):
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        data = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption
        )
        secret = SecureBytes(data)

        def ours(secret: SecureBytes = secret, password: bytes | None = password) -> object:
            return crypto.load_private_key(secret, password)

        def theirs(data: bytes = data, password: bytes | None = password) -> object:
            return serialization.load_ssh_private_key(data, password)

        timings: dict[str, list[int]] = {"securemem": [], "cryptography": []}
        ours()  # warm up: imports, first arena pages
        theirs()
        for _ in range(repeats):
            _timed(ours, timings["securemem"])
            _timed(theirs, timings["cryptography"])
        secret.close()
        cells: dict[str, Any] = {
            name: {"best_ns": min(times), "median_ns": sorted(times)[len(times) // 2]}
            for name, times in timings.items()
        }
        cells["ratio"] = min(timings["securemem"]) / min(timings["cryptography"])
        results[protection] = cells
    return results
