/* Hex and base64 codecs for secrets (declared in codec.h).

   Why this is constant time, for reviewers:
   - A digit's value never selects a branch or a memory address. Each per-symbol
     step (sm_hex_digit_value, sm_base64_symbol_value and the two encoders)
     computes every candidate value (a digit, an upper-case letter, ...) and a
     mask of 0x00 or 0xFF for each "the character is in this range" test, then
     ORs the candidates together under their masks. The masks come from
     lt_mask(): subtracting two bytes as unsigned ints wraps to a number whose
     bits 8 and up are all ones exactly when the first is smaller, so a shift
     and an AND turn the comparison into a mask with no compare-and-jump. No
     lookup table is used: which table entry is read would show in the cache.
     tests/test_codecs.py disassembles these functions in the built extension
     and fails if the compiler put a conditional jump or a memory read in them.
   - The loops branch only on: the position (end of text, end of a group of
     four base64 symbols, the second digit of a hex pair), whether a character
     is whitespace or '=' padding (their positions are not secret: they are
     the layout of the text), and whether a character was invalid (never, on
     valid input; on invalid input the decoder stops, and the position where it
     stopped is reported in the error anyway).
   - Output bytes are written at positions that depend on the same things only.
   What this cannot promise: that the CPU's own instructions (shifts, ORs,
   subtractions) take the same time for every operand; on x86-64 and arm64
   they do. */
#include "codec.h"

/* The per-symbol steps are never inlined or cloned, so the code the test
   disassembles is the code the loops run. */
#if defined(__GNUC__) && !defined(__clang__)
#define SM_CHECKED_STEP __attribute__((noinline, noclone))
#elif defined(__GNUC__)
#define SM_CHECKED_STEP __attribute__((noinline))
#else
#define SM_CHECKED_STEP
#endif

/* 0xFF when a < b, else 0x00; a and b in 0..256. */
static inline unsigned lt_mask(unsigned a, unsigned b) { return ((a - b) >> 8) & 0xFFu; }

/* 0xFF when low <= c < high, else 0x00. */
static inline unsigned range_mask(unsigned c, unsigned low, unsigned high) {
    return (lt_mask(c, low) ^ 0xFFu) & lt_mask(c, high);
}

/* 0xFF when a == b, else 0x00; a and b in 0..255. */
static inline unsigned eq_mask(unsigned a, unsigned b) { return lt_mask(a ^ b, 1); }

/* 0x100 when mask is 0x00 (invalid), 0 when it is 0xFF. */
static inline unsigned invalid_flag(unsigned valid_mask) { return ((valid_mask ^ 0xFFu) & 1u) << 8; }

SM_CHECKED_STEP unsigned sm_codec_is_space(unsigned c) {
    c &= 0xFFu;
    /* ' ' and \t \n \v \f \r (9..13): the ASCII whitespace that bytes.fromhex skips. */
    return (eq_mask(c, 0x20) | range_mask(c, 0x09, 0x0E)) & 1u;
}

SM_CHECKED_STEP unsigned sm_hex_digit_value(unsigned c) {
    c &= 0xFFu;
    unsigned is_digit = range_mask(c, '0', '9' + 1);
    /* Setting bit 5 folds 'A'..'F' onto 'a'..'f'; no other byte lands in 'a'..'f'. */
    unsigned folded = c | 0x20u;
    unsigned is_letter = range_mask(folded, 'a', 'f' + 1);
    unsigned value = ((c - '0') & is_digit) | ((folded - ('a' - 10)) & is_letter);
    return (value & 0x0Fu) | invalid_flag(is_digit | is_letter);
}

SM_CHECKED_STEP unsigned sm_base64_symbol_value(unsigned c, unsigned char62, unsigned char63) {
    c &= 0xFFu;
    unsigned upper = range_mask(c, 'A', 'Z' + 1);
    unsigned lower = range_mask(c, 'a', 'z' + 1);
    unsigned digit = range_mask(c, '0', '9' + 1);
    unsigned is62 = eq_mask(c, char62 & 0xFFu);
    unsigned is63 = eq_mask(c, char63 & 0xFFu);
    unsigned value = ((c - 'A') & upper) | ((c - ('a' - 26)) & lower) |
                     ((c + (52 - '0')) & digit) | (62u & is62) | (63u & is63);
    return (value & 0x3Fu) | invalid_flag(upper | lower | digit | is62 | is63);
}

SM_CHECKED_STEP unsigned sm_hex_digit_char(unsigned nibble) {
    nibble &= 0x0Fu;
    /* '0' + n, plus the distance from '9' + 1 to 'a' when n > 9. */
    return nibble + '0' + (lt_mask(9, nibble) & ('a' - '9' - 1));
}

SM_CHECKED_STEP unsigned sm_base64_symbol_char(unsigned sextet, unsigned char62, unsigned char63) {
    sextet &= 0x3Fu;
    unsigned upper = lt_mask(sextet, 26);
    unsigned lower = range_mask(sextet, 26, 52);
    unsigned digit = range_mask(sextet, 52, 62);
    unsigned is62 = eq_mask(sextet, 62);
    unsigned is63 = eq_mask(sextet, 63);
    return (((sextet + 'A') & upper) | ((sextet + ('a' - 26)) & lower) |
            ((sextet - (52 - '0')) & digit) | (char62 & is62) | (char63 & is63)) & 0xFFu;
}

/* Append one decoded byte; with out == NULL only count it. Fails (0) instead of
   writing past capacity: the text may have been changed by another thread
   since the sizing pass. */
static inline int put(unsigned char *out, size_t capacity, size_t *count, unsigned byte) {
    if (out != NULL) {
        if (*count >= capacity) return 0;
        out[*count] = (unsigned char)byte;
    }
    *count += 1;
    return 1;
}

static int finish(unsigned char *out, size_t capacity, size_t count, size_t *written) {
    *written = count;
    return out != NULL && count != capacity ? SM_CODEC_OUTPUT_SIZE : SM_CODEC_OK;
}

int sm_hex_decode(unsigned char *out, size_t capacity, const unsigned char *text,
                  size_t length, size_t *written, size_t *error_at) {
    size_t count = 0;
    size_t i = 0;
    *written = 0;
    *error_at = 0;
    while (i < length) {
        if (sm_codec_is_space(text[i])) { /* between two bytes: skipped */
            i++;
            continue;
        }
        /* The error checks below are never taken on valid input; they follow
           bytes.fromhex's order, so both report the same offset. */
        unsigned high = sm_hex_digit_value(text[i]);
        if (high & 0x100u) {
            *error_at = i;
            return SM_CODEC_BAD_CHARACTER;
        }
        if (i + 1 >= length) {
            *error_at = length;
            return SM_CODEC_ODD_DIGITS;
        }
        unsigned low = sm_hex_digit_value(text[i + 1]);
        if (low & 0x100u) {
            *error_at = i + 1;
            return sm_codec_is_space(text[i + 1]) ? SM_CODEC_SPACE_IN_PAIR : SM_CODEC_BAD_CHARACTER;
        }
        if (!put(out, capacity, &count, (high << 4) | low)) return SM_CODEC_OUTPUT_SIZE;
        i += 2;
    }
    return finish(out, capacity, count, written);
}

int sm_base64_decode(unsigned char *out, size_t capacity, const unsigned char *text,
                     size_t length, unsigned char char62, unsigned char char63,
                     size_t *written, size_t *error_at) {
    size_t count = 0;
    unsigned group = 0;    /* the sextets of the current group, oldest in the high bits */
    unsigned in_group = 0; /* how many: 0..3 */
    unsigned pads = 0;     /* '=' seen so far */
    unsigned pads_due = 0; /* '=' that complete the last group: 4 - its data symbols */
    *written = 0;
    *error_at = 0;
    for (size_t i = 0; i < length; i++) {
        unsigned c = text[i];
        if (sm_codec_is_space(c)) continue;
        *error_at = i;
        if (c == '=') { /* the padding's position is not secret */
            if (pads == 0) {
                /* "xx==" or "xxx=": the group's bits end here. One data symbol, or
                   none (a '=' leading the text or after a complete group), is wrong. */
                if (in_group < 2) return SM_CODEC_BAD_PADDING;
                pads_due = 4 - in_group;
                if (!put(out, capacity, &count, in_group == 2 ? group >> 4 : group >> 10))
                    return SM_CODEC_OUTPUT_SIZE;
                if (in_group == 3 && !put(out, capacity, &count, (group >> 2) & 0xFFu))
                    return SM_CODEC_OUTPUT_SIZE;
                group = 0;
            }
            if (++pads > pads_due) return SM_CODEC_BAD_PADDING;
            continue;
        }
        unsigned value = sm_base64_symbol_value(c, char62, char63);
        if (value & 0x100u) return SM_CODEC_BAD_CHARACTER; /* never taken on valid input */
        if (pads != 0) return SM_CODEC_AFTER_PADDING;
        group = (group << 6) | value;
        if (++in_group == 4) {
            if (!put(out, capacity, &count, group >> 16) ||
                !put(out, capacity, &count, (group >> 8) & 0xFFu) ||
                !put(out, capacity, &count, group & 0xFFu))
                return SM_CODEC_OUTPUT_SIZE;
            group = 0;
            in_group = 0;
        }
    }
    *error_at = length;
    if (pads != pads_due || (pads == 0 && in_group != 0)) return SM_CODEC_INCOMPLETE;
    return finish(out, capacity, count, written);
}

void sm_hex_encode(unsigned char *out, const unsigned char *data, size_t length) {
    for (size_t i = 0; i < length; i++) {
        out[2 * i] = (unsigned char)sm_hex_digit_char(data[i] >> 4);
        out[2 * i + 1] = (unsigned char)sm_hex_digit_char(data[i] & 0x0Fu);
    }
}

size_t sm_base64_encoded_length(size_t length) {
    return length / 3 * 4 + (length % 3 != 0 ? 4 : 0);
}

void sm_base64_encode(unsigned char *out, const unsigned char *data, size_t length,
                      unsigned char char62, unsigned char char63) {
    size_t full = length / 3 * 3;
    size_t i = 0;
    for (; i < full; i += 3) {
        unsigned group = ((unsigned)data[i] << 16) | ((unsigned)data[i + 1] << 8) | data[i + 2];
        out[0] = (unsigned char)sm_base64_symbol_char(group >> 18, char62, char63);
        out[1] = (unsigned char)sm_base64_symbol_char(group >> 12, char62, char63);
        out[2] = (unsigned char)sm_base64_symbol_char(group >> 6, char62, char63);
        out[3] = (unsigned char)sm_base64_symbol_char(group, char62, char63);
        out += 4;
    }
    size_t rest = length - full; /* 0, 1 or 2 bytes: their count is not secret */
    if (rest != 0) {
        unsigned group = (unsigned)data[i] << 16;
        if (rest == 2) group |= (unsigned)data[i + 1] << 8;
        out[0] = (unsigned char)sm_base64_symbol_char(group >> 18, char62, char63);
        out[1] = (unsigned char)sm_base64_symbol_char(group >> 12, char62, char63);
        out[2] = rest == 2 ? (unsigned char)sm_base64_symbol_char(group >> 6, char62, char63)
                           : (unsigned char)'=';
        out[3] = '=';
    }
}
