/* Port: an actor's output (a ring's Writer or a seqlock Array), packed and published in one call.
 *
 * Included by _spine.c (it uses the Writer, the Array and the layout helpers there).  The Python
 * path it replaces, ``STRUCT.pack(*msg)`` then ``publish``, stays the reference: the C packing must
 * give the same bytes and refuse the same values (a hypothesis test holds the two equal).
 *
 *   Port(target, cls, layout, payload_size, track=None, clock=None, publisher=0)
 *     target: a Writer (send) or an Array (write, put, latest); cls: the message type (a tuple
 *     subclass), layout its FIELDS_AT; track: the process's Tracking (its ``origin`` is the record's
 *     origin; 0: now); clock: a simulated clock (its ``t`` is now and the publish time) or None
 *     (real time, read here).
 *   send(msg) -> seq                 a ring record from msg's fields (any tuple of them)
 *   write(index, msg) -> version     an array slot, tracked like send
 *   put(index, msg, origin, publisher, now=0) -> version   an array slot, stamps given
 *   latest(index) -> (version, msg or None, origin, publisher)   built in C, no struct unpack
 */

typedef struct {
    PyObject_HEAD PyObject *target, *cls, *track, *clock;
    int array, nfields;
    uint32_t publisher;
    size_t payload; /* bytes of the packed fields */
    uint16_t off[MAX_FIELDS], size[MAX_FIELDS]; /* offsets in the record (tracking header first) */
    char code[MAX_FIELDS];
    uint64_t sent;
} Port;

static int Port_init(Port *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"target", "cls", "layout", "payload_size", "track", "clock", "publisher", NULL};
    PyObject *target, *cls, *layout, *track = Py_None, *clock = Py_None;
    Py_ssize_t payload;
    unsigned int publisher = 0;
    if (self->target) {
        PyErr_SetString(PyExc_TypeError, "Port is already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOn|OOI", names, &target, &cls, &layout, &payload, &track, &clock,
                                     &publisher))
        return -1;
    Map *m;
    if (PyObject_TypeCheck(target, &WriterType)) m = &((Writer *)target)->m, self->array = 0;
    else if (PyObject_TypeCheck(target, &ArrayType)) m = &((Array *)target)->m, self->array = 1;
    else {
        PyErr_SetString(PyExc_TypeError, "target must be a Writer or an Array");
        return -1;
    }
    OPEN(m, -1);
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "cls must be a tuple subclass (a message type)");
        return -1;
    }
    size_t rec = m->slot_size - 8;
    if (payload < 0 || (size_t)payload > rec - TRACK) {
        PyErr_SetString(PyExc_ValueError, "payload_size does not fit the slot");
        return -1;
    }
    int n = parse_layout(layout, TRACK + (size_t)payload, self->off, self->size, self->code);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++)
        if (self->off[i] < TRACK) {
            PyErr_Format(PyExc_ValueError, "field %d: inside the tracking header", i);
            return -1;
        }
    self->nfields = n;
    self->payload = (size_t)payload;
    self->publisher = publisher;
    Py_INCREF(target), self->target = target;
    Py_INCREF(cls), self->cls = cls;
    self->track = track == Py_None ? NULL : (Py_INCREF(track), track);
    self->clock = clock == Py_None ? NULL : (Py_INCREF(clock), clock);
    return 0;
}

static int Port_traverse(Port *self, visitproc visit, void *arg) {
    Py_VISIT(self->target);
    Py_VISIT(self->cls);
    Py_VISIT(self->track);
    Py_VISIT(self->clock);
    return 0;
}

static int Port_clear(Port *self) {
    Py_CLEAR(self->target);
    Py_CLEAR(self->cls);
    Py_CLEAR(self->track);
    Py_CLEAR(self->clock);
    return 0;
}

static void Port_dealloc(Port *self) {
    PyObject_GC_UnTrack(self);
    Port_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* An int field's value: ints and anything with __index__ (numpy integers), as struct.pack takes. */
static int field_int(PyObject *o, int is_signed, int64_t *q, uint64_t *u) {
    PyObject *x = PyLong_Check(o) ? (Py_INCREF(o), o) : PyNumber_Index(o);
    if (!x) return -1;
    if (is_signed) *q = PyLong_AsLongLong(x);
    else *u = PyLong_AsUnsignedLongLong(x);
    Py_DECREF(x);
    return PyErr_Occurred() ? -1 : 0;
}

/* msg's fields packed at their offsets into buf (the payload, TRACK bytes into the record):
 * the bytes STRUCT.pack(*msg) gives, or -1 with an exception for a value it refuses. */
static int pack_fields(Port *self, PyObject *msg, char *buf) {
    if (!PyTuple_Check(msg)) {
        PyErr_Format(PyExc_TypeError, "a message is a tuple of its fields, not %.100s", Py_TYPE(msg)->tp_name);
        return -1;
    }
    if (PyTuple_GET_SIZE(msg) != self->nfields) {
        PyErr_Format(PyExc_TypeError, "expected %d fields, got %zd", self->nfields, PyTuple_GET_SIZE(msg));
        return -1;
    }
    memset(buf, 0, self->payload); /* padding, as struct.pack leaves it */
    for (int i = 0; i < self->nfields; i++) {
        PyObject *o = PyTuple_GET_ITEM(msg, i);
        char c = self->code[i], *p = buf + self->off[i] - TRACK;
        if (c == 's') {
            if (!PyBytes_Check(o)) {
                PyErr_Format(PyExc_TypeError, "field %d: text fields take bytes", i);
                return -1;
            }
            Py_ssize_t k = PyBytes_GET_SIZE(o);
            memcpy(p, PyBytes_AS_STRING(o), k < self->size[i] ? (size_t)k : self->size[i]); /* truncated, NUL-padded */
            continue;
        }
        int64_t q = 0;
        uint64_t u = 0;
        int is_signed = c == 'q' || c == 'i' || c == 'h' || c == 'b';
        if (field_int(o, is_signed, &q, &u) < 0) return -1;
        int bits = 8 * self->size[i], ok;
        if (is_signed) ok = bits == 64 || (q >= -(1ll << (bits - 1)) && q < (1ll << (bits - 1)));
        else ok = bits == 64 || u < (1ull << bits);
        if (!ok) {
            PyErr_Format(PyExc_OverflowError, "field %d: out of range for format '%c'", i, c);
            return -1;
        }
        switch (bits) { /* little-endian, like the '<' structs */
        case 64: { uint64_t v = is_signed ? (uint64_t)q : u; memcpy(p, &v, 8); break; }
        case 32: { uint32_t v = is_signed ? (uint32_t)q : (uint32_t)u; memcpy(p, &v, 4); break; }
        case 16: { uint16_t v = is_signed ? (uint16_t)q : (uint16_t)u; memcpy(p, &v, 2); break; }
        default: *(uint8_t *)p = is_signed ? (uint8_t)q : (uint8_t)u;
        }
    }
    return 0;
}

/* The tracking stamps of a record published now: origin (the message being handled, else now) and
 * the publish time to hand the writer (0: it reads the real clock itself). */
static int stamps(Port *self, uint64_t *origin, uint64_t *now) {
    *origin = 0, *now = 0;
    if (self->track) {
        PyObject *o = PyObject_GetAttr(self->track, s_origin);
        if (!o) return -1;
        *origin = PyLong_AsUnsignedLongLong(o);
        Py_DECREF(o);
        if (PyErr_Occurred()) return -1;
    }
    if (self->clock) {
        PyObject *t = PyObject_GetAttr(self->clock, s_t);
        if (!t) return -1;
        uint64_t v = PyLong_AsUnsignedLongLong(t);
        Py_DECREF(t);
        if (PyErr_Occurred()) return -1;
        if (!*origin) *origin = v;
        *now = v ? v : 1;
    } else if (!*origin) *origin = clock_ns();
    return 0;
}

static PyObject *Port_send(Port *self, PyObject *msg) {
    if (self->array) {
        PyErr_SetString(PyExc_TypeError, "send: this port is an array's (use write)");
        return NULL;
    }
    Writer *w = (Writer *)self->target;
    OPEN(&w->m, NULL);
    char buf[self->payload + 1];
    uint64_t origin, now;
    if (pack_fields(self, msg, buf) < 0 || stamps(self, &origin, &now) < 0) return NULL;
    uint64_t s = ring_write(&w->m, origin, now, self->publisher, buf, self->payload, 0);
    activity++;
    self->sent++;
    return PyLong_FromUnsignedLongLong(s);
}

static int array_index(Port *self, PyObject *o, uint64_t *i) {
    if (!self->array) {
        PyErr_SetString(PyExc_TypeError, "this port is a ring's (use send)");
        return -1;
    }
    return check_index((Array *)self->target, o, i);
}

static PyObject *Port_write(Port *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "write(index, msg)");
        return NULL;
    }
    uint64_t i, origin, now;
    if (array_index(self, args[0], &i) < 0) return NULL;
    char buf[self->payload + 1];
    if (pack_fields(self, args[1], buf) < 0 || stamps(self, &origin, &now) < 0) return NULL;
    self->sent++;
    return PyLong_FromUnsignedLongLong(array_put((Array *)self->target, i, origin, now, self->publisher, buf,
                                                 self->payload));
}

static PyObject *Port_put(Port *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 4 || nargs > 5) {
        PyErr_SetString(PyExc_TypeError, "put(index, msg, origin, publisher, now=0)");
        return NULL;
    }
    uint64_t i;
    if (array_index(self, args[0], &i) < 0) return NULL;
    char buf[self->payload + 1];
    if (pack_fields(self, args[1], buf) < 0) return NULL;
    uint64_t origin = PyLong_AsUnsignedLongLong(args[2]);
    uint32_t publisher = (uint32_t)PyLong_AsUnsignedLong(args[3]);
    uint64_t now = nargs > 4 ? PyLong_AsUnsignedLongLong(args[4]) : 0;
    if (PyErr_Occurred()) return NULL;
    self->sent++;
    return PyLong_FromUnsignedLongLong(array_put((Array *)self->target, i, origin ? origin : clock_ns(), now,
                                                 publisher, buf, self->payload));
}

static PyObject *Port_latest(Port *self, PyObject *arg) {
    uint64_t i, v;
    if (array_index(self, arg, &i) < 0) return NULL;
    Array *a = (Array *)self->target;
    char rec[a->m.slot_size];
    if (array_get(a, i, rec, &v) < 0) {
        if (!PyErr_ExceptionMatches(TornRead)) return NULL;
        PyErr_Clear(); /* a slot its writer left mid-write reads as "no value" until written again */
        return Py_BuildValue("(KOii)", (unsigned long long)v, Py_None, 0, 0);
    }
    if (!v) return Py_BuildValue("(KOii)", 0ull, Py_None, 0, 0);
    PyObject *msg = make_message(self->cls, self->nfields, self->off, self->size, self->code, rec);
    if (!msg) return NULL;
    uint64_t origin;
    uint32_t publisher;
    memcpy(&origin, rec, 8);
    memcpy(&publisher, rec + 16, 4);
    return Py_BuildValue("(KNKI)", (unsigned long long)v, msg, (unsigned long long)origin, (unsigned int)publisher);
}

static PyObject *Port_get_sent(Port *self, void *c) { return PyLong_FromUnsignedLongLong(self->sent); }

static PyMethodDef Port_methods[] = {
    {"send", (PyCFunction)Port_send, METH_O, "send(msg) -> seq: publish msg's fields, tracked"},
    {"write", (PyCFunction)(void (*)(void))Port_write, METH_FASTCALL, "write(index, msg) -> version, tracked"},
    {"put", (PyCFunction)(void (*)(void))Port_put, METH_FASTCALL, "put(index, msg, origin, publisher, now=0) -> version"},
    {"latest", (PyCFunction)Port_latest, METH_O, "latest(index) -> (version, msg or None, origin, publisher)"},
    {NULL}};

static PyGetSetDef Port_getset[] = {
    {"sent", (getter)Port_get_sent, NULL, "records published and slots written through this port", NULL},
    {NULL}};

static PyTypeObject PortType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "mantra._spine.Port",
    .tp_basicsize = sizeof(Port),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Port_init,
    .tp_dealloc = (destructor)Port_dealloc,
    .tp_traverse = (traverseproc)Port_traverse,
    .tp_clear = (inquiry)Port_clear,
    .tp_methods = Port_methods,
    .tp_getset = Port_getset,
    .tp_doc = "Port(target, cls, layout, payload_size, track=None, clock=None, publisher=0): an output packed in C",
};
