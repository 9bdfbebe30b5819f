/* See bignum.h. The remainder r runs over 32-bit limbs (least significant first) so a
   3072-bit d costs 3072 shift-and-subtract steps of prime_length / 4 limbs each: well
   under a millisecond, where the same division byte by byte in Python took 0.2 s. */
#include "bignum.h"

#include <stdint.h>
#include <string.h>

#include "shims.h"

static size_t limb_count(size_t prime_length) {
    /* One limb more than the prime needs: a doubled remainder (below 2m) may need a bit. */
    return prime_length / 4 + 2;
}

size_t sm_mod_prime_minus_one_scratch(size_t prime_length) {
    if (prime_length > SIZE_MAX / 8 - 16) {
        return 0;
    }
    /* Two numbers of limb_count limbs, plus room to align the first limb. */
    return 2 * limb_count(prime_length) * sizeof(uint32_t) + sizeof(uint32_t) - 1;
}

/* Big-endian bytes -> little-endian limbs, zero-extended to count limbs. */
static void load_limbs(uint32_t *limbs, size_t count, const unsigned char *bytes, size_t length) {
    memset(limbs, 0, count * sizeof(uint32_t));
    for (size_t index = 0; index < length; index++) {
        size_t position = length - 1 - index; /* significance of bytes[index], in bytes */
        limbs[position / 4] |= (uint32_t)bytes[index] << (8 * (position % 4));
    }
}

int sm_mod_prime_minus_one(unsigned char *out, size_t out_length, const unsigned char *d,
                           size_t d_length, const unsigned char *prime, size_t prime_length,
                           unsigned char *scratch, size_t scratch_length) {
    if (out == NULL || d == NULL || prime == NULL || scratch == NULL || prime_length == 0 ||
        out_length != prime_length || scratch_length < sm_mod_prime_minus_one_scratch(prime_length) ||
        sm_mod_prime_minus_one_scratch(prime_length) == 0) {
        return SM_BIGNUM_BAD_ARGUMENT;
    }
    if ((prime[prime_length - 1] & 1) == 0) {
        return SM_BIGNUM_EVEN_PRIME;
    }
    /* prime 1: prime - 1 is 0, no modulus (read in full, not up to the first non-zero byte) */
    unsigned char above_one = prime[prime_length - 1] & 0xFEu;
    for (size_t index = 0; index + 1 < prime_length; index++)
        above_one |= prime[index];
    if (above_one == 0)
        return SM_BIGNUM_BAD_ARGUMENT;
    size_t count = limb_count(prime_length);
    /* The caller's buffer need not be aligned for limbs: start at its first aligned byte
       (the scratch size leaves room for that). */
    size_t misalignment = (uintptr_t)scratch % sizeof(uint32_t);
    size_t skip = misalignment ? sizeof(uint32_t) - misalignment : 0;
    uint32_t *modulus = (uint32_t *)(void *)(scratch + skip);
    uint32_t *remainder = modulus + count;
    load_limbs(modulus, count, prime, prime_length);
    modulus[0] ^= 1; /* prime is odd: prime - 1 only clears the lowest bit */
    memset(remainder, 0, count * sizeof(uint32_t));

    for (size_t index = 0; index < d_length; index++) {
        for (int shift = 7; shift >= 0; shift--) {
            /* r = 2r + bit; r < m before, so r < 2m now. */
            uint32_t carry = (uint32_t)(d[index] >> shift) & 1u;
            for (size_t limb = 0; limb < count; limb++) {
                uint32_t value = remainder[limb];
                remainder[limb] = (value << 1) | carry;
                carry = value >> 31;
            }
            /* borrow = (r < m), computing r - m limb by limb without storing it. */
            uint64_t borrow = 0;
            for (size_t limb = 0; limb < count; limb++) {
                uint64_t difference = (uint64_t)remainder[limb] - modulus[limb] - borrow;
                borrow = (difference >> 63) & 1u;
            }
            /* r -= m unless r < m: the mask selects, no branch on the value. */
            uint32_t keep_mask = (uint32_t)0 - (uint32_t)(1u - borrow); /* all ones: subtract */
            borrow = 0;
            for (size_t limb = 0; limb < count; limb++) {
                uint64_t difference =
                    (uint64_t)remainder[limb] - (modulus[limb] & keep_mask) - borrow;
                remainder[limb] = (uint32_t)difference;
                borrow = (difference >> 63) & 1u;
            }
        }
    }
    for (size_t index = 0; index < out_length; index++) {
        size_t position = out_length - 1 - index;
        out[index] = (unsigned char)(remainder[position / 4] >> (8 * (position % 4)));
    }
    sm_wipe(scratch, scratch_length);
    return SM_BIGNUM_OK;
}
