/* The SecureBytes type. Every operation that touches secret memory first
   converts its arguments (operator.index, the other side's buffer: the steps
   that can run user code), then validates the handle and touches the memory
   with no Python code in between. The GIL is held throughout, so another
   thread's close() lands before or after, never in the middle.

   close() wipes at once; the slot is reused only after the last buffer export
   is released (an export count, as bytearray keeps). Deallocation wipes and
   frees here, in C: no bytecode runs, so no signal can cut it short. */
#include "core.h"
#include <stddef.h>
#include <structmember.h>

PyTypeObject *sm_SecretType = NULL;
void sm_guarded_views_gone(sm_arena *a, sm_guarded *g);
int sm_guarded_check(sm_guarded *g);

#define BUFFER_FLAGS (PyBUF_STRIDES | PyBUF_FORMAT)

static size_t physical = 0;

static int closed_error(sm_secret *s) {
    if (s->state == ST_OPEN)
        sm_set_error("SecureBytesClosedError",
                     "this SecureBytes belongs to the parent of this forked process: a child "
                     "inherits no secrets (their memory reads as zeros here). Pass what the "
                     "child needs explicitly, or create it after the fork.");
    else if (s->state == ST_NEW)
        sm_set_error("SecureBytesClosedError",
                     "this SecureBytes was never initialised: create it with SecureBytes(size) "
                     "or SecureBytes(data), not SecureBytes.__new__ alone.");
    else
        sm_set_error("SecureBytesClosedError",
                     "this SecureBytes is closed: its bytes were wiped and its memory released. "
                     "Keep it open (use it inside its `with` block) while you need it.");
    return -1;
}

static inline int check_open(sm_secret *s) {
    if (s->state == ST_OPEN && s->generation == sm_generation)
        return 0;
    return closed_error(s);
}

static inline uint8_t *memory(sm_secret *s) { return (uint8_t *)s->address; }

/* -- walking any buffer's bytes in C order (strided, n-dimensional) ------------- */

typedef struct {
    Py_buffer *view;
    Py_ssize_t index[64];
    Py_ssize_t element; /* elements visited */
    Py_ssize_t count;
} walker;

static void walk_start(walker *w, Py_buffer *view) {
    w->view = view;
    memset(w->index, 0, sizeof w->index);
    w->element = 0;
    w->count = view->itemsize ? view->len / view->itemsize : 0;
}

/* The next element's address, or NULL at the end. */
static const uint8_t *walk_next(walker *w) {
    Py_buffer *v = w->view;
    if (w->element >= w->count)
        return NULL;
    const uint8_t *p = v->buf;
    if (v->ndim == 0) {
        w->element++;
        return p;
    }
    for (int d = 0; d < v->ndim; d++)
        p += w->index[d] * (v->strides ? v->strides[d] : v->itemsize);
    w->element++;
    for (int d = v->ndim - 1; d >= 0; d--) {
        if (++w->index[d] < v->shape[d])
            break;
        w->index[d] = 0;
    }
    return p;
}

static int contiguous(Py_buffer *v) { return PyBuffer_IsContiguous(v, 'C'); }

/* Copy all of `v` (len bytes) into dest at positions start + k * step. */
static void copy_in(uint8_t *dest, Py_ssize_t step, Py_buffer *v) {
    if (step == 1 && contiguous(v)) {
        memmove(dest, v->buf, (size_t)v->len);
        return;
    }
    walker w;
    const uint8_t *element;
    Py_ssize_t k = 0;
    walk_start(&w, v);
    while ((element = walk_next(&w)) != NULL)
        for (Py_ssize_t b = 0; b < v->itemsize; b++, k++)
            dest[k * step] = element[b];
}

/* Constant time in the contents: 1 when `v` equals size bytes at p. */
static int equal(const uint8_t *p, Py_buffer *v) {
    if (contiguous(v))
        return sm_equal(p, v->buf, (size_t)v->len);
    walker w;
    const uint8_t *element;
    volatile uint8_t diff = 0;
    Py_ssize_t k = 0;
    walk_start(&w, v);
    while ((element = walk_next(&w)) != NULL)
        for (Py_ssize_t b = 0; b < v->itemsize; b++, k++)
            diff |= (uint8_t)(p[k] ^ element[b]);
    return diff == 0;
}

/* -- the ring of open secrets (purge's view of them) ---------------------------------

   One invariant, kept here and nowhere else: a secret is on the ring exactly while its
   state is ST_OPEN. fill() links it as it opens; release_secret() unlinks it as it closes,
   before anything that could run Python code or let the GIL go; deallocation closes a
   secret still open through release_secret too. No other file sees the ring: purge.c calls
   sm_close_every_open_secret() and sm_open_secret_count().

   Why a purge never touches a reference count: being on the ring means "its memory is
   still ours to wipe", not "alive". CPython runs Python code while a secret's refcount is
   already 0 and its struct not yet freed: subtype_dealloc clears a subclass's __dict__
   (running the attributes' __del__) before secret_dealloc; the trashcan parks deep
   structures with refcount 0 and frees them later, running other objects' __del__ in
   between; a weakref callback runs inside secret_dealloc. A purge from any of those (or
   from a signal handler, or another thread while this one waits for the GIL) taking a
   reference would revive the object and deallocate it a second time. Instead the purge
   only releases the secret's memory, exactly as close() would; the struct stays valid
   until secret_dealloc, which finds the secret closed and frees the struct alone.

   Everything here runs with the GIL held; the ring needs no other lock. */

static sm_link open_secrets = {&open_secrets, &open_secrets};
/* Secrets go on the ring in this order, at its tail: the ring is sorted by `opened`. */
static uint64_t openings = 0;

static sm_secret *secret_of(sm_link *link) {
    return (sm_secret *)((char *)link - offsetof(sm_secret, live));
}

static void ring_add(sm_secret *s) {
    s->opened = openings++;
    s->live.prev = open_secrets.prev;
    s->live.next = &open_secrets;
    open_secrets.prev->next = &s->live;
    open_secrets.prev = &s->live;
}

static void ring_remove(sm_secret *s) {
    if (s->live.next == NULL)
        return;
    s->live.prev->next = s->live.next;
    s->live.next->prev = s->live.prev;
    s->live.prev = s->live.next = NULL;
}

static int release_secret(sm_secret *s);

/* Closing one secret may let the GIL go (a guarded secret's arena may be busy) or run a
   kernel written in Python: other threads, signal handlers and nested purges run
   meanwhile, and may close, deallocate or open secrets. So the loop holds no pointer
   across a release: each round takes the ring's first secret afresh, and the released one
   has already left the ring (it may even be freed by the time release returns). Secrets
   opened after the purge began have a later `opened` and sit behind every older one: the
   purge stops at the first of them, so a kernel that opens a secret cannot keep it going. */
Py_ssize_t sm_close_every_open_secret(void) {
    const uint64_t horizon = openings;
    Py_ssize_t closed = 0;
    for (;;) {
        sm_link *first = open_secrets.next;
        if (first == &open_secrets)
            break;
        sm_secret *s = secret_of(first);
        if (s->opened >= horizon)
            break;
        if (s->state != ST_OPEN) { /* the invariant says never; progress must not rest on it */
            ring_remove(s);
            continue;
        }
        closed += s->generation == sm_generation; /* a fork's orphans are only unlinked */
        if (release_secret(s) < 0) /* unlinks s first; s is not touched after it */
            PyErr_WriteUnraisable(NULL);
    }
    return closed;
}

Py_ssize_t sm_open_secret_count(void) {
    Py_ssize_t count = 0;
    for (sm_link *l = open_secrets.next; l != &open_secrets; l = l->next)
        count += secret_of(l)->generation == sm_generation;
    return count;
}

/* -- making one -------------------------------------------------------------------- */

static int check_arena_option(PyObject *arena, sm_arena **out) {
    if (arena == NULL || arena == Py_None) {
        *out = sm_default_arena();
        return *out == NULL ? -1 : 0;
    }
    if (!PyObject_TypeCheck(arena, sm_ArenaType)) {
        PyErr_Format(PyExc_TypeError, "arena must be a securemem.Arena or None, not %s",
                     Py_TYPE(arena) == NULL ? "?" : "another type");
        return -1;
    }
    *out = (sm_arena *)arena;
    return 0;
}

static int check_guarded_option(PyObject *guarded, int *out) {
    if (guarded == NULL) {
        *out = 0;
        return 0;
    }
    if (!PyBool_Check(guarded)) {
        PyErr_SetString(PyExc_TypeError,
                        "guarded must be True or False (a bool), not another type: "
                        "it is not truth-tested");
        return -1;
    }
    *out = guarded == Py_True;
    return 0;
}

static int check_size(Py_ssize_t size) {
    if (size < 0) {
        PyErr_Format(PyExc_ValueError, "SecureBytes size cannot be negative, got %zd", size);
        return -1;
    }
    if (physical == 0)
        physical = (size_t)sm_physical_memory();
    if (physical && (size_t)size > physical) {
        char message[300];
        snprintf(message, sizeof message,
                 "cannot allocate %zd bytes: that is more than this machine's %zu bytes of "
                 "RAM. Ask for less.",
                 size, physical);
        sm_set_error("AllocationError", message);
        return -1;
    }
    return 0;
}

/* Allocate into a fresh (ST_NEW or ST_CLOSED transient) object. */
static int fill(sm_secret *s, sm_arena *a, size_t size, int guarded) {
    s->state = ST_CLOSED; /* while allocating: a re-entrant __init__ is refused */
    Py_INCREF((PyObject *)a);
    SM_SETREF(s->arena, a);
    int result = guarded ? sm_alloc_guarded(a, size, s) : sm_alloc(a, size, s);
    if (result < 0) {
        s->kind = KIND_NONE;
        return -1;
    }
    s->generation = sm_generation;
    s->state = ST_OPEN;
    ring_add(s); /* with the state: on the ring exactly while open */
    return 0;
}

/* A new secret, not yet initialised (ST_NEW). SecureBytes itself has no garbage-collector
   header and one fixed size: one PyObject_Malloc and its fields zeroed, without the generic
   allocator's general steps (a sixth of a 32-byte round trip went to object_new and
   PyType_GenericAlloc). A subclass (it may have a __dict__ and be tracked by the collector)
   is made by its own tp_alloc. The arguments are __init__'s: they are not looked at here. */
static PyObject *secret_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    (void)args;
    (void)kwargs;
    if (type != sm_SecretType) {
        allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
        return alloc(type, 0);
    }
    sm_secret *s = PyObject_Malloc(sizeof *s);
    if (s == NULL)
        return PyErr_NoMemory();
    memset((char *)s + sizeof(PyObject), 0, sizeof *s - sizeof(PyObject));
    return PyObject_Init((PyObject *)s, type);
}

static sm_secret *make(PyTypeObject *type, sm_arena *a, size_t size, int guarded) {
    sm_secret *s = (sm_secret *)secret_new(type, NULL, NULL);
    if (s == NULL)
        return NULL;
    if (fill(s, a, size, guarded) < 0) {
        Py_DECREF(s);
        return NULL;
    }
    return s;
}

/* An int as a size; beyond Py_ssize_t it is simply too large (or too negative). */
static int as_size(PyObject *integer, Py_ssize_t *size) {
    *size = PyLong_AsSsize_t(integer);
    if (*size != -1 || !PyErr_Occurred())
        return 0;
    if (!PyErr_ExceptionMatches(PyExc_OverflowError))
        return -1;
    PyErr_Clear();
    PyObject *zero = PyLong_FromLong(0);
    if (zero == NULL)
        return -1;
    int negative = PyObject_RichCompareBool(integer, zero, Py_LT);
    Py_DECREF(zero);
    if (negative < 0)
        return -1;
    *size = negative ? -1 : PY_SSIZE_T_MAX;
    return 0;
}

static PyObject *type_error_for(PyObject *given) {
    PyObject *name = PyObject_GetAttrString((PyObject *)Py_TYPE(given), "__name__");
    if (name == NULL)
        return NULL;
    PyErr_Format(PyExc_TypeError,
                 "SecureBytes() takes a size (int) or a bytes-like object, not %U; encode text "
                 "first, e.g. SecureBytes(text.encode()), or better read it straight into a "
                 "SecureBytes (securemem.getpass)",
                 name);
    Py_DECREF(name);
    return NULL;
}

static PyObject *arena_keyword = NULL; /* "arena", interned */

/* The common calls, SecureBytes(x) and SecureBytes(x, arena=a), without the general
   argument parser: it touches a dozen cold cache lines, and an allocation after a pause
   (a server between requests) paid for each. Anything else takes the parser. */
static int only_arena_keyword(PyObject *kwargs, PyObject **arena_option) {
    if (kwargs == NULL)
        return 1;
    if (PyDict_Size(kwargs) != 1) /* arena_keyword is made with the type */
        return 0;
    PyObject *value = PyDict_GetItemWithError(kwargs, arena_keyword);
    if (value == NULL) {
        PyErr_Clear(); /* the parser will say what is wrong */
        return 0;
    }
    *arena_option = value; /* borrowed: kwargs holds it for the call */
    return 1;
}

static int secret_init(PyObject *self, PyObject *args, PyObject *kwargs) {
    sm_secret *s = (sm_secret *)self;
    static char *names[] = {"size_or_buffer", "arena", "guarded", NULL};
    PyObject *given, *arena_option = NULL, *guarded_option = NULL;
    if (s->state != ST_NEW) {
        PyErr_SetString(PyExc_TypeError,
                        "SecureBytes.__init__ cannot be called again on an existing secret: "
                        "make a new SecureBytes instead");
        return -1;
    }
    if (PyTuple_Size(args) == 1 && only_arena_keyword(kwargs, &arena_option)) {
        given = PyTuple_GetItem(args, 0);
    } else if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$OO", names, &given, &arena_option,
                                            &guarded_option)) {
        return -1;
    }
    Py_ssize_t size;
    Py_buffer source;
    int have_source = 0, guarded;
    if (PyLong_CheckExact(given)) {
        if (as_size(given, &size) < 0)
            return -1;
    } else if (PyBool_Check(given) || PyUnicode_Check(given) || given == Py_None) {
        type_error_for(given);
        return -1;
    } else if (PyObject_GetBuffer(given, &source, BUFFER_FLAGS) == 0) {
        have_source = 1;
        size = source.len;
    } else {
        if (!PyErr_ExceptionMatches(PyExc_TypeError))
            return -1;
        PyErr_Clear();
        PyObject *index = PyNumber_Index(given);
        if (index == NULL) {
            if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                type_error_for(given);
            }
            return -1;
        }
        int converted = as_size(index, &size);
        Py_DECREF(index);
        if (converted < 0)
            return -1;
    }
    sm_arena *a;
    if (check_size(size) < 0 || check_arena_option(arena_option, &a) < 0 ||
        check_guarded_option(guarded_option, &guarded) < 0 || s->state != ST_NEW) {
        if (s->state != ST_NEW && !PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "SecureBytes.__init__ was re-entered");
        if (have_source)
            PyBuffer_Release(&source);
        return -1;
    }
    int result = fill(s, a, (size_t)size, guarded);
    if (result == 0 && have_source && size)
        copy_in(memory(s), 1, &source); /* the source is held: it cannot move or go */
    if (have_source)
        PyBuffer_Release(&source);
    return result;
}

/* -- release ------------------------------------------------------------------------ */

/* Wipe now; free the slot now, or when the last export goes (an export's memory is
   never freed under it: secret_releasebuffer frees it). The state and the ring change
   first, together and before anything that can run Python code or let the GIL go: from
   then on a second close, a purge or a deallocation sees a closed secret and leaves it. */
static int release_secret(sm_secret *s) {
    if (s->state != ST_OPEN)
        return 0;
    s->state = ST_CLOSED;
    ring_remove(s);
    if (s->generation != sm_generation || s->arena == NULL)
        return 0; /* inherited across fork: the parent's memory, not ours to free */
    sm_arena *a = s->arena;
    if (s->kind == KIND_GUARDED) {
        sm_guarded *g = s->owner;
        int views_alive = s->exports > 0;
        if (!views_alive)
            s->owner = NULL;
        /* A kernel written in Python runs user code inside the close, and no reference
           to the secret is held (a purge may be closing a dying one): the user code may
           drop the secret's last reference, and with it the arena's. The arena is held
           here; the secret is not touched once the close has begun. */
        Py_INCREF((PyObject *)a);
        int result = sm_guarded_close(a, g, views_alive);
        Py_DECREF((PyObject *)a);
        return result;
    }
    /* a packed secret's release runs no Python code and never lets the GIL go */
    sm_wipe(memory(s), s->size);
    if (s->exports) {
        sm_closed_with_views(a, s->size);
        return 0;
    }
    sm_in_use_less(a, s->size);
    void *owner = s->owner;
    s->owner = NULL;
    sm_free(a, s->kind, owner, s->address);
    return 0;
}

static PyObject *secret_close(PyObject *self, PyObject *unused) {
    (void)unused;
    if (release_secret((sm_secret *)self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static void secret_dealloc(PyObject *self) {
    sm_secret *s = (sm_secret *)self;
    PyTypeObject *type = Py_TYPE(self);
    /* Weakref callbacks run Python code with this secret's refcount at 0 and the secret
       still open (on the ring): a purge from one releases its memory without a reference
       (see the ring's comment), and the release below then finds it closed.
       PyObject_ClearWeakRefs keeps the exception being raised, if any, itself. */
    if (s->weakreflist != NULL)
        PyObject_ClearWeakRefs(self);
    if (s->state == ST_OPEN) {
        /* the release may run a Python kernel's code: the exception being raised, if
           any, is kept aside meanwhile (a closed secret's release does nothing) */
        PyObject *etype, *evalue, *etb;
        PyErr_Fetch(&etype, &evalue, &etb);
        if (release_secret(s) < 0)
            PyErr_WriteUnraisable(NULL); /* a canary: memory corruption is reported even here */
        PyErr_Restore(etype, evalue, etb);
    }
    ring_remove(s); /* already off (release unlinks); the struct is never freed while on it */
    Py_CLEAR(s->arena);
    if (type == sm_SecretType) {
        PyObject_Free(self); /* as secret_new allocated it */
    } else {
        freefunc tp_free = (freefunc)PyType_GetSlot(type, Py_tp_free);
        tp_free(self);
    }
    Py_DECREF(type);
}

/* -- the buffer protocol ------------------------------------------------------------- */

static int secret_getbuffer(PyObject *self, Py_buffer *view, int flags) {
    sm_secret *s = (sm_secret *)self;
    if (check_open(s) < 0) {
        view->obj = NULL;
        return -1;
    }
    if (PyBuffer_FillInfo(view, self, memory(s), (Py_ssize_t)s->size, 0, flags) < 0)
        return -1;
    s->exports++;
    return 0;
}

static void secret_releasebuffer(PyObject *self, Py_buffer *view) {
    sm_secret *s = (sm_secret *)self;
    (void)view;
    if (s->exports == 0 || --s->exports)
        return;
    if (s->state != ST_CLOSED || s->owner == NULL || s->arena == NULL ||
        s->generation != sm_generation)
        return;
    void *owner = s->owner;
    s->owner = NULL;
    if (s->kind == KIND_GUARDED) {
        sm_guarded_views_gone(s->arena, owner);
    } else {
        /* a view may have written after close: wipe again before the slot is reused */
        sm_wipe(memory(s), s->size);
        sm_views_gone(s->arena);
        sm_free(s->arena, s->kind, owner, s->address);
    }
}

static PyObject *secret_view(PyObject *self, PyObject *unused) {
    (void)unused;
    return PyMemoryView_FromObject(self);
}

/* -- reading and writing -------------------------------------------------------------- */

static Py_ssize_t secret_length(PyObject *self) {
    sm_secret *s = (sm_secret *)self;
    if (check_open(s) < 0)
        return -1;
    return (Py_ssize_t)s->size;
}

/* operator.index(key), as a Py_ssize_t (out of range: IndexError). */
static int convert_index(PyObject *key, Py_ssize_t *out) {
    PyObject *index = PyNumber_Index(key);
    if (index == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError,
                            "SecureBytes indices must be integers or slices");
        }
        return -1;
    }
    *out = PyLong_AsSsize_t(index);
    Py_DECREF(index);
    if (*out == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_SetString(PyExc_IndexError, "SecureBytes index out of range");
        return -1;
    }
    return 0;
}

static int bound(sm_secret *s, Py_ssize_t given, Py_ssize_t *index) {
    Py_ssize_t size = (Py_ssize_t)s->size;
    *index = given < 0 ? given + size : given;
    if (*index < 0 || *index >= size) {
        PyErr_Format(PyExc_IndexError,
                     "SecureBytes index %zd is out of range for its %zd bytes (valid: %zd to %zd)",
                     given, size, -size, size - 1);
        return -1;
    }
    return 0;
}

static PyObject *secret_subscript(PyObject *self, PyObject *key) {
    sm_secret *s = (sm_secret *)self;
    if (PySlice_Check(key)) {
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(key, &start, &stop, &step) < 0) /* may run __index__ */
            return NULL;
        if (check_open(s) < 0)
            return NULL;
        Py_ssize_t length = PySlice_AdjustIndices((Py_ssize_t)s->size, &start, &stop, step);
        sm_arena *a = s->arena;
        Py_INCREF((PyObject *)a);
        /* a new secret may run a Python kernel's code: the source is checked after */
        sm_secret *part = make(Py_TYPE(self), a, (size_t)length, 0);
        Py_DECREF((PyObject *)a);
        if (part == NULL)
            return NULL;
        if (check_open(s) < 0) {
            Py_DECREF(part);
            return NULL;
        }
        const uint8_t *source = memory(s);
        for (Py_ssize_t k = 0; k < length; k++)
            memory(part)[k] = source[start + k * step];
        return (PyObject *)part;
    }
    Py_ssize_t given, index;
    if (convert_index(key, &given) < 0 || check_open(s) < 0 || bound(s, given, &index) < 0)
        return NULL;
    return PyLong_FromLong(memory(s)[index]);
}

/* 1 when any byte of `v` lies within the secret's memory (a view of itself, or of a
   part of it): the extent of a strided buffer, from its first byte to its last. */
static int slice_source_overlaps(sm_secret *s, Py_buffer *v) {
    if (v->len == 0 || s->state != ST_OPEN || s->generation != sm_generation)
        return 0;
    uintptr_t low = (uintptr_t)v->buf, high = (uintptr_t)v->buf;
    for (int d = 0; d < v->ndim; d++) {
        Py_ssize_t stride = v->strides ? v->strides[d] : v->itemsize;
        Py_ssize_t span = (v->shape[d] - 1) * stride;
        if (span < 0)
            low -= (uintptr_t)(-span);
        else
            high += (uintptr_t)span;
    }
    high += (uintptr_t)v->itemsize; /* one past the last byte */
    return low < s->address + s->size && s->address < high;
}

static int secret_ass_subscript(PyObject *self, PyObject *key, PyObject *value) {
    sm_secret *s = (sm_secret *)self;
    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "SecureBytes never changes size: bytes cannot be deleted");
        return -1;
    }
    if (PySlice_Check(key)) {
        Py_ssize_t start, stop, step;
        Py_buffer source;
        if (PySlice_Unpack(key, &start, &stop, &step) < 0)
            return -1;
        if (PyObject_GetBuffer(value, &source, BUFFER_FLAGS) < 0) {
            if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                PyErr_SetString(PyExc_TypeError, "slice assignment needs a bytes-like object");
            }
            return -1;
        }
        /* An element-by-element copy (a step other than 1, or a strided source) whose
           source overlaps this secret would read bytes it already overwrote: such a
           source is copied first into a temporary secret (locked memory, wiped when
           dropped), as bytearray copies first. Made before the checks below: making
           it may run a Python kernel's code. */
        sm_secret *temporary = NULL;
        if (step != 1 || !contiguous(&source)) {
            int overlaps = slice_source_overlaps(s, &source);
            if (overlaps) {
                sm_arena *a = s->arena;
                Py_INCREF((PyObject *)a);
                /* the base type, never the caller's subclass: a subclass's __del__
                   would run on (and could keep) a copy it never made */
                temporary = make(sm_SecretType, a, (size_t)source.len, 0);
                Py_DECREF((PyObject *)a);
                if (temporary == NULL) {
                    PyBuffer_Release(&source);
                    return -1;
                }
            }
        }
        /* from here: no Python code until the bytes are written */
        int result = -1;
        if (check_open(s) == 0) {
            Py_ssize_t length = PySlice_AdjustIndices((Py_ssize_t)s->size, &start, &stop, step);
            if (source.len != length) {
                PyErr_Format(PyExc_ValueError,
                             "cannot assign %zd bytes to a slice of %zd: a SecureBytes never "
                             "changes size",
                             source.len, length);
            } else {
                if (length && temporary != NULL) {
                    copy_in(memory(temporary), 1, &source);
                    for (Py_ssize_t k = 0; k < length; k++)
                        memory(s)[start + k * step] = memory(temporary)[k];
                } else if (length) {
                    copy_in(memory(s) + start, step, &source);
                }
                result = 0;
            }
        }
        PyBuffer_Release(&source);
        Py_XDECREF((PyObject *)temporary); /* wiped and freed here */
        return result;
    }
    Py_ssize_t given, index;
    if (convert_index(key, &given) < 0)
        return -1;
    if (PyBool_Check(value) || !PyLong_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "a byte must be an int in range(0, 256)");
        return -1;
    }
    int overflow;
    long byte = PyLong_AsLongAndOverflow(value, &overflow);
    if (byte == -1 && PyErr_Occurred())
        return -1;
    if (overflow || byte < 0 || byte > 255) {
        PyErr_SetString(PyExc_ValueError, "a byte must be in range(0, 256)");
        return -1;
    }
    if (check_open(s) < 0 || bound(s, given, &index) < 0)
        return -1;
    memory(s)[index] = (uint8_t)byte;
    return 0;
}

static int secret_contains(PyObject *self, PyObject *item) {
    (void)self;
    (void)item;
    PyErr_SetString(PyExc_TypeError,
                    "`in` is not supported on a SecureBytes: a search leaks the secret through "
                    "its timing. Compare whole secrets with ==, or read bytes explicitly.");
    return -1;
}

static PyObject *secret_richcompare(PyObject *self, PyObject *other, int op) {
    sm_secret *s = (sm_secret *)self;
    if (op != Py_EQ && op != Py_NE)
        Py_RETURN_NOTIMPLEMENTED;
    if (PyUnicode_Check(other)) {
        PyErr_SetString(PyExc_TypeError,
                        "a SecureBytes compares only with bytes-like objects, not str: encode "
                        "the text first (as hmac.compare_digest requires)");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(other, &view, BUFFER_FLAGS) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError))
            return NULL;
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    int result = -1;
    if (check_open(s) == 0) /* after the conversion, nothing in between */
        result = view.len == (Py_ssize_t)s->size && equal(memory(s), &view);
    PyBuffer_Release(&view);
    if (result < 0)
        return NULL;
    return PyBool_FromLong(op == Py_EQ ? result : !result);
}

static Py_hash_t secret_hash(PyObject *self) {
    (void)self;
    PyErr_SetString(PyExc_TypeError,
                    "SecureBytes is unhashable: a hash would leak information about the secret "
                    "and it is mutable");
    return -1;
}

static PyObject *secret_repr(PyObject *self) {
    sm_secret *s = (sm_secret *)self;
    int open = s->state == ST_OPEN && s->generation == sm_generation;
    return PyUnicode_FromFormat("<SecureBytes size=%zd %s>", (Py_ssize_t)s->size,
                                open ? "open" : "closed");
}

static PyObject *secret_wipe(PyObject *self, PyObject *unused) {
    sm_secret *s = (sm_secret *)self;
    (void)unused;
    if (check_open(s) < 0)
        return NULL;
    if (s->kind == KIND_GUARDED) {
        sm_guarded *g = s->owner;
        int previous = g->protection;
        if (previous != SM_PROT_READWRITE && sm_guarded_protect(s->arena, g, SM_PROT_READWRITE) < 0)
            return NULL;
        /* a Python kernel's protect() may have closed it (purge): touch nothing then */
        if (check_open(s) < 0)
            return NULL;
        sm_wipe(memory(s), s->size);
        if (previous != SM_PROT_READWRITE && sm_guarded_protect(s->arena, g, previous) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    sm_wipe(memory(s), s->size);
    Py_RETURN_NONE;
}

/* Fresh bytes from the OS CSPRNG over the whole secret, in place (through a guarded
   secret's protection, which is restored); on failure the secret is wiped, never left
   half old, half new. */
static PyObject *secret_randomize(PyObject *self, PyObject *unused) {
    sm_secret *s = (sm_secret *)self;
    (void)unused;
    if (check_open(s) < 0)
        return NULL;
    sm_guarded *g = s->kind == KIND_GUARDED ? s->owner : NULL;
    int previous = g != NULL ? g->protection : SM_PROT_READWRITE;
    if (previous != SM_PROT_READWRITE && sm_guarded_protect(s->arena, g, SM_PROT_READWRITE) < 0)
        return NULL;
    /* a Python kernel's protect() may have closed it (purge): touch nothing then */
    if (check_open(s) < 0)
        return NULL;
    int number = 0;
    if (s->size && sm_random(memory(s), s->size) != 0) {
        number = errno;
        sm_wipe(memory(s), s->size);
    }
    if (previous != SM_PROT_READWRITE && sm_guarded_protect(s->arena, g, previous) < 0)
        return NULL;
    if (number) {
        PyObject *module = PyImport_ImportModule("securemem._kernel");
        if (module != NULL) {
            PyObject *error = PyObject_CallMethod(module, "random_failure", "iO", number, Py_True);
            if (error != NULL) {
                PyErr_SetObject((PyObject *)Py_TYPE(error), error);
                Py_DECREF(error);
            }
            Py_DECREF(module);
        }
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *secret_copy(PyObject *self, PyObject *unused) {
    sm_secret *s = (sm_secret *)self;
    (void)unused;
    if (check_open(s) < 0)
        return NULL;
    sm_arena *a = s->arena;
    Py_INCREF((PyObject *)a);
    sm_secret *copy = make(Py_TYPE(self), a, s->size, 0);
    Py_DECREF((PyObject *)a);
    if (copy == NULL)
        return NULL;
    if (check_open(s) < 0) {
        Py_DECREF(copy);
        return NULL;
    }
    memcpy(memory(copy), memory(s), s->size);
    return (PyObject *)copy;
}

static PyObject *secret_deepcopy(PyObject *self, PyObject *memo) {
    (void)memo;
    return secret_copy(self, NULL);
}

static PyObject *secret_reduce(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    PyErr_SetString(PyExc_TypeError,
                    "SecureBytes cannot be pickled: a pickle would copy the secret into "
                    "ordinary, swappable memory. Copy it explicitly if you must.");
    return NULL;
}

static PyObject *secret_enter(PyObject *self, PyObject *unused) {
    (void)unused;
    if (check_open((sm_secret *)self) < 0)
        return NULL;
    Py_INCREF(self);
    return self;
}

/* METH_FASTCALL: the with statement's three arguments need no tuple (they are not used) */
static PyObject *secret_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)args;
    (void)nargs;
    return secret_close(self, NULL);
}

static PyObject *secret_random(PyObject *cls, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"size", "arena", "guarded", NULL};
    PyObject *given, *arena_option = NULL, *guarded_option = NULL;
    if (PyTuple_Size(args) == 1 && only_arena_keyword(kwargs, &arena_option)) {
        given = PyTuple_GetItem(args, 0); /* the common calls, as in __init__ */
    } else if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$OO", names, &given, &arena_option,
                                            &guarded_option)) {
        return NULL;
    }
    if (PyBool_Check(given)) {
        PyErr_SetString(PyExc_TypeError, "SecureBytes.random() takes a size (int), not bool");
        return NULL;
    }
    PyObject *index = PyNumber_Index(given); /* a size is a size however it is spelled */
    if (index == NULL)
        return NULL;
    Py_ssize_t size;
    int converted = as_size(index, &size);
    Py_DECREF(index);
    int guarded;
    sm_arena *a;
    if (converted < 0 || check_size(size) < 0 ||
        check_arena_option(arena_option, &a) < 0 || check_guarded_option(guarded_option, &guarded) < 0)
        return NULL;
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, sm_SecretType)) {
        PyErr_SetString(PyExc_TypeError, "random() must be called on SecureBytes");
        return NULL;
    }
    Py_INCREF((PyObject *)a);
    sm_secret *s = make((PyTypeObject *)cls, a, (size_t)size, guarded);
    Py_DECREF((PyObject *)a);
    if (s == NULL)
        return NULL;
    if (size && sm_random(memory(s), (size_t)size) != 0) {
        int number = errno;
        release_secret(s);
        PyErr_Clear();
        Py_DECREF(s);
        PyObject *module = PyImport_ImportModule("securemem._kernel");
        if (module != NULL) {
            PyObject *error = PyObject_CallMethod(module, "random_failure", "iO", number, Py_False);
            if (error != NULL) {
                PyErr_SetObject((PyObject *)Py_TYPE(error), error);
                Py_DECREF(error);
            }
            Py_DECREF(module);
        }
        return NULL;
    }
    return (PyObject *)s;
}

/* -- guarded secrets' protection ------------------------------------------------------- */

static sm_guarded *guarded_of(sm_secret *s) {
    if (check_open(s) < 0)
        return NULL;
    if (s->kind != KIND_GUARDED) {
        PyErr_SetString(PyExc_ValueError,
                        "only a guarded secret can change its page protection: its pages are "
                        "shared with other secrets otherwise. Create it with "
                        "SecureBytes(n, guarded=True).");
        return NULL;
    }
    return s->owner;
}

static const char *protection_names[] = {"noaccess", "readonly", "readwrite"};

static PyObject *secret_get_protection(PyObject *self, void *unused) {
    (void)unused;
    sm_guarded *g = guarded_of((sm_secret *)self);
    if (g == NULL)
        return NULL;
    return PyUnicode_FromString(protection_names[g->protection]);
}

static PyObject *secret_protect(PyObject *self, PyObject *protection) {
    sm_secret *s = (sm_secret *)self;
    sm_guarded *g = guarded_of(s);
    if (g == NULL)
        return NULL;
    int code = -1;
    if (PyUnicode_Check(protection))
        for (int i = 0; i < 3; i++)
            if (PyUnicode_CompareWithASCIIString(protection, protection_names[i]) == 0)
                code = i;
    if (code < 0) {
        PyErr_Format(PyExc_ValueError,
                     "protection must be 'noaccess', 'readonly' or 'readwrite', got %R", protection);
        return NULL;
    }
    /* the handle is checked after the conversion above, with nothing in between */
    if (guarded_of(s) == NULL || sm_guarded_protect(s->arena, g, code) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *secret_check(PyObject *self, PyObject *unused) {
    (void)unused;
    sm_secret *s = (sm_secret *)self;
    if (check_open(s) < 0)
        return NULL;
    if (s->kind != KIND_GUARDED)
        Py_RETURN_NONE;
    /* the canary shares the data pages: a no-access secret is opened for reading while
       checked (reading it as it is would fault), then its protection is restored */
    sm_guarded *g = s->owner;
    int previous = g->protection;
    if (previous == SM_PROT_NONE && sm_guarded_protect(s->arena, g, SM_PROT_READ) < 0)
        return NULL;
    /* a Python kernel's protect() may have closed it (purge): touch nothing then */
    if (check_open(s) < 0)
        return NULL;
    int intact = sm_guarded_check(g);
    if (previous == SM_PROT_NONE && sm_guarded_protect(s->arena, g, previous) < 0)
        return NULL;
    if (!intact) {
        char message[300];
        snprintf(message, sizeof message,
                 "the canary around a guarded secret of %zu bytes was overwritten: something "
                 "wrote outside the secret into its own pages (a buffer underrun).",
                 s->size);
        sm_set_error("CanaryError", message);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* -- attributes ---------------------------------------------------------------------- */

static PyObject *secret_get_closed(PyObject *self, void *unused) {
    (void)unused;
    sm_secret *s = (sm_secret *)self;
    return PyBool_FromLong(!(s->state == ST_OPEN && s->generation == sm_generation));
}

static PyObject *secret_get_address(PyObject *self, void *unused) {
    (void)unused;
    sm_secret *s = (sm_secret *)self;
    if (check_open(s) < 0)
        return NULL;
    return PyLong_FromSize_t(s->address);
}

static PyObject *secret_get_raw_address(PyObject *self, void *unused) {
    (void)unused;
    return PyLong_FromSize_t(((sm_secret *)self)->address);
}

static PyObject *secret_get_guarded(PyObject *self, void *unused) {
    (void)unused;
    return PyBool_FromLong(((sm_secret *)self)->kind == KIND_GUARDED);
}

static PyObject *secret_get_arena(PyObject *self, void *unused) {
    (void)unused;
    sm_secret *s = (sm_secret *)self;
    PyObject *a = s->arena ? (PyObject *)s->arena : Py_None;
    Py_INCREF((PyObject *)a);
    return a;
}

static PyMethodDef secret_methods[] = {
    {"close", secret_close, METH_NOARGS,
     "Wipe and release the memory. Calling it again does nothing.\n\nFor a guarded secret, "
     "raises CanaryError (after wiping and releasing) if the canary around it was overwritten."},
    {"wipe", secret_wipe, METH_NOARGS, "Zero every byte now; the SecureBytes stays open and usable."},
    {"randomize", secret_randomize, METH_NOARGS,
     "Overwrite every byte with fresh bytes from the OS CSPRNG, in place."},
    {"view", secret_view, METH_NOARGS,
     "A writable memoryview over the locked bytes (no copy); the same as memoryview(secret).\n\n"
     "A view outliving close() reads zeros: the memory is wiped at close and not reused until "
     "the last view is released."},
    {"protect", secret_protect, METH_O,
     "Change what the process may do with a guarded secret's bytes: 'noaccess', 'readonly' or "
     "'readwrite'."},
    {"check", secret_check, METH_NOARGS,
     "Raise CanaryError if the canary around a guarded secret was overwritten (a no-op for "
     "packed secrets)."},
    {"random", (PyCFunction)(void (*)(void))secret_random, METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "size bytes from the OS CSPRNG, written straight into locked memory."},
    {"__enter__", secret_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))secret_exit, METH_FASTCALL, NULL},
    {"__copy__", secret_copy, METH_NOARGS, NULL},
    {"__deepcopy__", secret_deepcopy, METH_O, NULL},
    {"__reduce_ex__", secret_reduce, METH_VARARGS, NULL},
    {"__reduce__", secret_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef secret_getset[] = {
    {"closed", secret_get_closed, NULL,
     "True once close() ran, and in a forked child for secrets of the parent.", NULL},
    {"address", secret_get_address, NULL,
     "The address of the first byte, for native code. Valid until close; native code that "
     "lets the GIL go should hold a memoryview of the secret meanwhile (a close or purge in "
     "another thread then wipes the memory but does not free it under the view).",
     NULL},
    {"_address", secret_get_raw_address, NULL, NULL, NULL},
    {"guarded", secret_get_guarded, NULL, "True for a secret with pages of its own.", NULL},
    {"arena", secret_get_arena, NULL, "The arena this secret's memory comes from.", NULL},
    {"protection", secret_get_protection, NULL,
     "'readwrite', 'readonly' or 'noaccess' (guarded secrets only).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef secret_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(sm_secret, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot secret_slots[] = {
    {Py_tp_new, (void *)secret_new},
    {Py_tp_init, (void *)secret_init},
    {Py_tp_dealloc, (void *)secret_dealloc},
    {Py_tp_methods, secret_methods},
    {Py_tp_getset, secret_getset},
    {Py_tp_members, secret_members},
    {Py_tp_repr, (void *)secret_repr},
    {Py_tp_str, (void *)secret_repr},
    {Py_tp_hash, (void *)secret_hash},
    {Py_tp_richcompare, (void *)secret_richcompare},
    {Py_mp_length, (void *)secret_length},
    {Py_mp_subscript, (void *)secret_subscript},
    {Py_mp_ass_subscript, (void *)secret_ass_subscript},
    {Py_sq_length, (void *)secret_length},
    {Py_sq_contains, (void *)secret_contains},
    {Py_bf_getbuffer, (void *)secret_getbuffer},
    {Py_bf_releasebuffer, (void *)secret_releasebuffer},
    /* the full docstring is securemem/_securebytes.py's, set on the type at import */
    {Py_tp_doc, "A fixed-size, mutable secret held in locked memory and wiped on release."},
    {0, NULL},
};

/* The public securemem.SecureBytes is this type itself, not a Python subclass of it: a
   class defined in Python costs every instance garbage-collector tracking and the
   generic subtype allocator and deallocator (a third of a 32-byte round trip).
   securemem/_securebytes.py attaches the methods written in Python (from_file, the
   codecs, take, accessible, __iter__) to it at import; the name makes its __module__
   "securemem" and its __qualname__ "SecureBytes". */
static PyType_Spec secret_spec = {
    "securemem.SecureBytes",
    sizeof(sm_secret),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    secret_slots,
};

int sm_secret_type_init(PyObject *module) {
    sm_SecretType = (PyTypeObject *)PyType_FromSpec(&secret_spec);
    if (sm_SecretType == NULL)
        return -1;
    if (arena_keyword == NULL && (arena_keyword = PyUnicode_InternFromString("arena")) == NULL)
        return -1;
    return PyModule_AddObjectRef(module, "SecureBytesBase", (PyObject *)sm_SecretType);
}
