/* securemem._core.ReadGate: a guarded secret kept no-access except while a call uses it.

   The Enclave key is the one user. Several threads may use the key at once, so a
   count of users decides when the page is opened (the first user) and closed again
   (the last). The count and the page's protection must never disagree, and Python
   code can be interrupted between any two bytecodes: a process-directed SIGINT that
   lands on another thread still raises KeyboardInterrupt in the main thread, at its
   next bytecode, wherever that is (blocking signals in the calling thread does not
   stop it). So the whole sequence lives here, in one C call made with the GIL held:
   count and protect, build the view, call the user's function, release the view,
   count and protect. No bytecode runs between those steps except inside the
   function, and whatever the function raises (KeyboardInterrupt included), the
   count goes back down and the page is closed before the exception leaves. */
#include "core.h"

typedef struct {
    PyObject_HEAD
    sm_secret *secret;
    Py_ssize_t users;
} sm_gate;

static int gate_secret_open(sm_secret *s) {
    return s->state == ST_OPEN && s->generation == sm_generation;
}

static int gate_closed_error(void) {
    sm_set_error("SecureBytesClosedError",
                 "the secret behind this ReadGate is closed (wiped and released, e.g. by "
                 "securemem.purge(), or inherited across fork): nothing can be read from it.");
    return -1;
}

static int gate_init(PyObject *self, PyObject *args, PyObject *kwargs) {
    sm_gate *gate = (sm_gate *)self;
    PyObject *secret;
    if (kwargs != NULL && PyDict_Size(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "ReadGate() takes no keyword arguments");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "O:ReadGate", &secret))
        return -1;
    if (gate->secret != NULL) {
        PyErr_SetString(PyExc_TypeError, "a ReadGate is initialised once");
        return -1;
    }
    if (!PyObject_TypeCheck(secret, sm_SecretType)) {
        PyObject *name = PyType_GetName(Py_TYPE(secret));
        if (name != NULL) {
            PyErr_Format(PyExc_TypeError, "ReadGate() takes a guarded SecureBytes, not %U", name);
            Py_DECREF(name);
        }
        return -1;
    }
    sm_secret *s = (sm_secret *)secret;
    if (!gate_secret_open(s))
        return gate_closed_error();
    if (s->kind != KIND_GUARDED) {
        PyErr_SetString(PyExc_ValueError,
                        "ReadGate() needs a guarded SecureBytes (SecureBytes(n, guarded=True)): "
                        "only a secret with pages of its own can be made no-access");
        return -1;
    }
    /* no-access from the start: nothing reads it outside call() */
    if (sm_guarded_protect(s->arena, s->owner, SM_PROT_NONE) < 0)
        return -1;
    Py_INCREF(secret);
    gate->secret = s;
    gate->users = 0;
    return 0;
}

/* The last user is done: the page goes back to no-access (unless the secret was closed
   meanwhile, e.g. by a purge: its pages are wiped and being released). */
static int gate_leave(sm_gate *gate, sm_secret *s) {
    if (--gate->users > 0 || !gate_secret_open(s))
        return 0;
    return sm_guarded_protect(s->arena, s->owner, SM_PROT_NONE);
}

static PyObject *gate_call(PyObject *self, PyObject *args) {
    sm_gate *gate = (sm_gate *)self;
    Py_ssize_t given = PyTuple_Size(args);
    if (given < 0)
        return NULL;
    if (given < 1 || !PyCallable_Check(PyTuple_GetItem(args, 0))) {
        PyErr_SetString(PyExc_TypeError,
                        "ReadGate.call(function, *args) needs a callable first: it is called "
                        "as function(view, *args) while the secret is readable");
        return NULL;
    }
    if (gate->secret == NULL) {
        PyErr_SetString(PyExc_TypeError, "this ReadGate was never initialised");
        return NULL;
    }
    sm_secret *s = gate->secret;
    if (!gate_secret_open(s)) {
        gate_closed_error();
        return NULL;
    }
    /* Everything up to the function's call is built first (it may fail, and then the
       page was never opened). */
    PyObject *function = PyTuple_GetItem(args, 0);
    PyObject *view = PyMemoryView_FromObject((PyObject *)s);
    if (view == NULL)
        return NULL;
    PyObject *arguments = PyTuple_New(given); /* (view, *args) */
    if (arguments == NULL) {
        Py_DECREF(view);
        return NULL;
    }
    Py_INCREF(view);
    PyTuple_SetItem(arguments, 0, view); /* a new tuple: cannot fail; steals one reference */
    for (Py_ssize_t i = 1; i < given; i++) {
        PyObject *item = PyTuple_GetItem(args, i);
        Py_INCREF(item);
        PyTuple_SetItem(arguments, i, item);
    }
    Py_INCREF(function);
    if (gate->users == 0 && sm_guarded_protect(s->arena, s->owner, SM_PROT_READ) < 0) {
        Py_DECREF(function);
        Py_DECREF(arguments);
        Py_DECREF(view);
        return NULL;
    }
    gate->users++;
    Py_INCREF((PyObject *)s); /* held across the call, whatever happens to the gate */
    PyObject *result = PyObject_CallObject(function, arguments);
    Py_DECREF(function);
    Py_DECREF(arguments);

    /* From here to the return: C only, whatever the function did. */
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyObject *released = PyObject_CallMethod(view, "release", NULL);
    if (released == NULL)
        PyErr_Clear(); /* an export the function kept: the view goes when it does */
    Py_XDECREF(released);
    Py_DECREF(view);
    int closed = gate_leave(gate, s);
    Py_DECREF((PyObject *)s);
    if (closed < 0) {
        /* the page could not be made no-access again: that is the error to report */
        Py_XDECREF(result);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(traceback);
        return NULL;
    }
    PyErr_Restore(type, value, traceback);
    return result;
}

static PyObject *gate_get_users(PyObject *self, void *unused) {
    (void)unused;
    return PyLong_FromSsize_t(((sm_gate *)self)->users);
}

static PyObject *gate_get_secret(PyObject *self, void *unused) {
    (void)unused;
    sm_gate *gate = (sm_gate *)self;
    PyObject *secret = gate->secret != NULL ? (PyObject *)gate->secret : Py_None;
    Py_INCREF(secret);
    return secret;
}

static int gate_traverse(PyObject *self, visitproc visit, void *arg) {
    sm_gate *gate = (sm_gate *)self;
    Py_VISIT((PyObject *)gate->secret);
    Py_VISIT((PyObject *)Py_TYPE(self));
    return 0;
}

static int gate_clear(PyObject *self) {
    sm_gate *gate = (sm_gate *)self;
    PyObject *secret = (PyObject *)gate->secret;
    gate->secret = NULL;
    Py_XDECREF(secret);
    return 0;
}

static void gate_dealloc(PyObject *self) {
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    gate_clear(self);
    freefunc tp_free = (freefunc)PyType_GetSlot(type, Py_tp_free);
    tp_free(self);
    Py_DECREF(type);
}

static PyMethodDef gate_methods[] = {
    {"call", gate_call, METH_VARARGS,
     "call(function, *args): function(view, *args) with the secret readable, then no-access "
     "again once no call is running (also when the function raises)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef gate_getset[] = {
    {"users", gate_get_users, NULL, "Calls running right now (any thread).", NULL},
    {"secret", gate_get_secret, NULL, "The guarded SecureBytes this gate keeps.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot gate_slots[] = {
    {Py_tp_init, (void *)gate_init},
    {Py_tp_dealloc, (void *)gate_dealloc},
    {Py_tp_traverse, (void *)gate_traverse},
    {Py_tp_clear, (void *)gate_clear},
    {Py_tp_methods, gate_methods},
    {Py_tp_getset, gate_getset},
    {Py_tp_doc, "A guarded secret, no-access except while call() runs (securemem.Enclave's "
                "key)."},
    {0, NULL},
};

static PyType_Spec gate_spec = {
    "securemem._core.ReadGate",
    sizeof(sm_gate),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    gate_slots,
};

int sm_read_gate_init(PyObject *module) {
    PyObject *type = PyType_FromSpec(&gate_spec);
    if (type == NULL)
        return -1;
    int result = PyModule_AddObjectRef(module, "ReadGate", type);
    Py_DECREF(type);
    return result;
}
