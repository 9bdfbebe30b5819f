/* A region prepared ahead of need by a native thread (real kernel only).

   The worker maps the region exactly as the arena does (guard pages, out of
   core dumps, wiped on fork) and locks its usable pages, without ever taking
   the GIL: a Python thread doing the same would finish its mlock quickly but
   then wait for the GIL (up to a switch interval while the program computes)
   before it could say so, and growth would wait for it. Here "ready" is one
   atomic store; the arena reads it without waiting. */
#include "core.h"

#include <limits.h>
#include <time.h>


/* One worker thread per process, started on first use and kept: handing it a
   job is a queue push (and at most a signal), where starting a thread per job
   cost the allocating thread tens of microseconds.

   After its last job the worker lingers: it looks at the queue once a
   millisecond for LINGER_LOOKS looks before it sleeps until signalled. Growth
   comes in bursts, and a job queued while the worker is busy or lingering needs
   no wake-up; waking a sleeping thread costs the allocating thread a futex
   system call and an inter-processor interrupt, several microseconds on a
   virtual machine, which was most of what a growth still cost. Whoever must
   wait for a job (sm_job_wait) signals first, so a lingering worker never makes
   anyone wait for its next look. */
#define LINGER_LOOK_NS 1000000L
#define LINGER_LOOKS 50
static pthread_mutex_t queue_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_cond = PTHREAD_COND_INITIALIZER;
static sm_job_state *queue_head = NULL, *queue_tail = NULL;
static int worker_running = 0;
static int worker_asleep = 0; /* waiting with no deadline: a job must signal it */
/* LINGER_LOOKS, except in the tests (_set_prefetch_linger): a test of "a lingering worker
   needs no wake-up" cannot depend on the allocating thread never being descheduled for
   LINGER_LOOKS milliseconds, nor one of "a sleeping worker is woken" on a pause being long
   enough. Read and written under the queue lock. */
static int linger_looks = LINGER_LOOKS;
static pthread_cond_t asleep_cond = PTHREAD_COND_INITIALIZER; /* the worker fell asleep */


/* A job (new, or a spare the worker and the arena are done with) made ready for a
   region of `length` bytes. */
static sm_job_state *job_ready_for(sm_job_state *job, size_t length, size_t page) {
    free(job->made); /* a spare's bookkeeping for a region given back unadopted */
    job->made = NULL;
    job->next = NULL;
    job->base = 0;
    job->error = job->wiped_on_fork = 0;
    job->length = length;
    job->page = page;
    job->state = JOB_RUNNING;
    job->references = 2; /* the worker's and the arena's */
    return job;
}

static sm_job_state *job_new(size_t length, size_t page) {
    sm_job_state *job = calloc(1, sizeof *job);
    if (job == NULL)
        return NULL;
    pthread_mutex_init(&job->mutex, NULL);
    pthread_cond_init(&job->done, NULL);
    return job_ready_for(job, length, page);
}

void sm_job_discard(sm_job_state *job) {
    free(job->made); /* made for a region never adopted */
    pthread_mutex_destroy(&job->mutex);
    pthread_cond_destroy(&job->done);
    free(job);
}

/* One reference less; the job itself if that was the last one (the caller may reuse
   it: the worker is done with it, its lock is free and nobody waits on it), else NULL. */
sm_job_state *sm_job_let_go_keeping(sm_job_state *job) {
    pthread_mutex_lock(&job->mutex);
    int left = --job->references;
    pthread_mutex_unlock(&job->mutex);
    return left == 0 ? job : NULL;
}

void sm_job_let_go(sm_job_state *job) {
    if (sm_job_let_go_keeping(job) != NULL)
        sm_job_discard(job);
}

static void prepare(sm_job_state *job) {
    size_t page = job->page, length = job->length;
    int state = JOB_FAILED, error = 0, wiped = 0;
    void *base = sm_map(length);
    if (base == NULL) {
        error = errno;
    } else {
        uintptr_t at = (uintptr_t)base;
        if (sm_protect(base, page, SM_PROT_NONE) != 0 ||
            sm_protect((void *)(at + length - page), page, SM_PROT_NONE) != 0 ||
            (sm_advise(base, length, SM_ADVICE_DONTDUMP) != 0 && errno != EINVAL &&
             errno != ENOSYS)) {
            error = errno;
        } else {
            wiped = sm_advise(base, length, SM_ADVICE_WIPEONFORK) == 0;
            if (sm_lock((void *)(at + page), length - 2 * page) == 0) {
                state = JOB_READY;
                /* here, not in the allocating thread: growth then allocates nothing */
                job->made = sm_region_new(length / page, page);
                if (job->made != NULL)
                    sm_region_mark_prefetched(job->made);
            } else {
                error = errno;
            }
        }
        if (state != JOB_READY) {
            sm_unmap(base, length);
            base = NULL;
        }
    }
    pthread_mutex_lock(&job->mutex);
    job->base = (uintptr_t)base;
    job->error = error;
    job->wiped_on_fork = wiped;
    __atomic_store_n(&job->state, state, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&job->done);
    pthread_mutex_unlock(&job->mutex);
    sm_job_let_go(job);
}

/* The linger's timed wait. The deadlines must not move with the wall clock, so the
   condition waits on the monotonic clock (pthread_condattr_setclock). macOS has no
   pthread_condattr_setclock; its own pthread_cond_timedwait_relative_np waits for a
   duration, which no clock change moves either. A test by name: the function is Apple's
   alone, and no header macro says setclock is missing (_POSIX_CLOCK_SELECTION is -1 on the
   BSDs too, which have it). */
#if defined(__APPLE__)
#define SM_LINGER_RELATIVE 1
#else
#define SM_LINGER_RELATIVE 0
#endif

static void linger_until(struct timespec *deadline) {
#if SM_LINGER_RELATIVE
    deadline->tv_sec = 0; /* a duration, for pthread_cond_timedwait_relative_np */
    deadline->tv_nsec = LINGER_LOOK_NS;
#else
    clock_gettime(CLOCK_MONOTONIC, deadline);
    deadline->tv_nsec += LINGER_LOOK_NS;
    if (deadline->tv_nsec >= 1000000000L) {
        deadline->tv_sec++;
        deadline->tv_nsec -= 1000000000L;
    }
#endif
}

static void *worker(void *unused) {
    (void)unused;
    pthread_mutex_lock(&queue_mutex);
    for (;;) {
        for (int looks = 0; queue_head == NULL; looks++) {
            if (looks < linger_looks) {
                struct timespec deadline;
                linger_until(&deadline);
#if SM_LINGER_RELATIVE
                pthread_cond_timedwait_relative_np(&queue_cond, &queue_mutex, &deadline);
#else
                pthread_cond_timedwait(&queue_cond, &queue_mutex, &deadline);
#endif
            } else {
                worker_asleep = 1;
                pthread_cond_broadcast(&asleep_cond);
                pthread_cond_wait(&queue_cond, &queue_mutex);
                worker_asleep = 0;
            }
        }
        sm_job_state *job = queue_head;
        queue_head = job->next;
        if (queue_head == NULL)
            queue_tail = NULL;
        pthread_mutex_unlock(&queue_mutex);
        prepare(job);
        pthread_mutex_lock(&queue_mutex);
    }
    return NULL;
}

/* In a forked child the worker is gone and the queue's lock may have been held. */
void sm_prefetch_after_fork_child(void) {
    pthread_mutex_init(&queue_mutex, NULL);
    pthread_cond_init(&queue_cond, NULL);
    pthread_cond_init(&asleep_cond, NULL);
    queue_head = queue_tail = NULL; /* the parent's jobs: left, never run here */
    worker_running = worker_asleep = 0;
}

/* Start the worker if it is not running; 0, or an error number. Queue lock held. */
static int worker_ensure(void) {
    if (worker_running)
        return 0;
#if !SM_LINGER_RELATIVE
    /* no thread waits on the condition yet: it can be made anew, on the monotonic clock
       (the linger deadlines must not move with the wall clock) */
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_destroy(&queue_cond);
    pthread_cond_init(&queue_cond, &monotonic);
    pthread_condattr_destroy(&monotonic);
#endif
    worker_asleep = 0;
    pthread_t thread;
    pthread_attr_t attributes;
    sigset_t all, previous;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    /* the worker takes no signals: they belong to the program's own threads */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    int failed = pthread_create(&thread, &attributes, worker, NULL);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    pthread_attr_destroy(&attributes);
    if (!failed)
        worker_running = 1;
    return failed;
}

/* Queue up to `count` regions of `length` bytes for the worker, with at most one
   wake-up for them all (*woke says whether it took one); returns how many were queued
   into `into` (0 with errno set: no memory or no thread). */
int sm_jobs_start(size_t length, size_t page, sm_job_state **into, int count, int *woke,
                  sm_job_state **spares, int *nspare) {
    int made = 0;
    *woke = 0;
    while (made < count && *nspare > 0)
        into[made++] = job_ready_for(spares[--*nspare], length, page);
    while (made < count && (into[made] = job_new(length, page)) != NULL)
        made++;
    if (made == 0)
        return 0;
    pthread_mutex_lock(&queue_mutex);
    int failed = worker_ensure();
    if (failed) {
        pthread_mutex_unlock(&queue_mutex);
        while (made > 0)
            sm_job_discard(into[--made]);
        errno = failed;
        return 0;
    }
    for (int i = 0; i < made; i++) {
        if (queue_tail)
            queue_tail->next = into[i];
        else
            queue_head = into[i];
        queue_tail = into[i];
    }
    *woke = worker_asleep;
    if (worker_asleep) /* busy or lingering, it finds the jobs by itself */
        pthread_cond_signal(&queue_cond);
    pthread_mutex_unlock(&queue_mutex);
    return made;
}

int sm_job_state_of(sm_job_state *job) { return __atomic_load_n(&job->state, __ATOMIC_ACQUIRE); }

/* Wait until the worker is done with the job; call it without the GIL. */
void sm_job_wait(sm_job_state *job) {
    if (sm_job_state_of(job) == JOB_RUNNING) {
        /* a lingering worker is told now rather than at its next look */
        pthread_mutex_lock(&queue_mutex);
        pthread_cond_signal(&queue_cond);
        pthread_mutex_unlock(&queue_mutex);
    }
    pthread_mutex_lock(&job->mutex);
    while (job->state == JOB_RUNNING)
        pthread_cond_wait(&job->done, &job->mutex);
    pthread_mutex_unlock(&job->mutex);
}


/* Test hooks (private: securemem._core._set_prefetch_linger and
   _wait_for_prefetch_worker_asleep), so that tests of the lingering drive it instead of
   guessing at timings. */
static PyObject *set_prefetch_linger(PyObject *module, PyObject *argument) {
    (void)module;
    if (!PyLong_Check(argument)) {
        PyErr_SetString(PyExc_TypeError, "_set_prefetch_linger takes an int (a number of looks)");
        return NULL;
    }
    long looks = PyLong_AsLong(argument);
    if (looks < 0 || looks > INT_MAX) {
        if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError,
                            "_set_prefetch_linger takes a number of looks, an int from 0");
        }
        return NULL;
    }
    pthread_mutex_lock(&queue_mutex);
    linger_looks = (int)looks;
    pthread_cond_signal(&queue_cond); /* a lingering worker counts again now */
    pthread_mutex_unlock(&queue_mutex);
    Py_RETURN_NONE;
}

static PyObject *wait_for_worker_asleep(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    int running;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&queue_mutex);
    while (worker_running && !worker_asleep)
        pthread_cond_wait(&asleep_cond, &queue_mutex);
    running = worker_running;
    pthread_mutex_unlock(&queue_mutex);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(running);
}

static PyMethodDef prefetch_functions[] = {
    {"_set_prefetch_linger", set_prefetch_linger, METH_O, NULL},
    {"_wait_for_prefetch_worker_asleep", wait_for_worker_asleep, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

int sm_prefetch_init(PyObject *module) { return PyModule_AddFunctions(module, prefetch_functions); }
