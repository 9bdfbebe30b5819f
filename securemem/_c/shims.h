/* securemem's kernel shims: what the platform has (HAVE_*), our own advice and
   protection codes, and one function per system call. Platform differences are
   settled here at compile time; Python asks HAVE_* what it got. */
#ifndef SECUREMEM_SHIMS_H
#define SECUREMEM_SHIMS_H
#define _GNU_SOURCE 1
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#if defined(__linux__)
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif
#if defined(__FreeBSD__)
#include <aio.h>
#include <strings.h> /* explicit_bzero is declared here on FreeBSD */
#endif
/* getrandom(2) (Linux with glibc 2.25+ or musl, FreeBSD 12+, NetBSD 10+) or getentropy
   (macOS) are declared here; OpenBSD has no such header (its getentropy is in unistd.h),
   nor has glibc before 2.25. Which call to use is decided by what the header defines
   (sm_random in shims.c), not by the system's name. */
#if defined(__has_include)
#if __has_include(<sys/random.h>)
#include <sys/random.h>
#endif
#endif

/* glibc 2.25 added getrandom and explicit_bzero; a wheel built against older glibc
   headers (manylinux2014's 2.17) must not call them. */
#if defined(__GLIBC__) && defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 25)
#define SM_GLIBC_2_25 1
#endif
#endif
#ifndef SM_GLIBC_2_25
#define SM_GLIBC_2_25 0
#endif

#if !defined(MAP_ANONYMOUS) && defined(MAP_ANON)
#define MAP_ANONYMOUS MAP_ANON
#endif

#if defined(__linux__) && defined(SYS_memfd_secret)
#define HAVE_MEMFD_SECRET 1
#else
#define HAVE_MEMFD_SECRET 0
#endif

/* aio_mlock(2) is FreeBSD's own (10.0 and later) and no header macro announces it, so the
   system is named; memfd_secret is a Linux system call, known by its number. */
#if defined(__FreeBSD__)
#define HAVE_AIO_MLOCK 1
#else
#define HAVE_AIO_MLOCK 0
#endif

/* Each advice (sm_advise in shims.c) is tested there, by the flag its call needs. */
#ifdef MAP_NOCORE
#define SM_MAP_EXTRA MAP_NOCORE
#elif defined(MAP_CONCEAL)
#define SM_MAP_EXTRA MAP_CONCEAL
#else
#define SM_MAP_EXTRA 0
#endif
#ifdef MAP_CONCEAL
#define HAVE_MAP_CONCEAL 1
#else
#define HAVE_MAP_CONCEAL 0
#endif
#if defined(__linux__) && defined(PR_SET_DUMPABLE)
#define HAVE_PR_SET_DUMPABLE 1
#else
#define HAVE_PR_SET_DUMPABLE 0
#endif

#define SM_ADVICE_DONTDUMP 1
#define SM_ADVICE_WIPEONFORK 2
#define SM_ADVICE_DONTFORK 3
#define SM_PROT_NONE 0
#define SM_PROT_READ 1
#define SM_PROT_READWRITE 2

long sm_page_size(void);
uint64_t sm_physical_memory(void);
void *sm_map(size_t length);
void *sm_map_secret(size_t length);
int sm_unmap(void *address, size_t length);
void *sm_map_zero_at(void *address, size_t length);
int sm_lock(void *address, size_t length);
int sm_unlock(void *address, size_t length);
int sm_advise(void *address, size_t length, int advice);
int sm_protect(void *address, size_t length, int protection);
int sm_memlock_limit(uint64_t *soft, uint64_t *hard);
int sm_disable_core_dumps(void);
int sm_dumpable(void);
int sm_random(void *buffer, size_t length);
void sm_wipe(void *address, size_t length);
void sm_wipe_at(uintptr_t address, size_t length);
int sm_equal(const void *a, const void *b, size_t length);
size_t sm_burn_stack(size_t length);
void *sm_aio_lock_start(void *address, size_t length, int *error);
int sm_aio_lock_poll(void *request);
int sm_aio_lock_finish(void *request);
int sm_aio_lock_cancel(void *request);

#endif /* SECUREMEM_SHIMS_H */
