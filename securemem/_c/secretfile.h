/* secret_file's in-memory files (securemem/_handoff.py): made, mapped, protected and
   wiped in C, and closed in any forked child before its first instruction. */
#ifndef SECUREMEM_SECRETFILE_H
#define SECUREMEM_SECRETFILE_H
#include <stddef.h>

/* The step that failed, for the Python error (errno says why). */
#define SM_FILE_CREATE 1
#define SM_FILE_SIZE 2
#define SM_FILE_MAP 3
#define SM_FILE_DONTDUMP 4
#define SM_FILE_DONTFORK 5
#define SM_FILE_LOCK 6
#define SM_FILE_TABLE_FULL 7

/* *serial names the file for sm_secret_file_close (see secretfile.c). */
int sm_secret_file_open(const char *name, const void *data, size_t size, void **mapping,
                        unsigned long long *serial, int *failed_step);
/* Only the file made as (fd, mapping, size, serial) in this process; -1 (EBADF) and
   nothing touched otherwise, e.g. in a forked child for its parent's file. */
int sm_secret_file_close(int fd, void *mapping, size_t size, unsigned long long serial);
int sm_secret_file_count(void);
/* securemem.purge(): zero the pages of every open file; returns how many had any. */
int sm_secret_file_wipe_all(void);

#endif /* SECUREMEM_SECRETFILE_H */
