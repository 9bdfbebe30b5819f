"""``d mod (p - 1)`` on big-endian numbers in locked memory, for RSA's CRT exponents.

An OpenSSH (or PuTTY) RSA key stores ``n, e, d, iqmp, p, q`` but not ``d mod (p-1)`` and
``d mod (q-1)``, which PKCS#1 (the DER that OpenSSL loads) requires. Python ints would hold
``d``, ``p`` and ``q`` in ordinary heap memory that nobody wipes, so the reduction runs in C
(``securemem/_c/bignum.c``) on the key's own bytes, with every intermediate value in a
:class:`~securemem.SecureBytes` scratch buffer: a constant-time binary long division, well
under a millisecond for a 3072-bit key (the same division in Python, byte by byte, took
0.2 s per exponent). The C call's registers and stack are wiped by the caller's
``scrub_after_native`` (:func:`securemem._keyformats.load_private_key` runs it last).
"""

from __future__ import annotations

from securemem._arena import Arena
from securemem._binding import ffi, lib
from securemem._errors import KeyFormatError
from securemem._keyformats import _der
from securemem._securebytes import SecureBytes


def mod_prime_minus_one(d: memoryview, prime: memoryview, arena: Arena | None) -> SecureBytes:
    """``d mod (prime - 1)`` for an odd ``prime``, big-endian, as long as ``prime``."""
    if prime.nbytes == 0 or prime[prime.nbytes - 1] & 1 == 0:
        raise KeyFormatError("an RSA prime in the key is not odd: the key is corrupt")
    if significant_bytes(prime) == 1 and prime[prime.nbytes - 1] == 1:
        raise KeyFormatError("an RSA prime in the key is 1: the key is corrupt")
    result = SecureBytes(prime.nbytes, arena=arena)
    scratch = SecureBytes(lib.sm_mod_prime_minus_one_scratch(prime.nbytes), arena=arena)
    try:
        with result.view() as out, scratch.view() as work:
            status = lib.sm_mod_prime_minus_one(
                ffi.from_buffer("unsigned char[]", out, require_writable=True),
                out.nbytes,
                ffi.from_buffer("unsigned char[]", d),
                d.nbytes,
                ffi.from_buffer("unsigned char[]", prime),
                prime.nbytes,
                ffi.from_buffer("unsigned char[]", work, require_writable=True),
                work.nbytes,
            )
    except BaseException:
        result.close()
        raise
    finally:
        scratch.close()
    if status != lib.SM_BIGNUM_OK:  # sizes are ours and checked above: cannot happen
        result.close()
        raise KeyFormatError("an RSA prime in the key could not be reduced: the key is corrupt")
    return result


def significant_bytes(number: memoryview) -> int:
    """The length of a big-endian number without its leading zero bytes (read in place)."""
    return _der.significant(number).nbytes
