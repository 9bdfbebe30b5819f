/* The kernel table: the real kernel through the C shims, or any Python kernel
   object (SimulatedKernel, a fault-injecting test kernel, the memfd_secret
   kernel) through its methods. The allocator calls only these entries.

   Why a Python object's methods and not cffi callbacks: a callback cannot
   raise into its caller (cffi prints the exception and returns a default),
   and the kernels raise the exact securemem exception a test expects. Called
   from C with the GIL held, a method propagates its exception unchanged. */
#include "core.h"

/* -- errors ---------------------------------------------------------------- */

PyObject *sm_error_class(const char *name) {
    PyObject *module = PyImport_ImportModule("securemem._errors");
    if (module == NULL)
        return NULL;
    PyObject *cls = PyObject_GetAttrString(module, name);
    Py_DECREF(module);
    return cls;
}

void sm_set_error(const char *name, const char *message) {
    PyObject *cls = sm_error_class(name);
    if (cls == NULL)
        return;
    PyErr_SetString(cls, message);
    Py_DECREF(cls);
}

/* The securemem exception for a failed system call (securemem._kernel.kernel_failure). */
int sm_kernel_failure(sm_arena *a, const char *call, int number, size_t length) {
    PyObject *module = PyImport_ImportModule("securemem._kernel");
    if (module == NULL)
        return -1;
    PyObject *error = PyObject_CallMethod(module, "kernel_failure", "sinO", call, number,
                                          (Py_ssize_t)length, a->kernel);
    Py_DECREF(module);
    if (error == NULL)
        return -1;
    PyErr_SetObject((PyObject *)Py_TYPE(error), error);
    Py_DECREF(error);
    return -1;
}

int sm_is_lock_error(void) {
    PyObject *cls = NULL;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    cls = sm_error_class("MemoryLockError");
    int match = cls != NULL && type != NULL && PyErr_GivenExceptionMatches(type, cls);
    Py_XDECREF(cls);
    if (cls == NULL) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return 0;
    }
    PyErr_Restore(type, value, tb);
    return match;
}

/* -- the real kernel --------------------------------------------------------- */

static int native_map(sm_arena *a, size_t length, uintptr_t *base) {
    void *pointer;
    int number = 0;
    Py_BEGIN_ALLOW_THREADS
    pointer = sm_map(length);
    if (pointer == NULL)
        number = errno;
    Py_END_ALLOW_THREADS
    if (pointer == NULL)
        return sm_kernel_failure(a, "mmap", number, length);
    *base = (uintptr_t)pointer;
    return 0;
}

static int native_unmap(sm_arena *a, uintptr_t address, size_t length) {
    if (sm_unmap((void *)address, length) != 0)
        return sm_kernel_failure(a, "munmap", errno, length);
    return 0;
}

static int native_lock(sm_arena *a, uintptr_t address, size_t length) {
    int result, number = 0;
    /* mlock faults every page in: the one slow call, made without the GIL */
    Py_BEGIN_ALLOW_THREADS
    result = sm_lock((void *)address, length);
    if (result != 0)
        number = errno;
    Py_END_ALLOW_THREADS
    if (result != 0)
        return sm_kernel_failure(a, "mlock", number, length);
    return 0;
}

static int native_unlock(sm_arena *a, uintptr_t address, size_t length) {
    if (sm_unlock((void *)address, length) != 0)
        return sm_kernel_failure(a, "munlock", errno, length);
    return 0;
}

static int native_advise(sm_arena *a, uintptr_t address, size_t length, int advice, int *applied) {
    *applied = 1;
    if (sm_advise((void *)address, length, advice) != 0) {
        int number = errno;
        if (number == ENOSYS || number == EINVAL) { /* no such advice here */
            *applied = 0;
            return 0;
        }
        const char *call = advice == SM_ADVICE_DONTDUMP     ? "madvise(dontdump)"
                           : advice == SM_ADVICE_WIPEONFORK ? "madvise(wipeonfork)"
                                                            : "madvise(dontfork)";
        return sm_kernel_failure(a, call, number, length);
    }
    return 0;
}

static int native_protect(sm_arena *a, uintptr_t address, size_t length, int protection) {
    if (sm_protect((void *)address, length, protection) != 0) {
        const char *call = protection == SM_PROT_NONE   ? "mprotect(noaccess)"
                           : protection == SM_PROT_READ ? "mprotect(readonly)"
                                                        : "mprotect(readwrite)";
        return sm_kernel_failure(a, call, errno, length);
    }
    return 0;
}

const sm_kernel_ops sm_native_ops = {
    "native", native_map, native_unmap, native_lock, native_unlock, native_advise, native_protect,
};

/* -- the real kernel, regions from memfd_secret ----------------------------------- */

/* In C like the anonymous backend, so that no Python code runs between the mapping and
   the arena recording it (an interrupt there would leak a region the kernel charges). */
static int secret_map(sm_arena *a, size_t length, uintptr_t *base) {
    void *pointer;
    int number = 0;
    Py_BEGIN_ALLOW_THREADS
    pointer = sm_map_secret(length);
    if (pointer == NULL)
        number = errno;
    Py_END_ALLOW_THREADS
    if (pointer != NULL) {
        *base = (uintptr_t)pointer;
        return 0;
    }
    /* the error (a MemoryLockError at the limit) is built where the backend is described */
    PyObject *module = PyImport_ImportModule("securemem._secretmem");
    if (module == NULL)
        return -1;
    PyObject *error = PyObject_CallMethod(module, "map_failure", "inO", number,
                                          (Py_ssize_t)length, a->kernel);
    Py_DECREF(module);
    if (error == NULL)
        return -1;
    PyErr_SetObject((PyObject *)Py_TYPE(error), error);
    Py_DECREF(error);
    return -1;
}

/* The kernel locked the pages when they were mapped; mlock would be refused. */
static int secret_lock(sm_arena *a, uintptr_t address, size_t length) {
    (void)a;
    (void)address;
    (void)length;
    return 0;
}

/* Shared memory cannot be wiped on fork; not inheriting it (MADV_DONTFORK) is the equivalent. */
static int secret_advise(sm_arena *a, uintptr_t address, size_t length, int advice, int *applied) {
    return native_advise(a, address, length,
                         advice == SM_ADVICE_WIPEONFORK ? SM_ADVICE_DONTFORK : advice, applied);
}

const sm_kernel_ops sm_secretmem_ops = {
    "secretmem", secret_map, native_unmap, secret_lock, secret_lock, secret_advise, native_protect,
};

/* -- a kernel written in Python ------------------------------------------------ */

static PyObject *call(sm_arena *a, const char *method, const char *format, ...) {
    va_list args;
    va_start(args, format);
    PyObject *callable = PyObject_GetAttrString(a->kernel, method);
    PyObject *result = NULL;
    if (callable != NULL) {
        PyObject *arguments = Py_VaBuildValue(format, args);
        if (arguments != NULL) {
            result = PyObject_CallObject(callable, arguments);
            Py_DECREF(arguments);
        }
        Py_DECREF(callable);
    }
    va_end(args);
    return result;
}

static int done(PyObject *result) {
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

static int python_map(sm_arena *a, size_t length, uintptr_t *base) {
    PyObject *result = call(a, "map", "(n)", (Py_ssize_t)length);
    if (result == NULL)
        return -1;
    size_t value = PyLong_AsSize_t(result);
    Py_DECREF(result);
    if (value == (size_t)-1 && PyErr_Occurred())
        return -1;
    *base = (uintptr_t)value;
    return 0;
}

static int python_unmap(sm_arena *a, uintptr_t address, size_t length) {
    return done(call(a, "unmap", "(nn)", (Py_ssize_t)address, (Py_ssize_t)length));
}

static int python_lock(sm_arena *a, uintptr_t address, size_t length) {
    return done(call(a, "lock", "(nn)", (Py_ssize_t)address, (Py_ssize_t)length));
}

static int python_unlock(sm_arena *a, uintptr_t address, size_t length) {
    return done(call(a, "unlock", "(nn)", (Py_ssize_t)address, (Py_ssize_t)length));
}

static int python_advise(sm_arena *a, uintptr_t address, size_t length, int advice, int *applied) {
    const char *name = advice == SM_ADVICE_DONTDUMP     ? "dontdump"
                       : advice == SM_ADVICE_WIPEONFORK ? "wipeonfork"
                                                        : "dontfork";
    PyObject *result = call(a, "advise", "(nns)", (Py_ssize_t)address, (Py_ssize_t)length, name);
    if (result == NULL)
        return -1;
    int truth = PyObject_IsTrue(result);
    Py_DECREF(result);
    if (truth < 0)
        return -1;
    *applied = truth;
    return 0;
}

static int python_protect(sm_arena *a, uintptr_t address, size_t length, int protection) {
    const char *name = protection == SM_PROT_NONE   ? "noaccess"
                       : protection == SM_PROT_READ ? "readonly"
                                                    : "readwrite";
    return done(call(a, "protect", "(nns)", (Py_ssize_t)address, (Py_ssize_t)length, name));
}

const sm_kernel_ops sm_python_ops = {
    "python", python_map, python_unmap, python_lock, python_unlock, python_advise, python_protect,
};
