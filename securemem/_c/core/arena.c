/* The arena: regions of whole pages, slabs for small secrets, runs for large
   ones, per-page lock counts, a reserve of locked free pages, guarded
   mappings. Bookkeeping lives in malloc'd memory, never in the locked pages.

   Concurrency. Every change is made with the GIL held, so two Python threads
   never interleave inside one. The GIL is let go only around the slow calls of
   growth (mmap, mlock) and may be let go by a Python kernel's methods: the
   arena mutex keeps a change atomic across those windows. It is taken with
   trylock first; a thread that must wait releases the GIL while it waits, so
   no thread holds the GIL while blocked on the mutex. A free never waits: if
   the arena is busy (another thread, or this one mid-change: a garbage
   collection inside a Python kernel's method), the free is queued and applied
   by whoever holds the mutex before letting it go.

   The common case takes no mutex: a slot from a slab the arena has, or a slot given
   back without a page going to the kernel, is bookkeeping alone, made with the GIL held
   and never letting it go (arena_idle says when that is safe). */
#include "core.h"
#include <structmember.h>

const size_t sm_classes[SM_CLASSES] = {16, 32, 64, 128, 256, 512, 1024, 2048};
uint64_t sm_generation = 0;
PyTypeObject *sm_ArenaType = NULL;

static sm_arena *registry = NULL; /* every live arena: the fork handler resets them */
static PyObject *default_arena = NULL;
static PyObject *default_factory = NULL;

static inline int class_of(size_t size) {
    int c = 0;
    while (sm_classes[c] < size)
        c++;
    return c;
}

static inline unsigned long this_thread(void) { return (unsigned long)pthread_self(); }

/* -- the mutex ------------------------------------------------------------------ */

static int lock_arena(sm_arena *a) {
    if (pthread_mutex_trylock(&a->mutex) != 0) {
        if (__atomic_load_n(&a->owner, __ATOMIC_RELAXED) == this_thread()) {
            PyErr_SetString(PyExc_RuntimeError,
                            "securemem: this arena was re-entered from inside one of its own "
                            "changes (a kernel method or prefetcher allocating from it)");
            return -1;
        }
        Py_BEGIN_ALLOW_THREADS
        pthread_mutex_lock(&a->mutex);
        Py_END_ALLOW_THREADS
    }
    __atomic_store_n(&a->owner, this_thread(), __ATOMIC_RELAXED);
    return 0;
}

/* 1 when no change is under way: a change that lets the GIL go (or runs a Python
   kernel's code) sets `owner`, with the GIL held, before it does. With the GIL held and
   no owner, a change that lets the GIL go nowhere and runs no Python code is atomic by
   the GIL alone and needs no mutex. (A thread that has taken the mutex but still waits
   for the GIL in lock_arena has read nothing yet: it starts from what it then finds.)
   The mutex's two atomic instructions, taken and released on both the allocation and
   the free, were a sixth of a 32-byte round trip. */
static inline int arena_idle(sm_arena *a) {
    return __atomic_load_n(&a->owner, __ATOMIC_RELAXED) == 0;
}

static void release(sm_arena *a, int kind, void *owner, uintptr_t address);

static void drain(sm_arena *a) {
    while (a->pending != NULL) {
        sm_pending *p = a->pending;
        a->pending = p->next;
        release(a, p->kind, p->owner, p->address);
        free(p);
    }
}

static void unlock_arena(sm_arena *a) {
    drain(a); /* the GIL is held from here to the unlock: no free can slip in between */
    __atomic_store_n(&a->owner, 0UL, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&a->mutex);
}

/* A failure on a release path: the caller keeps the resource and retries later.
   Anything but a securemem error (a Python kernel interrupted) is reported. */
static void swallow(void) {
    PyObject *cls = NULL;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    cls = sm_error_class("SecureMemoryError");
    if (cls != NULL && type != NULL && !PyErr_GivenExceptionMatches(type, cls)) {
        PyErr_Restore(type, value, tb);
        PyErr_WriteUnraisable(NULL);
    } else {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
    }
    Py_XDECREF(cls);
    PyErr_Clear();
}

/* -- regions --------------------------------------------------------------------- */

static inline size_t index_of(sm_arena *a, sm_region *r, uintptr_t address) {
    return (address - r->base) / a->page;
}

/* A slab's page index, from where its record sits in the region's block: a division by a
   constant the compiler makes a multiplication. index_of divides by the page size, a
   variable: the slot paths (a round trip took four divisions) use this instead. */
static inline size_t slab_index(sm_slab *s) { return (size_t)(s - s->region->slabs); }

static void region_free(sm_region *r) { free(r); /* its per-page arrays are in the same block */ }

/* Words of free-slot bits a slab of the smallest class needs on a page of `page` bytes. */
static size_t slot_words_for(size_t page) { return (page / sm_classes[0] + 63) / 64; }

/* A region's bookkeeping, zeroed: one allocation for the region, its per-page arrays and
   its slabs' bookkeeping (widest first, so each is aligned). NULL if out of memory. Needs
   no GIL: the prefetch worker makes it for the region it prepares, so that growth
   allocates nothing; nor does making a slab (a malloc there, when the heap had to grow,
   was the slowest of allocations once growth no longer locked anything). */
sm_region *sm_region_new(size_t pages, size_t page) {
    size_t words = slot_words_for(page);
    size_t per_page = sizeof(sm_slab) + words * sizeof(uint64_t) + sizeof(sm_rnode) +
                      sizeof(uint32_t) + 2;
    if (pages > (SIZE_MAX - sizeof(sm_region)) / per_page)
        return NULL;
    size_t bytes = sizeof(sm_region) + pages * per_page;
    sm_region *r = calloc(1, bytes);
    if (r == NULL)
        return NULL;
    /* calloc hands out fresh memory untouched (the kernel zeroes it on first use): write
       each page now, so that the page fault is taken here, in the thread making the
       region (the prefetch worker), and not later by the allocating thread */
    for (size_t at = 0; at < bytes; at += 4096)
        ((volatile uint8_t *)r)[at] = 0;
    r->slabs = (sm_slab *)(r + 1);
    r->slot_bits = (uint64_t *)(r->slabs + pages);
    r->slot_words = words;
    r->rnode = (sm_rnode *)(r->slot_bits + pages * words);
    r->holds = (uint32_t *)(r->rnode + pages);
    r->state = (uint8_t *)(r->holds + pages);
    r->flags = r->state + pages;
    r->pages = pages;
    return r;
}

/* Add the mapping at `base` to the arena, with bookkeeping `made` by sm_region_new for
   these pages, or NULL to make it here. On failure `made` is freed. */
static sm_region *region_add(sm_arena *a, uintptr_t base, size_t pages, int wiped_on_fork,
                             sm_region *made) {
    sm_region *r = made != NULL ? made : sm_region_new(pages, a->page);
    if (r == NULL)
        return (sm_region *)PyErr_NoMemory();
    r->base = base;
    r->length = pages * a->page;
    if (a->nregions == a->cregions) {
        size_t capacity = a->cregions ? 2 * a->cregions : 8;
        sm_region **grown = realloc(a->regions, capacity * sizeof *grown);
        if (grown != NULL) {
            a->regions = grown;
            a->cregions = capacity;
        }
    }
    if (a->nregions == a->cregions) {
        region_free(r);
        return (sm_region *)PyErr_NoMemory();
    }
    r->state[0] = r->state[pages - 1] = PAGE_GUARD;
    if (!wiped_on_fork)
        a->fork_wipe_needed = 1;
    a->regions[a->nregions++] = r;
    a->unused_pages += pages - 2;
    return r;
}

/* Map a mapping the way every securemem mapping is prepared: PROT_NONE guard
   page at each end, out of core dumps, zero in a forked child. */
static int map_prepared(sm_arena *a, size_t length, uintptr_t *base, int *wiped_on_fork) {
    const sm_kernel_ops *k = a->ops;
    int applied;
    if (k->map(a, length, base) < 0)
        return -1;
    if (k->protect(a, *base, a->page, SM_PROT_NONE) < 0 ||
        k->protect(a, *base + length - a->page, a->page, SM_PROT_NONE) < 0 ||
        k->advise(a, *base, length, SM_ADVICE_DONTDUMP, &applied) < 0 ||
        k->advise(a, *base, length, SM_ADVICE_WIPEONFORK, wiped_on_fork) < 0) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (k->unmap(a, *base, length) < 0)
            PyErr_Clear();
        PyErr_Restore(type, value, tb);
        return -1;
    }
    return 0;
}

/* Membership first, by pointer only: a nested release (a trim inside a trim) may have
   unmapped and freed `r` already, and then it must not be read. */
static void unmap_if_empty(sm_arena *a, sm_region *r) {
    size_t i;
    for (i = 0; i < a->nregions && a->regions[i] != r; i++)
        ;
    if (i == a->nregions)
        return;
    if (r->used != 0 || r->reserved != 0)
        return;
    if (a->ops->unmap(a, r->base, r->length) < 0) {
        swallow(); /* still mapped, still listed: release_reserve() retries */
        return;
    }
    memmove(&a->regions[i], &a->regions[i + 1], (a->nregions - i - 1) * sizeof *a->regions);
    a->nregions--;
    a->unused_pages -= r->pages - 2; /* none used: checked above */
    region_free(r);
}

/* -- per-page lock counts: the kernel sees only 0 -> 1 and 1 -> 0 -------------------- */

/* One more holder on pages [first, first + count) of r; on failure nothing changed. */
static int acquire(sm_arena *a, sm_region *r, size_t first, size_t count) {
    size_t i = first, end = first + count;
    while (i < end) {
        if (r->holds[i]) {
            i++;
            continue;
        }
        size_t start = i;
        while (i < end && r->holds[i] == 0)
            i++;
        if (a->ops->lock(a, r->base + start * a->page, (i - start) * a->page) < 0) {
            /* undo the runs this call locked */
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            size_t j = first;
            while (j < start) {
                if (r->holds[j]) {
                    j++;
                    continue;
                }
                size_t s = j;
                while (j < start && r->holds[j] == 0)
                    j++;
                if (a->ops->unlock(a, r->base + s * a->page, (j - s) * a->page) < 0)
                    PyErr_Clear();
            }
            PyErr_Restore(type, value, tb);
            return -1;
        }
    }
    for (i = first; i < end; i++)
        if (r->holds[i]++ == 0)
            a->locked_pages++;
    return 0;
}

static void keep_stuck(sm_arena *a, sm_region *r, size_t index);

/* One holder less on each page of [first, first + count) that is marked in
   `which` (NULL: every page); pages left with none are unlocked, contiguous
   ones in one call. Pages the kernel refuses to unlock keep one holder and go
   to the reserve (still locked; retried at the next trim). */
static void release_holds(sm_arena *a, sm_region *r, size_t first, size_t count,
                          const uint8_t *which) {
    size_t end = first + count;
    uint8_t *emptied = calloc(count ? count : 1, 1);
    if (emptied == NULL)
        return; /* out of memory: the pages stay locked and counted */
    for (size_t i = first; i < end; i++) {
        if (which != NULL && !which[i - first])
            continue;
        if (--r->holds[i] == 0) {
            emptied[i - first] = 1;
            a->locked_pages--;
        }
    }
    size_t i = 0;
    while (i < count) {
        if (!emptied[i]) {
            i++;
            continue;
        }
        size_t start = i;
        while (i < count && emptied[i])
            i++;
        if (a->ops->unlock(a, r->base + (first + start) * a->page, (i - start) * a->page) < 0) {
            swallow();
            for (size_t j = start; j < i; j++) {
                r->holds[first + j] = 1;
                a->locked_pages++;
                keep_stuck(a, r, first + j);
            }
        }
    }
    free(emptied);
}

/* -- the reserve ---------------------------------------------------------------------- */

/* A page's node is in its region's block: the reserve allocates nothing. A 32-byte round
   trip empties its slab into the reserve and takes it back, and a malloc and a free there
   were a tenth of its cost. */
static void reserve_push(sm_arena *a, sm_region *r, size_t index, sm_slab *slab) {
    sm_rnode *n = &r->rnode[index];
    n->page = r->base + index * a->page;
    n->region = r;
    n->slab = slab;
    n->prev = a->reserve_tail;
    n->next = NULL;
    if (a->reserve_tail)
        a->reserve_tail->next = n;
    else
        a->reserve_head = n;
    a->reserve_tail = n;
    a->nreserve++;
}

static void reserve_remove(sm_arena *a, sm_rnode *n) {
    if (n->prev)
        n->prev->next = n->next;
    else
        a->reserve_head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        a->reserve_tail = n->prev;
    n->region = NULL; /* out of the reserve */
    n->prev = n->next = NULL;
    a->nreserve--;
}

static void keep_stuck(sm_arena *a, sm_region *r, size_t index) {
    reserve_push(a, r, index, NULL);
    r->reserved++;
}

static void partial_remove(sm_arena *a, sm_slab *s) {
    if (!s->listed)
        return;
    if (s->prev)
        s->prev->next = s->next;
    else
        a->partial_head[s->cls] = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        a->partial_tail[s->cls] = s->prev;
    s->prev = s->next = NULL;
    s->listed = 0;
}

static void partial_append(sm_arena *a, sm_slab *s) {
    s->prev = a->partial_tail[s->cls];
    s->next = NULL;
    if (a->partial_tail[s->cls])
        a->partial_tail[s->cls]->next = s;
    else
        a->partial_head[s->cls] = s;
    a->partial_tail[s->cls] = s;
    s->listed = 1;
}

static void return_pages(sm_arena *a, sm_region *r, size_t first, size_t count, int keep);
static void trim_reserve(sm_arena *a);

static void dissolve(sm_arena *a, sm_slab *s, int keep) {
    sm_region *r = s->region;
    size_t index = slab_index(s);
    partial_remove(a, s); /* its record stays in the region's block until reused */
    return_pages(a, r, index, 1, keep);
}

static void evict(sm_arena *a, sm_rnode *n) {
    sm_slab *slab = n->slab;
    sm_region *r = n->region;
    size_t index = index_of(a, r, n->page);
    reserve_remove(a, n);
    if (slab != NULL) {
        dissolve(a, slab, 0);
        return;
    }
    r->reserved--;
    release_holds(a, r, index, 1, NULL);
    unmap_if_empty(a, r);
}

static void trim_reserve(sm_arena *a) {
    /* bounded: a page the kernel refuses to unlock goes back to the end */
    size_t rounds = a->nreserve > a->reserve_pages ? a->nreserve - a->reserve_pages : 0;
    for (size_t i = 0; i < rounds && a->nreserve > a->reserve_pages; i++)
        evict(a, a->reserve_head);
}

/* Pages whose owner is gone: keep some locked in the reserve, unlock the rest. */
static void return_pages(sm_arena *a, sm_region *r, size_t first, size_t count, int keep) {
    uint8_t *unlock_these = calloc(count, 1);
    size_t kept = 0, to_unlock = 0;
    r->used -= count;
    a->unused_pages += count;
    for (size_t i = first; i < first + count; i++) {
        r->state[i] = PAGE_FREE;
        if (r->flags[i] & PF_UNLOCKED) {
            r->flags[i] &= (uint8_t)~PF_UNLOCKED;
            a->unlocked_pages--;
            continue;
        }
        if (keep && kept < a->reserve_pages) {
            reserve_push(a, r, i, NULL); /* the owner's hold becomes the reserve's */
            r->reserved++;
            kept++;
        } else if (unlock_these != NULL) {
            unlock_these[i - first] = 1;
            to_unlock++;
        }
    }
    if (to_unlock)
        release_holds(a, r, first, count, unlock_these);
    free(unlock_these);
    trim_reserve(a);
    unmap_if_empty(a, r);
}

static void slab_emptied(sm_arena *a, sm_slab *s) {
    sm_region *r = s->region;
    size_t index = slab_index(s);
    if ((r->flags[index] & PF_UNLOCKED) || a->reserve_pages == 0) {
        dissolve(a, s, 1);
        return;
    }
    reserve_push(a, r, index, s);
    trim_reserve(a);
}

static void guarded_unmap(sm_arena *a, sm_guarded *g);

static void release(sm_arena *a, int kind, void *owner, uintptr_t address) {
    if (kind == KIND_GUARDED) { /* counted out at close already: only the mapping goes */
        guarded_unmap(a, owner);
        return;
    }
    a->live--;
    if (kind == KIND_SLOT) {
        sm_slab *s = owner;
        /* the classes are powers of two: a shift, not a division */
        size_t slot = (address - s->page) >> __builtin_ctzll(sm_classes[s->cls]);
        s->free[slot / 64] |= (uint64_t)1 << (slot % 64);
        s->nfree++;
        s->live--;
        if (!s->listed)
            partial_append(a, s);
        if (s->live == 0)
            slab_emptied(a, s);
    } else if (kind == KIND_RUN) {
        sm_run *run = owner;
        sm_region *r = run->region;
        return_pages(a, r, index_of(a, r, run->address), run->length / a->page, 1);
        free(run);
    }
}

/* 1 when giving this slot back is bookkeeping only: its slab keeps a live slot, or the
   emptied slab fits in the reserve as it is (slab_emptied then neither dissolves it nor
   trims the reserve, the two steps that may call the kernel). */
static int release_is_bookkeeping(sm_arena *a, int kind, void *owner) {
    if (kind != KIND_SLOT)
        return 0;
    sm_slab *s = owner;
    if (s->live > 1)
        return 1;
    sm_region *r = s->region;
    return !(r->flags[slab_index(s)] & PF_UNLOCKED) && a->nreserve < a->reserve_pages;
}

void sm_free(sm_arena *a, int kind, void *owner, uintptr_t address) {
    if (arena_idle(a) && release_is_bookkeeping(a, kind, owner)) {
        release(a, kind, owner, address); /* the GIL alone keeps it atomic */
        return;
    }
    if (pthread_mutex_trylock(&a->mutex) == 0) {
        __atomic_store_n(&a->owner, this_thread(), __ATOMIC_RELAXED);
        release(a, kind, owner, address);
        unlock_arena(a);
        return;
    }
    /* busy: the holder applies it before letting the mutex go (it needs the GIL,
       which we hold, to get there) */
    sm_pending *p = malloc(sizeof *p);
    if (p == NULL)
        return; /* out of memory: the wiped slot is lost, never reused */
    p->kind = kind;
    p->owner = owner;
    p->address = address;
    p->next = a->pending;
    a->pending = p;
}

/* -- allocation ---------------------------------------------------------------------- */

/* The usable pages of a region locked ahead: one hold each (the prefetch's), marked as
   prefetched. The native worker calls it on the bookkeeping it makes, so that adopting
   the region does not write a line per page in the allocating thread. */
void sm_region_mark_prefetched(sm_region *r) {
    for (size_t i = 1; i + 1 < r->pages; i++) {
        r->holds[i] = 1;
        r->flags[i] |= PF_PREFETCHED;
    }
}

/* Count a marked region's pages as the arena's, locked and prefetched. */
static void adopt_prefetched(sm_arena *a, sm_region *r) {
    size_t usable = r->pages - 2;
    a->locked_pages += usable;
    a->nprefetched += usable;
    r->reserved += usable;
}

/* Done with a job: kept for the next request if the worker is done with it too. */
static void let_go_of_job(sm_arena *a, sm_job_state *job) {
    sm_job_state *kept = sm_job_let_go_keeping(job);
    if (kept == NULL)
        return;
    if (a->nspare < SM_PREFETCH_DEPTH)
        a->spare_jobs[a->nspare++] = kept;
    else
        sm_job_discard(kept);
}

/* The oldest prepared region's job, taken off the arena's list. */
static sm_job_state *jobs_pop(sm_arena *a) {
    sm_job_state *job = a->jobs[0];
    for (int i = 1; i < a->njobs; i++)
        a->jobs[i - 1] = a->jobs[i];
    a->jobs[--a->njobs] = NULL;
    return job;
}

/* The job's final state, once the worker is done with it (waited for without the GIL);
   1 in *waited if it had to be waited for. */
static int job_outcome(sm_job_state *job, int *waited) {
    *waited = sm_job_state_of(job) == JOB_RUNNING;
    if (*waited) {
        Py_BEGIN_ALLOW_THREADS
        sm_job_wait(job);
        Py_END_ALLOW_THREADS
    }
    return sm_job_state_of(job);
}

/* The native worker's region, once its lock is done (never handed out while pending). */
static sm_region *adopt_native(sm_arena *a, size_t pages) {
    sm_job_state *job = jobs_pop(a);
    int waited, state = job_outcome(job, &waited);
    a->prefetch_waited += (size_t)waited;
    if (state != JOB_READY) {
        a->prefetch_failed++;
        a->prefetch_paused = 1; /* resumed by release_reserve(): the limit is better spent */
        let_go_of_job(a, job);
        return NULL;
    }
    uintptr_t base = job->base;
    int wiped = job->wiped_on_fork;
    sm_region *made = job->made; /* the worker's bookkeeping for it: now the arena's */
    job->made = NULL;
    let_go_of_job(a, job);
    sm_region *r = region_add(a, base, pages, wiped, made);
    if (r == NULL) {
        if (sm_unmap((void *)base, pages * a->page) != 0)
            PyErr_Clear();
        return NULL;
    }
    adopt_prefetched(a, r);
    a->prefetch_adopted++;
    return r;
}

/* Once the prepared regions are all adopted and less than a region's worth of locked
   pages is left ahead, ask the worker for the next SM_PREFETCH_DEPTH (as many as fit the
   limit). */
static void consider_native(sm_arena *a) {
    if (a->njobs != 0 || a->prefetch_paused || a->nprefetched >= a->region_pages)
        return;
    size_t pages = a->region_pages + 2;
    int count = SM_PREFETCH_DEPTH;
    /* A region that cannot fit the limit is never started; otherwise the worker's own
       mlock is the test (the kernel enforces the limit). The limit is the one read when
       prefetch was enabled or the reserve last released: a system call here would cost
       every growth a few microseconds, the very latency prefetch exists to remove. */
    if (a->prefetch_limit != UINT64_MAX) {
        uint64_t fit = a->prefetch_limit / (uint64_t)(a->region_pages * a->page);
        if (fit == 0)
            return;
        if (fit < (uint64_t)count)
            count = (int)fit;
    }
    int woke;
    a->njobs = sm_jobs_start(pages * a->page, a->page, a->jobs, count, &woke, a->spare_jobs,
                             &a->nspare);
    a->prefetch_woken += (size_t)woke;
    if (a->njobs == 0) {
        a->prefetch_failed++; /* no thread to be had: never the user's problem */
        a->prefetch_paused = 1;
        return;
    }
    a->prefetch_started += (size_t)a->njobs;
}

static void read_prefetch_limit(sm_arena *a) {
    uint64_t soft, hard;
    a->prefetch_limit = sm_memlock_limit(&soft, &hard) == 0 ? soft : UINT64_MAX;
}

/* Give back the regions prepared and not adopted: munmap drops their locks. */
static void release_native_jobs(sm_arena *a) {
    while (a->njobs > 0) {
        sm_job_state *job = jobs_pop(a);
        int waited;
        if (job_outcome(job, &waited) == JOB_READY) {
            sm_unlock((void *)(job->base + a->page), job->length - 2 * a->page);
            sm_unmap((void *)job->base, job->length);
        }
        let_go_of_job(a, job);
    }
}

static sm_region *map_region(sm_arena *a, size_t pages) {
    uintptr_t base;
    int wiped;
    if (a->native_prefetch && pages == a->region_pages + 2) {
        if (a->njobs != 0) {
            sm_region *r = adopt_native(a, pages);
            if (r != NULL || PyErr_Occurred())
                return r;
        } else {
            /* nothing prepared (prefetch paused or refused): the next region is started
               while this one is mapped here */
            consider_native(a);
        }
    } else if (a->prefetcher != NULL && a->prefetcher != Py_None && !a->native_prefetch) {
        PyObject *wanted = PyObject_GetAttrString(a->prefetcher, "pages");
        if (wanted == NULL)
            return NULL;
        size_t prefetch_pages = PyLong_AsSize_t(wanted);
        Py_DECREF(wanted);
        if (prefetch_pages == (size_t)-1 && PyErr_Occurred())
            return NULL;
        if (prefetch_pages == pages) {
            PyObject *prepared = PyObject_CallMethod(a->prefetcher, "take", NULL);
            if (prepared == NULL)
                return NULL;
            if (prepared != Py_None) {
                base = (uintptr_t)PyLong_AsSize_t(prepared);
                Py_DECREF(prepared);
                PyObject *w = PyObject_GetAttrString(a->prefetcher, "wiped_on_fork");
                wiped = w != NULL && PyObject_IsTrue(w) == 1;
                Py_XDECREF(w);
                PyErr_Clear();
                sm_region *r = region_add(a, base, pages, wiped, NULL);
                if (r != NULL) {
                    sm_region_mark_prefetched(r);
                    adopt_prefetched(a, r);
                }
                return r;
            }
            Py_DECREF(prepared);
        }
    }
    if (map_prepared(a, pages * a->page, &base, &wiped) < 0)
        return NULL;
    sm_region *r = region_add(a, base, pages, wiped, NULL);
    if (r == NULL && a->ops->unmap(a, base, pages * a->page) < 0)
        PyErr_Clear();
    return r;
}

/* Take a page out of the reserve or the prefetched pages: 1 if it was there
   (locked already, with one hold: the new owner's from now on). */
static int take_from_reserve(sm_arena *a, sm_region *r, size_t index) {
    if (r->rnode[index].region != NULL) {
        reserve_remove(a, &r->rnode[index]);
        return 1;
    }
    if (r->flags[index] & PF_PREFETCHED) {
        r->flags[index] &= (uint8_t)~PF_PREFETCHED;
        a->nprefetched--;
        return 1;
    }
    return 0;
}

static void lock_failed(sm_arena *a) {
    if (a->policy == POLICY_WARN && !a->warned) {
        a->warned = 1;
        a->lock_failed_pending = 1; /* warned by the caller once the mutex is let go */
    }
}

/* Lock the pages; at the memlock limit give idle reserve pages of other regions
   back and retry: the reserve exists for speed, never at the cost of a secret. */
static int acquire_making_room(sm_arena *a, sm_region *r, size_t first, size_t count) {
    if (acquire(a, r, first, count) == 0)
        return 0;
    if (!sm_is_lock_error())
        return -1;
    int idle = 0;
    for (sm_rnode *n = a->reserve_head; n; n = n->next)
        idle += n->region != r;
    if (!idle && a->njobs == 0)
        return -1;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (a->njobs != 0) {
        /* regions locked ahead by prefetch go first: they are for speed, this is a secret */
        release_native_jobs(a);
        a->prefetch_paused = 1; /* until release_reserve(): the limit is better spent */
    }
    /* Bounded by the idle pages there were: an eviction may dissolve other nodes or push
       pages the kernel would not unlock back at the end; each round starts from the head. */
    for (int round = 0; round < idle; round++) {
        sm_rnode *n = a->reserve_head;
        while (n && n->region == r)
            n = n->next;
        if (n == NULL)
            break;
        evict(a, n);
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return acquire(a, r, first, count);
}

static int hold_pages(sm_arena *a, sm_region *r, size_t first, size_t count, size_t *from_reserve) {
    *from_reserve = 0;
    if (acquire_making_room(a, r, first, count) < 0) {
        if (a->policy == POLICY_RAISE || !sm_is_lock_error())
            return -1;
        PyErr_Clear();
        for (size_t i = first; i < first + count; i++) {
            if (take_from_reserve(a, r, i)) {
                (*from_reserve)++;
            } else {
                r->flags[i] |= PF_UNLOCKED;
                a->unlocked_pages++;
            }
        }
        lock_failed(a);
        return 0;
    }
    for (size_t i = first; i < first + count; i++) {
        if (take_from_reserve(a, r, i)) {
            r->holds[i]--; /* 2 -> 1: never a system call */
            (*from_reserve)++;
        }
    }
    return 0;
}

static int take_pages(sm_arena *a, size_t count, sm_region **out, size_t *first) {
    sm_region *r = NULL;
    size_t index = 0;
    /* with fewer unused pages than wanted in all regions together, no region has the
       run: growing a full arena then reads no region (a cold line each) before it maps */
    for (size_t k = a->unused_pages >= count ? a->nregions : 0; k-- > 0 && r == NULL;) {
        sm_region *candidate = a->regions[k];
        /* a full region is skipped by its count: scanning every page of every region
           made each growth cost time in proportion to the arena's size */
        if (candidate->pages - 2 - candidate->used < count)
            continue;
        size_t run = 0;
        for (size_t i = 1; i + 1 < candidate->pages; i++) {
            run = candidate->state[i] == PAGE_FREE ? run + 1 : 0;
            if (run == count) {
                r = candidate;
                index = i + 1 - count;
                break;
            }
        }
    }
    if (r == NULL) {
        r = map_region(a, (a->region_pages > count ? a->region_pages : count) + 2);
        if (r == NULL)
            return -1;
        index = 1;
    }
    size_t from_reserve;
    if (hold_pages(a, r, index, count, &from_reserve) < 0) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        unmap_if_empty(a, r);
        PyErr_Restore(type, value, tb);
        return -1;
    }
    memset(r->state + index, PAGE_USED, count);
    r->used += count;
    a->unused_pages -= count;
    r->reserved -= from_reserve;
    if (a->native_prefetch) {
        consider_native(a);
    } else if (a->prefetcher != NULL && a->prefetcher != Py_None) {
        PyObject *result =
            PyObject_CallMethod(a->prefetcher, "consider", "n", (Py_ssize_t)a->nprefetched);
        if (result == NULL)
            swallow(); /* prefetch is best effort */
        Py_XDECREF(result);
    }
    *out = r;
    *first = index;
    return 0;
}

/* The lowest free slot of a slab with one: a slab fills from its start, and a freed slot
   is the first to be used again once it is the lowest. Bookkeeping only. */
static inline void take_slot(sm_arena *a, sm_slab *s, size_t size, int *kind, void **owner,
                             uintptr_t *address) {
    if (s->live == 0) { /* an empty slab kept in the reserve comes back */
        sm_rnode *n = &s->region->rnode[slab_index(s)];
        if (n->region != NULL)
            reserve_remove(a, n);
    }
    size_t word = 0;
    while (s->free[word] == 0)
        word++;
    uint32_t slot = (uint32_t)(word * 64 + (size_t)__builtin_ctzll(s->free[word]));
    s->free[word] &= s->free[word] - 1;
    s->nfree--;
    if (s->nfree == 0)
        partial_remove(a, s);
    s->live++;
    *kind = KIND_SLOT;
    *owner = s;
    *address = s->page + slot * sm_classes[s->cls];
    a->live++;
    a->in_use += size;
}

static int allocate(sm_arena *a, size_t size, int *kind, void **owner, uintptr_t *address) {
    if (size <= SM_LARGEST_CLASS) {
        int c = class_of(size);
        sm_slab *s = a->partial_tail[c];
        if (s == NULL) {
            sm_region *r;
            size_t index;
            uint32_t slots = (uint32_t)(a->page / sm_classes[c]);
            if (take_pages(a, 1, &r, &index) < 0)
                return -1;
            s = &r->slabs[index];
            memset(s, 0, sizeof *s);
            s->region = r;
            s->page = r->base + index * a->page;
            s->cls = c;
            s->free = r->slot_bits + index * r->slot_words;
            memset(s->free, 0, r->slot_words * sizeof *s->free);
            for (uint32_t w = 0; w < slots / 64; w++)
                s->free[w] = ~(uint64_t)0;
            if (slots % 64)
                s->free[slots / 64] = ((uint64_t)1 << (slots % 64)) - 1;
            s->nfree = slots;
            partial_append(a, s);
        }
        take_slot(a, s, size, kind, owner, address);
        return 0;
    } else {
        size_t pages = (size + a->page - 1) / a->page;
        sm_run *run = malloc(sizeof *run);
        sm_region *r;
        size_t index;
        if (run == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        if (take_pages(a, pages, &r, &index) < 0) {
            free(run);
            return -1;
        }
        run->region = r;
        run->address = r->base + index * a->page;
        run->length = pages * a->page;
        *kind = KIND_RUN;
        *owner = run;
        *address = run->address;
    }
    a->live++;
    a->in_use += size;
    return 0;
}

/* Policy warn: one warning per arena, from Python so that it points at the user's line. */
static int warn_if_needed(sm_arena *a) {
    if (!a->lock_failed_pending)
        return 0;
    a->lock_failed_pending = 0;
    PyObject *result = PyObject_CallMethod((PyObject *)a, "_warn_lock_failed", NULL);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

static int check_ready(sm_arena *a) {
    if (!a->ready) {
        PyErr_SetString(PyExc_TypeError, "this Arena was never initialised (call Arena())");
        return -1;
    }
    return 0;
}

int sm_alloc(sm_arena *a, size_t size, sm_secret *into) {
    int kind;
    void *owner;
    uintptr_t address;
    if (check_ready(a) < 0)
        return -1;
    int result = 0;
    sm_slab *s;
    if (arena_idle(a) && size <= SM_LARGEST_CLASS && (s = a->partial_tail[class_of(size)]) != NULL) {
        /* a free slot of a slab the arena has: bookkeeping only, atomic by the GIL */
        take_slot(a, s, size, &kind, &owner, &address);
    } else {
        if (lock_arena(a) < 0)
            return -1;
        result = allocate(a, size, &kind, &owner, &address);
        unlock_arena(a);
    }
    if (result < 0)
        return -1;
    if (warn_if_needed(a) < 0) { /* warnings are errors here: no secret after all */
        sm_in_use_less(a, size);
        sm_free(a, kind, owner, address);
        return -1;
    }
    into->kind = (uint8_t)kind;
    into->owner = owner;
    into->address = address;
    into->size = size;
    return 0;
}

void sm_in_use_less(sm_arena *a, size_t size) { a->in_use -= size; }

void sm_closed_with_views(sm_arena *a, size_t size) {
    a->in_use -= size;
    a->awaiting++;
}

void sm_views_gone(sm_arena *a) { a->awaiting--; }

/* -- guarded secrets ----------------------------------------------------------------- */

static void guarded_fill(sm_guarded *g) {
    uint8_t *p = (uint8_t *)g->data_start;
    size_t slack = g->address - g->data_start;
    for (size_t i = 0; i < slack; i++)
        p[i] = g->canary[i % SM_CANARY];
}

static int guarded_intact(sm_guarded *g) {
    const volatile uint8_t *p = (const volatile uint8_t *)g->data_start;
    size_t slack = g->address - g->data_start;
    uint8_t diff = 0;
    for (size_t i = 0; i < slack; i++)
        diff |= (uint8_t)(p[i] ^ g->canary[i % SM_CANARY]);
    return diff == 0;
}

static void guarded_link(sm_arena *a, sm_guarded *g) {
    g->prev = NULL;
    g->next = a->guarded;
    if (a->guarded)
        a->guarded->prev = g;
    a->guarded = g;
}

static void guarded_unlink(sm_arena *a, sm_guarded *g) {
    if (g->prev)
        g->prev->next = g->next;
    else
        a->guarded = g->next;
    if (g->next)
        g->next->prev = g->prev;
}

int sm_alloc_guarded(sm_arena *a, size_t size, sm_secret *into) {
    if (check_ready(a) < 0)
        return -1;
    sm_guarded *g = calloc(1, sizeof *g);
    if (g == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    size_t data_pages = (size + SM_CANARY + a->page - 1) / a->page;
    int wiped;
    g->size = size;
    g->length = (data_pages + 2) * a->page;
    g->protection = SM_PROT_READWRITE;
    if (sm_random(g->canary, SM_CANARY) != 0) {
        free(g);
        return sm_kernel_failure(a, "getrandom", errno, SM_CANARY);
    }
    if (lock_arena(a) < 0) {
        free(g);
        return -1;
    }
    if (map_prepared(a, g->length, &g->base, &wiped) < 0)
        goto fail;
    g->data_start = g->base + a->page;
    g->data_length = data_pages * a->page;
    g->address = g->data_start + g->data_length - size;
    if (a->ops->lock(a, g->data_start, g->data_length) == 0) {
        g->locked = 1;
    } else if (a->policy == POLICY_RAISE || !sm_is_lock_error()) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (a->ops->unmap(a, g->base, g->length) < 0)
            PyErr_Clear();
        PyErr_Restore(type, value, tb);
        goto fail;
    } else {
        PyErr_Clear();
    }
    guarded_fill(g);
    if (!wiped)
        a->fork_wipe_needed = 1;
    guarded_link(a, g);
    if (g->locked) {
        a->guarded_locked += g->data_length;
    } else {
        a->guarded_unlocked += g->data_length;
        lock_failed(a);
    }
    a->live++;
    a->in_use += size;
    unlock_arena(a);
    into->kind = KIND_GUARDED;
    into->owner = g;
    into->address = g->address;
    into->size = size;
    if (warn_if_needed(a) < 0) {
        sm_guarded_close(a, g, 0);
        into->kind = KIND_NONE;
        return -1;
    }
    return 0;
fail:
    unlock_arena(a);
    free(g);
    return -1;
}

/* The mapping of a closed guarded secret goes back, unless a protect() of it has not
   returned yet: that call still reads g, and frees it when it returns. */
static void guarded_free(sm_arena *a, sm_guarded *g) {
    if (g->protecting > 0) {
        g->free_pending = 1;
        return;
    }
    sm_free(a, KIND_GUARDED, g, 0); /* now, or queued if the arena is mid-change */
}

/* A Python kernel's protect() is Python code: before or after it changes the pages it may
   close this very secret (a purge) or protect it again. While it runs, g says no-access,
   the cautious answer (a close makes the pages writable again before its wipe instead of
   trusting the old value), and g outlives the call (a close leaves the free to it). If
   another protect or a close ran meanwhile, the pages' protection depends on the order the
   Python code did things in: no-access is recorded, and the next use protects again. */
int sm_guarded_protect(sm_arena *a, sm_guarded *g, int protection) {
    int previous = g->protection;
    unsigned serial = ++g->protects;
    g->protection = SM_PROT_NONE;
    g->protecting++;
    int result = a->ops->protect(a, g->data_start, g->data_length, protection);
    g->protecting--;
    if (g->protects != serial) /* another protect (a close's, maybe) ran inside this one */
        g->protection = SM_PROT_NONE;
    else
        g->protection = result < 0 ? previous : protection;
    if (g->protecting == 0 && g->free_pending) {
        g->free_pending = 0;
        sm_free(a, KIND_GUARDED, g, 0); /* closed meanwhile: g is not read after this */
    }
    return result < 0 ? -1 : 0;
}

/* The mapping goes (or waits in the list for release_reserve() if refused). */
static void guarded_unmap(sm_arena *a, sm_guarded *g) {
    if (g->locked && a->ops->unlock(a, g->data_start, g->data_length) < 0)
        swallow(); /* munmap drops the lock anyway: only the accounting needs it */
    if (a->ops->unmap(a, g->base, g->length) < 0) {
        swallow();
        g->released = 2; /* still mapped and counted: retried */
        return;
    }
    guarded_unlink(a, g);
    if (g->locked)
        a->guarded_locked -= g->data_length;
    else
        a->guarded_unlocked -= g->data_length;
    free(g);
}

/* Wipe the data pages (slack included) and check the canary first; give the
   mapping back unless views are alive (then sm_guarded_views_gone does). */
int sm_guarded_close(sm_arena *a, sm_guarded *g, int views_alive) {
    int protect_failed = 0;
    size_t size = g->size; /* g may be freed below */
    /* Making the pages writable may run a Python kernel's code, which may release the
       secret's last view: sm_guarded_views_gone then leaves the mapping to this close
       (freeing it here would pull g from under the rest of this function). */
    g->closing = 1;
    if (g->protection != SM_PROT_READWRITE && sm_guarded_protect(a, g, SM_PROT_READWRITE) < 0)
        protect_failed = 1;
    if (g->closing == 2)
        views_alive = 0;
    g->closing = 0;
    int intact = protect_failed ? 1 : guarded_intact(g);
    if (!protect_failed)
        sm_wipe((void *)g->data_start, g->data_length);
    a->live--;
    a->in_use -= g->size;
    if (protect_failed) {
        /* cannot touch the pages to wipe them: unmapping is the wipe */
        PyErr_Clear();
    }
    g->released = 1;
    if (!views_alive)
        guarded_free(a, g);
    if (!intact) {
        char message[400];
        snprintf(message, sizeof message,
                 "the canary around a guarded secret of %zu bytes was overwritten: something "
                 "wrote outside the secret into its own pages (a buffer underrun). The secret "
                 "has been wiped; look for native code writing through its address with a "
                 "negative offset.",
                 size);
        sm_set_error("CanaryError", message);
        return -1;
    }
    return 0;
}

void sm_guarded_views_gone(sm_arena *a, sm_guarded *g);
void sm_guarded_views_gone(sm_arena *a, sm_guarded *g) {
    if (g->closing) { /* inside sm_guarded_close, which frees it when it is done with it */
        g->closing = 2;
        return;
    }
    /* A view may have written after the close (another thread's codec or copy, still
       inside its export when a purge landed): wipe again before the pages go back to the
       kernel, as a packed slot is wiped before reuse. Pages the close could not make
       writable are left to the unmap. */
    if (g->protection == SM_PROT_READWRITE)
        sm_wipe((void *)g->data_start, g->data_length);
    guarded_free(a, g);
}

int sm_guarded_check(sm_guarded *g);
int sm_guarded_check(sm_guarded *g) { return guarded_intact(g); }

/* -- fork ------------------------------------------------------------------------------ */

/* In a forked child: forget the parent's state (its bookkeeping is left where it
   is: freeing it here is not safe), give every arena a fresh mutex, and wipe
   what the kernel did not. No Python, no malloc. */
void sm_after_fork_child(void) {
    sm_generation++;
    sm_prefetch_after_fork_child();
    for (sm_arena *a = registry; a; a = a->reg_next) {
        pthread_mutex_init(&a->mutex, NULL);
        a->owner = 0;
        a->generation = sm_generation;
        for (size_t k = 0; k < a->nregions; k++) {
            sm_region *r = a->regions[k];
            if (a->secretmem)
                sm_map_zero_at((void *)r->base, r->length);
            else if (a->fork_wipe_needed && a->ops == &sm_native_ops)
                sm_wipe((void *)(r->base + a->page), r->length - 2 * a->page);
            else if (a->fork_wipe_needed)
                sm_wipe((void *)(r->base + a->page), r->length - 2 * a->page);
        }
        for (sm_guarded *g = a->guarded; g; g = g->next) {
            if (a->secretmem) {
                sm_map_zero_at((void *)g->base, g->length);
            } else if (a->fork_wipe_needed) {
                /* the parent may have protected it: open it, or leave it */
                if (sm_protect((void *)g->data_start, g->data_length, SM_PROT_READWRITE) == 0)
                    sm_wipe((void *)g->data_start, g->data_length);
            }
        }
        a->regions = NULL;
        a->nregions = a->cregions = 0;
        a->unused_pages = 0;
        for (int c = 0; c < SM_CLASSES; c++)
            a->partial_head[c] = a->partial_tail[c] = NULL;
        a->reserve_head = a->reserve_tail = NULL;
        a->nreserve = a->nprefetched = 0;
        a->guarded = NULL;
        a->locked_pages = a->unlocked_pages = 0;
        a->guarded_locked = a->guarded_unlocked = 0;
        a->live = a->in_use = a->awaiting = 0;
        a->pending = NULL;
        a->fork_wipe_needed = 0;
        /* the worker was the parent's: its regions are not locked here */
        memset(a->jobs, 0, sizeof a->jobs);
        a->njobs = 0;
    }
}

/* -- the Arena type ----------------------------------------------------------------------- */

static int arena_init(PyObject *self, PyObject *args, PyObject *kwargs) {
    sm_arena *a = (sm_arena *)self;
    static char *names[] = {"kernel", "page_size", "region_pages", "reserve_pages", "policy",
                            "native", "secretmem", NULL};
    PyObject *kernel;
    Py_ssize_t page, region_pages, reserve_pages;
    int policy, native, secretmem;
    if (a->ready) {
        PyErr_SetString(PyExc_TypeError, "an Arena cannot be initialised twice");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Onnnipp", names, &kernel, &page,
                                     &region_pages, &reserve_pages, &policy, &native, &secretmem))
        return -1;
    if (page < 16 || (page & (page - 1)) || region_pages < 1 || reserve_pages < 0) {
        PyErr_SetString(PyExc_ValueError, "invalid arena geometry");
        return -1;
    }
    Py_INCREF(kernel);
    a->kernel = kernel;
    a->ops = secretmem ? &sm_secretmem_ops : native ? &sm_native_ops : &sm_python_ops;
    a->page = (size_t)page;
    a->region_pages = (size_t)region_pages;
    a->reserve_pages = (size_t)reserve_pages;
    a->policy = policy;
    a->secretmem = secretmem;
    a->generation = sm_generation;
    pthread_mutex_init(&a->mutex, NULL);
    a->reg_next = registry;
    if (registry)
        registry->reg_prev = a;
    registry = a;
    a->ready = 1;
    return 0;
}

/* release_reserve(), a dropped arena: give back what was prepared and resume prefetching
   (under the limit as it is now). */
static void release_prefetched(sm_arena *a) {
    if (a->native_prefetch) {
        release_native_jobs(a);
        a->prefetch_paused = 0;
        read_prefetch_limit(a);
    } else if (a->prefetcher != NULL && a->prefetcher != Py_None) {
        PyObject *result = PyObject_CallMethod(a->prefetcher, "close", NULL);
        if (result == NULL)
            swallow();
        Py_XDECREF(result);
    }
    for (size_t k = 0; k < a->nregions; k++) {
        sm_region *r = a->regions[k];
        for (size_t i = 1; i + 1 < r->pages; i++) {
            if (r->flags[i] & PF_PREFETCHED) {
                r->flags[i] &= (uint8_t)~PF_PREFETCHED;
                a->nprefetched--;
                r->reserved--;
                release_holds(a, r, i, 1, NULL);
            }
        }
    }
}

static void release_everything_free(sm_arena *a) {
    drain(a);
    release_prefetched(a);
    size_t rounds = a->nreserve;
    for (size_t i = 0; i < rounds && a->reserve_head; i++)
        evict(a, a->reserve_head);
    for (size_t k = a->nregions; k-- > 0;)
        if (k < a->nregions)
            unmap_if_empty(a, a->regions[k]);
    sm_guarded *g = a->guarded;
    while (g) {
        sm_guarded *next = g->next;
        if (g->released == 2)
            guarded_unmap(a, g);
        g = next;
    }
}

static PyObject *arena_release_reserve(PyObject *self, PyObject *unused) {
    sm_arena *a = (sm_arena *)self;
    (void)unused;
    if (check_ready(a) < 0 || lock_arena(a) < 0)
        return NULL;
    release_everything_free(a);
    unlock_arena(a);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

/* securemem.purge(): every arena of this process gives back every free page it
   keeps locked (reserve, empty slabs, prefetched region). Each arena is held by a
   reference meanwhile (the mutex wait lets other threads run); one that cannot be
   locked (re-entered from its own kernel's code) is skipped. Never raises. */
void sm_release_free_everywhere(void) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *arenas = PyList_New(0);
    for (sm_arena *a = registry; arenas != NULL && a != NULL; a = a->reg_next)
        if (a->ready && Py_REFCNT((PyObject *)a) > 0 && a->generation == sm_generation &&
            PyList_Append(arenas, (PyObject *)a) < 0)
            Py_CLEAR(arenas);
    for (Py_ssize_t i = 0; arenas != NULL && i < PyList_Size(arenas); i++) {
        sm_arena *a = (sm_arena *)PyList_GetItem(arenas, i);
        if (lock_arena(a) < 0) {
            PyErr_Clear(); /* a purge nested inside this arena's own change: the outer one
                              gives its pages back */
            continue;
        }
        release_everything_free(a);
        unlock_arena(a);
        if (PyErr_Occurred())
            swallow();
    }
    Py_XDECREF(arenas);
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
}

static PyObject *arena_stats(PyObject *self, PyObject *unused) {
    sm_arena *a = (sm_arena *)self;
    (void)unused;
    if (check_ready(a) < 0 || lock_arena(a) < 0)
        return NULL;
    drain(a);
    size_t mapped = 0;
    for (size_t k = 0; k < a->nregions; k++)
        mapped += a->regions[k]->length;
    for (sm_guarded *g = a->guarded; g; g = g->next)
        mapped += g->length;
    /* memfd_secret: the kernel locks and charges whole mappings when they are made */
    size_t locked = a->secretmem ? mapped : a->locked_pages * a->page + a->guarded_locked;
    size_t reserve = (a->nreserve + a->nprefetched) * a->page;
    /* Regions the prefetch worker prepared and the arena has not adopted yet are locked
       and mapped all the same: counted (as reserve), so that stats match the kernel. */
    for (int i = 0; i < a->njobs; i++) {
        sm_job_state *job = a->jobs[i];
        int waited;
        if (job_outcome(job, &waited) == JOB_READY) {
            locked += job->length - 2 * a->page;
            reserve += job->length - 2 * a->page;
            mapped += job->length;
        }
    }
    PyObject *result = Py_BuildValue(
        "(nnnnnnnn)", (Py_ssize_t)locked,
        (Py_ssize_t)mapped, (Py_ssize_t)a->in_use, (Py_ssize_t)a->live, (Py_ssize_t)a->nregions,
        (Py_ssize_t)reserve,
        (Py_ssize_t)(a->unlocked_pages * a->page + a->guarded_unlocked), (Py_ssize_t)a->awaiting);
    unlock_arena(a);
    return result;
}

static PyObject *arena_mapped_ranges(PyObject *self, PyObject *unused) {
    sm_arena *a = (sm_arena *)self;
    (void)unused;
    if (check_ready(a) < 0)
        return NULL;
    PyObject *list = PyList_New(0);
    for (size_t k = 0; list && k < a->nregions; k++) {
        PyObject *item = Py_BuildValue("(nn)", (Py_ssize_t)a->regions[k]->base,
                                       (Py_ssize_t)a->regions[k]->length);
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(item);
    }
    return list;
}

static PyObject *arena_guarded_ranges(PyObject *self, void *unused) {
    sm_arena *a = (sm_arena *)self;
    (void)unused;
    PyObject *dict = PyDict_New();
    for (sm_guarded *g = a->guarded; dict && g; g = g->next) {
        PyObject *key = PyLong_FromSize_t(g->base);
        PyObject *value = PyLong_FromSize_t(g->length);
        if (!key || !value || PyDict_SetItem(dict, key, value) < 0)
            Py_CLEAR(dict);
        Py_XDECREF(key);
        Py_XDECREF(value);
    }
    return dict;
}

static PyObject *arena_locked_pages(PyObject *self, PyObject *unused) {
    sm_arena *a = (sm_arena *)self;
    (void)unused;
    if (check_ready(a) < 0)
        return NULL;
    PyObject *dict = PyDict_New();
    for (size_t k = 0; dict && k < a->nregions; k++) {
        sm_region *r = a->regions[k];
        for (size_t i = 0; dict && i < r->pages; i++) {
            if (!r->holds[i])
                continue;
            PyObject *key = PyLong_FromSize_t(r->base + i * a->page);
            PyObject *value = PyLong_FromUnsignedLong(r->holds[i]);
            if (!key || !value || PyDict_SetItem(dict, key, value) < 0)
                Py_CLEAR(dict);
            Py_XDECREF(key);
            Py_XDECREF(value);
        }
    }
    return dict;
}

static PyObject *arena_enable_native_prefetch(PyObject *self, PyObject *unused) {
    sm_arena *a = (sm_arena *)self;
    (void)unused;
    if (check_ready(a) < 0)
        return NULL;
    if (a->ops != &sm_native_ops || a->secretmem) {
        PyErr_SetString(PyExc_ValueError, "native prefetch needs the real kernel");
        return NULL;
    }
    a->native_prefetch = 1;
    read_prefetch_limit(a);
    /* The first region is prepared now, at construction, so that even the first growth
       adopts a locked region instead of mapping and locking in the allocating thread. */
    if (lock_arena(a) < 0)
        return NULL;
    consider_native(a);
    int waited;
    if (a->njobs != 0)
        job_outcome(a->jobs[0], &waited);
    unlock_arena(a);
    Py_RETURN_NONE;
}

static PyObject *arena_prefetch_counters(PyObject *self, PyObject *unused) {
    sm_arena *a = (sm_arena *)self;
    (void)unused;
    return Py_BuildValue("{s:n,s:n,s:n,s:i,s:i,s:n,s:n}", "started",
                         (Py_ssize_t)a->prefetch_started, "adopted",
                         (Py_ssize_t)a->prefetch_adopted, "waited",
                         (Py_ssize_t)a->prefetch_waited, "cancelled", 0, "sync_fallbacks", 0,
                         "failed", (Py_ssize_t)a->prefetch_failed, "woken",
                         (Py_ssize_t)a->prefetch_woken);
}

static PyObject *arena_prefetch_prepared(PyObject *self, PyObject *unused) {
    sm_arena *a = (sm_arena *)self;
    (void)unused;
    sm_job_state *job = a->njobs ? a->jobs[0] : NULL;
    int waited;
    if (job == NULL || job_outcome(job, &waited) != JOB_READY || a->njobs == 0 ||
        a->jobs[0] != job)
        Py_RETURN_NONE;
    return Py_BuildValue("(nn)", (Py_ssize_t)job->base, (Py_ssize_t)job->length);
}

static PyObject *arena_core_state(PyObject *self, PyObject *unused) {
    sm_arena *a = (sm_arena *)self;
    (void)unused;
    return Py_BuildValue("{s:i,s:n,s:s}", "fork_wipe_needed", a->fork_wipe_needed, "pending",
                         (Py_ssize_t)(a->pending != NULL), "kernel_table",
                         a->ops ? a->ops->name : "none");
}

static void arena_dealloc(PyObject *self) {
    sm_arena *a = (sm_arena *)self;
    PyTypeObject *type = Py_TYPE(self);
    if (a->weakreflist != NULL)
        PyObject_ClearWeakRefs(self);
    if (a->ready) {
        /* Every secret holds its arena: none is alive. Return every page it locked. */
        if (a->generation == sm_generation && pthread_mutex_trylock(&a->mutex) == 0) {
            a->owner = this_thread();
            PyObject *type_, *value, *tb;
            PyErr_Fetch(&type_, &value, &tb);
            release_everything_free(a);
            for (size_t k = a->nregions; k-- > 0;) {
                sm_region *r = a->regions[k];
                if (a->ops->unmap(a, r->base, r->length) < 0)
                    PyErr_Clear();
                region_free(r);
            }
            a->nregions = 0;
            PyErr_Restore(type_, value, tb);
            unlock_arena(a);
        }
        free(a->regions);
        while (a->nspare > 0)
            sm_job_discard(a->spare_jobs[--a->nspare]);
        if (a->reg_prev)
            a->reg_prev->reg_next = a->reg_next;
        else if (registry == a)
            registry = a->reg_next;
        if (a->reg_next)
            a->reg_next->reg_prev = a->reg_prev;
    }
    Py_CLEAR(a->kernel);
    Py_CLEAR(a->prefetcher);
    freefunc tp_free = (freefunc)PyType_GetSlot(type, Py_tp_free);
    tp_free(self);
    Py_DECREF(type);
}

static PyObject *arena_get_kernel(PyObject *self, void *unused) {
    (void)unused;
    sm_arena *a = (sm_arena *)self;
    PyObject *k = a->kernel ? a->kernel : Py_None;
    Py_INCREF(k);
    return k;
}

static PyObject *arena_get_prefetcher(PyObject *self, void *unused) {
    (void)unused;
    sm_arena *a = (sm_arena *)self;
    PyObject *p = a->prefetcher ? a->prefetcher : Py_None;
    Py_INCREF(p);
    return p;
}

static int arena_set_prefetcher(PyObject *self, PyObject *value, void *unused) {
    (void)unused;
    sm_arena *a = (sm_arena *)self;
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "prefetcher cannot be deleted");
        return -1;
    }
    Py_INCREF(value);
    SM_SETREF(a->prefetcher, value);
    return 0;
}

static PyObject *arena_get_page_size(PyObject *self, void *unused) {
    (void)unused;
    return PyLong_FromSize_t(((sm_arena *)self)->page);
}

static PyMethodDef arena_methods[] = {
    {"release_reserve", arena_release_reserve, METH_NOARGS,
     "Unlock and unmap every free page kept in the reserve (empty slabs too)."},
    {"_core_stats", arena_stats, METH_NOARGS, NULL},
    {"mapped_ranges", arena_mapped_ranges, METH_NOARGS,
     "(address, length) of every region this arena has mapped, guard pages included."},
    {"locked_pages", arena_locked_pages, METH_NOARGS,
     "{page address: holders} for every page this arena keeps locked."},
    {"_core_state", arena_core_state, METH_NOARGS, NULL},
    {"_enable_native_prefetch", arena_enable_native_prefetch, METH_NOARGS, NULL},
    {"_prefetch_counters", arena_prefetch_counters, METH_NOARGS, NULL},
    {"_prefetch_prepared", arena_prefetch_prepared, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef arena_getset[] = {
    {"kernel", arena_get_kernel, NULL, "The kernel this arena maps and locks through.", NULL},
    {"prefetcher", arena_get_prefetcher, arena_set_prefetcher,
     "The prefetcher locking the next region ahead of need, or None.", NULL},
    {"page_size", arena_get_page_size, NULL, "Bytes in one page of this arena's kernel.", NULL},
    {"guarded_ranges", arena_guarded_ranges, NULL,
     "{base: length} of every guarded secret's own mapping.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef arena_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(sm_arena, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot arena_slots[] = {
    {Py_tp_init, (void *)arena_init},
    {Py_tp_dealloc, (void *)arena_dealloc},
    {Py_tp_methods, arena_methods},
    {Py_tp_getset, arena_getset},
    {Py_tp_members, arena_members},
    {Py_tp_doc, "The native state of one arena (securemem.Arena is its Python face)."},
    {0, NULL},
};

static PyType_Spec arena_spec = {
    "securemem._core.ArenaCore",
    sizeof(sm_arena),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    arena_slots,
};

sm_arena *sm_default_arena(void) {
    if (default_arena == NULL) {
        if (default_factory == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "securemem: no default arena factory");
            return NULL;
        }
        PyObject *arena = PyObject_CallNoArgs(default_factory);
        if (arena == NULL)
            return NULL;
        if (!PyObject_TypeCheck(arena, sm_ArenaType)) {
            Py_DECREF(arena);
            PyErr_SetString(PyExc_TypeError, "the default arena factory must return an Arena");
            return NULL;
        }
        default_arena = arena;
    }
    return (sm_arena *)default_arena;
}

static PyObject *set_default_factory(PyObject *module, PyObject *factory) {
    (void)module;
    Py_INCREF(factory);
    SM_SETREF(default_factory, factory);
    Py_RETURN_NONE;
}

static PyObject *get_generation(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    return PyLong_FromUnsignedLongLong(sm_generation);
}

/* (address, length) of every mapping of every live arena: lock_memory refuses them. */
static PyObject *all_arena_ranges(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    PyObject *list = PyList_New(0);
    for (sm_arena *a = registry; list && a; a = a->reg_next) {
        for (size_t k = 0; list && k < a->nregions; k++) {
            PyObject *item = Py_BuildValue("(nn)", (Py_ssize_t)a->regions[k]->base,
                                           (Py_ssize_t)a->regions[k]->length);
            if (item == NULL || PyList_Append(list, item) < 0)
                Py_CLEAR(list);
            Py_XDECREF(item);
        }
        for (sm_guarded *g = a->guarded; list && g; g = g->next) {
            PyObject *item = Py_BuildValue("(nn)", (Py_ssize_t)g->base, (Py_ssize_t)g->length);
            if (item == NULL || PyList_Append(list, item) < 0)
                Py_CLEAR(list);
            Py_XDECREF(item);
        }
    }
    return list;
}

static PyMethodDef arena_functions[] = {
    {"all_arena_ranges", all_arena_ranges, METH_NOARGS,
     "(address, length) of every mapping of every live arena."},
    {"set_default_factory", set_default_factory, METH_O,
     "The callable that makes the default arena on first use."},
    {"fork_generation", get_generation, METH_NOARGS,
     "How many forks this process is away from the one that loaded securemem."},
    {NULL, NULL, 0, NULL},
};

int sm_arena_type_init(PyObject *module) {
    sm_ArenaType = (PyTypeObject *)PyType_FromSpec(&arena_spec);
    if (sm_ArenaType == NULL || PyModule_AddObjectRef(module, "ArenaCore", (PyObject *)sm_ArenaType) < 0)
        return -1;
    if (PyModule_AddFunctions(module, arena_functions) < 0)
        return -1;
    PyModule_AddIntConstant(module, "SIZE_CLASS_COUNT", SM_CLASSES);
    PyModule_AddIntConstant(module, "CANARY_SIZE", SM_CANARY);
    return 0;
}
