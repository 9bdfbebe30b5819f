"""How much key-derivation work a key file may ask for before a byte of it is derived.

Encrypted key files name their own cost (OpenSSH's bcrypt rounds, PKCS#8's PBKDF2 iterations
and scrypt parameters, PuTTY's Argon2 memory and passes). A hostile file can ask for hours
of CPU or gigabytes of memory, in native code Ctrl-C does not reach, so every reader checks
the file's parameters against a :class:`KdfLimits` before it starts, and refuses with
:class:`KdfLimitError` (naming the format, the parameter, its value and the keyword that
raises the limit; never a byte of the key).
"""

from __future__ import annotations

from dataclasses import dataclass

from securemem._errors import KdfLimitError


@dataclass(frozen=True)
class KdfLimits:
    """The most key-derivation work :func:`securemem.crypto.load_private_key` will do.

    The defaults accept what the tools write by default and with common hardening; pass
    ``kdf_limits=KdfLimits(bcrypt_rounds=2000)`` (say) to load a file that asks for more.
    """

    bcrypt_rounds: int = 1024
    pbkdf2_iterations: int = 10_000_000
    scrypt_memory_bytes: int = 256 << 20
    argon2_memory_kib: int = 1 << 20
    argon2_passes: int = 64
    argon2_lanes: int = 16


DEFAULT_KDF_LIMITS = KdfLimits()


def check(format_name: str, parameter: str, value: int, limit: int) -> None:
    """Refuse ``value`` above ``limit``; ``parameter`` is the KdfLimits field's name."""
    if value > limit:
        raise KdfLimitError(
            f"{format_name} key file asks for {parameter}={value}, above the limit of {limit}: "
            f"refusing before any key derivation. If you trust this file, raise the limit: "
            f"load_private_key(..., kdf_limits=KdfLimits({parameter}={value}))."
        )
