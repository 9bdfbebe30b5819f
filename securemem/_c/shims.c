/* The kernel shims of securemem._native (declared in shims.h): one function per
   system call, a wipe the compiler may not remove, a constant-time comparison and a
   stack burn. Compiled by the cffi builder in build_support/native_build.py. */
#include "shims.h"

long sm_page_size(void) { return sysconf(_SC_PAGESIZE); }

uint64_t sm_physical_memory(void) {
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
void *sm_map(size_t length) {
    void *p = mmap(NULL, length, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | SM_MAP_EXTRA, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Memory from memfd_secret(2): removed from the kernel's direct map. */
void *sm_map_secret(size_t length) {
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

int sm_unmap(void *address, size_t length) { return munmap(address, length); }

/* Zero pages at a fixed address that must be unmapped (a forked child puts them
   where the parent's memfd_secret regions were not inherited, so stale views
   read zeros). Never replaces a mapping: MAP_FIXED_NOREPLACE, else a hint that
   is checked. */
void *sm_map_zero_at(void *address, size_t length) {
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
/* On Linux the system calls themselves: AddressSanitizer and ThreadSanitizer replace
   the libc mlock/munlock with functions that do nothing and return 0, and the
   sanitizer builds (tools/sanitize.sh) must check what the kernel really locked. */
#if defined(__linux__) && defined(SYS_mlock) && defined(SYS_munlock)
int sm_lock(void *address, size_t length) { return (int)syscall(SYS_mlock, address, length); }
int sm_unlock(void *address, size_t length) { return (int)syscall(SYS_munlock, address, length); }
#else
int sm_lock(void *address, size_t length) { return mlock(address, length); }
int sm_unlock(void *address, size_t length) { return munlock(address, length); }
#endif

/* Each advice through whichever call this system's headers define: Linux's madvise
   flags, FreeBSD's MADV_NOCORE and minherit(INHERIT_*), OpenBSD's and NetBSD's
   minherit(MAP_INHERIT_*). Where none is defined (macOS has no dump exclusion and no
   inheritance flag in <sys/mman.h>), ENOSYS: the caller records the advice as not
   applied (without wipe-on-fork, a forked child wipes the pages itself). */
int sm_advise(void *address, size_t length, int advice) {
    (void)address; (void)length; /* unused where no advice below is defined */
    switch (advice) {
    case SM_ADVICE_DONTDUMP:
#ifdef MADV_DONTDUMP
        return madvise(address, length, MADV_DONTDUMP);
#elif defined(MADV_NOCORE)
        return madvise(address, length, MADV_NOCORE); /* MAP_NOCORE did it at map time too */
#elif HAVE_MAP_CONCEAL
        return 0;  /* MAP_CONCEAL did it at map time */
#else
        errno = ENOSYS; return -1; /* nothing here keeps pages out of a core (macOS) */
#endif
    case SM_ADVICE_WIPEONFORK:
#ifdef MADV_WIPEONFORK
        return madvise(address, length, MADV_WIPEONFORK);
#elif defined(INHERIT_ZERO)
        return minherit(address, length, INHERIT_ZERO);
#elif defined(MAP_INHERIT_ZERO)
        return minherit(address, length, MAP_INHERIT_ZERO);
#else
        errno = ENOSYS; return -1;
#endif
    case SM_ADVICE_DONTFORK:
#ifdef MADV_DONTFORK
        return madvise(address, length, MADV_DONTFORK);
#elif defined(INHERIT_NONE)
        return minherit(address, length, INHERIT_NONE);
#elif defined(MAP_INHERIT_NONE)
        return minherit(address, length, MAP_INHERIT_NONE);
#else
        errno = ENOSYS; return -1;
#endif
    default:
        errno = EINVAL; return -1;
    }
}

int sm_protect(void *address, size_t length, int protection) {
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

int sm_memlock_limit(uint64_t *soft, uint64_t *hard) {
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

int sm_disable_core_dumps(void) {
    struct rlimit rl;
    rl.rlim_cur = 0; rl.rlim_max = 0;
    if (setrlimit(RLIMIT_CORE, &rl) != 0) return -1;
#if HAVE_PR_SET_DUMPABLE
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return -1;
#endif
    return 0;
}

/* PR_GET_DUMPABLE: 1 dumpable, 0 not, -1 unknown (not Linux). */
int sm_dumpable(void) {
#if HAVE_PR_SET_DUMPABLE
    return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) > 0 ? 1 : 0;
#else
    return -1;
#endif
}

/* Which CSPRNG call the headers offer: getrandom where <sys/random.h> defines its flags
   (and, with glibc, the library is 2.25 or newer: older headers built for an old-glibc
   wheel lack the function though the kernel has the system call), the raw system call
   on Linux with an older glibc, else getentropy (macOS, OpenBSD). */
#if defined(GRND_NONBLOCK) && (!defined(__GLIBC__) || SM_GLIBC_2_25)
#define SM_GETRANDOM(p, n) getrandom((p), (n), 0)
#elif defined(__linux__) && defined(SYS_getrandom)
#define SM_GETRANDOM(p, n) syscall(SYS_getrandom, (p), (n), 0)
#endif

/* Fill from the OS CSPRNG; getrandom/getentropy never return short reads
   for the sizes we loop over. */
int sm_random(void *buffer, size_t length) {
    unsigned char *p = (unsigned char *)buffer;
    while (length > 0) {
#ifdef SM_GETRANDOM
        ssize_t got = (ssize_t)SM_GETRANDOM(p, length);
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

/* A wipe the optimiser may not drop: explicit_bzero where it exists (glibc 2.25+,
   FreeBSD, OpenBSD; no header macro announces it, so the libraries are named), else a
   memset followed by a compiler barrier that claims to read the memory. */
void sm_wipe(void *address, size_t length) {
#if SM_GLIBC_2_25 || defined(__FreeBSD__) || defined(__OpenBSD__)
    explicit_bzero(address, length);
#else
    memset(address, 0, length);
    __asm__ __volatile__("" : : "r"(address) : "memory");
#endif
}

/* The same wipe for an address held as a Python int: no pointer object to build
   on the release path. */
void sm_wipe_at(uintptr_t address, size_t length) {
    sm_wipe((void *)address, length);
}

/* Constant time in the length: no early exit on the first difference. */
int sm_equal(const void *a, const void *b, size_t length) {
    const volatile unsigned char *x = (const volatile unsigned char *)a;
    const volatile unsigned char *y = (const volatile unsigned char *)b;
    unsigned char diff = 0;
    for (size_t i = 0; i < length; i++) diff |= (unsigned char)(x[i] ^ y[i]);
    return diff == 0;
}

/* Stack burn (after libgcrypt's _gcry_burn_stack): native code we call (OpenSSL through
   cryptography, for one) leaves keys and plaintexts in its stack frames when it returns,
   below the caller's stack pointer, until a later call happens to overwrite them. A call
   made right after from the same Python frame runs on that same stretch of stack, so one
   array of `length` bytes wiped here covers it. Never past the thread's own stack: the
   length is clamped to what lies between here and the stack's low end (a thread started
   with threading.stack_size(32768) has little), less a page of margin. Returns the bytes
   wiped. */
#if defined(__linux__) && defined(__GLIBC__)
static size_t sm_stack_room(void) {
    static __thread uintptr_t low = 0;
    if (low == 0) {
        pthread_attr_t attr;
        void *base = NULL;
        size_t size = 0;
        if (pthread_getattr_np(pthread_self(), &attr) != 0) return 0;
        if (pthread_attr_getstack(&attr, &base, &size) == 0) low = (uintptr_t)base;
        pthread_attr_destroy(&attr);
        if (low == 0) return 0;
    }
    uintptr_t here = (uintptr_t)__builtin_frame_address(0);
    const uintptr_t margin = 16384; /* this frame, the wipe's own, signal delivery */
    return here > low + margin ? (size_t)(here - low - margin) : 0;
}
#else
static size_t sm_stack_room(void) { return 64 * 1024; } /* main-thread stacks are larger */
#endif

__attribute__((noinline)) static void sm_burn_area(size_t length) {
    unsigned char area[length]; /* a VLA: the stack pointer moves down by `length` */
    sm_wipe(area, length);
    __asm__ __volatile__("" : : "r"(area) : "memory");
}

size_t sm_burn_stack(size_t length) {
    size_t room = sm_stack_room();
    if (length > room) length = room;
    if (length > 0) sm_burn_area(length);
    return length;
}

#if HAVE_AIO_MLOCK
/* The iocb must stay alive and untouched until the request completes, so it
   lives on the C heap and Python holds only its address. */
void *sm_aio_lock_start(void *address, size_t length, int *error) {
    struct aiocb *cb = calloc(1, sizeof(struct aiocb));
    if (cb == NULL) { *error = ENOMEM; return NULL; }
    cb->aio_buf = address;
    cb->aio_nbytes = length;
    if (aio_mlock(cb) != 0) { *error = errno; free(cb); return NULL; }
    *error = 0;
    return cb;
}
/* aio_error(2): EINPROGRESS, 0, or the mlock(2) errno (ECANCELED if cancelled). */
int sm_aio_lock_poll(void *request) {
    int result = aio_error((struct aiocb *)request);
    return result == -1 ? errno : result;
}
/* Collect a finished request exactly once: aio_return(2) releases the kernel's
   copy, then the iocb is freed. Returns 0 or the errno the lock failed with;
   EINPROGRESS (and nothing freed) when it is still running. */
int sm_aio_lock_finish(void *request) {
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
int sm_aio_lock_cancel(void *request) {
    struct aiocb *cb = (struct aiocb *)request;
    int result = aio_cancel(cb->aio_fildes, cb);
    if (result == AIO_CANCELED) return 0;
    if (result == AIO_NOTCANCELED) return 1;
    if (result == AIO_ALLDONE) return 2;
    return -1;
}
#else
void *sm_aio_lock_start(void *address, size_t length, int *error) {
    (void)address; (void)length; *error = ENOSYS; return NULL;
}
int sm_aio_lock_poll(void *request) { (void)request; return ENOSYS; }
int sm_aio_lock_finish(void *request) { (void)request; return ENOSYS; }
int sm_aio_lock_cancel(void *request) { (void)request; errno = ENOSYS; return -1; }
#endif
