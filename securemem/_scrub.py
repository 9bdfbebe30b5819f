"""Scrub what native code leaves behind once it has handled a secret and returned.

OpenSSL (through pyca/cryptography) returns with the key schedule, key stream or plaintext
blocks still in the CPU's vector registers, and its stack frames still hold whatever it put
there, below the caller's stack pointer. Neither is wiped by anyone: the stack stays until a
later call happens to overwrite it, and the registers land on the stack the next time
anything saves them (the dynamic linker's lazy symbol binding XSAVEs all of them, so does a
signal frame). :func:`scrub_after_native` clears both, in one native call
(``sm_scrub_after_native`` in securemem/_c/scrub.c): call it right after every call into
native code that saw a secret, *from the same Python function* as that call, so the stack it
burns is the stretch the call used (CPython runs a Python-to-Python call in the same C frame,
so a helper like this one adds no C stack of its own).
"""

from __future__ import annotations

from securemem._binding import lib

# How much stack below the caller is wiped. Measured (cryptography 47-50, OpenSSL 4.0, x86-64,
# by reading the stack from a second thread after each call): the deepest any securemem.crypto
# call reaches is 7.0 KiB below the caller (Argon2id), then AES-SIV 4.7 KiB, HKDF 4.4 KiB, the
# other AEADs 2.2-3.1 KiB; a dynamic-linker or signal save of the registers adds up to ~3 KiB
# with AVX-512. 16 KiB is over twice the deepest; wiping it costs well under a microsecond
# (benchmarks in docs/secrets-in-and-out.md). Clamped in C to the thread's own stack.
STACK_BYTES = 16 * 1024


def scrub_after_native() -> None:
    """Zero the vector registers, then wipe ``STACK_BYTES`` of stack below the caller."""
    lib.sm_scrub_after_native(STACK_BYTES)
