/* A region prepared ahead of need by a native thread (real kernel only).

   The worker maps the region exactly as the arena does (guard pages, out of
   core dumps, wiped on fork) and locks its usable pages, without ever taking
   the GIL: a Python thread doing the same would finish its mlock quickly but
   then wait for the GIL (up to a switch interval while the program computes)
   before it could say so, and growth would wait for it. Here "ready" is one
   atomic store; the arena reads it without waiting. */
#include "core.h"


/* One worker thread per process, started on first use and kept: handing it a
   job is a queue push and a signal (microseconds), where starting a thread per
   job cost the allocating thread tens of microseconds. */
static pthread_mutex_t queue_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_cond = PTHREAD_COND_INITIALIZER;
static sm_job_state *queue_head = NULL, *queue_tail = NULL;
static int worker_running = 0;


void sm_job_let_go(sm_job_state *job) {
    pthread_mutex_lock(&job->mutex);
    int left = --job->references;
    pthread_mutex_unlock(&job->mutex);
    if (left == 0) {
        pthread_mutex_destroy(&job->mutex);
        pthread_cond_destroy(&job->done);
        free(job);
    }
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
            if (sm_lock((void *)(at + page), length - 2 * page) == 0)
                state = JOB_READY;
            else
                error = errno;
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

static void *worker(void *unused) {
    (void)unused;
    pthread_mutex_lock(&queue_mutex);
    for (;;) {
        while (queue_head == NULL)
            pthread_cond_wait(&queue_cond, &queue_mutex);
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
    queue_head = queue_tail = NULL; /* the parent's jobs: left, never run here */
    worker_running = 0;
}

/* Queue a region of `length` bytes for the worker; NULL (errno set) if no thread. */
sm_job_state *sm_job_start(size_t length, size_t page) {
    sm_job_state *job = calloc(1, sizeof *job);
    if (job == NULL)
        return NULL;
    pthread_mutex_init(&job->mutex, NULL);
    pthread_cond_init(&job->done, NULL);
    job->length = length;
    job->page = page;
    job->state = JOB_RUNNING;
    job->references = 2; /* the worker's and the arena's */
    pthread_mutex_lock(&queue_mutex);
    if (!worker_running) {
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
        if (failed) {
            pthread_mutex_unlock(&queue_mutex);
            pthread_mutex_destroy(&job->mutex);
            pthread_cond_destroy(&job->done);
            free(job);
            errno = failed;
            return NULL;
        }
        worker_running = 1;
    }
    if (queue_tail)
        queue_tail->next = job;
    else
        queue_head = job;
    queue_tail = job;
    pthread_cond_signal(&queue_cond);
    pthread_mutex_unlock(&queue_mutex);
    return job;
}

int sm_job_state_of(sm_job_state *job) { return __atomic_load_n(&job->state, __ATOMIC_ACQUIRE); }

/* Wait until the worker is done with the job; call it without the GIL. */
void sm_job_wait(sm_job_state *job) {
    pthread_mutex_lock(&job->mutex);
    while (job->state == JOB_RUNNING)
        pthread_cond_wait(&job->done, &job->mutex);
    pthread_mutex_unlock(&job->mutex);
}
