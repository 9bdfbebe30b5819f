"""``d mod (p - 1)`` on big-endian numbers in locked memory, for RSA's CRT exponents.

An OpenSSH RSA key stores ``n, e, d, iqmp, p, q`` but not ``d mod (p-1)`` and ``d mod (q-1)``,
which PKCS#1 (the DER that OpenSSL loads) requires. Python ints would hold ``d``, ``p`` and
``q`` in ordinary heap memory that nobody wipes, so the reduction runs here byte by byte on
memoryviews of :class:`~securemem.SecureBytes`. Every value the loops touch is a table lookup
within 0..255, so only CPython's cached small ints are used: no int object ever holds key
bits. Binary long division: about 0.3 s per exponent for a 3072-bit key, once per load.
"""

from __future__ import annotations

import functools

from securemem._arena import Arena
from securemem._errors import KeyFormatError
from securemem._securebytes import SecureBytes

_SHIFTED = bytes((value << 1) & 0xFF for value in range(256))
_TOP_BIT = bytes(value >> 7 for value in range(256))
_KEEP = bytes((0x00, 0xFF))  # borrow 1 (r < m): keep r; borrow 0: take r - m


@functools.cache
def _subtraction_tables() -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """``difference[a][b] = (a - b) mod 256`` and ``borrow[a][b] = a < b`` as rows of
    bytes, so that indexing them yields cached small ints (built on first use: 128 KiB)."""
    difference = tuple(bytes((a - b) & 0xFF for b in range(256)) for a in range(256))
    borrow = tuple(bytes(int(a < b) for b in range(256)) for a in range(256))
    return difference, borrow


def mod_prime_minus_one(d: memoryview, prime: memoryview, arena: Arena | None) -> SecureBytes:
    """``d mod (prime - 1)`` for an odd ``prime``, big-endian, as long as ``prime``."""
    start = 0
    while start < prime.nbytes - 1 and prime[start] == 0:
        start += 1
    length = prime.nbytes - start + 1  # one spare byte: a doubled remainder may need it
    if prime.nbytes == 0 or prime[prime.nbytes - 1] & 1 == 0:
        raise KeyFormatError("an RSA prime in the key is not odd: the key is corrupt")
    difference, borrow_of = _subtraction_tables()
    modulus = SecureBytes(length, arena=arena)
    remainder = SecureBytes(length, arena=arena)
    candidate = SecureBytes(length, arena=arena)
    try:
        with modulus.view() as m, remainder.view() as r, candidate.view() as t:
            m[1:] = prime[start:]
            m[length - 1] = m[length - 1] ^ 1  # odd: p - 1 only clears the lowest bit
            last = length - 1
            for byte_index in range(d.nbytes):
                byte = d[byte_index]
                for shift in (7, 6, 5, 4, 3, 2, 1, 0):
                    # r = 2r + bit: below 2m, as r < m before
                    carry = (byte >> shift) & 1
                    for index in range(last, -1, -1):
                        value = r[index]
                        r[index] = _SHIFTED[value] | carry
                        carry = _TOP_BIT[value]
                    # t = r - m; the final borrow says whether r < m
                    borrow = 0
                    for index in range(last, -1, -1):
                        value = r[index]
                        first = difference[value][m[index]]
                        t[index] = difference[first][borrow]
                        borrow = borrow_of[value][m[index]] | borrow_of[first][borrow]
                    # r = r if r < m else t, without branching on the secret
                    keep = _KEEP[borrow]
                    for index in range(length):
                        value = t[index]
                        r[index] = value ^ ((r[index] ^ value) & keep)
        result = SecureBytes(length - 1, arena=arena)
        with result.view() as out, remainder.view() as r:
            out[:] = r[1:]  # below m, so the spare byte is zero
        return result
    finally:
        modulus.close()
        remainder.close()
        candidate.close()
