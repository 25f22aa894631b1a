/* The overseer's pre-trade check in C: filters, the venue's order-rate window, self-trade, the
 * position and notional limits on the worst case, and the balance free of what our orders hold.
 *
 * The Python check (Overseer._check_py in trading/overseer.py) is the reference and defines the
 * semantics.  The overseer pushes here the numbers it keeps as they change (each instrument's terms,
 * open size per side and our extreme prices, positions, what orders hold and the balance per asset,
 * the rate windows); check() answers from them in one call.  An instrument or asset whose numbers do
 * not fit int64, or one never pushed, gets -1: ask the reference.  Products are taken in 128 bits,
 * divisions floor like Python's.  A hypothesis state machine holds the two equal. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef __int128 i128;

enum { OK = 0, UNKNOWN_INSTRUMENT = 2, NO_VENUE = 3, NO_LIMITS = 4, FILTER = 5, SELF_TRADE = 6, POSITION = 7,
       NOTIONAL = 8, BALANCE = 9, RATE = 10 };

typedef struct {
    int set, venue, limits;      /* terms pushed (and fit int64); venue and limits configured */
    int64_t tick, lot, min_size, min_notional, unit, max_pos, max_notional, fee_bps, buy_shift, sell_shift;
    Py_ssize_t buy_key, sell_key, rate;
    int64_t pos, open_buy, open_sell; /* lock_qty summed per side */
    int has_bid, has_ask, big;   /* big: exposure or position beyond int64: the reference decides */
    int64_t max_bid, min_ask;    /* our live orders' extreme prices (amends in flight: the worse of both) */
} Inst;

typedef struct {
    int64_t total, held;
    int set, big;
} Key;

typedef struct {
    int64_t *t; /* send times, a growable circular buffer */
    Py_ssize_t cap, head, n;
    int64_t count, window;
} Rate;

typedef struct {
    PyObject_HEAD Inst *inst;
    Key *key;
    Rate *rate;
    Py_ssize_t ninst, nkey, nrate;
} Risk;

static int grow(void **arr, Py_ssize_t *n, Py_ssize_t want, size_t item) {
    if (want < *n) return 0;
    if (want > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "id too large");
        return -1;
    }
    Py_ssize_t m = *n ? *n : 16;
    while (m <= want) m *= 2;
    void *p = PyMem_Realloc(*arr, (size_t)m * item);
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    memset((char *)p + (size_t)*n * item, 0, (size_t)(m - *n) * item);
    *arr = p, *n = m;
    return 0;
}

static Inst *inst_at(Risk *r, PyObject *o) {
    Py_ssize_t i = PyLong_AsSsize_t(o);
    if (i == -1 && PyErr_Occurred()) return NULL;
    if (i < 0) {
        PyErr_SetString(PyExc_ValueError, "negative id");
        return NULL;
    }
    if (grow((void **)&r->inst, &r->ninst, i, sizeof(Inst)) < 0) return NULL;
    return &r->inst[i];
}

static Key *key_at(Risk *r, PyObject *o) {
    Py_ssize_t i = PyLong_AsSsize_t(o);
    if (i == -1 && PyErr_Occurred()) return NULL;
    if (i < 0) {
        PyErr_SetString(PyExc_ValueError, "negative id");
        return NULL;
    }
    if (grow((void **)&r->key, &r->nkey, i, sizeof(Key)) < 0) return NULL;
    return &r->key[i];
}

/* int64 of o: 1; 0 if it does not fit (no exception); -1 on a real error. */
static int i64(PyObject *o, int64_t *v) {
    int ovf;
    long long x = PyLong_AsLongLongAndOverflow(o, &ovf);
    if (x == -1 && PyErr_Occurred()) return -1;
    if (ovf) return 0;
    *v = x;
    return 1;
}

static int i64s(PyObject *const *args, Py_ssize_t n, int64_t *out) {
    int fits = 1;
    for (Py_ssize_t k = 0; k < n; k++) {
        int f = i64(args[k], &out[k]);
        if (f < 0) return -1;
        fits &= f;
    }
    return fits;
}

static inline i128 floordiv(i128 a, i128 b) { /* floor division, b > 0 */
    i128 q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

static void Risk_dealloc(Risk *self) {
    for (Py_ssize_t k = 0; k < self->nrate; k++) PyMem_Free(self->rate[k].t);
    PyMem_Free(self->inst);
    PyMem_Free(self->key);
    PyMem_Free(self->rate);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* terms(iid, venue, limits, tick, lot, min_size, min_notional, unit, max_position, max_notional, fee_bps,
 *       buy_shift, sell_shift, buy_key, sell_key, rate) */
static PyObject *Risk_terms(Risk *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 16) {
        PyErr_SetString(PyExc_TypeError, "terms(iid, venue, limits, tick, lot, min_size, min_notional, unit, "
                                         "max_position, max_notional, fee_bps, buy_shift, sell_shift, buy_key, sell_key, rate)");
        return NULL;
    }
    Inst *in = inst_at(self, args[0]);
    if (!in) return NULL;
    int64_t v[10];
    int fits = i64s(args + 3, 10, v);
    Py_ssize_t bk = PyLong_AsSsize_t(args[13]), sk = PyLong_AsSsize_t(args[14]), rt = PyLong_AsSsize_t(args[15]);
    if (fits < 0 || PyErr_Occurred()) return NULL;
    if (bk < 0 || sk < 0 || grow((void **)&self->key, &self->nkey, bk > sk ? bk : sk, sizeof(Key)) < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "negative key id");
        return NULL;
    }
    if (v[0] <= 0 || v[1] <= 0 || v[4] <= 0 || v[8] <= 0 || v[9] <= 0) fits = 0; /* the reference's arithmetic */
    in->set = fits;
    in->venue = PyObject_IsTrue(args[1]), in->limits = PyObject_IsTrue(args[2]);
    in->tick = v[0], in->lot = v[1], in->min_size = v[2], in->min_notional = v[3], in->unit = v[4];
    in->max_pos = v[5], in->max_notional = v[6], in->fee_bps = v[7], in->buy_shift = v[8], in->sell_shift = v[9];
    in->buy_key = bk, in->sell_key = sk, in->rate = rt;
    Py_RETURN_NONE;
}

/* exposure(iid, position, open_buy, open_sell, max_bid or None, min_ask or None) */
static PyObject *Risk_exposure(Risk *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "exposure(iid, position, open_buy, open_sell, max_bid, min_ask)");
        return NULL;
    }
    Inst *in = inst_at(self, args[0]);
    if (!in) return NULL;
    int64_t v[3], bid = 0, ask = 0;
    int fits = i64s(args + 1, 3, v);
    if (fits < 0) return NULL;
    int hb = args[4] != Py_None, ha = args[5] != Py_None, f;
    if (hb) {
        if ((f = i64(args[4], &bid)) < 0) return NULL;
        fits &= f;
    }
    if (ha) {
        if ((f = i64(args[5], &ask)) < 0) return NULL;
        fits &= f;
    }
    in->big = !fits;
    in->pos = v[0], in->open_buy = v[1], in->open_sell = v[2];
    in->has_bid = hb, in->has_ask = ha, in->max_bid = bid, in->min_ask = ask;
    Py_RETURN_NONE;
}

/* asset(key, total, held): the balance's total and what our orders hold of it */
static PyObject *Risk_asset(Risk *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "asset(key, total, held)");
        return NULL;
    }
    Key *k = key_at(self, args[0]);
    if (!k) return NULL;
    int64_t v[2];
    int fits = i64s(args + 1, 2, v);
    if (fits < 0) return NULL;
    k->set = 1, k->big = !fits, k->total = v[0], k->held = v[1];
    Py_RETURN_NONE;
}

/* rate(id, count, window_ns): a venue's sliding window, empty */
static PyObject *Risk_rate(Risk *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "rate(id, count, window_ns)");
        return NULL;
    }
    Py_ssize_t i = PyLong_AsSsize_t(args[0]);
    int64_t v[2];
    int fits = i64s(args + 1, 2, v);
    if (PyErr_Occurred() || fits < 0) return NULL;
    if (i < 0 || !fits || v[0] <= 0 || v[1] <= 0) {
        PyErr_SetString(PyExc_ValueError, "rate needs id >= 0, count > 0 and window > 0");
        return NULL;
    }
    if (grow((void **)&self->rate, &self->nrate, i, sizeof(Rate)) < 0) return NULL;
    Rate *r = &self->rate[i];
    r->head = r->n = 0, r->count = v[0], r->window = v[1];
    Py_RETURN_NONE;
}

static Rate *rate_at(Risk *self, Py_ssize_t i) {
    return i >= 0 && i < self->nrate && self->rate[i].count ? &self->rate[i] : NULL;
}

/* record(id, now): a request went to the venue */
static PyObject *Risk_record(Risk *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "record(id, now)");
        return NULL;
    }
    Py_ssize_t i = PyLong_AsSsize_t(args[0]);
    long long now = PyLong_AsLongLong(args[1]);
    if (PyErr_Occurred()) return NULL;
    Rate *r = rate_at(self, i);
    if (!r) {
        PyErr_Format(PyExc_KeyError, "no rate window %zd", i);
        return NULL;
    }
    if (r->n == r->cap) { /* full: unroll into a buffer twice the size */
        Py_ssize_t cap = r->cap ? 2 * r->cap : 64;
        int64_t *t = PyMem_Malloc((size_t)cap * sizeof(int64_t));
        if (!t) return PyErr_NoMemory();
        for (Py_ssize_t k = 0; k < r->n; k++) t[k] = r->t[(r->head + k) % r->cap];
        PyMem_Free(r->t);
        r->t = t, r->cap = cap, r->head = 0;
    }
    r->t[(r->head + r->n) % r->cap] = now;
    r->n++;
    Py_RETURN_NONE;
}

static int allows(Rate *r, int64_t now) {
    int64_t edge = now - r->window;
    while (r->n && r->t[r->head] <= edge) r->head = (r->head + 1) % r->cap, r->n--;
    return r->n < r->count;
}

/* check(iid, side, price, size, amended_side, amended_qty, amended_key, amended_held, amended_fill, now)
 * -> 0 (go), a Refusal value, or -1 (ask the reference).  amended_side 0: a NEW. */
static PyObject *Risk_check(Risk *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "check(iid, side, price, size, amended_side, amended_qty, amended_key, "
                                         "amended_held, amended_fill, now)");
        return NULL;
    }
    int64_t v[10];
    int fits = i64s(args, 10, v);
    if (fits < 0) return NULL;
    int64_t iid = v[0], side = v[1], price = v[2], size = v[3], a_side = v[4], a_qty = v[5], a_key = v[6],
            a_held = v[7], a_fill = v[8], now = v[9];
    if (!fits || iid < 0 || iid >= self->ninst) return PyLong_FromLong(-1);
    Inst *in = &self->inst[iid];
    if (!in->set || in->big) return PyLong_FromLong(-1);
    if (side != 1 && side != -1) return PyLong_FromLong(UNKNOWN_INSTRUMENT);
    if (!in->venue) return PyLong_FromLong(NO_VENUE);
    if (!in->limits) return PyLong_FromLong(NO_LIMITS);
    if (price <= 0 || size <= 0 || price % in->tick || size % in->lot || size < in->min_size ||
        (i128)price * size / in->unit < in->min_notional)
        return PyLong_FromLong(FILTER);
    Rate *r = rate_at(self, in->rate);
    if (!r) return PyLong_FromLong(-1);
    if (!allows(r, now)) return PyLong_FromLong(RATE);
    if (side > 0 ? in->has_ask && in->min_ask <= price : in->has_bid && in->max_bid >= price)
        return PyLong_FromLong(SELF_TRADE);
    Py_ssize_t kid = side > 0 ? in->buy_key : in->sell_key;
    if (kid >= self->nkey || !self->key[kid].set || self->key[kid].big) return PyLong_FromLong(-1);
    Key *k = &self->key[kid];
    i128 buys = in->open_buy, sells = in->open_sell, held = k->held;
    if (a_side) {
        if (a_side > 0) buys -= a_qty;
        else sells -= a_qty;
        if (a_key == kid) held -= a_held;
    }
    i128 add = (i128)size - a_fill;
    if (side > 0) buys += add;
    else sells += add;
    i128 lng = (i128)in->pos + buys, sht = (i128)in->pos - sells;
    /* below 2^52 every product below stays far inside 128 bits; beyond, the reference decides */
    const i128 LIM = (i128)1 << 52;
    if (price >= LIM || add >= LIM || add <= -LIM || lng >= LIM || lng <= -LIM || sht >= LIM || sht <= -LIM ||
        in->fee_bps < 0 || in->fee_bps > 1000000)
        return PyLong_FromLong(-1);
    if (lng > in->max_pos || -sht > in->max_pos) return PyLong_FromLong(POSITION);
    i128 worst = lng < 0 ? -lng : lng, w2 = sht < 0 ? -sht : sht;
    if (w2 > worst) worst = w2;
    if (floordiv(worst * price, in->unit) > in->max_notional) return PyLong_FromLong(NOTIONAL);
    i128 need, shift;
    if (side > 0) { /* common.buy_lock: the cost rounded up plus the fee rounded up */
        i128 n = (i128)price * add, unit = in->unit;
        need = -floordiv(-n, unit) - floordiv(-n * in->fee_bps, unit * 10000);
        shift = in->buy_shift;
    } else
        need = add, shift = in->sell_shift;
    if (need > floordiv((i128)k->total - held, shift)) return PyLong_FromLong(BALANCE);
    return PyLong_FromLong(OK);
}

static PyMethodDef Risk_methods[] = {
    {"terms", (PyCFunction)(void (*)(void))Risk_terms, METH_FASTCALL, "an instrument's filters, limits, keys and rate window"},
    {"exposure", (PyCFunction)(void (*)(void))Risk_exposure, METH_FASTCALL, "an instrument's position, open size and our extreme prices"},
    {"asset", (PyCFunction)(void (*)(void))Risk_asset, METH_FASTCALL, "an asset's balance total and what our orders hold"},
    {"rate", (PyCFunction)(void (*)(void))Risk_rate, METH_FASTCALL, "a venue's order-rate window"},
    {"record", (PyCFunction)(void (*)(void))Risk_record, METH_FASTCALL, "a request sent on a venue"},
    {"check", (PyCFunction)(void (*)(void))Risk_check, METH_FASTCALL, "0, a Refusal value, or -1: ask the reference"},
    {NULL}};

static PyTypeObject RiskType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "mantra._risk.Risk",
    .tp_basicsize = sizeof(Risk),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)Risk_dealloc,
    .tp_methods = Risk_methods,
    .tp_doc = "Risk(): the overseer's pre-trade check on the numbers it pushes",
};

static struct PyModuleDef risk_module = {PyModuleDef_HEAD_INIT, "_risk", "The overseer's pre-trade check in C", -1, NULL};

PyMODINIT_FUNC PyInit__risk(void) {
    if (PyType_Ready(&RiskType) < 0) return NULL;
    PyObject *m = PyModule_Create(&risk_module);
    if (!m) return NULL;
    Py_INCREF(&RiskType);
    if (PyModule_AddObject(m, "Risk", (PyObject *)&RiskType) < 0) return NULL;
    return m;
}
