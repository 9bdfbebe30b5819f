/* Hex and base64 codecs for secrets: decode text into a caller's buffer (locked
   memory) and encode a secret into one, in time independent of the secret's value.

   Pure C (no Python headers) so that any native code in securemem can call it.
   Timing: on valid input, every branch and every memory address depends only on
   the text's length and on where its whitespace and '=' padding are; the value of
   each digit is computed with arithmetic masks, never with a table or a branch
   (the reasoning is in codec.c). On invalid input the decoder stops at the first
   error, so its time reveals that error's position, which it reports anyway. */
#ifndef SECUREMEM_CODEC_H
#define SECUREMEM_CODEC_H
#include <stddef.h>

/* Results of the decoders. Never a character of the input: only what kind of
   error and (error_at) the offset where it was found. */
#define SM_CODEC_OK 0
#define SM_CODEC_BAD_CHARACTER 1    /* not in the alphabet (nor whitespace) */
#define SM_CODEC_SPACE_IN_PAIR 2    /* hex: whitespace between the two digits of a byte */
#define SM_CODEC_ODD_DIGITS 3       /* hex: the last byte has one digit only */
#define SM_CODEC_BAD_PADDING 4      /* base64: '=' where no padding may be */
#define SM_CODEC_AFTER_PADDING 5    /* base64: a character after the padding */
#define SM_CODEC_INCOMPLETE 6       /* base64: symbols not a multiple of 4 (padding missing?) */
#define SM_CODEC_OUTPUT_SIZE 7      /* more or less output than the capacity given */

/* Whitespace skipped by the decoders: what Python's bytes.fromhex skips (space,
   \t, \n, \v, \f, \r). */

/* Decode hex text (either case) into out[0..capacity). Whitespace may stand
   between bytes, never between the two digits of one byte (bytes.fromhex's rule).
   With out == NULL nothing is written and *written is the decoded size: call it
   once to size the output, then again to fill it. With out != NULL the decoded
   size must be exactly capacity (else SM_CODEC_OUTPUT_SIZE: the text changed
   between the calls), and no byte is ever written at or past out + capacity. */
int sm_hex_decode(unsigned char *out, size_t capacity, const unsigned char *text,
                  size_t length, size_t *written, size_t *error_at);

/* Decode base64 into out (same contract as sm_hex_decode). The alphabet is
   A-Z a-z 0-9 and the two characters given for values 62 and 63 ('+' '/', or
   '-' '_' for the URL-safe alphabet). Whitespace is skipped anywhere. Without
   it, the text must be groups of four symbols, the last one possibly ending in
   "==" or "=" (what base64.b64decode(validate=True) accepts, except that '='
   after a complete group, which Python 3.11 lets through, is refused). The unused low bits of the last symbol
   are not checked, as the standard library does not check them. */
int sm_base64_decode(unsigned char *out, size_t capacity, const unsigned char *text,
                     size_t length, unsigned char char62, unsigned char char63,
                     size_t *written, size_t *error_at);

/* Lowercase hex of data[0..length) into out[0..2 * length). */
void sm_hex_encode(unsigned char *out, const unsigned char *data, size_t length);

/* Padded base64 of data[0..length) into out[0..sm_base64_encoded_length(length)). */
size_t sm_base64_encoded_length(size_t length);
void sm_base64_encode(unsigned char *out, const unsigned char *data, size_t length,
                      unsigned char char62, unsigned char char63);

/* The per-symbol steps, exported (not static) so that a test can disassemble
   them and check that they contain no conditional branch and read no memory.
   sm_hex_digit_value / sm_base64_symbol_value return the value in the low bits
   and 0x100 when the character is invalid. */
unsigned sm_hex_digit_value(unsigned c);
unsigned sm_base64_symbol_value(unsigned c, unsigned char62, unsigned char63);
unsigned sm_hex_digit_char(unsigned nibble);
unsigned sm_base64_symbol_char(unsigned sextet, unsigned char62, unsigned char63);
unsigned sm_codec_is_space(unsigned c);

#endif /* SECUREMEM_CODEC_H */
