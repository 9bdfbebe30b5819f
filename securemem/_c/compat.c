/* Fallbacks for an older C library (declared in compat.h). */
#define _GNU_SOURCE 1
#include "compat.h"

#if defined(__linux__)
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/syscall.h>
#if !SM_OLD_GLIBC
#include <sys/random.h>
#endif
/* An old glibc's system (CentOS 7: kernel headers 3.10) names no getrandom system call, but
   the kernel it runs on may have one: its number is fixed by each architecture's ABI. */
#if SM_OLD_GLIBC && !defined(SYS_getrandom)
#if defined(__x86_64__)
#define SYS_getrandom 318
#elif defined(__aarch64__)
#define SYS_getrandom 278
#endif
#endif

/* /dev/urandom, for a kernel without getrandom(2): opened for each call, so that no
   descriptor is left for a forked child or an exec to inherit. */
static ssize_t read_urandom(void *buffer, size_t length) {
    int fd;
    do {
        fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return -1;
    ssize_t got;
    do {
        got = read(fd, buffer, length);
    } while (got < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    errno = saved;
    return got;
}

ssize_t sm_linux_getrandom(void *buffer, size_t length) {
#if !SM_OLD_GLIBC
    ssize_t got = getrandom(buffer, length, 0);
#elif defined(SYS_getrandom)
    ssize_t got = (ssize_t)syscall(SYS_getrandom, buffer, length, 0U);
#else
    ssize_t got = -1;
    errno = ENOSYS;
#endif
    if (got < 0 && errno == ENOSYS) return read_urandom(buffer, length);
    return got;
}
#endif
