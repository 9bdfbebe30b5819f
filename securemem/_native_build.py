"""cffi builder for ``securemem._native``: the only C in securemem.

Out-of-line API mode: the C below is compiled by the package build into an
extension module, so every call is a direct C call (no ``dlopen``) and releases
the GIL. The C is deliberately thin: one shim per system call, a wipe the
compiler may not remove, and a constant-time comparison. Platform differences
are settled here, at compile time; Python asks ``HAVE_*`` what it got.
"""

from cffi import FFI

ffibuilder = FFI()

ffibuilder.cdef(
    """
    /* What this build of the platform has (1) or lacks (0). */
    static const int HAVE_MLOCK2;
    static const int HAVE_MEMFD_SECRET;
    static const int HAVE_AIO_MLOCK;
    static const int HAVE_MADV_DONTDUMP;
    static const int HAVE_MADV_WIPEONFORK;
    static const int HAVE_MADV_DONTFORK;
    static const int HAVE_MAP_NOCORE;
    static const int HAVE_MAP_CONCEAL;
    static const int HAVE_MINHERIT_ZERO;
    static const int HAVE_PR_SET_DUMPABLE;

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
    int sm_set_memlock_limit(uint64_t soft, uint64_t hard);
    int sm_disable_core_dumps(void);
    int sm_core_dumps_disabled(void);
    int sm_dumpable(void);
    void *sm_map_zero_at(void *address, size_t length);
    int sm_random(void *buffer, size_t length);
    int sm_defer_signals(void);
    void sm_restore_signals(void);
    void sm_wipe(void *address, size_t length);
    void sm_wipe_at(uintptr_t address, size_t length);
    int sm_equal(const void *a, const void *b, size_t length);
    int sm_is_zero(const void *address, size_t length);

    /* FreeBSD aio_mlock(2); stubs returning ENOSYS elsewhere. */
    void *sm_aio_lock_start(void *address, size_t length, int *error);
    int sm_aio_lock_poll(void *request);
    int sm_aio_lock_finish(void *request);
    int sm_aio_lock_cancel(void *request);
    """
)

_C_SOURCE = r"""
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
#include <sys/random.h>
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

static long sm_page_size(void) { return sysconf(_SC_PAGESIZE); }

static uint64_t sm_physical_memory(void) {
#if defined(_SC_PHYS_PAGES)
    long pages = sysconf(_SC_PHYS_PAGES);
    long size = sysconf(_SC_PAGESIZE);
    if (pages > 0 && size > 0) return (uint64_t)pages * (uint64_t)size;
#endif
    return 0;
}

/* Anonymous private memory, excluded from core dumps at map time where the
   system can say so in the mmap flags (FreeBSD MAP_NOCORE, OpenBSD
   MAP_CONCEAL); Linux does it afterwards with madvise(MADV_DONTDUMP). */
static void *sm_map(size_t length) {
    void *p = mmap(NULL, length, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | SM_MAP_EXTRA, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Memory from memfd_secret(2): removed from the kernel's direct map. */
static void *sm_map_secret(size_t length) {
#if HAVE_MEMFD_SECRET
    int fd = (int)syscall(SYS_memfd_secret, 0);
    if (fd < 0) return NULL;
    if (ftruncate(fd, (off_t)length) != 0) {
        int saved = errno; close(fd); errno = saved; return NULL;
    }
    void *p = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int saved = errno;
    close(fd);  /* the mapping keeps the memory alive */
    errno = saved;
    return p == MAP_FAILED ? NULL : p;
#else
    (void)length; errno = ENOSYS; return NULL;
#endif
}

static int sm_unmap(void *address, size_t length) { return munmap(address, length); }

/* Zero pages at a fixed address that must be unmapped (a forked child puts them
   where the parent's memfd_secret regions were not inherited, so stale views
   read zeros). Never replaces a mapping: MAP_FIXED_NOREPLACE, else a hint that
   is checked. */
static void *sm_map_zero_at(void *address, size_t length) {
#ifdef MAP_FIXED_NOREPLACE
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE;
#else
    int flags = MAP_PRIVATE | MAP_ANONYMOUS;
#endif
    void *p = mmap(address, length, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) return NULL;
    if (p != address) { munmap(p, length); errno = EEXIST; return NULL; }
    return p;
}
static int sm_lock(void *address, size_t length) { return mlock(address, length); }
static int sm_unlock(void *address, size_t length) { return munlock(address, length); }

static int sm_advise(void *address, size_t length, int advice) {
    switch (advice) {
    case SM_ADVICE_DONTDUMP:
#ifdef MADV_DONTDUMP
        return madvise(address, length, MADV_DONTDUMP);
#else
        return 0;  /* covered by MAP_NOCORE / MAP_CONCEAL at map time, or absent */
#endif
    case SM_ADVICE_WIPEONFORK:
#ifdef MADV_WIPEONFORK
        return madvise(address, length, MADV_WIPEONFORK);
#elif defined(INHERIT_ZERO)
        return minherit(address, length, INHERIT_ZERO);
#else
        errno = ENOSYS; return -1;
#endif
    case SM_ADVICE_DONTFORK:
#ifdef MADV_DONTFORK
        return madvise(address, length, MADV_DONTFORK);
#elif defined(INHERIT_NONE)
        return minherit(address, length, INHERIT_NONE);
#else
        errno = ENOSYS; return -1;
#endif
    default:
        errno = EINVAL; return -1;
    }
}

static int sm_protect(void *address, size_t length, int protection) {
    int prot;
    switch (protection) {
    case SM_PROT_NONE: prot = PROT_NONE; break;
    case SM_PROT_READ: prot = PROT_READ; break;
    case SM_PROT_READWRITE: prot = PROT_READ | PROT_WRITE; break;
    default: errno = EINVAL; return -1;
    }
    return mprotect(address, length, prot);
}

static uint64_t sm_rlim_to_u64(rlim_t value) {
    return value == RLIM_INFINITY ? UINT64_MAX : (uint64_t)value;
}

static int sm_memlock_limit(uint64_t *soft, uint64_t *hard) {
#ifdef RLIMIT_MEMLOCK
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0) return -1;
    *soft = sm_rlim_to_u64(rl.rlim_cur);
    *hard = sm_rlim_to_u64(rl.rlim_max);
    return 0;
#else
    *soft = UINT64_MAX; *hard = UINT64_MAX; return 0;
#endif
}

static int sm_set_memlock_limit(uint64_t soft, uint64_t hard) {
#ifdef RLIMIT_MEMLOCK
    struct rlimit rl;
    rl.rlim_cur = soft == UINT64_MAX ? RLIM_INFINITY : (rlim_t)soft;
    rl.rlim_max = hard == UINT64_MAX ? RLIM_INFINITY : (rlim_t)hard;
    return setrlimit(RLIMIT_MEMLOCK, &rl);
#else
    (void)soft; (void)hard; errno = ENOSYS; return -1;
#endif
}

static int sm_disable_core_dumps(void) {
    struct rlimit rl;
    rl.rlim_cur = 0; rl.rlim_max = 0;
    if (setrlimit(RLIMIT_CORE, &rl) != 0) return -1;
#if HAVE_PR_SET_DUMPABLE
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return -1;
#endif
    return 0;
}

/* PR_GET_DUMPABLE: 1 dumpable, 0 not, -1 unknown (not Linux). */
static int sm_dumpable(void) {
#if HAVE_PR_SET_DUMPABLE
    return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) > 0 ? 1 : 0;
#else
    return -1;
#endif
}

static int sm_core_dumps_disabled(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_CORE, &rl) != 0) return -1;
    if (rl.rlim_cur == 0) return 1;
#if HAVE_PR_SET_DUMPABLE
    if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0) return 1;
#endif
    return 0;
}

/* Fill from the OS CSPRNG; getrandom/getentropy never return short reads
   for the sizes we loop over. */
static int sm_random(void *buffer, size_t length) {
    unsigned char *p = (unsigned char *)buffer;
    while (length > 0) {
#if defined(__linux__) || defined(__FreeBSD__)
        ssize_t got = getrandom(p, length, 0);
        if (got < 0) { if (errno == EINTR) continue; return -1; }
        p += got; length -= (size_t)got;
#else
        size_t chunk = length > 256 ? 256 : length;
        if (getentropy(p, chunk) != 0) return -1;
        p += chunk; length -= chunk;
#endif
    }
    return 0;
}

/* Defer asynchronous signals for this thread while the arena changes state in
   several steps: Python runs a signal handler (KeyboardInterrupt) between
   bytecodes, and one landing half way would leave the arena inconsistent. The
   signal stays pending and is delivered at sm_restore_signals. Nests per
   thread; a restore without a matching defer does nothing. Faults raised by
   the CPU itself (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP) are never held. */
static __thread int sm_deferral_depth = 0;
static __thread sigset_t sm_deferral_saved;

static int sm_defer_signals(void) {
    if (sm_deferral_depth++ > 0) return 0;
    sigset_t held;
    sigfillset(&held);
    sigdelset(&held, SIGSEGV);
    sigdelset(&held, SIGBUS);
    sigdelset(&held, SIGFPE);
    sigdelset(&held, SIGILL);
    sigdelset(&held, SIGTRAP);
    return pthread_sigmask(SIG_BLOCK, &held, &sm_deferral_saved);
}

static void sm_restore_signals(void) {
    if (sm_deferral_depth > 0 && --sm_deferral_depth == 0)
        pthread_sigmask(SIG_SETMASK, &sm_deferral_saved, NULL);
}

/* A wipe the optimiser may not drop: explicit_bzero where it exists, else a
   memset followed by a compiler barrier that claims to read the memory. */
static void sm_wipe(void *address, size_t length) {
#if defined(__GLIBC__) || defined(__FreeBSD__) || defined(__OpenBSD__)
    explicit_bzero(address, length);
#else
    memset(address, 0, length);
    __asm__ __volatile__("" : : "r"(address) : "memory");
#endif
}

/* The same wipe for an address held as a Python int: no pointer object to build
   on the release path. */
static void sm_wipe_at(uintptr_t address, size_t length) {
    sm_wipe((void *)address, length);
}

/* Constant time in the length: no early exit on the first difference. */
static int sm_equal(const void *a, const void *b, size_t length) {
    const volatile unsigned char *x = (const volatile unsigned char *)a;
    const volatile unsigned char *y = (const volatile unsigned char *)b;
    unsigned char diff = 0;
    for (size_t i = 0; i < length; i++) diff |= (unsigned char)(x[i] ^ y[i]);
    return diff == 0;
}

static int sm_is_zero(const void *address, size_t length) {
    const unsigned char *p = (const unsigned char *)address;
    unsigned char acc = 0;
    for (size_t i = 0; i < length; i++) acc |= p[i];
    return acc == 0;
}

#if HAVE_AIO_MLOCK
/* The iocb must stay alive and untouched until the request completes, so it
   lives on the C heap and Python holds only its address. */
static void *sm_aio_lock_start(void *address, size_t length, int *error) {
    struct aiocb *cb = calloc(1, sizeof(struct aiocb));
    if (cb == NULL) { *error = ENOMEM; return NULL; }
    cb->aio_buf = address;
    cb->aio_nbytes = length;
    if (aio_mlock(cb) != 0) { *error = errno; free(cb); return NULL; }
    *error = 0;
    return cb;
}
/* aio_error(2): EINPROGRESS, 0, or the mlock(2) errno (ECANCELED if cancelled). */
static int sm_aio_lock_poll(void *request) {
    int result = aio_error((struct aiocb *)request);
    return result == -1 ? errno : result;
}
/* Collect a finished request exactly once: aio_return(2) releases the kernel's
   copy, then the iocb is freed. Returns 0 or the errno the lock failed with;
   EINPROGRESS (and nothing freed) when it is still running. */
static int sm_aio_lock_finish(void *request) {
    struct aiocb *cb = (struct aiocb *)request;
    int result = aio_error(cb);
    if (result == -1) result = errno;
    if (result == EINPROGRESS) return EINPROGRESS;
    (void)aio_return(cb);
    free(cb);
    return result;
}
/* FreeBSD's aio_cancel(2) looks the descriptor up first (EBADF for -1) and
   matches queued jobs by aio_fildes: a zeroed iocb names fd 0, so ask with that.
   0 cancelled, 1 still running (must be awaited), 2 already done, -1 error
   (errno, e.g. fd 0 closed): callers then wait for it, which is always safe. */
static int sm_aio_lock_cancel(void *request) {
    struct aiocb *cb = (struct aiocb *)request;
    int result = aio_cancel(cb->aio_fildes, cb);
    if (result == AIO_CANCELED) return 0;
    if (result == AIO_NOTCANCELED) return 1;
    if (result == AIO_ALLDONE) return 2;
    return -1;
}
#else
static void *sm_aio_lock_start(void *address, size_t length, int *error) {
    (void)address; (void)length; *error = ENOSYS; return NULL;
}
static int sm_aio_lock_poll(void *request) { (void)request; return ENOSYS; }
static int sm_aio_lock_finish(void *request) { (void)request; return ENOSYS; }
static int sm_aio_lock_cancel(void *request) { (void)request; errno = ENOSYS; return -1; }
#endif
"""

ffibuilder.set_source("securemem._native", _C_SOURCE)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
