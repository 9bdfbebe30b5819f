"""cffi builder for ``securemem._native``: the kernel shims' C, compiled by the package build.

Out-of-line API mode: the C below is compiled by the package build into an
extension module, so every call is a direct C call (no ``dlopen``) and releases
the GIL. The C is deliberately thin: one shim per system call, a wipe the
compiler may not remove, and a constant-time comparison. Platform differences
are settled here, at compile time; Python asks ``HAVE_*`` what it got.
"""

import os
import sys

from cffi import FFI

ffibuilder = FFI()
# Both extensions (this one and setup.py's _core) bind every symbol when they load, on ELF
# systems: a symbol bound lazily, on its first call, goes through the dynamic linker's
# resolver, which saves all the vector registers on the stack, and the registers may still
# hold bytes of a secret that a copy just moved.
BIND_NOW = ["-Wl,-z,now", "-Wl,-z,relro"] if sys.platform.startswith(("linux", "freebsd")) else []
# Both are linked without their symbol table and debug sections on ELF systems (a wheel's
# extension shrinks to about a quarter; the exported functions stay in the dynamic symbol
# table). SECUREMEM_KEEP_SYMBOLS=1 keeps them, for a debugger. macOS's linker has no -s.
KEEP_SYMBOLS = os.environ.get("SECUREMEM_KEEP_SYMBOLS", "") == "1"
STRIP = [] if KEEP_SYMBOLS or sys.platform == "darwin" else ["-s"]

# What Python may call, per header of securemem/_c, in the header's own words. cffi's cdef
# cannot read the headers themselves: it runs no preprocessor (the headers are #if feature
# tests around system #includes), and it takes a constant only as a declaration
# (`static const int NAME;`, whose value the compiled module reads from the header's
# #define). A block declares only what Python calls (sm_random, sm_equal and sm_map_zero_at
# are the C core's alone). API mode compiles every call against the real header, but an
# integer type that drifted would be converted without a word: tests/test_native_build.py
# checks that each prototype here is its header's, word for word, and each constant is
# defined there.
DECLARATIONS = {
    "shims.h": """
    /* What this build of the platform has (1) or lacks (0). */
    static const int HAVE_MEMFD_SECRET;
    static const int HAVE_AIO_MLOCK;

    /* Advice and protection codes, our own numbering (mapped in C). */
    static const int SM_ADVICE_DONTDUMP;
    static const int SM_ADVICE_WIPEONFORK;
    static const int SM_ADVICE_DONTFORK;
    static const int SM_PROT_NONE;
    static const int SM_PROT_READ;
    static const int SM_PROT_READWRITE;

    long sm_page_size(void);
    uint64_t sm_physical_memory(void);
    void *sm_map(size_t length);
    void *sm_map_secret(size_t length);
    int sm_unmap(void *address, size_t length);
    int sm_lock(void *address, size_t length);
    int sm_unlock(void *address, size_t length);
    int sm_advise(void *address, size_t length, int advice);
    int sm_protect(void *address, size_t length, int protection);
    int sm_memlock_limit(uint64_t *soft, uint64_t *hard);
    int sm_disable_core_dumps(void);
    int sm_dumpable(void);
    void sm_wipe(void *address, size_t length);
    void sm_wipe_at(uintptr_t address, size_t length);
    size_t sm_burn_stack(size_t length);

    /* FreeBSD aio_mlock(2); stubs returning ENOSYS elsewhere. */
    void *sm_aio_lock_start(void *address, size_t length, int *error);
    int sm_aio_lock_poll(void *request);
    int sm_aio_lock_finish(void *request);
    int sm_aio_lock_cancel(void *request);
    """,
    "codec.h": """
    static const int SM_CODEC_OK;
    static const int SM_CODEC_BAD_CHARACTER;
    static const int SM_CODEC_SPACE_IN_PAIR;
    static const int SM_CODEC_ODD_DIGITS;
    static const int SM_CODEC_BAD_PADDING;
    static const int SM_CODEC_AFTER_PADDING;
    static const int SM_CODEC_INCOMPLETE;
    static const int SM_CODEC_OUTPUT_SIZE;

    int sm_hex_decode(unsigned char *out, size_t capacity, const unsigned char *text,
                      size_t length, size_t *written, size_t *error_at);
    int sm_base64_decode(unsigned char *out, size_t capacity, const unsigned char *text,
                         size_t length, unsigned char char62, unsigned char char63,
                         size_t *written, size_t *error_at);
    void sm_hex_encode(unsigned char *out, const unsigned char *data, size_t length);
    size_t sm_base64_encoded_length(size_t length);
    void sm_base64_encode(unsigned char *out, const unsigned char *data, size_t length,
                          unsigned char char62, unsigned char char63);
    unsigned sm_hex_digit_value(unsigned c);
    unsigned sm_base64_symbol_value(unsigned c, unsigned char62, unsigned char63);
    unsigned sm_hex_digit_char(unsigned nibble);
    unsigned sm_base64_symbol_char(unsigned sextet, unsigned char62, unsigned char63);
    unsigned sm_codec_is_space(unsigned c);
    """,
    "scrub.h": """
    void sm_clear_vector_registers(void);
    size_t sm_scrub_after_native(size_t stack_length);
    """,
    "secretfile.h": """
    static const int SM_FILE_CREATE;
    static const int SM_FILE_SIZE;
    static const int SM_FILE_MAP;
    static const int SM_FILE_DONTDUMP;
    static const int SM_FILE_DONTFORK;
    static const int SM_FILE_LOCK;
    static const int SM_FILE_TABLE_FULL;

    int sm_secret_file_open(const char *name, const void *data, size_t size, void **mapping,
                            unsigned long long *serial, int *failed_step);
    int sm_secret_file_close(int fd, void *mapping, size_t size, unsigned long long serial);
    int sm_secret_file_count(void);
    int sm_secret_file_wipe_all(void);
    """,
    "bignum.h": """
    static const int SM_BIGNUM_OK;
    static const int SM_BIGNUM_BAD_ARGUMENT;
    static const int SM_BIGNUM_EVEN_PRIME;

    size_t sm_mod_prime_minus_one_scratch(size_t prime_length);
    int sm_mod_prime_minus_one(unsigned char *out, size_t out_length, const unsigned char *d,
                               size_t d_length, const unsigned char *prime, size_t prime_length,
                               unsigned char *scratch, size_t scratch_length);
    """,
}

for declarations in DECLARATIONS.values():
    ffibuilder.cdef(declarations)

# The C lives in securemem/_c (paths relative to the project root, where setup.py runs).
ffibuilder.set_source(
    "securemem._native",
    "".join(f'#include "{header}"\n' for header in DECLARATIONS),
    sources=[
        "securemem/_c/shims.c",
        "securemem/_c/codec.c",
        "securemem/_c/scrub.c",
        "securemem/_c/secretfile.c",
        "securemem/_c/bignum.c",
    ],
    include_dirs=["securemem/_c"],
    extra_compile_args=["-Wall", "-Wextra", "-Wvla-larger-than=1048576"],
    extra_link_args=[*BIND_NOW, *STRIP],
)

if __name__ == "__main__":
    # `python build_support/native_build.py emit FILE`: the module's C source alone, as the
    # package build generates it (tools/cross-compile.sh and tools/freethreaded-check.sh
    # compile it for other systems); with no arguments, the module itself.
    if sys.argv[1:2] == ["emit"] and len(sys.argv) == 3:
        ffibuilder.emit_c_code(sys.argv[2])
    else:
        ffibuilder.compile(verbose=True)
