/* Scrubbing after a call into native code that handled a secret (OpenSSL through
   pyca/cryptography, for one): what that code leaves behind in the CPU's vector
   registers and on the stack below the caller once it has returned. */
#ifndef SECUREMEM_SCRUB_H
#define SECUREMEM_SCRUB_H
#include <stddef.h>

/* Zero every vector register this CPU has (x86-64: xmm/ymm 0-15, and zmm 0-31
   where AVX-512 is enabled; AArch64: v0-v31). They are all caller-saved, so no
   caller may expect them to survive a call. */
void sm_clear_vector_registers(void);

/* sm_clear_vector_registers, then sm_burn_stack(stack_length) (shims.h): one
   native call after each call into cryptography. Returns the stack bytes wiped. */
size_t sm_scrub_after_native(size_t stack_length);

#endif /* SECUREMEM_SCRUB_H */
