/* securemem._core.ReadGate: the Enclave key, split in two halves, whole only while a call
   uses it.

   The key is never stored whole. Two guarded secrets hold its halves (key = left XOR
   right; each half alone is uniformly random and says nothing about the key), each on a
   locked page of its own between guard pages, read-only. A third guarded secret, the
   scratch, holds the whole key while a call runs and zeros otherwise. So a read of any
   one page outside an operation (an overread, a stray pointer, a page that leaks) learns
   nothing, and no page protection changes per operation: combining and wiping 32 bytes
   costs nanoseconds where the two mprotect(2) calls of a no-access page cost microseconds.

   Several threads may use the key at once, so a count of users decides when the scratch
   is filled (the first user) and wiped (the last). The count and the scratch must never
   disagree, and Python code can be interrupted between any two bytecodes: a
   process-directed SIGINT that lands on another thread still raises KeyboardInterrupt in
   the main thread, at its next bytecode, wherever that is. So the whole sequence lives
   here, in one C call made with the GIL held: count and fill, call the
   user's function, count and wipe. No bytecode runs between those
   steps except inside the function, and whatever the function raises (KeyboardInterrupt
   included), the count goes back down and the scratch is wiped before the exception
   leaves. Anything the function kept of the scratch sees zeros after that. */
#include "core.h"

enum { PART_LEFT = 0, PART_RIGHT = 1, PART_SCRATCH = 2, PARTS = 3 };

typedef struct {
    PyObject_HEAD
    sm_secret *parts[PARTS];
    Py_ssize_t users;
} sm_gate;

static int part_open(sm_secret *s) {
    return s != NULL && s->state == ST_OPEN && s->generation == sm_generation;
}

static int gate_open(sm_gate *gate) {
    for (int i = 0; i < PARTS; i++)
        if (!part_open(gate->parts[i]))
            return 0;
    return 1;
}

static int gate_closed_error(void) {
    sm_set_error("SecureBytesClosedError",
                 "a secret behind this ReadGate is closed (wiped and released, e.g. by "
                 "securemem.purge(), or inherited across fork): the key cannot be rebuilt.");
    return -1;
}

static int gate_check_part(PyObject *part, size_t size) {
    if (!PyObject_TypeCheck(part, sm_SecretType)) {
        PyObject *name = PyType_GetName(Py_TYPE(part));
        if (name != NULL) {
            PyErr_Format(PyExc_TypeError, "ReadGate() takes guarded SecureBytes, not %U", name);
            Py_DECREF(name);
        }
        return -1;
    }
    sm_secret *s = (sm_secret *)part;
    if (!part_open(s))
        return gate_closed_error();
    if (s->kind != KIND_GUARDED) {
        PyErr_SetString(PyExc_ValueError,
                        "ReadGate() needs guarded SecureBytes (SecureBytes(n, guarded=True)): "
                        "each part of the key must have a page of its own");
        return -1;
    }
    if (s->size == 0 || s->size != size) {
        PyErr_SetString(PyExc_ValueError,
                        "ReadGate(left, right, scratch): the three secrets must have the same, "
                        "non-zero size (the key's)");
        return -1;
    }
    return 0;
}

static int gate_init(PyObject *self, PyObject *args, PyObject *kwargs) {
    sm_gate *gate = (sm_gate *)self;
    PyObject *given[PARTS];
    if (kwargs != NULL && PyDict_Size(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "ReadGate() takes no keyword arguments");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "OOO:ReadGate", &given[0], &given[1], &given[2]))
        return -1;
    if (gate->parts[0] != NULL) {
        PyErr_SetString(PyExc_TypeError, "a ReadGate is initialised once");
        return -1;
    }
    if (!PyObject_TypeCheck(given[0], sm_SecretType))
        return gate_check_part(given[0], 0);
    size_t size = ((sm_secret *)given[0])->size;
    for (int i = 0; i < PARTS; i++) {
        if (gate_check_part(given[i], size) < 0)
            return -1;
        for (int j = 0; j < i; j++)
            if (given[j] == given[i]) {
                PyErr_SetString(PyExc_ValueError,
                                "ReadGate(left, right, scratch) needs three distinct secrets");
                return -1;
            }
    }
    /* The halves are read-only from here (a stray write cannot corrupt the key); the
       scratch is writable and holds zeros until a call fills it. */
    for (int i = 0; i < PARTS; i++) {
        sm_secret *s = (sm_secret *)given[i];
        int wanted = i == PART_SCRATCH ? SM_PROT_READWRITE : SM_PROT_READ;
        if (!part_open(s)) /* an earlier part's protect() ran Python code that closed it */
            return gate_closed_error();
        if (((sm_guarded *)s->owner)->protection != wanted &&
            sm_guarded_protect(s->arena, s->owner, wanted) < 0)
            return -1;
    }
    /* A Python kernel's protect() is Python code: it may have purged or closed a part.
       Check again before the wipe touches the scratch. */
    for (int i = 0; i < PARTS; i++)
        if (!part_open((sm_secret *)given[i]))
            return gate_closed_error();
    sm_secret *scratch = (sm_secret *)given[PART_SCRATCH];
    sm_wipe((void *)scratch->address, scratch->size);
    for (int i = 0; i < PARTS; i++) {
        Py_INCREF(given[i]);
        gate->parts[i] = (sm_secret *)given[i];
    }
    gate->users = 0;
    return 0;
}

/* Someone changed a part's protection behind the gate (all three are private to the
   enclave module): refuse rather than fault on the read or the write. */
static int gate_check_protection(sm_gate *gate) {
    for (int i = 0; i < PARTS; i++) {
        sm_guarded *g = gate->parts[i]->owner;
        int needed = i == PART_SCRATCH ? SM_PROT_READWRITE : SM_PROT_READ;
        if (g->protection != needed && g->protection != SM_PROT_READWRITE) {
            PyErr_SetString(PyExc_ValueError,
                            "a part of the ReadGate's key was protected against the access "
                            "the gate needs (the halves readable, the scratch writable)");
            return -1;
        }
    }
    return 0;
}

static void gate_fill(sm_gate *gate) {
    const volatile uint8_t *left = (const volatile uint8_t *)gate->parts[PART_LEFT]->address;
    const volatile uint8_t *right = (const volatile uint8_t *)gate->parts[PART_RIGHT]->address;
    volatile uint8_t *key = (volatile uint8_t *)gate->parts[PART_SCRATCH]->address;
    size_t size = gate->parts[PART_SCRATCH]->size;
    /* volatile: byte by byte in place, never a copy of either half in a temporary */
    for (size_t i = 0; i < size; i++)
        key[i] = (uint8_t)(left[i] ^ right[i]);
}

/* The last user is done: the whole key goes (unless the scratch was closed meanwhile,
   e.g. by a purge: then it is wiped already, and may be unmapped). */
static int gate_leave(sm_gate *gate) {
    sm_secret *scratch = gate->parts[PART_SCRATCH];
    if (--gate->users > 0 || !part_open(scratch))
        return 0;
    sm_guarded *g = scratch->owner;
    if (g->protection != SM_PROT_READWRITE) {
        /* The function (or another thread) protected the scratch: writable again before
           the wipe, and open still (a Python kernel's protect() may have closed it, and
           a close wipes). Unwritable: the key may not stay whole, so the call fails. */
        if (sm_guarded_protect(scratch->arena, g, SM_PROT_READWRITE) < 0)
            return -1;
        if (!part_open(scratch))
            return 0;
    }
    sm_wipe((void *)scratch->address, scratch->size);
    return 0;
}

static PyObject *gate_call(PyObject *self, PyObject *args) {
    sm_gate *gate = (sm_gate *)self;
    Py_ssize_t given = PyTuple_Size(args);
    if (given < 0)
        return NULL;
    if (given < 1 || !PyCallable_Check(PyTuple_GetItem(args, 0))) {
        PyErr_SetString(PyExc_TypeError,
                        "ReadGate.call(function, *args) needs a callable first: it is called "
                        "as function(scratch, *args) while the key is whole in scratch");
        return NULL;
    }
    if (gate->parts[0] == NULL) {
        PyErr_SetString(PyExc_TypeError, "this ReadGate was never initialised");
        return NULL;
    }
    /* The function gets the scratch SecureBytes itself (a buffer: cryptography takes it
       as a key), not a view: no view to build and release per call. Whatever the
       function keeps of it sees zeros once the last call has left. The argument tuple
       is built first (it may fail, and then the key was never put together). */
    PyObject *scratch = (PyObject *)gate->parts[PART_SCRATCH];
    PyObject *function = PyTuple_GetItem(args, 0);
    PyObject *arguments = PyTuple_New(given); /* (scratch, *args) */
    if (arguments == NULL)
        return NULL;
    Py_INCREF(scratch);
    PyTuple_SetItem(arguments, 0, scratch); /* a new tuple: cannot fail; steals the reference */
    for (Py_ssize_t i = 1; i < given; i++) {
        PyObject *item = PyTuple_GetItem(args, i);
        Py_INCREF(item);
        PyTuple_SetItem(arguments, i, item);
    }
    /* Checked only now, after the allocation above: a new tuple can start a garbage
       collection, whose finalizers may purge() the parts. From these checks to the fill
       nothing runs Python code. */
    if (!gate_open(gate) || gate_check_protection(gate) < 0) {
        if (!PyErr_Occurred())
            gate_closed_error();
        Py_DECREF(arguments);
        return NULL;
    }
    Py_INCREF(function);
    if (gate->users == 0)
        gate_fill(gate);
    gate->users++;
    Py_INCREF(self); /* held across the call, whatever happens to the gate */
    PyObject *result = PyObject_CallObject(function, arguments);
    Py_DECREF(function);
    Py_DECREF(arguments);
    /* From here to the return: C only, whatever the function did or raised (but a
       Python kernel's protect() if the function protected the scratch). */
    PyObject *type = NULL, *value = NULL, *tb = NULL;
    if (result == NULL)
        PyErr_Fetch(&type, &value, &tb); /* no Python code may run with it pending */
    if (gate_leave(gate) < 0) {
        Py_CLEAR(result);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
    } else if (result == NULL) {
        PyErr_Restore(type, value, tb);
    }
    Py_DECREF(self);
    return result;
}

static PyObject *gate_get_users(PyObject *self, void *unused) {
    (void)unused;
    return PyLong_FromSsize_t(((sm_gate *)self)->users);
}

static PyObject *gate_get_closed(PyObject *self, void *unused) {
    (void)unused;
    sm_gate *gate = (sm_gate *)self;
    return PyBool_FromLong(gate->parts[0] == NULL || !gate_open(gate));
}

static PyObject *gate_get_parts(PyObject *self, void *unused) {
    (void)unused;
    sm_gate *gate = (sm_gate *)self;
    if (gate->parts[0] == NULL)
        Py_RETURN_NONE;
    return PyTuple_Pack(PARTS, (PyObject *)gate->parts[0], (PyObject *)gate->parts[1],
                        (PyObject *)gate->parts[2]);
}

static int gate_traverse(PyObject *self, visitproc visit, void *arg) {
    sm_gate *gate = (sm_gate *)self;
    for (int i = 0; i < PARTS; i++)
        Py_VISIT((PyObject *)gate->parts[i]);
    Py_VISIT((PyObject *)Py_TYPE(self));
    return 0;
}

static int gate_clear(PyObject *self) {
    sm_gate *gate = (sm_gate *)self;
    for (int i = 0; i < PARTS; i++) {
        PyObject *part = (PyObject *)gate->parts[i];
        gate->parts[i] = NULL;
        Py_XDECREF(part);
    }
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
     "call(function, *args): function(scratch, *args) with the key put together from its "
     "halves, wiped again once no call is running (also when the function raises)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef gate_getset[] = {
    {"users", gate_get_users, NULL, "Calls running right now (any thread).", NULL},
    {"closed", gate_get_closed, NULL, "True once any part of the key is closed (a purge).",
     NULL},
    {"parts", gate_get_parts, NULL, "(left, right, scratch): the guarded SecureBytes it keeps.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot gate_slots[] = {
    {Py_tp_init, (void *)gate_init},
    {Py_tp_dealloc, (void *)gate_dealloc},
    {Py_tp_traverse, (void *)gate_traverse},
    {Py_tp_clear, (void *)gate_clear},
    {Py_tp_methods, gate_methods},
    {Py_tp_getset, gate_getset},
    {Py_tp_doc, "ReadGate(left, right, scratch): a key kept as two halves, whole in the "
                "scratch only while call() runs (securemem.Enclave's key)."},
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
