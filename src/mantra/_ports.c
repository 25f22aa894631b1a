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
 *   quote(written, slot, instrument, side, price, size, flags=0) -> bool   (an IdealOrder array's)
 *     TradeModel.quote in one call (trading/model.py, the reference): msg = (price, size,
 *     instrument, side, flags); False if written[slot] == msg, else written[slot] = msg, the slot
 *     written as write(slot, msg), True.  A hypothesis test holds the two equal.
 *   latest(index) -> (version, msg or None, origin, publisher)   built in C, no struct unpack
 *   changed(seen, tags=None) -> [(tag, version, msg or None, origin, publisher), ...]
 *     what a reader has not seen yet, read in one call: seen is [the array's write count (-1: never
 *     looked), then the version seen of each watched slot 0, 1, ...]; the slots whose version moved,
 *     read as latest(index) gives them, in index order, seen brought up to date (tags[index] in each
 *     entry, the index when tags is None).  Its reference, built on writes/version/latest, is the
 *     overseer's ``_changed`` (trading/overseer.py); a hypothesis test holds the two equal.
 *   serve(ctx, item, now) -> None, False, a refusal or the request's fields   (a ring's port: requests)
 *     the overseer's common case for a slot ``changed`` read (item: its entry), in one call: take
 *     the read in and decide as ``Overseer._read`` then ``_reconcile`` would (trading/overseer.py,
 *     the reference), publishing the AMEND or NEW that decides on (or giving the check's refusal of
 *     it, an int, for the overseer to record); None (nothing done at all) for
 *     any other case, and for a slot to redo (item (slot, None, ...)): the overseer then runs its
 *     Python.  ctx is what Overseer._serve_ctx lists.
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

#include <structmember.h> /* T_OBJECT_EX, READONLY: a __slots__ member */

/* Attributes of Python objects read and written from C at their __slots__ member. */
enum { PA_REASON, PA_ORDER, PA_PLACED, PA_INDEX, PA_SEEN, PA_ORIGIN, PA_MODEL, PA_IDEAL, PA_STATUS, PA_PENDING,
       PA_VERSION, PA_INSTRUMENT, PA_SIDE, PA_FLAGS, PA_FILLED, PA_FILL_QTY, PA_PRICE, PA_SIZE, PA_VENUE, PA_AMEND,
       PA_NO_AMEND, PA_ORDER_ID, PA_SLOT, PA_NEXT_ID, PA_ORDER_MODEL, PA_TRACK_ORIGIN, PA_N };
static const char *attr_names[PA_N] = {"reason", "order", "placed", "index", "seen", "origin", "model", "ideal",
                                      "status", "pending", "version", "instrument", "side", "flags", "filled",
                                      "fill_qty", "price", "size", "venue", "amend", "no_amend", "order_id", "slot",
                                      "next_id", "model", "origin"};
static PyObject *attr[PA_N], *k_zero, *k_one, *k_minus1;
/* Each name is read on objects of one class (the process's Tracking; the overseer's _Slot, Order,
 * _Terms, _Venue): that class, and where its __slots__ member keeps the value (-1: not a plain
 * member, get/set it the generic way), found on first use.  Other classes (subclasses too) take the
 * generic way. */
static PyTypeObject *attr_type[PA_N];
static Py_ssize_t attr_off[PA_N];

static Py_ssize_t member_at(PyObject *o, int a) {
    PyTypeObject *tp = Py_TYPE(o);
    if (tp == attr_type[a]) return attr_off[a];
    if (attr_type[a]) return -1;
    PyObject *d = _PyType_Lookup(tp, attr[a]); /* borrowed */
    Py_ssize_t off = -1;
    if (d && Py_TYPE(d) == &PyMemberDescr_Type) {
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type == T_OBJECT_EX && !(m->flags & READONLY)) off = m->offset;
    }
    Py_INCREF(tp); /* kept: the pointer compared stays this class's */
    attr_type[a] = tp, attr_off[a] = off;
    return off;
}

/* The names interned and the constants made, once: -1 with an exception if they could not be. */
static int attrs_ready(void) {
    if (k_minus1) return 0;
    for (int a = 0; a < PA_N; a++)
        if (!attr[a] && !(attr[a] = PyUnicode_InternFromString(attr_names[a]))) return -1;
    if ((!k_zero && !(k_zero = PyLong_FromLong(0))) || (!k_one && !(k_one = PyLong_FromLong(1))) ||
        !(k_minus1 = PyLong_FromLong(-1)))
        return -1;
    return 0;
}

/* obj.name, a new reference (NULL with an exception), as getattr gives it. */
static inline PyObject *attr_get(PyObject *o, int a) {
    Py_ssize_t off = member_at(o, a);
    if (off >= 0) {
        PyObject *v = *(PyObject **)((char *)o + off);
        if (v) return Py_NewRef(v);
    }
    return PyObject_GetAttr(o, attr[a]); /* (unset: its AttributeError) */
}

/* obj.name = v, as setattr does it. */
static inline int attr_set(PyObject *o, int a, PyObject *v) {
    Py_ssize_t off = member_at(o, a);
    if (off < 0) return PyObject_SetAttr(o, attr[a], v);
    PyObject **p = (PyObject **)((char *)o + off), *old = *p;
    *p = Py_NewRef(v);
    Py_XDECREF(old);
    return 0;
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
        PyObject *o = attrs_ready() < 0 ? NULL : attr_get(self->track, PA_TRACK_ORIGIN);
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

/* seen[k] as the uint64 it holds: -1 with an exception for anything else. */
static inline int seen_at(PyObject *seen, Py_ssize_t k, uint64_t *v) {
    PyObject *o = PyList_GET_ITEM(seen, k);
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "seen[%zd]: a version is an int", k);
        return -1;
    }
    *v = PyLong_AsUnsignedLongLong(o);
    return PyErr_Occurred() ? -1 : 0;
}

static PyObject *Port_changed(Port *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "changed(seen, tags=None)");
        return NULL;
    }
    if (!self->array) {
        PyErr_SetString(PyExc_TypeError, "changed: this port is a ring's");
        return NULL;
    }
    Array *a = (Array *)self->target;
    OPEN(&a->m, NULL);
    PyObject *seen = args[0], *tags = nargs > 1 ? args[1] : Py_None;
    if (!PyList_Check(seen) || PyList_GET_SIZE(seen) < 1) {
        PyErr_SetString(PyExc_TypeError, "changed: seen is a list [write count, version of slot 0, ...]");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(seen) - 1;
    if ((uint64_t)n > a->m.capacity) {
        PyErr_Format(PyExc_IndexError, "changed: %zd slots watched, the array has %llu", n,
                     (unsigned long long)a->m.capacity);
        return NULL;
    }
    if (tags != Py_None && (!PyList_Check(tags) || PyList_GET_SIZE(tags) < n)) {
        PyErr_SetString(PyExc_TypeError, "changed: tags is None or a list with one per watched slot");
        return NULL;
    }
    PyObject *w0 = PyList_GET_ITEM(seen, 0);
    if (!PyLong_Check(w0)) {
        PyErr_SetString(PyExc_TypeError, "seen[0]: the write count is an int");
        return NULL;
    }
    int neg;
    long long was = PyLong_AsLongLongAndOverflow(w0, &neg);
    if (was == -1 && PyErr_Occurred()) return NULL;
    uint64_t w = LOAD_ACQ(a->m.count);
    if (!neg && was >= 0 && (uint64_t)was == w) return PyList_New(0); /* nothing written since */
    uint64_t s;
    for (Py_ssize_t i = 0; i < n; i++) /* every entry checked before seen changes */
        if (seen_at(seen, i + 1, &s) < 0) return NULL;
    char rec[a->m.slot_size];
    PyObject *out = PyList_New(0), *count = PyLong_FromUnsignedLongLong(w);
    if (!out || !count) goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        seen_at(seen, i + 1, &s);
        uint64_t v = LOAD_ACQ((uint64_t *)slot_at(&a->m, (uint64_t)i));
        if (v == s) continue;
        PyObject *msg = Py_None;
        uint64_t origin = 0;
        uint32_t publisher = 0;
        if (array_get(a, (uint64_t)i, rec, &v) < 0) {
            if (!PyErr_ExceptionMatches(TornRead)) goto fail;
            PyErr_Clear(); /* a slot its writer left mid-write reads as "no value" until written again */
            Py_INCREF(msg);
        } else if (v) {
            msg = make_message(self->cls, self->nfields, self->off, self->size, self->code, rec);
            if (!msg) goto fail;
            memcpy(&origin, rec, 8);
            memcpy(&publisher, rec + 16, 4);
        } else Py_INCREF(msg);
        if (v == s) { /* read back at the version seen after all: not moved, left out (as the reference) */
            Py_DECREF(msg);
            continue;
        }
        PyObject *tag = tags == Py_None ? PyLong_FromSsize_t(i) : (Py_INCREF(PyList_GET_ITEM(tags, i)),
                                                                  PyList_GET_ITEM(tags, i));
        PyObject *ver = PyLong_FromUnsignedLongLong(v), *org = PyLong_FromUnsignedLongLong(origin),
                 *pub = PyLong_FromUnsignedLong(publisher), *t = tag && ver && org && pub ? PyTuple_New(5) : NULL;
        if (!t) {
            Py_XDECREF(tag), Py_XDECREF(ver), Py_XDECREF(org), Py_XDECREF(pub);
            Py_DECREF(msg);
            goto fail;
        }
        PyTuple_SET_ITEM(t, 0, tag), PyTuple_SET_ITEM(t, 1, Py_NewRef(ver)), PyTuple_SET_ITEM(t, 2, msg);
        PyTuple_SET_ITEM(t, 3, org), PyTuple_SET_ITEM(t, 4, pub);
        PyList_SetItem(seen, i + 1, ver); /* takes our reference */
        int bad = PyList_Append(out, t);
        Py_DECREF(t);
        if (bad < 0) goto fail;
    }
    PyList_SetItem(seen, 0, count);
    return out;
fail:
    Py_XDECREF(out);
    Py_XDECREF(count);
    return NULL;
}

/* ---- serve: the overseer's common case (Overseer._read + _reconcile are the reference) ---- */

enum { PCX_OV, PCX_KILL, PCX_ADOPT, PCX_BY_KEY, PCX_TERMS, PCX_HELD_BY, PCX_KEY_IDS, PCX_CHECK, PCX_TRACK, PCX_TERMINAL,
       PCX_FLAGS, PCX_NEW, PCX_AMEND, PCX_N };
#define DECLINE ((PyObject *)1) /* internal: not the common case, nothing done */

/* 1 if a == b, 0 if not, -1 on an error. */
static inline int obj_eq(PyObject *a, PyObject *b) { return PyObject_RichCompareBool(a, b, Py_EQ); }

/* What the C check (_risk.Risk.check) answered: 0 passed, 1 refused, -1 the reference decides. */
static inline int refused(PyObject *why) {
    long w = PyLong_Check(why) ? PyLong_AsLong(why) : -1;
    return w < 0 ? -1 : w > 0; /* (an error: -1, cleared with the decline) */
}

/* The decision for slot st read as (v, msg, origin, model) when it is the common case: DECLINE, or
 * Py_False (nothing to send; *placed_too: the order already matches, so o.version and st.placed
 * become v), the check's refusal (an int) or the request's fields (a new reference).  No side
 * effect. */
static PyObject *serve_decide(PyObject **cx, PyObject *st, PyObject *v, PyObject *msg, PyObject *model,
                              PyObject *now, PyObject **order, int *placed_too) {
    PyObject *res = DECLINE, *o = NULL, *x = NULL, *y = NULL, *z = NULL, *t = NULL, *venue = NULL, *done = NULL,
             *size = NULL, *mine = NULL, *why = NULL, *nid = NULL, *flags = NULL;
    int r;
    *order = NULL, *placed_too = 0;
    if (PyDict_GET_SIZE(cx[PCX_ADOPT])) return DECLINE; /* orders from before a restart wait for their slots */
    if (!PyTuple_Check(msg) || PyTuple_GET_SIZE(msg) != 5) return DECLINE; /* no ideal (None): cancel or clear */
    PyObject *price = PyTuple_GET_ITEM(msg, 0), *isize = PyTuple_GET_ITEM(msg, 1),
             *iid = PyTuple_GET_ITEM(msg, 2), *side = PyTuple_GET_ITEM(msg, 3), *iflags = PyTuple_GET_ITEM(msg, 4);
    if (!PyLong_Check(isize) || _PyLong_Sign(isize) <= 0) return DECLINE; /* size 0: no order wanted */
    if (!(x = attr_get(cx[PCX_KILL], PA_REASON))) return NULL;
    r = PyObject_IsTrue(x);
    Py_CLEAR(x);
    if (r) return r < 0 ? NULL : DECLINE; /* killed */
    if (!(o = attr_get(st, PA_ORDER))) return NULL;
    if (o == Py_None) { /* no order: a NEW, unless this write was placed already */
        if (!(x = attr_get(st, PA_PLACED))) goto fail;
        if ((r = obj_eq(x, v)) < 0) goto fail;
        if (r) {
            res = Py_False;
            goto done;
        }
        if (!(flags = PyNumber_And(iflags, cx[PCX_FLAGS]))) goto fail;
        PyObject *args[10] = {iid, side, price, isize, k_zero, k_zero, k_minus1, k_zero, k_zero, now};
        if (!(why = PyObject_Vectorcall(cx[PCX_CHECK], args, 10, NULL))) goto fail;
        if ((r = refused(why)) < 0) goto decline; /* the reference check decides */
        if (r) {
            res = Py_NewRef(why);
            goto done;
        }
        Py_CLEAR(x);
        if (!(x = attr_get(cx[PCX_OV], PA_NEXT_ID))) goto fail;
        if (!(nid = PyNumber_Add(x, k_one))) goto fail;
        if (!(z = attr_get(st, PA_INDEX))) goto fail;
        res = PyTuple_Pack(10, nid, k_zero, price, isize, iid, model, z, cx[PCX_NEW], side, flags);
        goto done;
    }
    if (!(x = attr_get(o, PA_STATUS))) goto fail;
    if ((r = PySet_Contains(cx[PCX_TERMINAL], x)) < 0) goto fail;
    if (r) goto decline; /* finished: the slot is free */
    Py_CLEAR(x);
    if (!(x = attr_get(o, PA_PENDING))) goto fail;
    if ((r = PyObject_IsTrue(x)) < 0) goto fail;
    if (r) { /* wait for the venue's answer */
        res = Py_False;
        goto done;
    }
    Py_CLEAR(x);
    if (!(x = attr_get(o, PA_VERSION))) goto fail;
    if ((r = obj_eq(x, v)) < 0) goto fail;
    if (r) {
        res = Py_False;
        goto done;
    }
    Py_CLEAR(x);
#define SAME(A, mine_)                           \
    do {                                         \
        Py_CLEAR(x);                             \
        if (!(x = attr_get(o, A))) goto fail;    \
        if ((r = obj_eq(mine_, x)) < 0) goto fail; \
        if (!r) goto decline;                    \
    } while (0)
    SAME(PA_INSTRUMENT, iid);
    SAME(PA_SIDE, side);
    if (!(flags = PyNumber_And(iflags, cx[PCX_FLAGS]))) goto fail;
    SAME(PA_FLAGS, flags); /* another order wanted: cancel, then the NEW */
    Py_CLEAR(x);
    if (!(x = attr_get(o, PA_FILLED)) || !(y = attr_get(o, PA_FILL_QTY))) goto fail;
    if ((r = PyObject_RichCompareBool(x, y, Py_GT)) < 0) goto fail;
    done = r ? x : y;
    Py_INCREF(done);
    Py_CLEAR(x);
    Py_CLEAR(y);
    if (!(x = attr_get(o, PA_PRICE))) goto fail;
    if ((r = obj_eq(price, x)) < 0) goto fail;
    if (r) {
        Py_CLEAR(x);
        if (!(x = attr_get(o, PA_SIZE)) || !(y = PyNumber_Subtract(x, done))) goto fail;
        if ((r = obj_eq(isize, y)) < 0) goto fail;
        if (r) { /* as placed: this write is served by it */
            *placed_too = 1;
            res = Py_False;
            goto done;
        }
        Py_CLEAR(y);
    }
    Py_CLEAR(x);
    if (!(x = attr_get(o, PA_INSTRUMENT))) goto fail;
    t = PyDict_GetItemWithError(cx[PCX_TERMS], x); /* borrowed */
    if (!t) {
        if (PyErr_Occurred()) goto fail;
        goto decline; /* terms not made yet: the reference makes them */
    }
    if (!(venue = attr_get(t, PA_VENUE))) goto fail;
    if (venue == Py_None) goto decline;
    Py_CLEAR(y);
    if (!(y = attr_get(venue, PA_AMEND))) goto fail;
    if ((r = PyObject_IsTrue(y)) < 0) goto fail;
    if (!r) goto decline; /* no amend there: cancel, then the NEW */
    Py_CLEAR(y);
    if (!(y = attr_get(o, PA_NO_AMEND))) goto fail;
    if ((r = PyObject_IsTrue(y)) < 0) goto fail;
    if (r) goto decline;
    Py_CLEAR(y);
    if (!(size = PyNumber_Add(done, isize))) goto fail;
    PyObject *oid = NULL, *fill = NULL;
    if (!(z = attr_get(o, PA_ORDER_ID))) goto fail;
    oid = z;
    mine = PyDict_GetItemWithError(cx[PCX_HELD_BY], oid); /* borrowed: (instrument, side, qty, key, held) */
    if (!mine && PyErr_Occurred()) goto fail;
    if (!(y = attr_get(o, PA_FILL_QTY))) goto fail;
    fill = y;
    PyObject *args[10] = {x, side, price, size, k_zero, k_zero, NULL, k_zero, fill, now};
    PyObject *kid = NULL;
    if (mine) {
        if (!PyTuple_Check(mine) || PyTuple_GET_SIZE(mine) != 5) goto decline;
        kid = PyDict_GetItemWithError(cx[PCX_KEY_IDS], PyTuple_GET_ITEM(mine, 3));
        if (!kid && PyErr_Occurred()) goto fail;
        args[4] = PyTuple_GET_ITEM(mine, 1), args[5] = PyTuple_GET_ITEM(mine, 2), args[7] = PyTuple_GET_ITEM(mine, 4);
    }
    args[6] = kid ? kid : k_minus1;
    if (!(why = PyObject_Vectorcall(cx[PCX_CHECK], args, 10, NULL))) goto fail;
    if ((r = refused(why)) < 0) goto decline;
    if (r) {
        res = Py_NewRef(why);
        goto done;
    }
    PyObject *nx = attr_get(cx[PCX_OV], PA_NEXT_ID);
    if (!nx) goto fail;
    nid = PyNumber_Add(nx, k_one);
    Py_DECREF(nx);
    if (!nid) goto fail;
    PyObject *om = attr_get(o, PA_ORDER_MODEL), *os = om ? attr_get(o, PA_SLOT) : NULL;
    if (!os) {
        Py_XDECREF(om);
        goto fail;
    }
    res = PyTuple_Pack(10, nid, oid, price, size, x, om, os, cx[PCX_AMEND], side, flags);
    Py_DECREF(om), Py_DECREF(os);
    goto done;
decline:
    res = DECLINE;
done:
    if (!res) goto fail;
    if (res == Py_False) Py_INCREF(res);
    if (res != DECLINE) *order = (Py_INCREF(o), o);
    Py_XDECREF(o), Py_XDECREF(x), Py_XDECREF(y), Py_XDECREF(z), Py_XDECREF(venue), Py_XDECREF(done);
    Py_XDECREF(size), Py_XDECREF(why), Py_XDECREF(nid), Py_XDECREF(flags);
    PyErr_Clear(); /* a decline from a value the check cannot take leaves nothing behind */
    return res;
fail:
    Py_XDECREF(o), Py_XDECREF(x), Py_XDECREF(y), Py_XDECREF(z), Py_XDECREF(venue), Py_XDECREF(done);
    Py_XDECREF(size), Py_XDECREF(why), Py_XDECREF(nid), Py_XDECREF(flags);
    return NULL;
#undef SAME
}

static PyObject *Port_serve(Port *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "serve(ctx, item, now)");
        return NULL;
    }
    if (self->array) {
        PyErr_SetString(PyExc_TypeError, "serve: this port is an array's");
        return NULL;
    }
    if (attrs_ready() < 0) return NULL;
    PyObject *ctx = args[0], *item = args[1], *now = args[2];
    if (!PyTuple_Check(ctx) || PyTuple_GET_SIZE(ctx) != PCX_N || !PyDict_Check(PyTuple_GET_ITEM(ctx, PCX_ADOPT)) ||
        !PyDict_Check(PyTuple_GET_ITEM(ctx, PCX_BY_KEY)) || !PyDict_Check(PyTuple_GET_ITEM(ctx, PCX_TERMS)) ||
        !PyDict_Check(PyTuple_GET_ITEM(ctx, PCX_HELD_BY)) || !PyDict_Check(PyTuple_GET_ITEM(ctx, PCX_KEY_IDS)) ||
        !PyAnySet_Check(PyTuple_GET_ITEM(ctx, PCX_TERMINAL))) {
        PyErr_SetString(PyExc_TypeError, "serve: ctx is the overseer's (Overseer._serve_ctx)");
        return NULL;
    }
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 5) {
        PyErr_SetString(PyExc_TypeError, "serve: item is (slot, version, msg, origin, publisher)");
        return NULL;
    }
    if (PyTuple_GET_ITEM(item, 1) == Py_None) Py_RETURN_NONE; /* a slot to redo, not written: the Python's */
    Writer *w = (Writer *)self->target;
    OPEN(&w->m, NULL);
    PyObject **cx = &PyTuple_GET_ITEM(ctx, 0);
    PyObject *st = PyTuple_GET_ITEM(item, 0), *v = PyTuple_GET_ITEM(item, 1), *msg = PyTuple_GET_ITEM(item, 2),
             *origin = PyTuple_GET_ITEM(item, 3), *model = PyTuple_GET_ITEM(item, 4), *o;
    int placed_too;
    PyObject *res = serve_decide(cx, st, v, msg, model, now, &o, &placed_too);
    if (res == DECLINE) Py_RETURN_NONE;
    if (!res) return NULL;
    char buf[self->payload + 1];
    if (PyTuple_Check(res) && pack_fields(self, res, buf) < 0) { /* the reference's send raises it */
        PyErr_Clear();
        Py_DECREF(res), Py_DECREF(o);
        Py_RETURN_NONE;
    }
    /* Overseer._read: the slot takes the write in */
    PyObject *key = NULL, *index = attr_get(st, PA_INDEX);
    int bad = !index || attr_set(st, PA_SEEN, v) < 0 || attr_set(st, PA_ORIGIN, origin) < 0 ||
              attr_set(st, PA_MODEL, model) < 0 || attr_set(st, PA_IDEAL, msg) < 0 ||
              !(key = PyTuple_Pack(2, model, index)) || PyDict_SetItem(cx[PCX_BY_KEY], key, st) < 0 ||
              attr_set(cx[PCX_TRACK], PA_TRACK_ORIGIN, origin) < 0; /* requests carry the ideal's origin */
    Py_XDECREF(index), Py_XDECREF(key);
    if (!bad && placed_too)
        bad = attr_set(o, PA_VERSION, v) < 0 || attr_set(st, PA_PLACED, v) < 0;
    Py_DECREF(o);
    if (bad) {
        Py_DECREF(res);
        return NULL;
    }
    if (!PyTuple_Check(res)) return res; /* nothing to send, or refused */
    if (attr_set(cx[PCX_OV], PA_NEXT_ID, PyTuple_GET_ITEM(res, 0)) < 0) {
        Py_DECREF(res);
        return NULL;
    }
    uint64_t org, t;
    if (stamps(self, &org, &t) < 0) {
        Py_DECREF(res);
        return NULL;
    }
    ring_write(&w->m, org, t, self->publisher, buf, self->payload, 0);
    activity++;
    self->sent++;
    return res;
}

static PyObject *Port_quote(Port *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 6 || nargs > 7) {
        PyErr_SetString(PyExc_TypeError, "quote(written, slot, instrument, side, price, size, flags=0)");
        return NULL;
    }
    if (self->nfields != 5) {
        PyErr_SetString(PyExc_TypeError, "quote: this port's messages are not IdealOrders");
        return NULL;
    }
    if (attrs_ready() < 0) return NULL;
    PyObject *written = args[0], *slot = args[1];
    PyObject *msg = PyTuple_Pack(5, args[4], args[5], args[2], args[3], nargs > 6 ? args[6] : k_zero);
    if (!msg) return NULL;
    PyObject *w = PyObject_GetItem(written, slot);
    int same = w ? PyObject_RichCompareBool(w, msg, Py_EQ) : -1;
    Py_XDECREF(w);
    if (same) { /* equal (nothing to write) or an error (its exception) */
        Py_DECREF(msg);
        return same < 0 ? NULL : Py_NewRef(Py_False);
    }
    /* as the reference: remembered first, then written (a value the slot refuses raises) */
    int rc = PyObject_SetItem(written, slot, msg);
    uint64_t i, origin, now;
    char buf[self->payload + 1];
    if (rc < 0 || array_index(self, slot, &i) < 0 || pack_fields(self, msg, buf) < 0 ||
        stamps(self, &origin, &now) < 0) {
        Py_DECREF(msg);
        return NULL;
    }
    Py_DECREF(msg);
    self->sent++;
    array_put((Array *)self->target, i, origin, now, self->publisher, buf, self->payload);
    return Py_NewRef(Py_True);
}

static PyObject *Port_get_sent(Port *self, void *c) { return PyLong_FromUnsignedLongLong(self->sent); }

static PyMethodDef Port_methods[] = {
    {"send", (PyCFunction)Port_send, METH_O, "send(msg) -> seq: publish msg's fields, tracked"},
    {"write", (PyCFunction)(void (*)(void))Port_write, METH_FASTCALL, "write(index, msg) -> version, tracked"},
    {"put", (PyCFunction)(void (*)(void))Port_put, METH_FASTCALL, "put(index, msg, origin, publisher, now=0) -> version"},
    {"quote", (PyCFunction)(void (*)(void))Port_quote, METH_FASTCALL,
     "quote(written, slot, instrument, side, price, size, flags=0) -> bool: TradeModel.quote in one call"},
    {"latest", (PyCFunction)Port_latest, METH_O, "latest(index) -> (version, msg or None, origin, publisher)"},
    {"changed", (PyCFunction)(void (*)(void))Port_changed, METH_FASTCALL,
     "changed(seen, tags=None) -> [(tag, version, msg or None, origin, publisher)] of the slots written since seen"},
    {"serve", (PyCFunction)(void (*)(void))Port_serve, METH_FASTCALL,
     "serve(ctx, item, now) -> None (declined), False, a refusal or the request published: the overseer's common case"},
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
