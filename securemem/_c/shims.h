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
#include "compat.h"
#if defined(__linux__)
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif
#if defined(__FreeBSD__)
#include <aio.h>
#include <strings.h> /* explicit_bzero is declared here on FreeBSD */
#include <sys/random.h>
#endif
#if defined(__OpenBSD__) || defined(__APPLE__)
#include <sys/random.h>
#endif

#if !defined(MAP_ANONYMOUS) && defined(MAP_ANON)
#define MAP_ANONYMOUS MAP_ANON
#endif

#if defined(__linux__) && defined(SYS_mlock2)
#define HAVE_MLOCK2 1
#else
#define HAVE_MLOCK2 0
#endif

#if defined(__linux__) && defined(SYS_memfd_secret)
#define HAVE_MEMFD_SECRET 1
#else
#define HAVE_MEMFD_SECRET 0
#endif

#if defined(__FreeBSD__)
#define HAVE_AIO_MLOCK 1
#else
#define HAVE_AIO_MLOCK 0
#endif

#ifdef MADV_DONTDUMP
#define HAVE_MADV_DONTDUMP 1
#else
#define HAVE_MADV_DONTDUMP 0
#endif
#ifdef MADV_WIPEONFORK
#define HAVE_MADV_WIPEONFORK 1
#else
#define HAVE_MADV_WIPEONFORK 0
#endif
#ifdef MADV_DONTFORK
#define HAVE_MADV_DONTFORK 1
#else
#define HAVE_MADV_DONTFORK 0
#endif
#ifdef MAP_NOCORE
#define HAVE_MAP_NOCORE 1
#define SM_MAP_EXTRA MAP_NOCORE
#elif defined(MAP_CONCEAL)
#define HAVE_MAP_NOCORE 0
#define SM_MAP_EXTRA MAP_CONCEAL
#else
#define HAVE_MAP_NOCORE 0
#define SM_MAP_EXTRA 0
#endif
#ifdef MAP_CONCEAL
#define HAVE_MAP_CONCEAL 1
#else
#define HAVE_MAP_CONCEAL 0
#endif
#if defined(INHERIT_ZERO)
#define HAVE_MINHERIT_ZERO 1
#else
#define HAVE_MINHERIT_ZERO 0
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
