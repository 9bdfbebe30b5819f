/* See scrub.h. Why the registers matter as much as the stack: AES-NI, VAES and
   the ChaCha20 SIMD code in OpenSSL keep round keys (round key 0 is the key
   itself), key stream and plaintext blocks in vector registers and return
   without clearing them. The next time anything saves the register file to
   memory -- the dynamic linker resolving a lazily bound symbol (it XSAVEs every
   vector register onto the stack), a signal frame, a context switch into a
   core dump -- the key lands on the stack, below the caller, where burning the
   stack *before* that moment cannot reach it. Measured: an AES-256-GCM key
   found on the stack after the first lazily bound call that followed
   encrypt_into, gone with LD_BIND_NOW=1 or with the registers cleared. */
#include "scrub.h"
#include "shims.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>

/* The instructions name registers that only exist with AVX-512 / AVX, so each
   routine is compiled for that target and run only where the CPU (and the
   kernel, which must enable the register state in XCR0; the builtin checks
   both) supports it. The clobber lists keep the compiler from keeping a value
   of its own in a register across the asm. */
__attribute__((target("avx512f"), noinline)) static void sm_clear_avx512(void) {
    __asm__ __volatile__(
        "vpxord %%zmm0, %%zmm0, %%zmm0\n\t"
        "vpxord %%zmm1, %%zmm1, %%zmm1\n\t"
        "vpxord %%zmm2, %%zmm2, %%zmm2\n\t"
        "vpxord %%zmm3, %%zmm3, %%zmm3\n\t"
        "vpxord %%zmm4, %%zmm4, %%zmm4\n\t"
        "vpxord %%zmm5, %%zmm5, %%zmm5\n\t"
        "vpxord %%zmm6, %%zmm6, %%zmm6\n\t"
        "vpxord %%zmm7, %%zmm7, %%zmm7\n\t"
        "vpxord %%zmm8, %%zmm8, %%zmm8\n\t"
        "vpxord %%zmm9, %%zmm9, %%zmm9\n\t"
        "vpxord %%zmm10, %%zmm10, %%zmm10\n\t"
        "vpxord %%zmm11, %%zmm11, %%zmm11\n\t"
        "vpxord %%zmm12, %%zmm12, %%zmm12\n\t"
        "vpxord %%zmm13, %%zmm13, %%zmm13\n\t"
        "vpxord %%zmm14, %%zmm14, %%zmm14\n\t"
        "vpxord %%zmm15, %%zmm15, %%zmm15\n\t"
        "vpxord %%zmm16, %%zmm16, %%zmm16\n\t"
        "vpxord %%zmm17, %%zmm17, %%zmm17\n\t"
        "vpxord %%zmm18, %%zmm18, %%zmm18\n\t"
        "vpxord %%zmm19, %%zmm19, %%zmm19\n\t"
        "vpxord %%zmm20, %%zmm20, %%zmm20\n\t"
        "vpxord %%zmm21, %%zmm21, %%zmm21\n\t"
        "vpxord %%zmm22, %%zmm22, %%zmm22\n\t"
        "vpxord %%zmm23, %%zmm23, %%zmm23\n\t"
        "vpxord %%zmm24, %%zmm24, %%zmm24\n\t"
        "vpxord %%zmm25, %%zmm25, %%zmm25\n\t"
        "vpxord %%zmm26, %%zmm26, %%zmm26\n\t"
        "vpxord %%zmm27, %%zmm27, %%zmm27\n\t"
        "vpxord %%zmm28, %%zmm28, %%zmm28\n\t"
        "vpxord %%zmm29, %%zmm29, %%zmm29\n\t"
        "vpxord %%zmm30, %%zmm30, %%zmm30\n\t"
        "vpxord %%zmm31, %%zmm31, %%zmm31\n\t"
        "vzeroupper"
        ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
            "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
            "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23",
            "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31",
            "memory");
}

/* vzeroall zeroes all of ymm0-15. */
__attribute__((target("avx"), noinline)) static void sm_clear_avx(void) {
    __asm__ __volatile__("vzeroall" ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5",
                         "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
                         "xmm13", "xmm14", "xmm15", "memory");
}

/* SSE2 is part of x86-64 itself: every CPU has xmm0-15. */
__attribute__((noinline)) static void sm_clear_sse(void) {
    __asm__ __volatile__(
        "pxor %%xmm0, %%xmm0\n\t"
        "pxor %%xmm1, %%xmm1\n\t"
        "pxor %%xmm2, %%xmm2\n\t"
        "pxor %%xmm3, %%xmm3\n\t"
        "pxor %%xmm4, %%xmm4\n\t"
        "pxor %%xmm5, %%xmm5\n\t"
        "pxor %%xmm6, %%xmm6\n\t"
        "pxor %%xmm7, %%xmm7\n\t"
        "pxor %%xmm8, %%xmm8\n\t"
        "pxor %%xmm9, %%xmm9\n\t"
        "pxor %%xmm10, %%xmm10\n\t"
        "pxor %%xmm11, %%xmm11\n\t"
        "pxor %%xmm12, %%xmm12\n\t"
        "pxor %%xmm13, %%xmm13\n\t"
        "pxor %%xmm14, %%xmm14\n\t"
        "pxor %%xmm15, %%xmm15"
        ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
            "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
            "memory");
}

/* 0 not yet known, else 1 SSE, 2 AVX, 3 AVX-512 (the same answer in every thread,
   so a racing first call in two threads stores the same value). */
static int sm_vector_width = 0;

/* Which registers the CPU has and the kernel saves (XCR0), asked with cpuid and xgetbv
   here, not __builtin_cpu_supports: that answer comes from the compiler's runtime library,
   and Zig's (the release wheels' compiler) answers 0 for every feature, which left the
   upper halves of the AVX and AVX-512 registers uncleared. */
static int sm_detect_vector_width(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 1;
    if (!(ecx & (1U << 27)) || !(ecx & (1U << 28))) return 1; /* OSXSAVE, AVX */
    unsigned int xcr0, xcr0_high;
    __asm__ __volatile__("xgetbv" : "=a"(xcr0), "=d"(xcr0_high) : "c"(0));
    (void)xcr0_high;
    if ((xcr0 & 0x6U) != 0x6U) return 1; /* the kernel saves no YMM state */
    /* AVX512F, and the opmask, ZMM_Hi256 and Hi16_ZMM states saved */
    if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && (ebx & (1U << 16)) &&
        (xcr0 & 0xe0U) == 0xe0U)
        return 3;
    return 2;
}

void sm_clear_vector_registers(void) {
    int width = __atomic_load_n(&sm_vector_width, __ATOMIC_RELAXED);
    if (width == 0) {
        width = sm_detect_vector_width();
        __atomic_store_n(&sm_vector_width, width, __ATOMIC_RELAXED);
    }
    if (width == 3) sm_clear_avx512();
    else if (width == 2) sm_clear_avx();
    else sm_clear_sse();
}

#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))

/* Writing a NEON register zeroes the rest of the SVE register it is part of. */
void sm_clear_vector_registers(void) {
    __asm__ __volatile__(
        "movi v0.16b, #0\n\t"  "movi v1.16b, #0\n\t"  "movi v2.16b, #0\n\t"
        "movi v3.16b, #0\n\t"  "movi v4.16b, #0\n\t"  "movi v5.16b, #0\n\t"
        "movi v6.16b, #0\n\t"  "movi v7.16b, #0\n\t"  "movi v8.16b, #0\n\t"
        "movi v9.16b, #0\n\t"  "movi v10.16b, #0\n\t" "movi v11.16b, #0\n\t"
        "movi v12.16b, #0\n\t" "movi v13.16b, #0\n\t" "movi v14.16b, #0\n\t"
        "movi v15.16b, #0\n\t" "movi v16.16b, #0\n\t" "movi v17.16b, #0\n\t"
        "movi v18.16b, #0\n\t" "movi v19.16b, #0\n\t" "movi v20.16b, #0\n\t"
        "movi v21.16b, #0\n\t" "movi v22.16b, #0\n\t" "movi v23.16b, #0\n\t"
        "movi v24.16b, #0\n\t" "movi v25.16b, #0\n\t" "movi v26.16b, #0\n\t"
        "movi v27.16b, #0\n\t" "movi v28.16b, #0\n\t" "movi v29.16b, #0\n\t"
        "movi v30.16b, #0\n\t" "movi v31.16b, #0"
        ::: "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11",
            "v12", "v13", "v14", "v15", "v16", "v17", "v18", "v19", "v20", "v21", "v22",
            "v23", "v24", "v25", "v26", "v27", "v28", "v29", "v30", "v31", "memory");
}

#else

/* Another architecture: no registers cleared (documented); the stack burn still runs. */
void sm_clear_vector_registers(void) {}

#endif

size_t sm_scrub_after_native(size_t stack_length) {
    sm_clear_vector_registers();
    return sm_burn_stack(stack_length);
}
