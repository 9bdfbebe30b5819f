/* securemem.purge(): wipe and close every live secret of every arena at once.

   Which secrets are open is the SecureBytes type's business (securebytes.c keeps them on a
   ring of its own): this file asks it to close every one, through the same release path as
   close() (wiped at once, the slot freed, or, under a live buffer export, left mapped and
   wiped until the last export is released), then has every arena give back its free
   pages. A purge never takes a reference to a secret: it may run while one is being
   deallocated (securebytes.c says why that matters). */
#include "core.h"

static uint64_t purges = 0;

/* A failure while closing one secret never stops the purge: a CanaryError (the
   secret is wiped all the same) is reported as unraisable, anything else too. */
static void report(void) {
    if (PyErr_Occurred())
        PyErr_WriteUnraisable(NULL);
}

static PyObject *purge_secrets(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    PyObject *type, *value, *tb;
    /* a purge may run while an exception is being handled (a signal handler, atexit) */
    PyErr_Fetch(&type, &value, &tb);
    __atomic_add_fetch(&purges, 1, __ATOMIC_RELAXED);
    Py_ssize_t closed = sm_close_every_open_secret();
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
    return PyLong_FromSsize_t(sm_open_secret_count());
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
