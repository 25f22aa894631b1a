/* Lane: a feed's common frame, from text to published L2Updates, in one C call.
 *
 * Included by _spine.c (it uses the Book, the Port and the ring writer there).  A venue protocol
 * that has one (``VenueProtocol.fast_lane``) hands it each text frame before its Python path:
 * ``lane.take(text, ts)`` either handles the frame whole (True: the book is updated, the levels are
 * published on the feed's l2 port with ``ts`` as their origin, the protocol's counters moved) or
 * touches nothing (False: the protocol's ``on_frame`` runs, the reference that defines the
 * semantics and handles everything else).  A hypothesis test holds the two paths equal.
 *
 * What it takes, Coinbase Advanced Trade ``l2_data`` (the one venue so far):
 *   {"channel":"l2_data","timestamp":"<RFC 3339 UTC>","sequence_num":N,
 *    "events":[{"type":"update","product_id":P,"updates":[{"side":S,"price_level":X,"new_quantity":Q},...]}]}
 * keys in any order, other keys skipped (validated as JSON); exactly one event, of a product of
 * this lane whose snapshot came (``iid in proto._synced``), N the connection's next sequence
 * number, while no snapshot is being flagged (the feed's ``snap`` is empty), on a book with no
 * depth limit, every level a plain decimal at the instrument's scales.  Anything else, escapes
 * in any string included, is declined: declining is always safe.
 *
 *   Lane(proto, port, track, snap, books)   books: [(product, iid, Book, price_scale, size_scale, stats)]
 */

#include "_decimal.h"

#define LANE_LEVELS (1 << 20) /* levels per frame taken here (a bigger update goes the Python way) */
#define LANE_DEPTH 32   /* JSON nesting skipped here */

typedef struct {
    const char *s; /* the product id (the tuple's str keeps it alive) */
    Py_ssize_t n;
    uint32_t iid;
    long ps, ss;
    PyObject *iid_obj, *stats;
    Book *book;
} LaneBook;

typedef struct {
    PyObject_HEAD PyObject *proto, *port, *track, *snap, *books_arg;
    LaneBook *books;
    Py_ssize_t nbooks;
    uint64_t handled;
    struct LaneLevel *lv; /* a frame's levels, grown as frames need */
    int cap;
} Lane;

typedef struct {
    const char *p, *end;
} Cur;

typedef struct {
    const char *s;
    Py_ssize_t n;
} Span;

static PyObject *s_seq, *s_frames, *s_last_ts, *s_synced, *s_messages, *s_check_crossed;

static inline void jws(Cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static inline int jeat(Cur *c, char ch) {
    jws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A string without escapes or control characters (anything else: declined). */
static int jstr(Cur *c, Span *out) {
    jws(c);
    if (c->p >= c->end || *c->p != '"') return 0;
    const char *s = ++c->p;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') {
            out->s = s, out->n = c->p - s;
            c->p++;
            return 1;
        }
        if (ch == '\\' || ch < 0x20) return 0;
        c->p++;
    }
    return 0;
}

static inline int jdigit(Cur *c) { return c->p < c->end && *c->p >= '0' && *c->p <= '9'; }

/* A JSON number, strictly (RFC 8259); *integral: no fraction or exponent. */
static int jnum(Cur *c, int *integral) {
    jws(c);
    if (c->p < c->end && *c->p == '-') c->p++;
    if (!jdigit(c)) return 0;
    if (*c->p == '0') c->p++;
    else
        while (jdigit(c)) c->p++;
    *integral = 1;
    if (c->p < c->end && *c->p == '.') {
        c->p++, *integral = 0;
        if (!jdigit(c)) return 0;
        while (jdigit(c)) c->p++;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++, *integral = 0;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) c->p++;
        if (!jdigit(c)) return 0;
        while (jdigit(c)) c->p++;
    }
    return 1;
}

/* A non-negative JSON integer within int64. */
static int jint(Cur *c, int64_t *v) {
    jws(c);
    const char *s = c->p;
    int integral;
    if (!jnum(c, &integral) || !integral || *s == '-' || c->p - s > 18) return 0; /* 18 digits: no overflow */
    int64_t x = 0;
    for (; s < c->p; s++) x = x * 10 + (*s - '0');
    *v = x;
    return 1;
}

static int jskip(Cur *c, int depth);

/* Past "{...}" or "[...]" (the opening character already taken), every member validated. */
static int jmembers(Cur *c, int depth, char close, int keyed) {
    if (depth > LANE_DEPTH) return 0;
    if (jeat(c, close)) return 1;
    do {
        Span k;
        if (keyed && (!jstr(c, &k) || !jeat(c, ':'))) return 0;
        if (!jskip(c, depth + 1)) return 0;
    } while (jeat(c, ','));
    return jeat(c, close);
}

static int jlit(Cur *c, const char *w, Py_ssize_t n) {
    if (c->end - c->p < n || memcmp(c->p, w, (size_t)n)) return 0;
    c->p += n;
    return 1;
}

static int jskip(Cur *c, int depth) {
    jws(c);
    if (c->p >= c->end) return 0;
    int integral;
    Span s;
    switch (*c->p) {
    case '"': return jstr(c, &s);
    case '{': c->p++; return jmembers(c, depth, '}', 1);
    case '[': c->p++; return jmembers(c, depth, ']', 0);
    case 't': return jlit(c, "true", 4);
    case 'f': return jlit(c, "false", 5);
    case 'n': return jlit(c, "null", 4);
    default: return jnum(c, &integral);
    }
}

static inline int jis(Span k, const char *w) { return k.n == (Py_ssize_t)strlen(w) && !memcmp(k.s, w, (size_t)k.n); }

typedef struct LaneLevel {
    int side; /* 1 bid, -1 ask */
    Span price, size;
    int64_t p, q;
} LaneLevel;

/* {"side":..., "price_level":..., "new_quantity":..., ...}: CoinbaseProtocol's L2Update. */
static int cb_update(Cur *c, LaneLevel *lv) {
    if (!jeat(c, '{')) return 0;
    Span side = {0}, k;
    int seen = 0; /* bits: side, price, size (a key twice: declined) */
    if (jeat(c, '}')) return 0;
    do {
        if (!jstr(c, &k) || !jeat(c, ':')) return 0;
        int bit = jis(k, "side") ? 1 : jis(k, "price_level") ? 2 : jis(k, "new_quantity") ? 4 : 0;
        if (bit & seen) return 0;
        seen |= bit;
        if (bit == 1 ? !jstr(c, &side) : bit == 2 ? !jstr(c, &lv->price) : bit == 4 ? !jstr(c, &lv->size)
                     : !jskip(c, 2))
            return 0;
    } while (jeat(c, ','));
    if (!jeat(c, '}') || seen != 7) return 0;
    /* the protocol's _SIDES */
    if (jis(side, "bid") || jis(side, "buy")) lv->side = 1;
    else if (jis(side, "offer") || jis(side, "ask") || jis(side, "sell")) lv->side = -1;
    else return 0;
    return 1;
}

/* [{"type":"update","product_id":...,"updates":[...]}]: exactly one event, an update. */
static int cb_events(Lane *lane, Cur *c, Span *product, int *nlv) {
    if (!jeat(c, '[') || !jeat(c, '{') || jeat(c, '}')) return 0;
    Span k, type = {0};
    int seen = 0;
    do {
        if (!jstr(c, &k) || !jeat(c, ':')) return 0;
        int bit = jis(k, "type") ? 1 : jis(k, "product_id") ? 2 : jis(k, "updates") ? 4 : 0;
        if (bit & seen) return 0;
        seen |= bit;
        if (bit == 1 || bit == 2) {
            if (!jstr(c, bit == 1 ? &type : product)) return 0;
        } else if (bit == 4) {
            int n = 0;
            if (!jeat(c, '[') || jeat(c, ']')) return 0; /* no levels: the Python way */
            do {
                if (n == lane->cap) { /* more room (a failure only declines the frame) */
                    int cap = lane->cap ? 2 * lane->cap : 64;
                    LaneLevel *more = cap <= LANE_LEVELS ? PyMem_Realloc(lane->lv, (size_t)cap * sizeof(LaneLevel)) : NULL;
                    if (!more) return 0;
                    lane->lv = more, lane->cap = cap;
                }
                if (!cb_update(c, &lane->lv[n++])) return 0;
            } while (jeat(c, ','));
            if (!jeat(c, ']')) return 0;
            *nlv = n;
        } else if (!jskip(c, 2))
            return 0;
    } while (jeat(c, ','));
    return jeat(c, '}') && jeat(c, ']') && seen == 7 && jis(type, "update");
}

/* rfc3339_ns (venues/coinbase/protocol.py) for "YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z", strictly. */
static int rfc3339(Span t, int64_t *out) {
    const char *s = t.s;
    if (t.n < 20 || s[t.n - 1] != 'Z' || (s[10] != 'T' && s[10] != ' ') || s[4] != '-' || s[7] != '-' ||
        s[13] != ':' || s[16] != ':')
        return 0;
    static const int at[6] = {0, 5, 8, 11, 14, 17}, len[6] = {4, 2, 2, 2, 2, 2};
    int64_t f[6];
    for (int i = 0; i < 6; i++) {
        int64_t v = 0;
        for (int j = at[i]; j < at[i] + len[i]; j++) {
            if (s[j] < '0' || s[j] > '9') return 0;
            v = v * 10 + (s[j] - '0');
        }
        f[i] = v;
    }
    int64_t y = f[0], m = f[1], frac = 0;
    if (m < 1 || m > 12 || y < 1970) return 0;
    if (t.n > 20) { /* ".f{1,9}Z" */
        Py_ssize_t nd = t.n - 21;
        if (s[19] != '.' || nd < 1 || nd > 9) return 0;
        for (Py_ssize_t j = 20; j < 20 + nd; j++) {
            if (s[j] < '0' || s[j] > '9') return 0;
            frac = frac * 10 + (s[j] - '0');
        }
        frac *= DEC_POW10[9 - nd];
    }
    /* calendar.timegm: the day of the month is added as it is, like every other field */
    y -= m <= 2;
    int64_t era = y / 400, yoe = y - era * 400, mp = (m + 9) % 12;
    int64_t doy = (153 * mp + 2) / 5, doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = era * 146097 + doe - 719468 + f[2] - 1;
    int64_t secs = ((days * 24 + f[3]) * 60 + f[4]) * 60 + f[5];
    if (secs < 0 || secs > INT64_MAX / 1000000000 - 1) return 0;
    *out = secs * 1000000000 + frac;
    return 1;
}

static int Lane_init(Lane *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"proto", "port", "track", "snap", "books", NULL};
    PyObject *proto, *port, *track, *snap, *books;
    if (self->proto) {
        PyErr_SetString(PyExc_TypeError, "Lane is already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO!OO!O!:Lane", names, &proto, &PortType, &port, &track, &PyDict_Type,
                                     &snap, &PyList_Type, &books))
        return -1;
    Port *pt = (Port *)port;
    /* the L2Update layout the records are written in (the dispatcher's offsets) */
    static const uint16_t off[6] = {L2_PRICE, L2_SIZE, L2_PRICE + 16, L2_INSTRUMENT, L2_SIDE, L2_FLAGS};
    static const char code[6] = {'q', 'q', 'q', 'I', 'b', 'B'};
    int ok = !pt->array && pt->nfields == 6 && !pt->clock;
    for (int i = 0; ok && i < 6; i++) ok = pt->off[i] == off[i] && pt->code[i] == code[i];
    if (!ok) {
        PyErr_SetString(PyExc_TypeError, "Lane: the port must publish L2Update on a ring, in real time");
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(books);
    self->books = PyMem_Calloc(n ? (size_t)n : 1, sizeof(LaneBook));
    if (!self->books) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(books, i), *name, *iid, *book, *stats;
        long ps, ss;
        unsigned long v;
        if (!PyTuple_Check(t) || !PyArg_ParseTuple(t, "UO!O!llO", &name, &PyLong_Type, &iid, &BookType, &book, &ps,
                                                   &ss, &stats))
            return -1;
        v = PyLong_AsUnsignedLong(iid);
        if (PyErr_Occurred() || v > UINT32_MAX || ps < 0 || ps > 18 || ss < 0 || ss > 18 || !PyUnicode_IS_ASCII(name)) {
            PyErr_Format(PyExc_ValueError, "Lane: bad book %R", t);
            return -1;
        }
        LaneBook *b = &self->books[i];
        b->s = (const char *)PyUnicode_DATA(name), b->n = PyUnicode_GET_LENGTH(name);
        b->iid = (uint32_t)v, b->ps = ps, b->ss = ss, b->iid_obj = iid, b->stats = stats, b->book = (Book *)book;
    }
    self->nbooks = n;
    Py_INCREF(books), self->books_arg = books; /* keeps every name, iid, book and stats alive */
    Py_INCREF(proto), self->proto = proto;
    Py_INCREF(port), self->port = port;
    Py_INCREF(track), self->track = track;
    Py_INCREF(snap), self->snap = snap;
    return 0;
}

static int Lane_traverse(Lane *self, visitproc visit, void *arg) {
    Py_VISIT(self->proto);
    Py_VISIT(self->port);
    Py_VISIT(self->track);
    Py_VISIT(self->snap);
    Py_VISIT(self->books_arg);
    return 0;
}

static int Lane_clear(Lane *self) {
    Py_CLEAR(self->proto);
    Py_CLEAR(self->port);
    Py_CLEAR(self->track);
    Py_CLEAR(self->snap);
    Py_CLEAR(self->books_arg);
    self->nbooks = 0;
    return 0;
}

static void Lane_dealloc(Lane *self) {
    PyObject_GC_UnTrack(self);
    Lane_clear(self);
    PyMem_Free(self->books);
    PyMem_Free(self->lv);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int set_int(PyObject *obj, PyObject *name, int64_t x) {
    PyObject *v = PyLong_FromLongLong(x);
    if (!v) return -1;
    int r = PyObject_SetAttr(obj, name, v);
    Py_DECREF(v);
    return r;
}

/* obj.name += 1 (a counter: an int64) */
static int bump(PyObject *obj, PyObject *name) {
    PyObject *v = PyObject_GetAttr(obj, name);
    if (!v) return -1;
    int64_t x = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred()) return -1;
    return set_int(obj, name, x + 1);
}

static PyObject *Lane_take(Lane *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "take(text, ts)");
        return NULL;
    }
    PyObject *text = args[0];
    if (!self->proto || !PyUnicode_CheckExact(text) || !PyUnicode_IS_ASCII(text)) Py_RETURN_FALSE;
    int64_t ts = PyLong_AsLongLong(args[1]);
    if (ts == -1 && PyErr_Occurred()) return NULL;
    Cur c = {(const char *)PyUnicode_DATA(text), (const char *)PyUnicode_DATA(text) + PyUnicode_GET_LENGTH(text)};

    /* -- parse: nothing is changed before the whole frame is known to be taken */
    int nlv = 0, seen = 0;
    Span k, channel = {0}, stamp = {0}, product = {0}, other;
    int64_t seq = -1;
    if (!jeat(&c, '{') || jeat(&c, '}')) Py_RETURN_FALSE;
    do {
        if (!jstr(&c, &k) || !jeat(&c, ':')) Py_RETURN_FALSE;
        int bit = jis(k, "channel") ? 1 : jis(k, "sequence_num") ? 2 : jis(k, "timestamp") ? 4 : jis(k, "events") ? 8
                  : jis(k, "type") ? 16 : jis(k, "message") ? 32 : 0;
        if (bit & seen) Py_RETURN_FALSE;
        seen |= bit;
        int ok = bit == 1 ? jstr(&c, &channel) : bit == 2 ? jint(&c, &seq) : bit == 4 ? jstr(&c, &stamp)
                 : bit == 8 ? cb_events(self, &c, &product, &nlv) : bit ? jstr(&c, &other) : jskip(&c, 1);
        if (!ok) Py_RETURN_FALSE;
    } while (jeat(&c, ','));
    if (!jeat(&c, '}') || (jws(&c), c.p != c.end) || (seen & 15) != 15 || !jis(channel, "l2_data")) Py_RETURN_FALSE;
    LaneLevel *lv = self->lv;
    LaneBook *b = NULL;
    for (Py_ssize_t i = 0; i < self->nbooks; i++)
        if (self->books[i].n == product.n && !memcmp(self->books[i].s, product.s, (size_t)product.n)) {
            b = &self->books[i];
            break;
        }
    int64_t exch_ts;
    if (!b || b->book->depth || PyDict_GET_SIZE(self->snap) || !rfc3339(stamp, &exch_ts)) Py_RETURN_FALSE;
    for (int i = 0; i < nlv; i++)
        if (!decimal_fixed(lv[i].price.s, lv[i].price.n, b->ps, &lv[i].p) || lv[i].p <= 0 ||
            !decimal_fixed(lv[i].size.s, lv[i].size.n, b->ss, &lv[i].q) || lv[i].q < 0)
            Py_RETURN_FALSE;
    /* the protocol's state: the connection's next message, a book its snapshot made whole */
    PyObject *last = PyObject_GetAttr(self->proto, s_seq);
    if (!last) return NULL;
    int64_t prev = PyLong_AsLongLong(last);
    Py_DECREF(last);
    if (prev == -1 && PyErr_Occurred()) return NULL;
    if (prev < 0 || seq != prev + 1) Py_RETURN_FALSE;
    PyObject *synced = PyObject_GetAttr(self->proto, s_synced);
    if (!synced) return NULL;
    int in = PySet_Check(synced) ? PySet_Contains(synced, b->iid_obj) : -1;
    Py_DECREF(synced);
    if (in < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "Lane: proto._synced must be a set");
        return NULL;
    }
    if (!in) Py_RETURN_FALSE;

    /* -- taken: as on_frame, handle and the feed's publish would do it */
    if (bump(self->proto, s_frames) < 0 || set_int(self->proto, s_last_ts, ts) < 0 ||
        set_int(self->proto, s_seq, seq) < 0)
        return NULL;
    Book *bk = b->book;
    for (int i = 0; i < nlv; i++)
        if (book_apply(bk, lv[i].side, lv[i].p, lv[i].q) < 0) return NULL; /* out of memory only */
    if (bump(b->stats, s_messages) < 0 || set_int(self->track, s_origin, ts) < 0) return NULL;
    Port *pt = (Port *)self->port;
    Writer *w = (Writer *)pt->target;
    OPEN(&w->m, NULL);
    char buf[L2_FLAGS + 1 - TRACK + 8];
    memset(buf, 0, sizeof buf);
    memcpy(buf + L2_PRICE + 16 - TRACK, &exch_ts, 8);
    memcpy(buf + L2_INSTRUMENT - TRACK, &b->iid, 4);
    for (int i = 0; i < nlv; i++) {
        memcpy(buf + L2_PRICE - TRACK, &lv[i].p, 8);
        memcpy(buf + L2_SIZE - TRACK, &lv[i].q, 8);
        buf[L2_SIDE - TRACK] = (char)(int8_t)lv[i].side;
        buf[L2_FLAGS - TRACK] = i == nlv - 1 ? L2_LAST : 0;
        ring_write(&w->m, (uint64_t)ts, 0, pt->publisher, buf, pt->payload, 0);
    }
    activity++;
    pt->sent += (uint64_t)nlv;
    self->handled++;
    if (bk->n[0] && bk->n[1] && bk->lv[0][bk->n[0] - 1].key >= -bk->lv[1][bk->n[1] - 1].key) {
        /* crossed: the protocol counts, flags and resyncs it (its events follow the levels) */
        PyObject *r = PyObject_CallMethodOneArg(self->proto, s_check_crossed, b->iid_obj);
        if (!r) return NULL;
        Py_DECREF(r);
    }
    Py_RETURN_TRUE;
}

static PyObject *Lane_get_handled(Lane *self, void *c) { return PyLong_FromUnsignedLongLong(self->handled); }

static PyMethodDef Lane_methods[] = {
    {"take", (PyCFunction)(void (*)(void))Lane_take, METH_FASTCALL,
     "take(text, ts) -> True if the frame was handled whole here, False if untouched (the Python way)"},
    {NULL}};

static PyGetSetDef Lane_getset[] = {
    {"handled", (getter)Lane_get_handled, NULL, "frames this lane took whole", NULL},
    {NULL}};

static PyTypeObject LaneType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "mantra._spine.Lane",
    .tp_basicsize = sizeof(Lane),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Lane_init,
    .tp_dealloc = (destructor)Lane_dealloc,
    .tp_traverse = (traverseproc)Lane_traverse,
    .tp_clear = (inquiry)Lane_clear,
    .tp_methods = Lane_methods,
    .tp_getset = Lane_getset,
    .tp_doc = "Lane(proto, port, track, snap, books): a feed's common frame in one C call (take)",
};

static int lane_ready(void) {
    s_seq = PyUnicode_InternFromString("_seq");
    s_frames = PyUnicode_InternFromString("frames");
    s_last_ts = PyUnicode_InternFromString("last_ts");
    s_synced = PyUnicode_InternFromString("_synced");
    s_messages = PyUnicode_InternFromString("messages");
    s_check_crossed = PyUnicode_InternFromString("check_crossed");
    if (!s_seq || !s_frames || !s_last_ts || !s_synced || !s_messages || !s_check_crossed) return -1;
    return PyType_Ready(&LaneType);
}

/* text_frames(buf, n, ts, append, max_size, take=None) -> (bytes taken, frames taken by take, their
 * characters): WsClient._direct in C, its reference.  From the start of buf[:n] (a frame boundary),
 * each whole unfragmented, unmasked text frame of at most max_size bytes is decoded and offered to
 * take(text, ts) (a Lane's), else handed to append((text, ts)); once take declines one, every later
 * frame is appended too, so frames keep their order.  It stops at anything else (a control frame,
 * a fragment, a partial frame, text that is not UTF-8), which is the Python path's. */
static PyObject *m_text_frames(PyObject *m, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 5 || nargs > 6) {
        PyErr_SetString(PyExc_TypeError, "text_frames(buf, n, ts, append, max_size, take=None)");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t n = PyLong_AsSsize_t(args[1]);
    long long max_size = PyLong_AsLongLong(args[4]);
    PyObject *ts = args[2], *append = args[3], *take = nargs > 5 && args[5] != Py_None ? args[5] : NULL;
    if (PyErr_Occurred() || n < 0 || n > view.len) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "text_frames: n outside the buffer");
        PyBuffer_Release(&view);
        return NULL;
    }
    const unsigned char *d = view.buf;
    Py_ssize_t i = 0, taken = 0, chars = 0;
    while (n - i >= 2 && d[i] == 0x81 && d[i + 1] < 0x80) { /* FIN + TEXT, unmasked */
        uint64_t ln = d[i + 1];
        Py_ssize_t h = 2;
        if (ln == 126) {
            if (n - i < 4) break;
            ln = (uint64_t)d[i + 2] << 8 | d[i + 3], h = 4;
        } else if (ln == 127) {
            if (n - i < 10) break;
            ln = 0;
            for (int k = 2; k < 10; k++) ln = ln << 8 | d[i + k];
            h = 10;
        }
        if (ln > (uint64_t)max_size || ln > (uint64_t)(n - i - h)) break;
        PyObject *text = PyUnicode_DecodeUTF8((const char *)d + i + h, (Py_ssize_t)ln, NULL);
        if (!text) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) goto fail;
            PyErr_Clear(); /* the Python path drops it, counted and logged */
            break;
        }
        if (take) {
            PyObject *args2[2] = {text, ts};
            PyObject *r = PyObject_Vectorcall(take, args2, 2, NULL);
            int yes = r ? PyObject_IsTrue(r) : -1;
            Py_XDECREF(r);
            if (yes < 0) {
                Py_DECREF(text);
                goto fail;
            }
            if (yes) {
                taken++, chars += PyUnicode_GET_LENGTH(text);
                Py_DECREF(text);
                i += h + (Py_ssize_t)ln;
                continue;
            }
            take = NULL; /* declined: this frame and the rest go the Python way, in order */
        }
        PyObject *item = PyTuple_Pack(2, text, ts);
        Py_DECREF(text);
        if (!item) goto fail;
        PyObject *r = PyObject_CallOneArg(append, item);
        Py_DECREF(item);
        if (!r) goto fail;
        Py_DECREF(r);
        i += h + (Py_ssize_t)ln;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(nnn)", i, taken, chars);
fail:
    PyBuffer_Release(&view);
    return NULL;
}
