/* securemem._core: the allocator and the SecureBytes type, in C.

   Why C: validating a secret's handle and touching its memory must be one step
   that no Python code (a user's __index__, a buffer export, another thread, a
   signal handler) can run between. Everything here runs with the GIL held,
   except the slow system calls of growth (mmap, mlock) on the real kernel; the
   GIL is what makes a SecureBytes operation atomic, and the arena mutex
   serialises changes to an arena across the windows where the GIL is let go. */
#ifndef SECUREMEM_CORE_H
#define SECUREMEM_CORE_H

/* Python.h first, as the C API asks: its pyconfig.h sets the feature-test macros
   (_POSIX_C_SOURCE, _XOPEN_SOURCE, and each system's switch that keeps its own interfaces
   visible beside them) before any system header is read. */
#define PY_SSIZE_T_CLEAN 1
#include <Python.h>

#include "../shims.h"
#include <stdint.h>
#include <stdio.h>

/* Py_XSETREF is not in the Limited API */
#define SM_SETREF(field, value)          \
    do {                                 \
        PyObject *sm_old_ = (PyObject *)(field); \
        (field) = (value);               \
        Py_XDECREF(sm_old_);             \
    } while (0)

#define SM_CLASSES 8
#define SM_LARGEST_CLASS 2048
#define SM_CANARY 16
/* Regions the native prefetch worker prepares per request. Two: waking the worker
   costs the allocating thread a system call and an inter-processor interrupt (several
   microseconds on a virtual machine), so it is woken once for every two growths. */
#define SM_PREFETCH_DEPTH 2

enum { PAGE_FREE = 0, PAGE_USED = 1, PAGE_GUARD = 2 };
enum { PF_UNLOCKED = 1, PF_PREFETCHED = 2 };
enum { POLICY_RAISE = 0, POLICY_WARN = 1, POLICY_ALLOW = 2 };
enum { KIND_NONE = 0, KIND_SLOT = 1, KIND_RUN = 2, KIND_GUARDED = 3 };
enum { ST_NEW = 0, ST_OPEN = 1, ST_CLOSED = 2 };

struct sm_arena;
struct sm_region;
struct sm_slab;

/* One page kept locked and free (the reserve), oldest first. Every page has one, in its
   region's block; region is NULL while the page is not in the reserve. */
typedef struct sm_rnode {
    uintptr_t page;
    struct sm_region *region;
    struct sm_slab *slab; /* an empty slab kept whole, or NULL for a bare page */
    struct sm_rnode *prev, *next;
} sm_rnode;

/* One mapping: guard page, usable pages, guard page. */
typedef struct sm_region {
    uintptr_t base;
    size_t length, pages;
    uint8_t *state;    /* PAGE_* per page */
    uint8_t *flags;    /* PF_* per page */
    uint32_t *holds;   /* lock holders per page */
    sm_rnode *rnode;   /* the pages' reserve entries (one per page) */
    struct sm_slab *slabs; /* the page's slab bookkeeping (while the page is a slab) */
    uint64_t *slot_bits;   /* the slabs' free-slot bits, slot_words per page */
    size_t slot_words;
    size_t used;       /* pages owned by slabs and runs */
    size_t reserved;   /* free pages kept locked (reserve, prefetched, stuck) */
} sm_region;

/* A locked page cut into slots of one size class. Its bookkeeping lives in its region's
   block (one per page, used while the page is a slab): making a slab allocates nothing. */
typedef struct sm_slab {
    sm_region *region;
    uintptr_t page;
    int cls;
    uint64_t *free; /* one bit per slot, set while it is free; the lowest is handed out */
    uint32_t nfree, live;
    int listed;
    struct sm_slab *prev, *next; /* on the partial list of its class */
} sm_slab;

/* Whole pages for one large secret. */
typedef struct sm_run {
    sm_region *region;
    uintptr_t address;
    size_t length;
} sm_run;

/* The mapping of one guarded secret (bookkeeping only, no secret in here). */
typedef struct sm_guarded {
    uintptr_t base, data_start, address;
    size_t length, data_length, size;
    int locked, protection, released;
    int closing; /* 1 inside sm_guarded_close; 2 if its last view went meanwhile */
    /* sm_guarded_protect calls not returned yet (a Python kernel's protect() may close the
       secret, or protect it again, before it returns), how many have begun, and whether a
       close left its free to the last of them */
    unsigned protecting, protects;
    int free_pending;
    uint8_t canary[SM_CANARY];
    struct sm_guarded *prev, *next;
} sm_guarded;

/* A free that arrived while the arena was busy: applied when it is not. */
typedef struct sm_pending {
    int kind;
    void *owner;
    uintptr_t address;
    struct sm_pending *next;
} sm_pending;

/* A region being prepared by the native prefetch worker; shared by the worker and
   the arena, freed by whichever lets go last. */
enum { JOB_RUNNING = 0, JOB_READY = 1, JOB_FAILED = 2 };
typedef struct sm_job_state {
    pthread_mutex_t mutex;
    pthread_cond_t done;
    int state, error, wiped_on_fork, references;
    uintptr_t base;
    size_t length, page;
    struct sm_region *made; /* the region's bookkeeping, made by the worker (or NULL) */
    struct sm_job_state *next; /* in the worker's queue */
} sm_job_state;

/* The kernel: the real one (C shims) or a Python object's methods. Each entry
   returns 0, or -1 with a Python exception set. */
typedef struct sm_kernel_ops {
    const char *name;
    int (*map)(struct sm_arena *, size_t length, uintptr_t *base);
    int (*unmap)(struct sm_arena *, uintptr_t, size_t);
    int (*lock)(struct sm_arena *, uintptr_t, size_t);
    int (*unlock)(struct sm_arena *, uintptr_t, size_t);
    /* *applied is 0 where the system has no such advice */
    int (*advise)(struct sm_arena *, uintptr_t, size_t, int advice, int *applied);
    int (*protect)(struct sm_arena *, uintptr_t, size_t, int protection);
} sm_kernel_ops;

extern const sm_kernel_ops sm_native_ops;
extern const sm_kernel_ops sm_python_ops;
extern const sm_kernel_ops sm_secretmem_ops;

typedef struct sm_arena {
    PyObject_HEAD
    PyObject *weakreflist;
    PyObject *kernel;
    PyObject *prefetcher; /* Python Prefetcher or None */
    const sm_kernel_ops *ops;
    int ready;
    size_t page, region_pages, reserve_pages;
    int policy, warned, lock_failed_pending;
    pthread_mutex_t mutex;
    unsigned long owner; /* thread holding the mutex (0: none) */
    uint64_t generation;
    sm_region **regions;
    size_t nregions, cregions;
    size_t unused_pages; /* the regions' usable pages not owned by a slab or a run */
    sm_slab *partial_head[SM_CLASSES], *partial_tail[SM_CLASSES];
    sm_rnode *reserve_head, *reserve_tail;
    size_t nreserve, nprefetched;
    sm_guarded *guarded;
    size_t locked_pages, unlocked_pages;
    size_t guarded_locked, guarded_unlocked;
    size_t live, in_use, awaiting;
    sm_pending *pending;
    int fork_wipe_needed, secretmem;
    /* native prefetch (real kernel): the regions being prepared, oldest first (adopted
       in that order), and what happened */
    int native_prefetch, prefetch_paused;
    sm_job_state *jobs[SM_PREFETCH_DEPTH];
    int njobs;
    /* jobs the worker is done with, kept for the next request: freeing one and making
       another cost an adoption a few microseconds of cold memory */
    sm_job_state *spare_jobs[SM_PREFETCH_DEPTH];
    int nspare;
    uint64_t prefetch_limit; /* RLIMIT_MEMLOCK's soft limit as last read (UINT64_MAX: none) */
    size_t prefetch_started, prefetch_adopted, prefetch_waited, prefetch_failed, prefetch_woken;
    struct sm_arena *reg_prev, *reg_next;
} sm_arena;

/* A link on the ring of open secrets (securebytes.c); both NULL while on none. */
typedef struct sm_link {
    struct sm_link *prev, *next;
} sm_link;

typedef struct {
    PyObject_HEAD
    PyObject *weakreflist;
    sm_arena *arena;
    void *owner;
    uintptr_t address;
    size_t size;
    uint64_t generation;
    uint32_t exports;
    uint8_t kind, state;
    sm_link live;    /* on the ring of open secrets exactly while state is ST_OPEN */
    uint64_t opened; /* when it went on the ring: a purge closes those opened before it */
} sm_secret;

extern PyTypeObject *sm_ArenaType;
extern PyTypeObject *sm_SecretType;
extern uint64_t sm_generation;
extern const size_t sm_classes[SM_CLASSES];

/* errors.c */
PyObject *sm_error_class(const char *name);
void sm_set_error(const char *name, const char *message);
int sm_kernel_failure(sm_arena *a, const char *call, int number, size_t length);
int sm_is_lock_error(void);

/* arena.c */
int sm_arena_type_init(PyObject *module);
int sm_alloc(sm_arena *a, size_t size, sm_secret *into);
int sm_alloc_guarded(sm_arena *a, size_t size, sm_secret *into);
/* Release the slot of a wiped secret; never blocks, never raises (queued when busy). */
void sm_free(sm_arena *a, int kind, void *owner, uintptr_t address);
int sm_guarded_close(sm_arena *a, sm_guarded *g, int views_alive);
int sm_guarded_protect(sm_arena *a, sm_guarded *g, int protection);
void sm_closed_with_views(sm_arena *a, size_t size);
void sm_views_gone(sm_arena *a);
void sm_in_use_less(sm_arena *a, size_t size);
sm_region *sm_region_new(size_t pages, size_t page);
void sm_region_mark_prefetched(sm_region *r);
sm_arena *sm_default_arena(void);
void sm_after_fork_child(void);
/* every arena unlocks and unmaps the free pages it keeps (purge); never raises */
void sm_release_free_everywhere(void);

/* prefetch.c */
int sm_prefetch_init(PyObject *module);
void sm_prefetch_after_fork_child(void);
int sm_jobs_start(size_t length, size_t page, sm_job_state **into, int count, int *woke,
                  sm_job_state **spares, int *nspare);
int sm_job_state_of(sm_job_state *job);
void sm_job_wait(sm_job_state *job);
void sm_job_let_go(sm_job_state *job);
sm_job_state *sm_job_let_go_keeping(sm_job_state *job);
void sm_job_discard(sm_job_state *job);

/* securebytes.c */
int sm_secret_type_init(PyObject *module);
/* The purge's whole view of the secrets (the ring of open secrets is securebytes.c's
   own): close every secret open when the call starts, as close() does, never touching a
   secret's reference count; returns how many were open in this process. Failures to close
   one (a broken canary) are reported as unraisable and the rest are closed all the same. */
Py_ssize_t sm_close_every_open_secret(void);
/* How many secrets of this process are open. */
Py_ssize_t sm_open_secret_count(void);

/* purge.c */
int sm_purge_init(PyObject *module);

/* readgate.c */
int sm_read_gate_init(PyObject *module);

#endif /* SECUREMEM_CORE_H */
