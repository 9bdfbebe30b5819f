/* securemem._core: module set-up and the one fork hook. */
#include "core.h"

static int registered_fork_hook = 0;

static int core_exec(PyObject *module) {
    if (sm_arena_type_init(module) < 0 || sm_secret_type_init(module) < 0 ||
        sm_purge_init(module) < 0 || sm_read_gate_init(module) < 0 ||
        sm_prefetch_init(module) < 0)
        return -1;
    if (!registered_fork_hook) {
        /* In a forked child every parent secret reports closed (the generation goes
           up) and every arena starts over with a fresh mutex: mlock does not survive
           fork, and a parent thread may have held the mutex at the moment of it. */
        if (pthread_atfork(NULL, NULL, sm_after_fork_child) != 0) {
            PyErr_SetString(PyExc_RuntimeError, "securemem: pthread_atfork failed");
            return -1;
        }
        registered_fork_hook = 1;
    }
    return 0;
}

static PyModuleDef_Slot core_slots[] = {
    {Py_mod_exec, (void *)core_exec},
#if defined(Py_mod_gil) && defined(Py_MOD_GIL_USED)
    /* Declared where the headers offer both names: a build without the Limited API on
       3.13 or later (a free-threaded CPython's build). Not in the abi3 build for 3.11: 3.11
       and 3.12 refuse a slot they do not know (3.15's headers define Py_mod_gil even there,
       but not Py_MOD_GIL_USED). This module needs the GIL: a free-threaded interpreter
       turns it back on when importing it (with a RuntimeWarning). Every SecureBytes
       operation and every change to an arena is atomic because the GIL is held (core.h);
       docs/design.md has the plan for running without it. */
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    "securemem._core",
    "securemem's allocator and SecureBytes type, in C (see docs/design.md).",
    0,
    NULL,
    core_slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__core(void) { return PyModuleDef_Init(&core_module); }
