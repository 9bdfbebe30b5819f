/* securemem.purge(): wipe and close every live secret of every arena at once.

   The core keeps every open SecureBytes on one ring (linked when it opens,
   unlinked when it closes or is deallocated). A purge takes the whole ring in
   one step (the GIL is held) and closes each secret through the same release
   path as close(): wiped at once, the slot freed, or, under a live buffer
   export, left mapped (and wiped) until the last export is released.

   Closing a guarded secret may wait for its arena's mutex, and a kernel written
   in Python runs Python code: other threads (or a signal handler, a nested
   purge) may run meanwhile. So the purge works on a ring of its own: secrets
   opened meanwhile go on the main ring and are not this purge's; secrets closed
   or deallocated meanwhile unlink themselves from whichever ring holds them. */
#include "core.h"
#include <stddef.h>

/* the ring of open secrets; a secret's links are NULL while it is on no ring */
static sm_link live_secrets = {&live_secrets, &live_secrets};
static uint64_t purges = 0;

static sm_secret *secret_of(sm_link *link) {
    return (sm_secret *)((char *)link - offsetof(sm_secret, live));
}

void sm_live_add(sm_secret *s) {
    if (s->live.next != NULL)
        return;
    s->live.prev = live_secrets.prev;
    s->live.next = &live_secrets;
    live_secrets.prev->next = &s->live;
    live_secrets.prev = &s->live;
}

void sm_live_remove(sm_secret *s) {
    if (s->live.next == NULL)
        return;
    s->live.prev->next = s->live.next;
    s->live.next->prev = s->live.prev;
    s->live.prev = s->live.next = NULL;
}

/* A failure while closing one secret never stops the purge: a CanaryError (the
   secret is wiped all the same) is reported as unraisable, anything else too. */
static void report(void) {
    if (PyErr_Occurred())
        PyErr_WriteUnraisable(NULL);
}

static Py_ssize_t close_every_secret(void) {
    sm_link batch;
    Py_ssize_t closed = 0;
    if (live_secrets.next == &live_secrets)
        return 0;
    /* take the whole ring: from here, secrets opened elsewhere are not ours */
    batch.next = live_secrets.next;
    batch.prev = live_secrets.prev;
    batch.next->prev = &batch;
    batch.prev->next = &batch;
    live_secrets.next = live_secrets.prev = &live_secrets;
    while (batch.next != &batch) {
        sm_secret *s = secret_of(batch.next);
        /* on a ring means alive: deallocation unlinks before anything else runs */
        Py_INCREF((PyObject *)s);
        int open = s->state == ST_OPEN && s->generation == sm_generation;
        if (sm_release_secret(s) < 0)
            report();
        sm_live_remove(s); /* released: it unlinked itself; a fork's orphan: here */
        closed += open;
        Py_DECREF((PyObject *)s);
    }
    return closed;
}

static PyObject *purge_secrets(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    PyObject *type, *value, *tb;
    /* a purge may run while an exception is being handled (a signal handler, atexit) */
    PyErr_Fetch(&type, &value, &tb);
    __atomic_add_fetch(&purges, 1, __ATOMIC_RELAXED);
    Py_ssize_t closed = close_every_secret();
    sm_release_free_everywhere();
    report();
    PyErr_Restore(type, value, tb);
    return PyLong_FromSsize_t(closed);
}

static PyObject *release_free_pages(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    sm_release_free_everywhere();
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *purge_count(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    return PyLong_FromUnsignedLongLong(__atomic_load_n(&purges, __ATOMIC_RELAXED));
}

static PyObject *open_secret_count(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    Py_ssize_t count = 0;
    for (sm_link *l = live_secrets.next; l != &live_secrets; l = l->next)
        count += secret_of(l)->state == ST_OPEN && secret_of(l)->generation == sm_generation;
    return PyLong_FromSsize_t(count);
}

static PyMethodDef purge_functions[] = {
    {"purge_secrets", purge_secrets, METH_NOARGS,
     "Wipe and close every open SecureBytes of every arena, then give back every free "
     "locked page; returns how many secrets it closed. Never raises."},
    {"release_free_pages", release_free_pages, METH_NOARGS,
     "Every arena unlocks and unmaps the free pages it keeps (release_reserve on all)."},
    {"purge_count", purge_count, METH_NOARGS, "How many purges this process has run."},
    {"open_secret_count", open_secret_count, METH_NOARGS,
     "How many SecureBytes of this process are open, in every arena."},
    {NULL, NULL, 0, NULL},
};

int sm_purge_init(PyObject *module) { return PyModule_AddFunctions(module, purge_functions); }
