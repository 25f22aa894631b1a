/* What the venue protocols need of the C Book (included by _spine.c, inside its Book section).
 *
 * The protocols' reference is mantra.book.L2Book (Python); hypothesis tests hold the two equal.
 *
 *   Book(depth=0)              depth > 0: truncate() keeps the best `depth` levels per side
 *   apply_levels(levels)       a message's [(side, price, size), ...] applied in order with the
 *                              reference's checks (ValueError: negative size, a price outside
 *                              1..int64), then truncated to `depth`: the dropped (side, price)
 *   apply_emit(levels, events, Level, iid, exch_ts)   the same, and the message's Level events
 *                              appended (the reference: venues/base.py emit_levels)
 *   truncate(depth=None)       the dropped (side, price): bids worst first, then asks nearest first
 *   top_prices(side, n), bids, asks (dicts), depth
 *   kraken_checksum(pdiv, sdiv)          Kraken's CRC32 of the top 10 (asks, then bids)
 *   bitfinex_checksum(pscale, sscale)    Bitfinex's signed CRC32 of the top 25, interleaved
 *
 * Checksums are formatted and hashed here from the book's ints, no Python object per level.  The
 * CRC32 is zlib's (reflected 0xEDB88320), slicing by 8 with tables built on first use: a few lines
 * instead of a link against libz (a build dependency its headers would add); Python's zlib module
 * exports no C API to borrow. */

#include <structmember.h> /* PyMemberDef, T_PYSSIZET */

static uint32_t crc_table[8][256];
static int crc_ready;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++) crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
    crc_ready = 1;
}

/* The table's CRC of n bytes from state c (pre- and post-inverted by the caller). */
static uint32_t crc_tables(uint32_t c, const unsigned char *p, size_t n) {
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4); /* little-endian (x86, arm64) */
        memcpy(&hi, p + 4, 4);
        lo ^= c;
        c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^ crc_table[5][(lo >> 16) & 0xFF] ^
            crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
            crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
    }
    while (n--) c = crc_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__)
#include <immintrin.h>
/* Carry-less multiplication folding (Intel, "Fast CRC Computation for Generic Polynomials Using
 * PCLMULQDQ", as zlib's Chromium fork writes it): ~10x the tables on a 1 kB checksum text.
 * n >= 64 and a multiple of 16; c is the running (inverted) state. */
__attribute__((target("pclmul,sse4.1"))) static uint32_t crc_fold(uint32_t c, const unsigned char *p, size_t n) {
    static const uint64_t __attribute__((aligned(16))) k1k2[] = {0x0154442bd4, 0x01c6e41596};
    static const uint64_t __attribute__((aligned(16))) k3k4[] = {0x01751997d0, 0x00ccaa009e};
    static const uint64_t __attribute__((aligned(16))) k5k0[] = {0x0163cd6124, 0x0000000000};
    static const uint64_t __attribute__((aligned(16))) poly[] = {0x01db710641, 0x01f7011641};
    __m128i x0, x1, x2, x3, x4, x5, x6, x7, x8;
    x1 = _mm_loadu_si128((const __m128i *)(p + 0x00));
    x2 = _mm_loadu_si128((const __m128i *)(p + 0x10));
    x3 = _mm_loadu_si128((const __m128i *)(p + 0x20));
    x4 = _mm_loadu_si128((const __m128i *)(p + 0x30));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)c));
    x0 = _mm_load_si128((const __m128i *)k1k2);
    p += 64, n -= 64;
    for (; n >= 64; p += 64, n -= 64) { /* four lanes of 128 bits folded 512 bits ahead */
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x6 = _mm_clmulepi64_si128(x2, x0, 0x00);
        x7 = _mm_clmulepi64_si128(x3, x0, 0x00);
        x8 = _mm_clmulepi64_si128(x4, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x2 = _mm_clmulepi64_si128(x2, x0, 0x11);
        x3 = _mm_clmulepi64_si128(x3, x0, 0x11);
        x4 = _mm_clmulepi64_si128(x4, x0, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), _mm_loadu_si128((const __m128i *)(p + 0x00)));
        x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), _mm_loadu_si128((const __m128i *)(p + 0x10)));
        x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), _mm_loadu_si128((const __m128i *)(p + 0x20)));
        x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), _mm_loadu_si128((const __m128i *)(p + 0x30)));
    }
    x0 = _mm_load_si128((const __m128i *)k3k4); /* the four lanes into one */
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x3), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x4), x5);
    for (; n >= 16; p += 16, n -= 16) {
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, _mm_loadu_si128((const __m128i *)p)), x5);
    }
    x2 = _mm_clmulepi64_si128(x1, x0, 0x10); /* 128 -> 64 bits */
    x3 = _mm_setr_epi32(~0, 0, ~0, 0);
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2);
    x0 = _mm_loadl_epi64((const __m128i *)k5k0);
    x2 = _mm_srli_si128(x1, 4);
    x1 = _mm_and_si128(x1, x3);
    x1 = _mm_xor_si128(_mm_clmulepi64_si128(x1, x0, 0x00), x2);
    x0 = _mm_load_si128((const __m128i *)poly); /* Barrett reduction to 32 bits */
    x2 = _mm_and_si128(x1, x3);
    x2 = _mm_clmulepi64_si128(x2, x0, 0x10);
    x2 = _mm_and_si128(x2, x3);
    x2 = _mm_clmulepi64_si128(x2, x0, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}
static int have_fold;
#endif

/* The running (pre-inverted) CRC c carried over n bytes at p: folded by PCLMUL where the CPU has
 * it, then the tables for the tail. */
static uint32_t crc_update(uint32_t c, const unsigned char *p, size_t n) {
    if (!crc_ready) {
        crc_init();
#if defined(__x86_64__)
        __builtin_cpu_init();
        have_fold = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
#endif
    }
#if defined(__x86_64__)
    if (have_fold && n >= 64) {
        size_t whole = n & ~(size_t)15;
        c = crc_fold(c, p, whole);
        p += whole, n -= whole;
    }
#endif
    return crc_tables(c, p, n);
}

/* zlib.crc32(buf) */
static uint32_t crc32_of(const unsigned char *p, size_t n) { return crc_update(0xFFFFFFFFu, p, n) ^ 0xFFFFFFFFu; }

/* zlib.crc32(b, zlib.crc32(a)): the CRC32 of a then b, without joining them. */
static uint32_t crc32_2(const unsigned char *a, size_t na, const unsigned char *b, size_t nb) {
    return crc_update(crc_update(0xFFFFFFFFu, a, na), b, nb) ^ 0xFFFFFFFFu;
}

/* For tests: the CRC32 the checksums use, of any bytes (zlib.crc32 is its reference). */
static PyObject *m_crc32(PyObject *m, PyObject *arg) {
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) return NULL;
    uint32_t c = crc32_of(b.buf, (size_t)b.len);
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLong(c);
}

/* Decimal text: two digits per table look-up, and a number in independent 8-digit pieces, so the
 * divisions do not form one long chain (which made digit-at-a-time formatting the checksums' cost). */
static const char DIG2[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                           "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                           "8081828384858687888990919293949596979899";

static const uint64_t P10U[20] = {1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL,
                                  10000000ULL, 100000000ULL, 1000000000ULL, 10000000000ULL, 100000000000ULL,
                                  1000000000000ULL, 10000000000000ULL, 100000000000000ULL,
                                  1000000000000000ULL, 10000000000000000ULL, 100000000000000000ULL,
                                  1000000000000000000ULL, 10000000000000000000ULL};

/* Decimal digits of v (1 for 0): from its bit length, no loop. */
static inline int ndigits(uint64_t v) {
    v |= 1; /* 0 has one digit; an odd neighbour never has another count (10**k - 1 is odd) */
    int t = ((64 - __builtin_clzll(v)) * 1233) >> 12; /* 1233 / 4096 ~ log10(2) */
    return t - (v < P10U[t]) + 1;
}

/* v < 10**8 as exactly 8 digits (leading zeros): two independent 4-digit halves. */
static inline void put8(char *o, uint32_t v) {
    uint32_t hi = v / 10000, lo = v % 10000;
    memcpy(o, DIG2 + 2 * (hi / 100), 2);
    memcpy(o + 2, DIG2 + 2 * (hi % 100), 2);
    memcpy(o + 4, DIG2 + 2 * (lo / 100), 2);
    memcpy(o + 6, DIG2 + 2 * (lo % 100), 2);
}

/* v's last 24 digits ending at t + 24, leading zeros down to at least t + 24 - n (n = ndigits(v)
 * or more): as many independent 8-digit pieces as the value needs, each a few multiplications. */
static inline void put24(char *t, uint64_t v, int n) {
    if (n <= 8) {
        put8(t + 16, (uint32_t)v);
        return;
    }
    uint64_t q = v / 100000000u;
    put8(t + 16, (uint32_t)(v - q * 100000000u));
    if (n <= 16) put8(t + 8, (uint32_t)q);
    else put8(t + 8, (uint32_t)(q % 100000000u)), put8(t, (uint32_t)(q / 100000000u));
}

/* str(v) for v >= 0; returns the end.  Writes up to 24 bytes from o (the callers' buffers have
 * the slack): fixed-size copies compile to a few moves, a variable one to a call. */
static inline char *put_uint(char *o, uint64_t v) {
    char t[48];
    int n = ndigits(v);
    put24(t, v, n);
    memcpy(o, t + 24 - n, 24);
    return o + n;
}

/* fixed.from_fixed(v, scale) for v >= 0: "12.5" (trailing zeros and a bare "." dropped).  The
 * digits are written once and the point placed among them: no division by 10**scale (a 64-bit
 * divide per number was most of a Bitfinex checksum).  Writes up to 24 bytes from o, as above. */
static inline char *put_fixed(char *o, uint64_t v, int scale) {
    char t[48];
    int n = ndigits(v), w = n > scale ? n : scale + 1; /* at least one whole digit */
    put24(t, v, w);
    const char *digits = t + 24 - w; /* w <= 20 */
    int whole = w - scale, d = w;
    while (d > whole && digits[d - 1] == '0') d--;
    memcpy(o, digits, 24);
    o += whole;
    if (d > whole) {
        *o++ = '.';
        memcpy(o, digits + whole, 24);
        o += d - whole;
    }
    return o;
}

static int Book_init(Book *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"depth", NULL};
    Py_ssize_t depth = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|n:Book", names, &depth)) return -1;
    if (depth < 0) {
        PyErr_Format(PyExc_ValueError, "depth must be >= 0, got %zd", depth);
        return -1;
    }
    self->depth = depth;
    return 0;
}

/* L2Book.apply's checks, then book_apply. */
static int checked_apply(Book *b, PyObject *side_o, PyObject *price_o, PyObject *size_o) {
    int s, ovf;
    if (side_arg(side_o, &s) < 0) return -1;
    long long price = PyLong_AsLongLongAndOverflow(price_o, &ovf);
    if (price == -1 && PyErr_Occurred()) return -1;
    if (ovf || price <= 0) {
        PyErr_Format(PyExc_ValueError, "price %R outside 1..int64", price_o);
        return -1;
    }
    long long size = PyLong_AsLongLongAndOverflow(size_o, &ovf);
    if (size == -1 && PyErr_Occurred()) return -1;
    if (ovf) { /* the reference takes any size; an int64 book cannot, nor can the message field */
        PyErr_Format(PyExc_ValueError, "size %R outside int64", size_o);
        return -1;
    }
    return book_apply(b, s ? -1 : 1, price, size);
}

/* Drop levels beyond depth per side into out (a list of (side, price)), L2Book.truncate's order. */
static int truncate_to(Book *b, Py_ssize_t depth, PyObject *out) {
    if (depth <= 0) return 0;
    for (int s = 0; s < 2; s++) {
        Py_ssize_t cut = b->n[s] - depth;
        if (cut <= 0) continue;
        Level *a = b->lv[s];
        for (Py_ssize_t k = 0; k < cut; k++) {
            /* bids: lowest price first (a[0] up); asks: nearest first (keys are -price: a[cut-1] down) */
            int64_t key = s ? a[cut - 1 - k].key : a[k].key;
            PyObject *t = Py_BuildValue("(iL)", s ? -1 : 1, (long long)(s ? -key : key));
            if (!t || PyList_Append(out, t) < 0) {
                Py_XDECREF(t);
                return -1;
            }
            Py_DECREF(t);
        }
        memmove(a, a + cut, (size_t)depth * sizeof(Level));
        b->n[s] = depth;
        if (b->watch.on) b->watch.hit = 1; /* levels dropped: a watcher must look */
        if (depth < TOP_TRACKED) b->ver[s]++; /* levels went from within the best TOP_TRACKED */
    }
    return 0;
}

static PyObject *Book_truncate(Book *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "truncate(depth=None)");
        return NULL;
    }
    Py_ssize_t depth = self->depth;
    if (nargs && args[0] != Py_None) {
        depth = PyLong_AsSsize_t(args[0]);
        if (depth == -1 && PyErr_Occurred()) return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out && truncate_to(self, depth, out) < 0) Py_CLEAR(out);
    return out;
}

static PyObject *Book_apply_levels(Book *self, PyObject *levels) {
    PyObject *seq = PySequence_Fast(levels, "levels must be a sequence of (side, price, size)");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *lv = items[i];
        if (!PyTuple_CheckExact(lv) || PyTuple_GET_SIZE(lv) != 3) {
            PyErr_Format(PyExc_ValueError, "a level must be a (side, price, size) tuple, not %R", lv);
            goto fail;
        }
        if (checked_apply(self, PyTuple_GET_ITEM(lv, 0), PyTuple_GET_ITEM(lv, 1), PyTuple_GET_ITEM(lv, 2)) < 0)
            goto fail;
    }
    Py_DECREF(seq);
    PyObject *out = PyList_New(0);
    if (out && truncate_to(self, self->depth, out) < 0) Py_CLEAR(out);
    return out;
fail:
    Py_DECREF(seq);
    return NULL;
}

/* cls(iid, side, price, size, last, exch_ts), cls a tuple subclass (venues.events.Level). */
static PyObject *level_event(PyTypeObject *cls, PyObject *iid, PyObject *side, PyObject *price, PyObject *size,
                             int last, PyObject *ts) {
    PyObject *e = cls->tp_alloc(cls, 6);
    if (!e) return NULL;
    PyObject *items[6] = {iid, side, price, size, last ? Py_True : Py_False, ts};
    for (int k = 0; k < 6; k++) Py_INCREF(items[k]), PyTuple_SET_ITEM(e, k, items[k]);
    return e;
}

static int append_new(PyObject *list, PyObject *item) {
    if (!item) return -1;
    int r = PyList_Append(list, item);
    Py_DECREF(item);
    return r;
}

/* apply_emit(levels, events, Level, iid, exch_ts) -> dropped: apply_levels, then append the
 * message's events as VenueProtocol.apply_levels' reference does in Python: a Level per level in
 * order, then a deletion per dropped level, the final one last=True. */
static PyObject *Book_apply_emit(Book *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyList_Check(args[1]) || !PyType_Check(args[2]) ||
        !PyType_IsSubtype((PyTypeObject *)args[2], &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "apply_emit(levels, events: list, Level: a tuple type, iid, exch_ts)");
        return NULL;
    }
    PyObject *events = args[1], *iid = args[3], *ts = args[4];
    PyTypeObject *cls = (PyTypeObject *)args[2];
    PyObject *dropped = Book_apply_levels(self, args[0]);
    if (!dropped) return NULL;
    PyObject *seq = PySequence_Fast(args[0], "levels"); /* a list or tuple already accepted */
    if (!seq) goto fail;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), nd = PyList_GET_SIZE(dropped);
    PyObject **lv = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = lv[i];
        if (append_new(events, level_event(cls, iid, PyTuple_GET_ITEM(t, 0), PyTuple_GET_ITEM(t, 1),
                                           PyTuple_GET_ITEM(t, 2), !nd && i == n - 1, ts)) < 0)
            goto fail_seq;
    }
    if (n) { /* the reference emits the dropped levels only after a message's own */
        PyObject *zero = PyLong_FromLong(0);
        if (!zero) goto fail_seq;
        for (Py_ssize_t i = 0; i < nd; i++) {
            PyObject *d = PyList_GET_ITEM(dropped, i);
            if (append_new(events, level_event(cls, iid, PyTuple_GET_ITEM(d, 0), PyTuple_GET_ITEM(d, 1), zero,
                                               i == nd - 1, ts)) < 0) {
                Py_DECREF(zero);
                goto fail_seq;
            }
        }
        Py_DECREF(zero);
    }
    Py_DECREF(seq);
    return dropped;
fail_seq:
    Py_DECREF(seq);
fail:
    Py_DECREF(dropped);
    return NULL;
}

static PyObject *Book_top_prices(Book *self, PyObject *const *args, Py_ssize_t nargs) {
    int s;
    if (nargs != 2 || side_arg(args[0], &s) < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "top_prices(side, n)");
        return NULL;
    }
    Py_ssize_t want = PyLong_AsSsize_t(args[1]);
    if (want == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t n = self->n[s], m = want < 0 ? 0 : (want < n ? want : n);
    PyObject *out = PyList_New(m);
    if (!out) return NULL;
    const Level *a = self->lv[s];
    for (Py_ssize_t k = 0; k < m; k++) {
        int64_t key = a[n - 1 - k].key;
        PyObject *p = PyLong_FromLongLong(s ? -key : key);
        if (!p) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, k, p);
    }
    return out;
}

/* bids / asks: {price: size} (a copy, best first) for what reads the book as the reference's dicts. */
static PyObject *side_dict(Book *b, int s) {
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    const Level *a = b->lv[s];
    for (Py_ssize_t i = b->n[s] - 1; i >= 0; i--) {
        PyObject *p = PyLong_FromLongLong(s ? -a[i].key : a[i].key), *q = PyLong_FromLongLong(a[i].size);
        int bad = !p || !q || PyDict_SetItem(d, p, q) < 0;
        Py_XDECREF(p);
        Py_XDECREF(q);
        if (bad) {
            Py_DECREF(d);
            return NULL;
        }
    }
    return d;
}

static PyObject *Book_get_bids(Book *self, void *unused) { return side_dict(self, 0); }
static PyObject *Book_get_asks(Book *self, void *unused) { return side_dict(self, 1); }

/* The cached checksum of kind k for these arguments, if the book has not changed within the levels
 * it covers since (versions and counts: a clear that bypasses Book.clear changes the counts). */
static inline int ck_hit(Book *b, int k, int64_t x, int64_t y) {
    return b->ck[k].ver[0] == b->ver[0] && b->ck[k].ver[1] == b->ver[1] && b->ck[k].n[0] == b->n[0] &&
           b->ck[k].n[1] == b->n[1] && b->ck[k].args[0] == x && b->ck[k].args[1] == y && b->ver[0] | b->ver[1];
}

static inline void ck_keep(Book *b, int k, int64_t x, int64_t y, long value) {
    b->ck[k].ver[0] = b->ver[0], b->ck[k].ver[1] = b->ver[1];
    b->ck[k].n[0] = b->n[0], b->ck[k].n[1] = b->n[1];
    b->ck[k].args[0] = x, b->ck[k].args[1] = y;
    b->ck[k].value = value;
}

/* Each side's checksum text, kept between checksums: the best levels' texts end to end, with each
 * level's key and size.  A side whose best TOP_TRACKED levels did not change (its version) is reused
 * whole; otherwise it is rebuilt, copying the text of each level found at the same rank, one deeper
 * or one shallower (a level came or went above it) and formatting only the rest (~10 ns a number).
 * Two buffers a side, the previous and the new, all read in order: few cache lines, so cheap even
 * when the feed's other work has pushed them out of L1.  Reset when the format asked for changes
 * (a book is checksummed by one venue). */
#define FRAG_TOP TOP_TRACKED
#define FRAG_MAX 45 /* a level's text: at most 44 (Bitfinex: 21 + ":-" + 21; Kraken: 2 x 20) */

typedef struct {
    int valid, m;             /* levels held */
    uint64_t ver;             /* the side's version when built */
    Py_ssize_t n;             /* and its number of levels */
    int64_t key[FRAG_TOP], size[FRAG_TOP];
    uint16_t off[FRAG_TOP + 1]; /* level k's text: text[off[k] .. off[k + 1]) */
    char text[FRAG_TOP * FRAG_MAX + 48]; /* + the slack of the fixed-size copies and put_ functions */
} SideText;

typedef struct {
    int64_t kind, a, b; /* the format the texts are in */
    int cur[2];         /* per side, which of its two buffers is the latest */
    SideText t[2][2];   /* [side][buffer] */
} Frags;

/* A level's text at o (Kraken: str(price // pdiv) + str(size // sdiv); Bitfinex: price ":" amount,
 * an ask's amount negative); returns the end (up to 24 bytes past it written). */
static char *frag_format(char *o, const Level *l, int64_t kind, int64_t a, int64_t b) {
    uint64_t price = (uint64_t)(l->key < 0 ? -l->key : l->key), size = (uint64_t)l->size;
    if (kind == 1) {
        o = put_uint(o, a == 1 ? price : price / (uint64_t)a);
        return put_uint(o, b == 1 ? size : size / (uint64_t)b);
    }
    o = put_fixed(o, price, (int)a);
    *o++ = ':';
    if (l->key < 0) *o++ = '-';
    return put_fixed(o, size, (int)b);
}

/* Side s's text of its best m <= FRAG_TOP levels; NULL with an exception. */
static const SideText *side_text(Book *bk, int s, int m, int64_t kind, int64_t a, int64_t b) {
    Frags *fs = bk->frags;
    if (!fs && !(fs = bk->frags = PyMem_Calloc(1, sizeof(Frags)))) {
        PyErr_NoMemory();
        return NULL;
    }
    if (fs->kind != kind || fs->a != a || fs->b != b) {
        fs->t[0][0].valid = fs->t[0][1].valid = fs->t[1][0].valid = fs->t[1][1].valid = 0;
        fs->kind = kind, fs->a = a, fs->b = b;
    }
    const SideText *old = &fs->t[s][fs->cur[s]];
    if (old->valid && old->ver == bk->ver[s] && old->n == bk->n[s] && old->m == m) return old;
    SideText *now = &fs->t[s][fs->cur[s] ^ 1];
    int n_old = old->valid ? old->m : 0;
    char *o = now->text;
    const Level *best = &bk->lv[s][bk->n[s] - 1]; /* rank k is best[-k] */
    int shift = 0; /* where the last level was found, relative to its rank: tried first */
    for (int k = 0; k < m; k++) {
        const Level *l = best - k;
        const int64_t key = l->key, size = l->size;
        int j = -1;
        for (int t = 0; t < 4; t++) { /* the last shift, then the same rank, one deeper, one shallower */
            int i = k + (t ? (t == 1 ? 0 : t == 2 ? 1 : -1) : shift);
            if ((unsigned)i < (unsigned)n_old && old->key[i] == key && old->size[i] == size) {
                j = i;
                break;
            }
        }
        if (j >= 0) shift = j - k;
        now->off[k] = (uint16_t)(o - now->text);
        if (j >= 0) {
            memcpy(o, old->text + old->off[j], FRAG_MAX); /* fixed size: a few moves, no call */
            o += old->off[j + 1] - old->off[j];
        } else {
            o = frag_format(o, l, kind, a, b);
        }
        now->key[k] = key, now->size[k] = size;
    }
    now->off[m] = (uint16_t)(o - now->text);
    now->m = m, now->ver = bk->ver[s], now->n = bk->n[s], now->valid = 1;
    fs->cur[s] ^= 1;
    return now;
}

static int divisor_arg(PyObject *o, uint64_t *d) {
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v <= 0) {
        PyErr_SetString(PyExc_ValueError, "divisors must be positive");
        return -1;
    }
    *d = (uint64_t)v;
    return 0;
}

/* kraken_checksum(pdiv, sdiv): venues/kraken/protocol.py book_checksum in C.  Each level of the top
 * 10 asks (ascending), then bids (descending), written as str(price // pdiv) + str(size // sdiv):
 * at the pair's precision those are the digits Kraken hashes. */
static PyObject *Book_kraken_checksum(Book *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t pdiv, sdiv;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "kraken_checksum(pdiv, sdiv)");
        return NULL;
    }
    if (divisor_arg(args[0], &pdiv) < 0 || divisor_arg(args[1], &sdiv) < 0) return NULL;
    if (ck_hit(self, 0, (int64_t)pdiv, (int64_t)sdiv)) return PyLong_FromUnsignedLong((unsigned long)self->ck[0].value);
    const SideText *bids = side_text(self, 0, self->n[0] < 10 ? (int)self->n[0] : 10, 1, (int64_t)pdiv, (int64_t)sdiv);
    const SideText *asks = bids ? side_text(self, 1, self->n[1] < 10 ? (int)self->n[1] : 10, 1, (int64_t)pdiv, (int64_t)sdiv) : NULL;
    if (!asks) return NULL;
    uint32_t crc = crc32_2((const unsigned char *)asks->text, asks->off[asks->m], (const unsigned char *)bids->text,
                           bids->off[bids->m]); /* asks, then bids */
    ck_keep(self, 0, (int64_t)pdiv, (int64_t)sdiv, (long)crc);
    return PyLong_FromUnsignedLong(crc);
}

/* bitfinex_checksum(pscale, sscale): venues/bitfinex/protocol.py book_checksum in C, for a book
 * whose levels the venue wrote canonically (the protocol keeps the venue's own text otherwise).
 * "bid0price:bid0amount:ask0price:-ask0amount:bid1..." over the top 25 per side (a side's missing
 * levels skipped), numbers as fixed.from_fixed writes them; the CRC32 as a signed int32. */
static PyObject *Book_bitfinex_checksum(Book *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "bitfinex_checksum(price_scale, size_scale)");
        return NULL;
    }
    long ps = PyLong_AsLong(args[0]), ss = PyLong_AsLong(args[1]);
    if (PyErr_Occurred()) return NULL;
    if (ps < 0 || ps > 18 || ss < 0 || ss > 18) {
        PyErr_SetString(PyExc_ValueError, "scales must lie in 0..18");
        return NULL;
    }
    if (ck_hit(self, 1, ps, ss)) return PyLong_FromLong(self->ck[1].value);
    char buf[50 * (FRAG_MAX + 1) + FRAG_MAX], *o = buf; /* 50 levels and ":"s, a copy's slack */
    int mb = self->n[0] < 25 ? (int)self->n[0] : 25, ma = self->n[1] < 25 ? (int)self->n[1] : 25;
    const SideText *fb = side_text(self, 0, mb, 2, ps, ss), *fa = fb ? side_text(self, 1, ma, 2, ps, ss) : NULL;
    if (!fa) return NULL;
    for (int k = 0; k < (mb > ma ? mb : ma); k++) { /* bid k, ask k, ... (a shorter side's missing levels skipped) */
        for (int s = 0; s < 2; s++) {
            const SideText *t = s ? fa : fb;
            if (k >= t->m) continue;
            if (o != buf) *o++ = ':';
            memcpy(o, t->text + t->off[k], FRAG_MAX);
            o += t->off[k + 1] - t->off[k];
        }
    }
    long crc = (long)(int32_t)crc32_of((const unsigned char *)buf, (size_t)(o - buf));
    ck_keep(self, 1, ps, ss, crc);
    return PyLong_FromLong(crc);
}

#define FEEDBOOK_METHODS                                                                                              \
    {"apply_emit", (PyCFunction)(void (*)(void))Book_apply_emit, METH_FASTCALL,                                       \
     "apply_emit(levels, events, Level, iid, exch_ts) -> dropped: apply_levels, events appended as the venues do"},  \
    {"apply_levels", (PyCFunction)Book_apply_levels, METH_O,                                                          \
     "apply_levels(levels) -> dropped: apply a message's (side, price, size) in order, then truncate to depth"},     \
        {"truncate", (PyCFunction)(void (*)(void))Book_truncate, METH_FASTCALL,                                       \
         "truncate(depth=None) -> [(side, price)] dropped beyond depth (default: the book's)"},                      \
        {"top_prices", (PyCFunction)(void (*)(void))Book_top_prices, METH_FASTCALL,                                   \
         "top_prices(side, n) -> prices of the best n levels, best first"},                                            \
        {"kraken_checksum", (PyCFunction)(void (*)(void))Book_kraken_checksum, METH_FASTCALL,                          \
         "kraken_checksum(pdiv, sdiv) -> Kraken's CRC32 of the top 10"},                                               \
        {"bitfinex_checksum", (PyCFunction)(void (*)(void))Book_bitfinex_checksum, METH_FASTCALL,                      \
         "bitfinex_checksum(price_scale, size_scale) -> Bitfinex's signed CRC32 of the top 25"},

static PyGetSetDef Book_getset[] = {
    {"bids", (getter)Book_get_bids, NULL, "{price: size} of the bids (a copy)", NULL},
    {"asks", (getter)Book_get_asks, NULL, "{price: size} of the asks (a copy)", NULL},
    {NULL}};

static PyMemberDef Book_members[] = {
    {"depth", T_PYSSIZET, offsetof(Book, depth), READONLY, "levels kept per side by truncate (0: all)"},
    {NULL}};
