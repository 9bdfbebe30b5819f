/* What an older C library lacks, supplied here, so that one Linux wheel built against
   glibc 2.17 (manylinux2014) runs on every later system. glibc added getrandom(2) and
   explicit_bzero(3) in 2.25; a build against an older glibc gets the fallbacks below,
   chosen by the C library's version (a feature test, not a guess about the system).
   Included by shims.h; sm_linux_getrandom exists on Linux only. */
#ifndef SECUREMEM_COMPAT_H
#define SECUREMEM_COMPAT_H
#include <stddef.h>
#include <sys/types.h>

#if defined(__GLIBC__) && (__GLIBC__ < 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ < 25))
#define SM_OLD_GLIBC 1
#else
#define SM_OLD_GLIBC 0
#endif

/* explicit_bzero where the C library has it (shims.c's sm_wipe asks this). */
#if (defined(__GLIBC__) && !SM_OLD_GLIBC) || defined(__FreeBSD__) || defined(__OpenBSD__)
#define SM_HAVE_EXPLICIT_BZERO 1
#else
#define SM_HAVE_EXPLICIT_BZERO 0
#endif

#if defined(__linux__)
/* getrandom(buffer, length, 0) on Linux, whatever the C library: the C library's function
   when it has one, else the system call, else (a kernel older than 3.17, which has no such
   call) a read of /dev/urandom. Returns the bytes written, or -1 with errno set. */
ssize_t sm_linux_getrandom(void *buffer, size_t length);
#endif

#endif
