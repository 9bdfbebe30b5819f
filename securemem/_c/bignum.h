/* d mod (p - 1) for RSA's CRT exponents, on big-endian byte strings the caller keeps in
   locked memory (securemem._keyformats._bignum). OpenSSH and PuTTY key files store d, p and
   q but not d mod (p - 1), d mod (q - 1), which PKCS#1 (the DER OpenSSL loads) needs.

   Pure C, no allocation: every intermediate value lives in the caller's scratch buffer
   (locked memory), never on the heap; the few bytes held in registers and on this
   function's stack are wiped by the caller's sm_scrub_after_native afterwards.
   Time depends only on the lengths, never on the values: a binary long division whose
   conditional subtraction is a mask, not a branch. */
#ifndef SECUREMEM_BIGNUM_H
#define SECUREMEM_BIGNUM_H
#include <stddef.h>

#define SM_BIGNUM_OK 0
#define SM_BIGNUM_BAD_ARGUMENT 1 /* a NULL pointer, an empty prime, a prime of 1 or wrong buffer sizes */
#define SM_BIGNUM_EVEN_PRIME 2   /* the "prime" is even: the key is corrupt */

/* Scratch bytes sm_mod_prime_minus_one needs for a prime of prime_length bytes. */
size_t sm_mod_prime_minus_one_scratch(size_t prime_length);

/* out[0..prime_length) = d mod (prime - 1), big-endian, for an odd prime (leading zero
   bytes of d and prime allowed). scratch: at least sm_mod_prime_minus_one_scratch bytes;
   it is left zeroed. out must not overlap the inputs or scratch. */
int sm_mod_prime_minus_one(unsigned char *out, size_t out_length, const unsigned char *d,
                           size_t d_length, const unsigned char *prime, size_t prime_length,
                           unsigned char *scratch, size_t scratch_length);

#endif /* SECUREMEM_BIGNUM_H */
