/* secret_file's in-memory files, with SecureBytes's guarantees (see secretfile.h).

   The file is a memfd (close-on-exec). Its one mapping, which holds the copy of the
   secret, is out of core dumps (MADV_DONTDUMP), not inherited by a forked child
   (MADV_DONTFORK: a shared mapping cannot be wiped on fork, so the child gets none) and
   locked. A child would still inherit the descriptor, and through it read the whole
   file: so every descriptor made here is listed, and a pthread_atfork child handler
   closes them all before the child runs any code of its own. A mutex, also taken by the
   fork's prepare handler, keeps "made but not yet listed" and "unlisted but not yet
   closed" out of any fork. Where the system cannot do one of these steps, the file is
   refused (the caller gets the step and errno), never made weaker. */
#include "shims.h"
#include "secretfile.h"

#define SM_FILE_TABLE 256

/* Where such a file can be made: Linux's memfd_create, with the two madvise flags. Elsewhere
   sm_secret_file_open says ENOSYS and nothing is ever listed. */
#if defined(__linux__) && defined(SYS_memfd_create) && defined(MADV_DONTDUMP) && \
    defined(MADV_DONTFORK)
#define SM_SECRET_FILES 1
#else
#define SM_SECRET_FILES 0
#endif

static pthread_mutex_t files_mutex = PTHREAD_MUTEX_INITIALIZER;
#if SM_SECRET_FILES
static pthread_once_t files_hook_once = PTHREAD_ONCE_INIT;
static int files_hook_failed = 0;
#endif
/* every file made here and not yet closed, with its mapping (NULL for an empty file) */
typedef struct {
    int fd;
    void *mapping;
    size_t size;
    unsigned long long serial;
} sm_file;
static sm_file files[SM_FILE_TABLE];
static int nfiles = 0;
/* Names each file for good: a forked child goes on counting from its parent's count, so
   a file it makes never has the serial of one its parent made, even where the
   descriptor number, the mapping's address and the size all repeat. */
#if SM_SECRET_FILES
static unsigned long long serials = 0;

static void files_prepare(void) { pthread_mutex_lock(&files_mutex); }
static void files_parent(void) { pthread_mutex_unlock(&files_mutex); }

/* In the child: the descriptors go (close is async-signal-safe); their mappings never
   came. The forking thread holds the mutex (prepare), so it may unlock it. */
static void files_child(void) {
    for (int i = 0; i < nfiles; i++)
        close(files[i].fd);
    nfiles = 0;
    pthread_mutex_unlock(&files_mutex);
}

static void files_install_hook(void) {
    if (pthread_atfork(files_prepare, files_parent, files_child) != 0)
        files_hook_failed = 1;
}
#endif

/* The entry of the file made as (fd, mapping, size, serial), or -1: a descriptor number
   (even with its mapping) could be another file's by now. */
static int files_find(int fd, void *mapping, size_t size, unsigned long long serial) {
    for (int i = 0; i < nfiles; i++)
        if (files[i].fd == fd && files[i].mapping == mapping && files[i].size == size &&
            files[i].serial == serial)
            return i;
    return -1;
}

#if SM_SECRET_FILES
static int fail(int step, int *failed_step, int fd, void *mapping, size_t size) {
    int saved = errno;
    if (mapping != NULL) {
        sm_wipe(mapping, size);
        munmap(mapping, size);
    }
    if (fd >= 0)
        close(fd);
    *failed_step = step;
    errno = saved;
    return -1;
}

int sm_secret_file_open(const char *name, const void *data, size_t size, void **mapping,
                        unsigned long long *serial, int *failed_step) {
    *mapping = NULL;
    *failed_step = 0;
    if (name == NULL || (data == NULL && size > 0) || mapping == NULL || serial == NULL) {
        *failed_step = SM_FILE_CREATE;
        errno = EINVAL;
        return -1;
    }
    pthread_once(&files_hook_once, files_install_hook);
    if (files_hook_failed) {
        *failed_step = SM_FILE_CREATE;
        errno = ENOMEM;
        return -1;
    }
    pthread_mutex_lock(&files_mutex);
    int result = -1;
    int fd = -1;
    void *pages = NULL;
    if (nfiles == SM_FILE_TABLE) {
        errno = EMFILE;
        fail(SM_FILE_TABLE_FULL, failed_step, -1, NULL, 0);
        goto done;
    }
    fd = (int)syscall(SYS_memfd_create, name, 1U /* MFD_CLOEXEC */);
    if (fd < 0) {
        fail(SM_FILE_CREATE, failed_step, -1, NULL, 0);
        goto done;
    }
    if (size > 0) {
        if (ftruncate(fd, (off_t)size) != 0) {
            fail(SM_FILE_SIZE, failed_step, fd, NULL, 0);
            goto done;
        }
        pages = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (pages == MAP_FAILED) {
            fail(SM_FILE_MAP, failed_step, fd, NULL, 0);
            goto done;
        }
        /* protected before the secret is copied in */
        if (madvise(pages, size, MADV_DONTDUMP) != 0) {
            fail(SM_FILE_DONTDUMP, failed_step, fd, pages, size);
            goto done;
        }
        if (madvise(pages, size, MADV_DONTFORK) != 0) {
            fail(SM_FILE_DONTFORK, failed_step, fd, pages, size);
            goto done;
        }
        if (sm_lock(pages, size) != 0) {
            fail(SM_FILE_LOCK, failed_step, fd, pages, size);
            goto done;
        }
        memcpy(pages, data, size);
    }
    files[nfiles].fd = fd;
    files[nfiles].mapping = pages;
    files[nfiles].size = size;
    files[nfiles].serial = *serial = ++serials;
    nfiles++;
    *mapping = pages;
    result = fd;
done:
    pthread_mutex_unlock(&files_mutex);
    return result;
}
#else
int sm_secret_file_open(const char *name, const void *data, size_t size, void **mapping,
                        unsigned long long *serial, int *failed_step) {
    (void)name; (void)data; (void)size; (void)serial;
    *mapping = NULL;
    *failed_step = SM_FILE_CREATE;
    errno = ENOSYS;
    return -1;
}
#endif

/* Zero the file's pages (closing a memfd frees them without clearing), then let go of
   the mapping and the descriptor. Only for what sm_secret_file_open returned in this
   process. */
int sm_secret_file_close(int fd, void *mapping, size_t size, unsigned long long serial) {
    pthread_mutex_lock(&files_mutex);
    int entry = files_find(fd, mapping, size, serial);
    if (entry < 0) {
        pthread_mutex_unlock(&files_mutex);
        errno = EBADF;
        return -1;
    }
    if (mapping != NULL && size > 0) {
        sm_wipe(mapping, size);
        sm_unlock(mapping, size);
        munmap(mapping, size);
    }
    files[entry] = files[--nfiles];
    close(fd);
    pthread_mutex_unlock(&files_mutex);
    return 0;
}

/* securemem.purge(): zero every file's pages now. The descriptors and mappings stay (the
   block that made each still closes it): after a purge the path reads zeros, like the
   secret it was copied from. A file being made meanwhile is listed only once its copy
   is in, under the mutex: it is either wiped here or made after this purge. */
int sm_secret_file_wipe_all(void) {
    pthread_mutex_lock(&files_mutex);
    int wiped = 0;
    for (int i = 0; i < nfiles; i++)
        if (files[i].mapping != NULL && files[i].size > 0) {
            sm_wipe(files[i].mapping, files[i].size);
            wiped++;
        }
    pthread_mutex_unlock(&files_mutex);
    return wiped;
}

int sm_secret_file_count(void) {
    pthread_mutex_lock(&files_mutex);
    int count = nfiles;
    pthread_mutex_unlock(&files_mutex);
    return count;
}
