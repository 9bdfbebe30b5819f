"""How much key-derivation work a key file may ask for before a byte of it is derived.

Encrypted key files name their own cost (OpenSSH's bcrypt rounds, PKCS#8's PBKDF2 iterations
and scrypt parameters, PuTTY's Argon2 memory and passes). A hostile file can ask for hours
of CPU or gigabytes of memory, in native code Ctrl-C does not reach, so every reader checks
the file's parameters against a :class:`KdfLimits` before it starts, and refuses with
:class:`KdfLimitError` (naming the format, the parameter, its value and the keyword that
raises the limit; never a byte of the key).

The defaults and the time each unit took are in docs/key-formats.md ("Limits").
"""

from __future__ import annotations

from dataclasses import dataclass

from securemem._errors import KdfLimitError


@dataclass(frozen=True)
class KdfLimits:
    """The most key-derivation work :func:`securemem.crypto.load_private_key` will do.

    The defaults accept what ssh-keygen, openssl and puttygen write by default and with
    common hardening, and keep any one key file to seconds of CPU (tens on a slow machine)
    and at most 256 MiB of memory. Pass ``kdf_limits=KdfLimits(bcrypt_rounds=2000)`` (say) to
    load a file you trust that asks for more; every field not named keeps its default.

    - ``bcrypt_rounds``: OpenSSH's bcrypt rounds (``ssh-keygen -a``; 16 by default).
    - ``pbkdf2_iterations``: the iteration count of encrypted PKCS#8 (PBKDF2 in PBES2, and the
      older PBES1 and PKCS#12 schemes; ``openssl pkcs8 -iter``, 2048 by default).
    - ``scrypt_memory_bytes``: scrypt's ``128 * N * r * p`` in encrypted PKCS#8: its memory
      for ``p = 1``, and a measure of its time for any ``p``.
    - ``argon2_memory_kib``, ``argon2_passes``, ``argon2_lanes``: a PuTTY v3 key's Argon2
      parameters (puttygen writes 8192 KiB, a pass count tuned to 100 ms, 1 lane).
    """

    bcrypt_rounds: int = 1024
    pbkdf2_iterations: int = 10_000_000
    scrypt_memory_bytes: int = 256 << 20
    argon2_memory_kib: int = 256 << 10
    argon2_passes: int = 128
    argon2_lanes: int = 16

    def __post_init__(self) -> None:
        for name in (
            "bcrypt_rounds",
            "pbkdf2_iterations",
            "scrypt_memory_bytes",
            "argon2_memory_kib",
            "argon2_passes",
            "argon2_lanes",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"KdfLimits({name}=...) takes an int, not {value!r}")
            if value < 0:
                raise ValueError(f"KdfLimits({name}=...) takes an int >= 0, not {value}")


DEFAULT_KDF_LIMITS = KdfLimits()


def check(format_name: str, parameter: str, value: int, limit: int) -> None:
    """Refuse ``value`` above ``limit``; ``parameter`` is the KdfLimits field's name."""
    if value > limit:
        raise KdfLimitError(
            f"{format_name} key file asks for {parameter}={value}, above the limit of {limit}: "
            f"refusing before any key derivation. If you trust this file, raise the limit: "
            f"load_private_key(..., kdf_limits=KdfLimits({parameter}={value}))."
        )
