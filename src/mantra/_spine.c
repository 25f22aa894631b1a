/* The only C in Mantra: what CPython cannot do safely or quickly itself.
 *
 *  - seqlocked slot writes and reads with acquire/release ordering (correct on ARM64 too),
 *  - the ring's write counter (plain store for one producer, fetch_add for many),
 *  - futex wait/wake so idle consumers park instead of spinning,
 *  - clock reads, and the per-message timing record written straight into a timing ring,
 *  - the per-message dispatch to actor handlers, and the exact L2 book that consumers keep.
 *
 * Layout (shared with spine/layout.py, which creates and validates headers):
 *   header, 4096 bytes: static fields on line 0, the write counter alone on line 1 (offset 64),
 *   the park word (epoch u32, waiters u32) on line 2 (offset 128), consumer cursors from offset 512.
 *   slots from offset 4096, each `slot_size` bytes (a multiple of 64):
 *     u64 version | u64 origin_ns | u64 publish_ns | u32 publisher | u32 flags | payload
 *   Ring slot holding sequence s: version 2s+1 while written, 2s+2 when complete.
 *   Array slot: version odd while written, +2 per write, 0 = never written.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* futex_waitv (Linux 5.16): the number is the same on every architecture; older headers lack it. */
#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
struct spine_waitv { /* struct futex_waitv, defined here so older headers build too */
    uint64_t val, uaddr;
    uint32_t flags, reserved;
};
#define SPINE_FUTEX2_SIZE_U32 2
#define WAITV_MAX 16 /* the kernel's FUTEX_WAITV_MAX */

#define HDR_SIZE 4096
#define MAGIC 0x314E4950534E414Dull /* b"MANSPIN1" */
#define LAYOUT_VERSION 2           /* 2: multi-producer slots are owned before written (below) */
#define OFF_VERSION 8
#define OFF_KIND 12
#define OFF_SLOT_SIZE 20
#define OFF_CAPACITY 24
#define OFF_COUNT 64
#define OFF_EPOCH 128
#define OFF_WAITERS 132
#define OFF_CURSORS 512
#define CURSOR_SIZE 64
#define N_CURSORS ((HDR_SIZE - OFF_CURSORS) / CURSOR_SIZE)
#define TRACK 24 /* origin, publish, publisher+flags */
#define KIND_SPMC 1
#define KIND_MPMC 2
#define KIND_ARRAY 3

#define LOAD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define LOAD_RLX(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define STORE_RLX(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

static inline uint64_t clock_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static long futex(uint32_t *addr, int op, uint32_t val, const struct timespec *ts) {
    return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

/* ---------------------------------------------------------------- shared mapping handle */

typedef struct {
    Py_buffer view;
    char *base; /* NULL: closed or never opened (every method checks, see OPEN) */
    uint64_t capacity, mask, slot_size, kind;
    uint64_t *count;
    uint32_t *epoch, *waiters;
    uint64_t skipped, dropped; /* writer, multi-producer: see mp_write */
    uint64_t stall;            /* test hook: the stall-th write from now stops mid-payload (SIGSTOP) */
} Map;

#define CLOSED_MSG "closed or not initialised"
#define OPEN(m, ret)                                                         \
    do {                                                                     \
        if (!(m)->base) {                                                    \
            PyErr_SetString(PyExc_ValueError, "spine handle is " CLOSED_MSG); \
            return ret;                                                      \
        }                                                                    \
    } while (0)

static int map_open(Map *m, PyObject *buffer, int writable) {
    if (PyObject_GetBuffer(buffer, &m->view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0) return -1;
    char *base = (char *)m->view.buf;
    const char *why = NULL;
    if (((uintptr_t)base & 63) != 0 || m->view.len < HDR_SIZE) why = "spine mapping must be 64-byte aligned and hold a header";
    else if (*(uint64_t *)base != MAGIC) why = "not a spine mapping (bad magic)";
    else if (*(uint32_t *)(base + OFF_VERSION) != LAYOUT_VERSION) why = "spine layout version differs from this build's";
    if (!why) {
        m->kind = *(uint32_t *)(base + OFF_KIND);
        m->slot_size = *(uint32_t *)(base + OFF_SLOT_SIZE);
        m->capacity = *(uint64_t *)(base + OFF_CAPACITY);
        m->mask = m->capacity - 1;
        /* the slots must fit the mapping: compare by division, a product could overflow */
        if (m->slot_size < 64 || (m->slot_size & 63) || m->capacity == 0 ||
            (m->kind != KIND_ARRAY && (m->capacity & m->mask)) ||
            m->capacity > (uint64_t)(m->view.len - HDR_SIZE) / m->slot_size)
            why = "spine header does not match the mapping size";
    }
    if (why) {
        PyBuffer_Release(&m->view);
        m->base = NULL;
        PyErr_SetString(PyExc_ValueError, why);
        return -1;
    }
    m->base = base;
    m->count = (uint64_t *)(base + OFF_COUNT);
    m->epoch = (uint32_t *)(base + OFF_EPOCH);
    m->waiters = (uint32_t *)(base + OFF_WAITERS);
    m->skipped = m->dropped = m->stall = 0;
    return 0;
}

static void map_close(Map *m) {
    if (m->base) PyBuffer_Release(&m->view);
    m->base = NULL;
}

static inline char *slot_at(Map *m, uint64_t i) { return m->base + HDR_SIZE + i * m->slot_size; }

/* Wake parked consumers.  Dekker with park(): the slot write (already released) and our load of
 * `waiters` are separated by a full fence, as are park's increment of `waiters` and its load of the
 * slot version; so either the consumer sees the record or we see the consumer (ARM64 needs both). */
static inline void wake_if_parked(Map *m) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (LOAD_RLX(m->waiters)) {
        __atomic_fetch_add(m->epoch, 1, __ATOMIC_SEQ_CST);
        futex(m->epoch, FUTEX_WAKE, INT32_MAX, NULL);
    }
}

static inline int get_buf(PyObject *o, Py_buffer *b, int writable) {
    return PyObject_GetBuffer(o, b, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE);
}

/* Messages published and array slots written by this process (timing records excluded): the
 * deterministic dispatcher stops as soon as a handler has reacted, so loops run at that instant. */
static uint64_t activity, handled_total, calls; /* calls: handlers called (dispatch_all: could a wake-up have changed) */

/* ---------------------------------------------------------------- ring slots
 *
 * Slot for sequence s, version word:  2s+1       held by s's writer (payload being written)
 *                                     2s+2       complete: the record of s
 *                                     SKIP|2s+1  s carries no record; an older writer still holds the slot
 *                                     SKIP|2s+2  s carries no record; the slot is free
 * Odd = held, even = free; stripped of SKIP, a slot's version only grows.
 *
 * One producer (spmc) writes in order and simply stores 2s+1, the payload, 2s+2, then the counter.
 *
 * Several producers (mpmc): a stalled writer's memcpy cannot be made atomic, so a writer owns the
 * slot before it writes a payload byte and no one writes into a slot someone else holds.
 *  - Claim: s = fetch_add(counter); CAS the version from the free (even) value found there, any older
 *    sequence's, to 2s+1; write; complete with CAS 2s+1 -> 2s+2.
 *  - Held by an older writer (stalled or dead): CAS it to SKIP|2s+1 (the holder keeps it) and publish
 *    the message under a fresh sequence (MP_TRIES at most, then drop it and count it).
 *  - Already showing a later sequence (we were lapped before claiming): s is gone; drop, count.
 *  - The completing CAS fails when later writers marked skips meanwhile: our record is a lap stale;
 *    drop it, count it, free the slot (SKIP|odd -> SKIP|even).
 * Readers accept a record only when the version is exactly 2s+2 before and after the copy, skip
 * SKIP markers of their sequence (counted in `skipped`), and treat a later sequence as being lapped
 * (resync, counted in `lost`).  A sequence left unwritten while later ones are claimed for the
 * reader's `stuck_ns` (a producer died or froze before completing it) is given up and counted lost:
 * consumers stall that long once, never a lap.  A dead writer's slot stays held: each lap the writer
 * landing there skips it (one sequence, no message, counted).  Producers never wait on each other:
 * every retry follows a change another producer made. */

#define SKIP (1ull << 63)
#define MP_TRIES 8
#define STUCK_NS 50000000ll /* default Reader.stuck_ns */

static inline uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Tracking header and payload of a held slot; the rest of the payload area is zeroed, so a short
 * payload never shows the previous record's bytes. */
static inline void fill(Map *m, char *slot, uint64_t origin, uint64_t now, uint32_t publisher, uint32_t flags,
                        const void *payload, size_t n) {
    uint64_t *h = (uint64_t *)(slot + 8);
    h[0] = origin;
    h[1] = now ? now : clock_ns();
    *(uint32_t *)(slot + 24) = publisher;
    *(uint32_t *)(slot + 28) = flags;
    if (m->stall && --m->stall == 0) { /* test hook: freeze after half the payload */
        memcpy(slot + 8 + TRACK, payload, n / 2);
        raise(SIGSTOP);
    }
    memcpy(slot + 8 + TRACK, payload, n);
    size_t rest = m->slot_size - 8 - TRACK - n;
    if (rest) memset(slot + 8 + TRACK + n, 0, rest);
}

static uint64_t mp_write(Map *m, uint64_t origin, uint64_t now, uint32_t publisher, const void *payload, size_t n,
                         uint32_t flags) {
    for (int tries = 1;; tries++) {
        uint64_t s = __atomic_fetch_add(m->count, 1, __ATOMIC_ACQ_REL), mine = 2 * s + 1;
        char *slot = slot_at(m, s & m->mask);
        uint64_t *ver = (uint64_t *)slot, v = LOAD_ACQ(ver);
        for (;;) {
            if ((v & ~SKIP) >= mine) { /* a later sequence owns it: we were lapped */
                m->dropped++;
                return s;
            }
            if (v & 1) { /* held by an older writer: never write over it */
                if (__atomic_compare_exchange_n(ver, &v, SKIP | mine, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) break;
            } else if (__atomic_compare_exchange_n(ver, &v, mine, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                __atomic_thread_fence(__ATOMIC_RELEASE);
                fill(m, slot, origin, now, publisher, flags, payload, n);
                uint64_t cur = mine;
                if (!__atomic_compare_exchange_n(ver, &cur, mine + 1, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
                    /* lapped while writing (cur is SKIP|odd): free the slot, our record is stale */
                    while (!__atomic_compare_exchange_n(ver, &cur, cur + 1, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
                        ;
                    m->dropped++;
                }
                wake_if_parked(m);
                return s;
            }
        }
        m->skipped++;
        wake_if_parked(m); /* readers of s move on */
        if (tries == MP_TRIES) {
            m->dropped++;
            return s;
        }
    }
}

/* Write one message: header fields and `n` payload bytes.  Returns the sequence number. */
static inline uint64_t ring_write(Map *m, uint64_t origin, uint64_t now, uint32_t publisher,
                                  const void *payload, size_t n, uint32_t flags) {
    if (m->kind == KIND_MPMC) return mp_write(m, origin, now, publisher, payload, n, flags);
    uint64_t s = LOAD_RLX(m->count);
    char *slot = slot_at(m, s & m->mask);
    uint64_t *ver = (uint64_t *)slot;
    STORE_RLX(ver, 2 * s + 1);
    __atomic_thread_fence(__ATOMIC_RELEASE); /* odd version visible before any payload byte */
    fill(m, slot, origin, now, publisher, flags, payload, n);
    STORE_REL(ver, 2 * s + 2);
    STORE_REL(m->count, s + 1);
    wake_if_parked(m);
    return s;
}

/* ---------------------------------------------------------------- Writer (ring producer) */

typedef struct {
    PyObject_HEAD Map m;
    uint64_t recovered; /* slots found half-written (odd) by a dead producer and finished by us */
} Writer;

static int Writer_init(Writer *self, PyObject *args, PyObject *kw) {
    PyObject *buffer;
    if (!PyArg_ParseTuple(args, "O", &buffer)) return -1;
    map_close(&self->m);
    if (map_open(&self->m, buffer, 1) < 0) return -1;
    if (self->m.kind != KIND_SPMC && self->m.kind != KIND_MPMC) {
        map_close(&self->m);
        PyErr_SetString(PyExc_ValueError, "not a ring");
        return -1;
    }
    self->recovered = 0;
    if (self->m.kind == KIND_SPMC) {
        /* A dead producer may have completed slots without advancing the counter (it stores the
         * counter last): adopt them, so no consumer sees a sequence number reused. */
        uint64_t c = LOAD_ACQ(self->m.count);
        for (uint64_t k = 0; k < self->m.capacity; k++) {
            uint64_t v = LOAD_ACQ((uint64_t *)slot_at(&self->m, c & self->m.mask));
            if (v == 2 * c + 2) c++;
            else {
                if (v == 2 * c + 1) self->recovered++; /* finished by our next publish */
                break;
            }
        }
        __atomic_store_n(self->m.count, c, __ATOMIC_SEQ_CST);
    }
    return 0;
}

static void Writer_dealloc(Writer *self) {
    map_close(&self->m);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* publish(payload, origin, publisher, now=0) -> seq.  now=0: stamp the publish time here. */
static PyObject *Writer_publish(Writer *self, PyObject *const *args, Py_ssize_t nargs) {
    OPEN(&self->m, NULL);
    if (nargs < 3 || nargs > 4) {
        PyErr_SetString(PyExc_TypeError, "publish(payload, origin, publisher, now=0)");
        return NULL;
    }
    Py_buffer b;
    if (get_buf(args[0], &b, 0) < 0) return NULL;
    uint64_t origin = PyLong_AsUnsignedLongLong(args[1]);
    uint32_t publisher = (uint32_t)PyLong_AsUnsignedLong(args[2]);
    uint64_t now = nargs > 3 ? PyLong_AsUnsignedLongLong(args[3]) : 0;
    if (PyErr_Occurred()) {
        PyBuffer_Release(&b);
        return NULL;
    }
    if ((uint64_t)b.len > self->m.slot_size - 8 - TRACK) {
        PyBuffer_Release(&b);
        PyErr_Format(PyExc_ValueError, "payload of %zd bytes does not fit a %llu-byte slot", b.len,
                     (unsigned long long)self->m.slot_size);
        return NULL;
    }
    uint64_t s = ring_write(&self->m, origin, now, publisher, b.buf, (size_t)b.len, 0);
    activity++;
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLongLong(s);
}

/* publish_record(record, now=0): republish a whole record (tracking header + payload, as read by
 * Reader.read_into) keeping its origin and publisher; used by replay. */
static PyObject *Writer_publish_record(Writer *self, PyObject *const *args, Py_ssize_t nargs) {
    OPEN(&self->m, NULL);
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "publish_record(record, now=0)");
        return NULL;
    }
    Py_buffer b;
    if (get_buf(args[0], &b, 0) < 0) return NULL;
    uint64_t now = nargs > 1 ? PyLong_AsUnsignedLongLong(args[1]) : 0;
    if (PyErr_Occurred() || b.len < TRACK || (uint64_t)b.len > self->m.slot_size - 8) {
        PyBuffer_Release(&b);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "record size does not fit this ring");
        return NULL;
    }
    const char *r = (const char *)b.buf;
    uint64_t origin;
    uint32_t publisher, flags;
    memcpy(&origin, r, 8); /* the buffer need not be aligned */
    memcpy(&publisher, r + 16, 4);
    memcpy(&flags, r + 20, 4);
    uint64_t s = ring_write(&self->m, origin, now, publisher, r + TRACK, (size_t)b.len - TRACK, flags);
    activity++;
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLongLong(s);
}

/* publish_batch(records, n): republish n whole records laid back to back (slot_size-8 bytes each,
 * tracking headers kept verbatim, publish time included): a replay burst in one call. */
static PyObject *Writer_publish_batch(Writer *self, PyObject *const *args, Py_ssize_t nargs) {
    OPEN(&self->m, NULL);
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "publish_batch(records, n)");
        return NULL;
    }
    Py_buffer b;
    if (get_buf(args[0], &b, 0) < 0) return NULL;
    Py_ssize_t n = PyLong_AsSsize_t(args[1]);
    size_t rec = self->m.slot_size - 8;
    if (PyErr_Occurred() || n < 0 || (size_t)n > (size_t)b.len / rec) { /* no n * rec: it could overflow */
        PyBuffer_Release(&b);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "buffer holds fewer than n records");
        return NULL;
    }
    const char *r = (const char *)b.buf;
    uint64_t s = 0;
    for (Py_ssize_t i = 0; i < n; i++, r += rec) {
        uint64_t h[2];
        uint32_t publisher, flags;
        memcpy(h, r, 16);
        memcpy(&publisher, r + 16, 4);
        memcpy(&flags, r + 20, 4);
        s = ring_write(&self->m, h[0], h[1] ? h[1] : 1, publisher, r + TRACK, rec - TRACK, flags);
    }
    activity += (uint64_t)n;
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLongLong(s);
}

/* stamp(key, origin, start): the runtime's per-message timing record (payload: key u32, pad,
 * start u64, end u64), end read here so the hot path pays one call. */
static PyObject *Writer_stamp(Writer *self, PyObject *const *args, Py_ssize_t nargs) {
    OPEN(&self->m, NULL);
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "stamp(key, origin, start)");
        return NULL;
    }
    uint32_t key = (uint32_t)PyLong_AsUnsignedLong(args[0]);
    uint64_t origin = PyLong_AsUnsignedLongLong(args[1]);
    uint64_t start = PyLong_AsUnsignedLongLong(args[2]);
    if (PyErr_Occurred()) return NULL;
    uint64_t end = clock_ns();
    struct {
        uint32_t key, pad;
        uint64_t start, end;
    } rec = {key, 0, start, end};
    ring_write(&self->m, origin, end, key, &rec, sizeof rec, 0);
    Py_RETURN_NONE;
}

static PyObject *Writer_count(Writer *self, PyObject *unused) {
    OPEN(&self->m, NULL);
    return PyLong_FromUnsignedLongLong(LOAD_ACQ(self->m.count));
}

static PyObject *Writer_recovered(Writer *self, void *c) { return PyLong_FromUnsignedLongLong(self->recovered); }
static PyObject *Writer_skipped(Writer *self, void *c) { return PyLong_FromUnsignedLongLong(self->m.skipped); }
static PyObject *Writer_dropped(Writer *self, void *c) { return PyLong_FromUnsignedLongLong(self->m.dropped); }
static PyObject *Writer_get_stall(Writer *self, void *c) { return PyLong_FromUnsignedLongLong(self->m.stall); }
static int Writer_set_stall(Writer *self, PyObject *v, void *c) {
    if (!v) {
        PyErr_SetString(PyExc_TypeError, "cannot delete");
        return -1;
    }
    unsigned long long n = PyLong_AsUnsignedLongLong(v);
    if (PyErr_Occurred()) return -1;
    self->m.stall = n;
    return 0;
}

static PyObject *Writer_close(Writer *self, PyObject *unused) {
    map_close(&self->m);
    Py_RETURN_NONE;
}

static PyMethodDef Writer_methods[] = {
    {"publish", (PyCFunction)(void (*)(void))Writer_publish, METH_FASTCALL, "publish(payload, origin, publisher, now=0) -> seq"},
    {"publish_record", (PyCFunction)(void (*)(void))Writer_publish_record, METH_FASTCALL, "publish_record(record, now=0) -> seq"},
    {"publish_batch", (PyCFunction)(void (*)(void))Writer_publish_batch, METH_FASTCALL, "publish_batch(records, n): whole records, headers kept"},
    {"stamp", (PyCFunction)(void (*)(void))Writer_stamp, METH_FASTCALL, "stamp(key, origin, start): timing record"},
    {"count", (PyCFunction)Writer_count, METH_NOARGS, "messages published so far"},
    {"close", (PyCFunction)Writer_close, METH_NOARGS, "release the mapping"},
    {NULL}};

static PyGetSetDef Writer_getset[] = {
    {"recovered", (getter)Writer_recovered, NULL, "half-written slots finished", NULL},
    {"skipped", (getter)Writer_skipped, NULL, "mpmc: sequences given up because an older writer still held the slot", NULL},
    {"dropped", (getter)Writer_dropped, NULL, "mpmc: messages not published (lapped while claiming or writing)", NULL},
    {"_stall", (getter)Writer_get_stall, (setter)Writer_set_stall, "tests only: the n-th write from now stops itself (SIGSTOP) halfway through its payload", NULL},
    {NULL}};

static PyTypeObject WriterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "mantra._spine.Writer",
    .tp_basicsize = sizeof(Writer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Writer_init,
    .tp_dealloc = (destructor)Writer_dealloc,
    .tp_methods = Writer_methods,
    .tp_getset = Writer_getset,
    .tp_doc = "Writer(mapping): producer end of a seqlocked broadcast ring",
};

/* ---------------------------------------------------------------- Reader (ring consumer) */

typedef struct {
    PyObject_HEAD Map m;
    uint64_t seq;      /* next sequence number to read */
    uint64_t lost;     /* messages overwritten before we read them, or given up as stuck */
    uint64_t skipped;  /* sequences that carried no message (mpmc SKIP markers) */
    uint64_t laps;     /* times we were lapped */
    uint64_t *cursor;  /* our published position in the header, or NULL */
    uint64_t stuck_seq, stuck_since; /* mpmc: since when `seq` waits while later ones are claimed */
    int64_t stuck_ns;
} Reader;

static int Reader_init(Reader *self, PyObject *args, PyObject *kw) {
    PyObject *buffer;
    long long start = -1;
    int cursor = -1;
    if (!PyArg_ParseTuple(args, "O|Li", &buffer, &start, &cursor)) return -1;
    map_close(&self->m);
    self->cursor = NULL;
    if (map_open(&self->m, buffer, 1) < 0) return -1;
    if (self->m.kind != KIND_SPMC && self->m.kind != KIND_MPMC) {
        map_close(&self->m);
        PyErr_SetString(PyExc_ValueError, "not a ring");
        return -1;
    }
    self->seq = start < 0 ? LOAD_ACQ(self->m.count) : (uint64_t)start;
    self->lost = self->laps = self->skipped = 0;
    self->stuck_seq = UINT64_MAX;
    self->stuck_ns = STUCK_NS;
    if (cursor >= 0) {
        if (cursor >= N_CURSORS) {
            map_close(&self->m);
            PyErr_SetString(PyExc_ValueError, "cursor index out of range");
            return -1;
        }
        self->cursor = (uint64_t *)(self->m.base + OFF_CURSORS + cursor * CURSOR_SIZE);
        STORE_RLX(&self->cursor[1], self->seq);
    }
    return 0;
}

static void Reader_dealloc(Reader *self) {
    map_close(&self->m);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Lapped: jump to head - capacity/2 (not the oldest slot, which the producer overwrites next). */
static inline void resync(Reader *r) {
    uint64_t head = LOAD_ACQ(r->m.count), half = r->m.capacity / 2;
    uint64_t to = head > half ? head - half : 0;
    if (to <= r->seq) to = r->seq + 1;
    r->lost += to - r->seq;
    r->laps++;
    r->seq = to;
}

static inline void publish_cursor(Reader *r) {
    if (r->cursor) {
        STORE_RLX(&r->cursor[1], r->seq);
        STORE_RLX(&r->cursor[2], r->lost);
    }
}

/* mpmc: ns until `seq` may be given up (0: now), or -1 while no later sequence is claimed. */
static int64_t stuck_left(Reader *r) {
    if (LOAD_ACQ(r->m.count) <= r->seq + 1) {
        r->stuck_seq = UINT64_MAX;
        return -1;
    }
    uint64_t t = mono_ns();
    if (r->stuck_seq != r->seq) r->stuck_seq = r->seq, r->stuck_since = t;
    int64_t left = r->stuck_ns - (int64_t)(t - r->stuck_since);
    return left > 0 ? left : 0;
}

static inline uint64_t *ver_of(Reader *r) { return (uint64_t *)slot_at(&r->m, r->seq & r->m.mask); }

/* The slot of `seq` can be dealt with now: a record, a skip marker, a lap, or given up as stuck. */
static inline int ready(Reader *r) {
    uint64_t want = 2 * r->seq + 2, v = LOAD_ACQ(ver_of(r)), bare = v & ~SKIP;
    if (v == want || bare > want || ((v & SKIP) && bare + 1 >= want)) return 1;
    return r->m.kind == KIND_MPMC && stuck_left(r) == 0;
}

/* Move past skip markers, laps and stuck sequences (counting them): 1 when the slot of `seq` holds
 * its complete record, 0 when it is not there yet. */
static inline int settle(Reader *r) {
    for (;;) {
        uint64_t want = 2 * r->seq + 2, v = LOAD_ACQ(ver_of(r)), bare = v & ~SKIP;
        if (v == want) return 1;
        if (bare > want) resync(r);
        else if ((v & SKIP) && bare + 1 >= want) r->skipped++, r->seq++;
        else if (r->m.kind == KIND_MPMC && stuck_left(r) == 0) r->lost++, r->seq++;
        else return 0;
        publish_cursor(r);
    }
}

/* Copy the next record (tracking header + payload, slot_size-8 bytes) into dst.
 * Returns 1 on success, 0 when nothing new.  Never returns torn data. */
static inline int ring_read(Reader *r, char *dst) {
    Map *m = &r->m;
    size_t n = m->slot_size - 8;
    for (;;) {
        const char *slot = slot_at(m, r->seq & m->mask);
        uint64_t want = 2 * r->seq + 2;
        if (LOAD_ACQ((const uint64_t *)slot) != want) {
            if (!settle(r)) return 0;
            continue; /* moved on: a later sequence's slot */
        }
        memcpy(dst, slot + 8, n);
        __atomic_thread_fence(__ATOMIC_ACQUIRE); /* payload loads complete before the re-check */
        if (LOAD_RLX((const uint64_t *)slot) == want) {
            r->seq++;
            if (r->cursor) STORE_RLX(&r->cursor[1], r->seq);
            return 1;
        }
        /* overwritten while copying: settle() sees the later sequence and resyncs */
    }
}

/* A caller's buffer for one record must hold all of it. */
static int record_buf(Reader *r, PyObject *o, Py_buffer *b) {
    if (get_buf(o, b, 1) < 0) return -1;
    if ((uint64_t)b->len < r->m.slot_size - 8) {
        PyErr_Format(PyExc_ValueError, "buffer of %zd bytes cannot hold a %llu-byte record", b->len,
                     (unsigned long long)(r->m.slot_size - 8));
        PyBuffer_Release(b);
        return -1;
    }
    return 0;
}

/* read_into(buf) -> origin_ns of the record copied into buf, or 0 when there is none. */
static PyObject *Reader_read_into(Reader *self, PyObject *arg) {
    OPEN(&self->m, NULL);
    Py_buffer b;
    if (record_buf(self, arg, &b) < 0) return NULL;
    int ok = ring_read(self, (char *)b.buf);
    uint64_t origin = 0;
    if (ok) memcpy(&origin, b.buf, 8);
    PyBuffer_Release(&b);
    if (ok && origin == 0) origin = 1; /* a record is never reported as "none" */
    return PyLong_FromUnsignedLongLong(origin);
}

/* futex_waitv unusable (no syscall, or refused, e.g. by seccomp): park by slices on one futex. */
static int waitv_errno;
#define SLICE_NS 1000000 /* poll period when not every ring can be waited on */

typedef struct {
    Py_buffer hold; /* keeps the mapping alive if another thread closes the reader meanwhile */
    uint32_t *epoch, *waiters, val;
} ParkEntry;

/* Park until one of the readers has something (a record, a skip, a lap, a stuck sequence to give
 * up) or the timeout passes.  Returns 1 if ready (a reader closed meanwhile counts as ready), 0 on
 * timeout, -1 with an exception set (a signal handler raised).  Any number of readers: the first 16
 * are waited on together (futex_waitv); with more, or without futex_waitv, the wait is cut into
 * 1 ms slices and every reader is checked after each. */
static int park(Reader **rs, Py_ssize_t n, int64_t timeout_ns) {
    ParkEntry small[WAITV_MAX], *e = n <= WAITV_MAX ? small : PyMem_Malloc((size_t)n * sizeof(ParkEntry));
    if (!e) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t held = 0;
    int got = 0;
    for (; held < n; held++) {
        Map *m = &rs[held]->m;
        if (!m->base || !m->view.obj || PyObject_GetBuffer(m->view.obj, &e[held].hold, PyBUF_SIMPLE) < 0) {
            PyErr_Clear();
            got = 1; /* closed: let the caller find out */
            break;
        }
        e[held].epoch = m->epoch, e[held].waiters = m->waiters;
        __atomic_fetch_add(m->waiters, 1, __ATOMIC_SEQ_CST);
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST); /* Dekker with wake_if_parked */
    uint64_t deadline = mono_ns() + (uint64_t)(timeout_ns > 0 ? timeout_ns : 0);
    while (!got) {
        for (Py_ssize_t i = 0; i < n; i++) e[i].val = __atomic_load_n(e[i].epoch, __ATOMIC_SEQ_CST);
        int64_t left = (int64_t)(deadline - mono_ns());
        for (Py_ssize_t i = 0; i < n && !got; i++) {
            Reader *r = rs[i];
            if (!r->m.base || ready(r)) got = 1;
            else if (r->m.kind == KIND_MPMC) { /* wake in time to give a stuck sequence up */
                int64_t s = stuck_left(r);
                if (s >= 0 && s < left) left = s + 1000;
            }
        }
        if (got || left <= 0) break;
        int sliced = n > WAITV_MAX || (n > 1 && waitv_errno);
        if (sliced && left > SLICE_NS) left = SLICE_NS;
        Py_BEGIN_ALLOW_THREADS
        if (n == 1 || waitv_errno) {
            struct timespec ts = {left / 1000000000, left % 1000000000};
            futex(e[0].epoch, FUTEX_WAIT, e[0].val, &ts);
        } else {
            struct spine_waitv w[WAITV_MAX];
            int k = n < WAITV_MAX ? (int)n : WAITV_MAX;
            for (int i = 0; i < k; i++) {
                w[i].val = e[i].val;
                w[i].uaddr = (uint64_t)(uintptr_t)e[i].epoch;
                w[i].flags = SPINE_FUTEX2_SIZE_U32; /* shared: no FUTEX2_PRIVATE */
                w[i].reserved = 0;
            }
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t t = (int64_t)ts.tv_nsec + left;
            ts.tv_sec += t / 1000000000;
            ts.tv_nsec = t % 1000000000;
            if (syscall(SYS_futex_waitv, w, k, 0, &ts, CLOCK_MONOTONIC) < 0 && errno != EAGAIN &&
                errno != ETIMEDOUT && errno != EINTR)
                waitv_errno = errno; /* remembered: from now on wait by slices */
        }
        Py_END_ALLOW_THREADS
        if (PyErr_CheckSignals() < 0) {
            got = -1;
            break;
        }
    }
    for (Py_ssize_t i = 0; i < held; i++) {
        __atomic_fetch_sub(e[i].waiters, 1, __ATOMIC_SEQ_CST);
        PyBuffer_Release(&e[i].hold);
    }
    if (e != small) PyMem_Free(e);
    return got;
}

static inline int spin_until_ready(Reader *r, int64_t spin_ns) {
    if (ready(r)) return 1;
    if (spin_ns <= 0) return 0;
    uint64_t until = clock_ns() + (uint64_t)spin_ns;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (ready(r)) return 1;
            cpu_relax();
        }
        if (clock_ns() >= until) return 0;
    }
}

/* wait_into(buf, timeout_ns, spin_ns=0) -> origin or 0 on timeout.  Spins in C for spin_ns
 * (no Python per poll), then parks on the futex for the rest of the timeout. */
static PyObject *Reader_wait_into(Reader *self, PyObject *const *args, Py_ssize_t nargs) {
    OPEN(&self->m, NULL);
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "wait_into(buf, timeout_ns, spin_ns=0)");
        return NULL;
    }
    long long timeout = PyLong_AsLongLong(args[1]);
    long long spin = nargs > 2 ? PyLong_AsLongLong(args[2]) : 0;
    if (PyErr_Occurred()) return NULL;
    if (spin > timeout) spin = timeout;
    uint64_t deadline = clock_ns() + (uint64_t)(timeout > 0 ? timeout : 0);
    Reader *me = self;
    spin_until_ready(self, spin);
    for (;;) {
        PyObject *o = Reader_read_into(self, args[0]);
        if (!o || PyLong_AsUnsignedLongLong(o)) return o;
        int64_t left = (int64_t)(deadline - clock_ns());
        if (left <= 0) return o;
        Py_DECREF(o); /* woken by a skip or a given-up sequence, not a record: wait on */
        if (park(&me, 1, left) < 0) return NULL;
        OPEN(&self->m, NULL); /* a signal handler may have closed it */
    }
}

/* read_batch(buf, max_n) -> n: copy up to max_n records back to back (slot_size-8 bytes each)
 * into buf, e.g. a numpy structured array's memory. */
static PyObject *Reader_read_batch(Reader *self, PyObject *const *args, Py_ssize_t nargs) {
    OPEN(&self->m, NULL);
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "read_batch(buf, max_n)");
        return NULL;
    }
    Py_buffer b;
    if (get_buf(args[0], &b, 1) < 0) return NULL;
    Py_ssize_t max_n = PyLong_AsSsize_t(args[1]);
    size_t rec = self->m.slot_size - 8;
    if (max_n < 0 || PyErr_Occurred()) {
        PyBuffer_Release(&b);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "max_n < 0");
        return NULL;
    }
    if ((size_t)b.len / rec < (size_t)max_n) max_n = (Py_ssize_t)((size_t)b.len / rec);
    Py_ssize_t n = 0;
    char *dst = (char *)b.buf;
    while (n < max_n && ring_read(self, dst + n * rec)) n++;
    PyBuffer_Release(&b);
    return PyLong_FromSsize_t(n);
}

static PyObject *Reader_head(Reader *self, PyObject *unused) {
    OPEN(&self->m, NULL);
    return PyLong_FromUnsignedLongLong(LOAD_ACQ(self->m.count));
}

static PyObject *Reader_ready(Reader *self, PyObject *unused) {
    OPEN(&self->m, NULL);
    return PyBool_FromLong(ready(self));
}

static PyObject *Reader_close(Reader *self, PyObject *unused) {
    map_close(&self->m);
    self->cursor = NULL;
    Py_RETURN_NONE;
}

static PyObject *Reader_get_seq(Reader *self, void *c) { return PyLong_FromUnsignedLongLong(self->seq); }
static int Reader_set_seq(Reader *self, PyObject *v, void *c) {
    OPEN(&self->m, -1);
    if (!v) {
        PyErr_SetString(PyExc_TypeError, "cannot delete");
        return -1;
    }
    unsigned long long s = PyLong_AsUnsignedLongLong(v);
    if (PyErr_Occurred()) return -1;
    self->seq = s;
    if (self->cursor) STORE_RLX(&self->cursor[1], s);
    return 0;
}
static PyObject *Reader_get_lost(Reader *self, void *c) { return PyLong_FromUnsignedLongLong(self->lost); }
static PyObject *Reader_get_skipped(Reader *self, void *c) { return PyLong_FromUnsignedLongLong(self->skipped); }
static PyObject *Reader_get_laps(Reader *self, void *c) { return PyLong_FromUnsignedLongLong(self->laps); }
static PyObject *Reader_get_stuck_ns(Reader *self, void *c) { return PyLong_FromLongLong(self->stuck_ns); }
static int Reader_set_stuck_ns(Reader *self, PyObject *v, void *c) {
    if (!v) {
        PyErr_SetString(PyExc_TypeError, "cannot delete");
        return -1;
    }
    long long ns = PyLong_AsLongLong(v);
    if (ns == -1 && PyErr_Occurred()) return -1;
    if (ns < 0) {
        PyErr_SetString(PyExc_ValueError, "stuck_ns must be >= 0");
        return -1;
    }
    self->stuck_ns = ns;
    return 0;
}

static PyMethodDef Reader_methods[] = {
    {"read_into", (PyCFunction)Reader_read_into, METH_O, "read_into(buf) -> origin_ns, 0 if none"},
    {"wait_into", (PyCFunction)(void (*)(void))Reader_wait_into, METH_FASTCALL, "wait_into(buf, timeout_ns, spin_ns=0) -> origin_ns, 0 on timeout"},
    {"read_batch", (PyCFunction)(void (*)(void))Reader_read_batch, METH_FASTCALL, "read_batch(buf, max_n) -> records copied"},
    {"head", (PyCFunction)Reader_head, METH_NOARGS, "the ring's write counter"},
    {"ready", (PyCFunction)Reader_ready, METH_NOARGS, "a record is waiting"},
    {"close", (PyCFunction)Reader_close, METH_NOARGS, "release the mapping"},
    {NULL}};

static PyGetSetDef Reader_getset[] = {
    {"seq", (getter)Reader_get_seq, (setter)Reader_set_seq, "next sequence number to read", NULL},
    {"lost", (getter)Reader_get_lost, NULL, "messages lost to lapping or given up as stuck", NULL},
    {"skipped", (getter)Reader_get_skipped, NULL, "sequences that carried no message (a producer skipped a held slot)", NULL},
    {"laps", (getter)Reader_get_laps, NULL, "times lapped", NULL},
    {"stuck_ns", (getter)Reader_get_stuck_ns, (setter)Reader_set_stuck_ns,
     "mpmc: how long a sequence may stay unwritten while later ones are claimed before it is given up (lost)", NULL},
    {NULL}};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "mantra._spine.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_methods = Reader_methods,
    .tp_getset = Reader_getset,
    .tp_doc = "Reader(mapping, start=-1, cursor=-1): consumer end of a ring; start -1 = current head",
};

/* wait_any(readers, timeout_ns) -> bool: park on several rings at once (futex_waitv). */
static PyObject *wait_any(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "wait_any(list_of_readers, timeout_ns)");
        return NULL;
    }
    long long timeout = PyLong_AsLongLong(args[1]);
    if (PyErr_Occurred()) return NULL;
    if (timeout < 0) timeout = 0;
    PyObject *t = PyList_AsTuple(args[0]); /* our own references: the list may change while we sleep */
    if (!t) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(t);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PyTuple_GET_ITEM(t, i);
        if (!PyObject_TypeCheck(o, &ReaderType) || !((Reader *)o)->m.base) {
            Py_DECREF(t);
            PyErr_SetString(PyExc_TypeError, "wait_any takes open Readers");
            return NULL;
        }
    }
    int got = 0;
    if (n == 0) {
        struct timespec ts = {timeout / 1000000000, timeout % 1000000000};
        Py_BEGIN_ALLOW_THREADS nanosleep(&ts, NULL);
        Py_END_ALLOW_THREADS
    } else
        got = park((Reader **)((PyTupleObject *)t)->ob_item, n, timeout);
    Py_DECREF(t);
    if (got < 0 || PyErr_CheckSignals() < 0) return NULL;
    return PyBool_FromLong(got);
}


/* ---------------------------------------------------------------- Book (exact L2 book in C)
 *
 * A consumer's book: each side a sorted array of levels with the best last, so the common
 * changes near the touch move few bytes.  Keys are price for bids and -price for asks, so both
 * sides sort ascending.  `take` remembers liquidity we took from a level until the feed next
 * reports that level (a mock venue must not take it twice); `size` and `levels` report what is
 * left.  Input ports in book mode apply L2Update records here in C and call the handler only on
 * the record that ends an exchange message. */

typedef struct {
    int64_t key, size, taken;
} Level;

typedef struct {
    PyObject_HEAD Level *lv[2]; /* 0 bids, 1 asks */
    Py_ssize_t n[2], cap[2];
    Py_ssize_t depth; /* a venue protocol's subscribed depth (truncate), 0: none */
    uint64_t ver[2];  /* bumped by every change within a side's best TOP_TRACKED levels */
    struct {
        uint64_t ver[2];
        Py_ssize_t n[2];
        int64_t args[2];
        long value;
    } ck[2]; /* the last Kraken / Bitfinex checksum, valid while its key matches */
    void *frags; /* the checksums' text per level (_feedbook.c), or NULL */
    struct {      /* Book.watch: what wakes the owner of a book (a mock venue's resting orders) */
        Level *at;               /* (price as key, side in size, queue ahead in taken) */
        Py_ssize_t n;
        int on, hit;             /* hit: a watched level fell below its queue, or the book was cleared */
        int64_t buy_max, sell_min; /* the highest resting buy, the lowest resting sell */
    } watch;
} Book;

#define TOP_TRACKED 25 /* the deepest checksum (Bitfinex's top 25) */

#define L2_PRICE 24
#define L2_SIZE 32
#define L2_EXCH_TS 40
#define L2_INSTRUMENT 48
#define L2_SIDE 52
#define L2_FLAGS 53
#define L2_LAST 1
#define TRADE_PRICE 24
#define TRADE_INSTRUMENT 56
#define L2_CLEAR 4

static void Book_dealloc(Book *self) {
    PyMem_Free(self->watch.at);
    PyMem_Free(self->frags);
    PyMem_Free(self->lv[0]);
    PyMem_Free(self->lv[1]);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* First index whose key >= key. */
static inline Py_ssize_t lower(const Level *a, Py_ssize_t n, int64_t key) {
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) >> 1;
        if (a[mid].key < key) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* A watched level now holds `left`: below an order's queue ahead, its owner must look. */
static inline void watch_level(Book *b, int side, int64_t price, int64_t left) {
    for (Py_ssize_t j = 0; j < b->watch.n; j++) {
        const Level *w = b->watch.at + j;
        if (w->key == price && w->size == side && left < w->taken) b->watch.hit = 1;
    }
}

/* After a message: is there anything for the watcher to do?  (A level fell below a queue, the book
 * was cleared, or it reaches a resting order's price.)  Clears the hit. */
static inline int watch_due(Book *b) {
    int due = b->watch.hit;
    b->watch.hit = 0;
    if (b->n[1] && -b->lv[1][b->n[1] - 1].key <= b->watch.buy_max) due = 1;
    if (b->n[0] && b->lv[0][b->n[0] - 1].key >= b->watch.sell_min) due = 1;
    return due;
}

static int book_apply(Book *b, int side, int64_t price, int64_t size) {
    if (size < 0) {
        PyErr_Format(PyExc_ValueError, "negative size %lld at price %lld", (long long)size, (long long)price);
        return -1;
    }
    if (price == INT64_MIN) { /* asks are keyed by -price: keep every price negatable */
        PyErr_SetString(PyExc_OverflowError, "price -2**63 is out of the book's range");
        return -1;
    }
    int s = side > 0 ? 0 : 1;
    int64_t key = s ? -price : price;
    Level *a = b->lv[s];
    Py_ssize_t n = b->n[s], i = lower(a, n, key);
    if (i >= n - TOP_TRACKED) b->ver[s]++; /* the best are last */
    if (b->watch.on) watch_level(b, side > 0 ? 1 : -1, price, size);
    if (i < n && a[i].key == key) {
        if (size) a[i].size = size, a[i].taken = 0;
        else memmove(a + i, a + i + 1, (size_t)(n - i - 1) * sizeof(Level)), b->n[s]--;
        return 0;
    }
    if (!size) return 0;
    if (n == b->cap[s]) {
        Py_ssize_t cap = b->cap[s] ? 2 * b->cap[s] : 64;
        Level *na = PyMem_Realloc(a, (size_t)cap * sizeof(Level));
        if (!na) {
            PyErr_NoMemory();
            return -1;
        }
        b->lv[s] = a = na, b->cap[s] = cap;
    }
    memmove(a + i + 1, a + i, (size_t)(n - i) * sizeof(Level));
    a[i].key = key, a[i].size = size, a[i].taken = 0;
    b->n[s]++;
    return 0;
}

static inline int side_arg(PyObject *o, int *s) {
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v != 1 && v != -1) {
        PyErr_Format(PyExc_ValueError, "side must be 1 (bid) or -1 (ask), got %ld", v);
        return -1;
    }
    *s = v > 0 ? 0 : 1;
    return 0;
}

static PyObject *Book_apply(Book *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "apply(side, price, size)");
        return NULL;
    }
    int s;
    if (side_arg(args[0], &s) < 0) return NULL;
    int64_t price = PyLong_AsLongLong(args[1]), size = PyLong_AsLongLong(args[2]);
    if (PyErr_Occurred() || book_apply(self, s ? -1 : 1, price, size) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *Book_clear(Book *self, PyObject *unused) {
    if (self->watch.on) self->watch.hit = 1;
    self->n[0] = self->n[1] = 0;
    self->ver[0]++, self->ver[1]++;
    Py_RETURN_NONE;
}

static inline PyObject *best(Book *b, int s) {
    if (!b->n[s]) Py_RETURN_NONE;
    int64_t k = b->lv[s][b->n[s] - 1].key;
    return PyLong_FromLongLong(s ? -k : k);
}

static PyObject *Book_best_bid(Book *self, PyObject *unused) { return best(self, 0); }
static PyObject *Book_best_ask(Book *self, PyObject *unused) { return best(self, 1); }

static inline int book_crossed(const Book *b) {
    return b->n[0] && b->n[1] && b->lv[0][b->n[0] - 1].key >= -b->lv[1][b->n[1] - 1].key;
}

static PyObject *Book_crossed(Book *self, PyObject *unused) { return PyBool_FromLong(book_crossed(self)); }

/* levels(side, n=all) -> [(price, size left)] best first; top(side, n) is the same with n. */
static PyObject *Book_levels(Book *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "levels(side, n=all)");
        return NULL;
    }
    int s;
    if (side_arg(args[0], &s) < 0) return NULL;
    Py_ssize_t want = nargs > 1 ? PyLong_AsSsize_t(args[1]) : PY_SSIZE_T_MAX;
    if (want == -1 && PyErr_Occurred()) return NULL;
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    const Level *a = self->lv[s];
    for (Py_ssize_t i = self->n[s] - 1; i >= 0 && PyList_GET_SIZE(out) < want; i--) {
        int64_t left = a[i].size - a[i].taken;
        if (left <= 0) continue;
        PyObject *t = Py_BuildValue("(LL)", (long long)(s ? -a[i].key : a[i].key), (long long)left);
        if (!t || PyList_Append(out, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(t);
    }
    return out;
}

static Level *find(Book *b, int s, int64_t price) {
    if (price == INT64_MIN) return NULL; /* never in the book (see book_apply) */
    int64_t key = s ? -price : price;
    Py_ssize_t i = lower(b->lv[s], b->n[s], key);
    return i < b->n[s] && b->lv[s][i].key == key ? &b->lv[s][i] : NULL;
}

static PyObject *Book_size(Book *self, PyObject *const *args, Py_ssize_t nargs) {
    int s;
    if (nargs != 2 || side_arg(args[0], &s) < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "size(side, price)");
        return NULL;
    }
    int64_t price = PyLong_AsLongLong(args[1]);
    if (PyErr_Occurred()) return NULL;
    Level *l = find(self, s, price);
    return PyLong_FromLongLong(l && l->size > l->taken ? l->size - l->taken : 0);
}

static PyObject *Book_take(Book *self, PyObject *const *args, Py_ssize_t nargs) {
    int s;
    if (nargs != 3 || side_arg(args[0], &s) < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "take(side, price, size)");
        return NULL;
    }
    int64_t price = PyLong_AsLongLong(args[1]), q = PyLong_AsLongLong(args[2]);
    if (PyErr_Occurred()) return NULL;
    if (q < 0) {
        PyErr_Format(PyExc_ValueError, "take size must be >= 0, got %lld", (long long)q);
        return NULL;
    }
    Level *l = find(self, s, price);
    int64_t taken;
    if (l && __builtin_add_overflow(l->taken, q, &taken)) {
        PyErr_SetString(PyExc_OverflowError, "taken size overflows int64");
        return NULL;
    }
    if (l) l->taken = taken;
    if (l && self->watch.on) watch_level(self, s ? -1 : 1, price, l->size > taken ? l->size - taken : 0);
    Py_RETURN_NONE;
}

/* watch(orders): orders = [(side, price, queue ahead)] resting on this book, or None.  While watched,
 * an input port in book mode calls its handler at the end of a message only when the message moved
 * the book onto something watched (see watch_due); the handler must re-watch whenever its orders
 * change (a stale, larger queue or a gone order only wakes it more often).  None: every message. */
static PyObject *Book_watch(Book *self, PyObject *orders) {
    if (orders == Py_None) {
        PyMem_Free(self->watch.at);
        self->watch.at = NULL, self->watch.on = self->watch.hit = 0, self->watch.n = 0;
        Py_RETURN_NONE;
    }
    PyObject *seq = PySequence_Fast(orders, "watch(orders): a sequence of (side, price, queue), or None");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    Level *at = n ? PyMem_Malloc((size_t)n * sizeof(Level)) : NULL;
    if (n && !at) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    int64_t buy_max = INT64_MIN, sell_min = INT64_MAX;
    for (Py_ssize_t j = 0; j < n; j++) {
        long long side, price, queue;
        PyObject *it = PySequence_Fast_GET_ITEM(seq, j);
        if (!PyTuple_Check(it)) {
            PyErr_Format(PyExc_TypeError, "watch(orders): expected (side, price, queue) tuples, got %.50s", Py_TYPE(it)->tp_name);
            goto bad;
        }
        if (!PyArg_ParseTuple(it, "LLL", &side, &price, &queue)) goto bad;
        if (side != 1 && side != -1) {
            PyErr_Format(PyExc_ValueError, "side must be 1 (bid) or -1 (ask), got %lld", side);
            goto bad;
        }
        at[j].key = price, at[j].size = side, at[j].taken = queue;
        if (side > 0 && price > buy_max) buy_max = price;
        if (side < 0 && price < sell_min) sell_min = price;
    }
    Py_DECREF(seq);
    PyMem_Free(self->watch.at);
    self->watch.at = at, self->watch.n = n, self->watch.on = 1;
    self->watch.buy_max = buy_max, self->watch.sell_min = sell_min;
    Py_RETURN_NONE;
bad:
    Py_DECREF(seq);
    PyMem_Free(at);
    return NULL;
}

/* due() -> whether the watcher must look at the book now (clears the hit); True when not watched. */
static PyObject *Book_due(Book *self, PyObject *unused) {
    return PyBool_FromLong(!self->watch.on || watch_due(self));
}

/* tops(records, itemsize) -> (bytes, bad): apply a run of whole L2Update records (one instrument's,
 * e.g. a batch read from a ring or a segment file) and, at every record that ends an exchange
 * message, record (index, best bid, best ask) as three int64 (0 where a side is empty).  A record
 * the book refuses (negative size, price out of range) is skipped and counted in `bad`: the UI
 * shows a recording's tops without a Python step per level. */
static PyObject *Book_tops(Book *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "tops(records, itemsize)");
        return NULL;
    }
    Py_ssize_t item = PyLong_AsSsize_t(args[1]);
    if (item == -1 && PyErr_Occurred()) return NULL;
    if (item < L2_FLAGS + 1) {
        PyErr_Format(PyExc_ValueError, "itemsize %zd is smaller than an L2Update record", item);
        return NULL;
    }
    Py_buffer buf;
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (buf.len % item) {
        PyBuffer_Release(&buf);
        PyErr_Format(PyExc_ValueError, "buffer of %zd bytes is not a whole number of %zd-byte records", buf.len, item);
        return NULL;
    }
    Py_ssize_t n = buf.len / item, m = 0, bad = 0;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (n ? n : 1) * 3 * (Py_ssize_t)sizeof(int64_t));
    if (!out) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    int64_t *o = (int64_t *)PyBytes_AS_STRING(out);
    const char *r = buf.buf;
    for (Py_ssize_t i = 0; i < n; i++, r += item) {
        int64_t price, size;
        memcpy(&price, r + L2_PRICE, 8);
        memcpy(&size, r + L2_SIZE, 8);
        int8_t side = (int8_t)r[L2_SIDE];
        uint8_t flags = (uint8_t)r[L2_FLAGS];
        if (flags & L2_CLEAR) self->n[0] = self->n[1] = 0;
        if ((side != 1 && side != -1) || book_apply(self, side, price, size) < 0) {
            PyErr_Clear();
            bad++;
        }
        if (flags & L2_LAST) {
            o[3 * m] = i;
            o[3 * m + 1] = self->n[0] ? self->lv[0][self->n[0] - 1].key : 0;
            o[3 * m + 2] = self->n[1] ? -self->lv[1][self->n[1] - 1].key : 0;
            m++;
        }
    }
    PyBuffer_Release(&buf);
    if (_PyBytes_Resize(&out, m * 3 * (Py_ssize_t)sizeof(int64_t)) < 0) return NULL;
    return Py_BuildValue("(Nn)", out, bad);
}

static Py_ssize_t Book_len(Book *self) { return self->n[0] + self->n[1]; }

static PyObject *Book_repr(Book *self) {
    PyObject *bb = best(self, 0), *ba = best(self, 1);
    PyObject *r = PyUnicode_FromFormat("Book(bids=%zd, asks=%zd, best=%R/%R)", self->n[0], self->n[1], bb, ba);
    Py_XDECREF(bb);
    Py_XDECREF(ba);
    return r;
}

#include "_feedbook.c" /* what the venue protocols need: depth, truncation, top prices, checksums */

static PyMethodDef Book_methods[] = {
    FEEDBOOK_METHODS
    {"apply", (PyCFunction)(void (*)(void))Book_apply, METH_FASTCALL, "apply(side, price, size): set a level; size 0 removes it"},
    {"clear", (PyCFunction)Book_clear, METH_NOARGS, "remove every level"},
    {"best_bid", (PyCFunction)Book_best_bid, METH_NOARGS, "best bid price or None"},
    {"best_ask", (PyCFunction)Book_best_ask, METH_NOARGS, "best ask price or None"},
    {"crossed", (PyCFunction)Book_crossed, METH_NOARGS, "best bid >= best ask"},
    {"levels", (PyCFunction)(void (*)(void))Book_levels, METH_FASTCALL, "levels(side, n=all) -> [(price, size left)], best first"},
    {"top", (PyCFunction)(void (*)(void))Book_levels, METH_FASTCALL, "top(side, n): the best n levels"},
    {"size", (PyCFunction)(void (*)(void))Book_size, METH_FASTCALL, "size(side, price) -> size left at the level, 0 if none"},
    {"take", (PyCFunction)(void (*)(void))Book_take, METH_FASTCALL, "take(side, price, size): we took it (until the level is next set)"},
    {"watch", (PyCFunction)Book_watch, METH_O, "watch([(side, price, queue ahead)] or None): wake a book-mode input's handler only when a message reaches these orders"},
    {"due", (PyCFunction)Book_due, METH_NOARGS, "due() -> True if a watched order must be looked at (clears it); True when not watched"},
    {"tops", (PyCFunction)(void (*)(void))Book_tops, METH_FASTCALL, "tops(records, itemsize) -> (bytes of (index, bid, ask) int64 at each message end, bad)"},
    {NULL}};

static PySequenceMethods Book_seq = {.sq_length = (lenfunc)Book_len};

static PyTypeObject BookType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "mantra._spine.Book",
    .tp_basicsize = sizeof(Book),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)Book_dealloc,
    .tp_methods = Book_methods,
    .tp_getset = Book_getset,
    .tp_members = Book_members,
    .tp_init = (initproc)Book_init,
    .tp_as_sequence = &Book_seq,
    .tp_repr = (reprfunc)Book_repr,
    .tp_doc = "Book(depth=0): an exact L2 book of int64 prices and sizes (see mantra.book)",
};

/* ---------------------------------------------------------------- Input (an actor's input port)
 *
 * The runtime's per-message hot path in one C loop: read a record, build the message tuple (a
 * NamedTuple subclass, filled field by field from its layout), set the tracking origin and, under
 * a simulated clock, the clock's view of "now" (the record's publish time), call the handler, and
 * write the timing record.  `limit` (publish ns, 0 = none) stops at the first record published
 * after it: a deterministic run hands each actor only what exists at the present. */

#define MAX_FIELDS 32

typedef struct {
    PyObject_HEAD Reader *reader;          /* NULL: not initialised (or cleared by the GC) */
    Writer *timing;                        /* timing ring, or NULL */
    PyObject *handler, *cls, *track, *clock; /* clock: a SimClock (view set per record) or NULL */
    PyObject *owner;                       /* the actor: dispatch_all reads its wakeup, or NULL */
    PyObject *books;                       /* book mode: {instrument: Book}, or NULL */
    uint32_t key;
    int nfields, failed, stop_after;       /* stop_after: dispatch_all returns after each record */
    int trades;                            /* book mode on a TradeUpdate port: only trades that can reach */
    int book_call;                         /* book mode: handler(instrument, book, exch_ts), no message */
    uint16_t off[MAX_FIELDS], size[MAX_FIELDS];
    char code[MAX_FIELDS];
    char *buf;
    size_t cap;
    uint64_t handled, errors;              /* errors: records whose handler raised */
    uint64_t crossed;                      /* book_call: messages that left the book crossed (no call) */
} Input;

static PyObject *s_origin, *s_t, *s_wakeup; /* interned attribute names */

static int field_width(char code) {
    switch (code) {
    case 'q': case 'Q': return 8;
    case 'i': case 'I': return 4;
    case 'h': case 'H': return 2;
    case 'b': case 'B': return 1;
    case 's': return -1; /* any */
    default: return 0;   /* unknown */
    }
}

/* A message type's FIELDS_AT, [(offset in the record, size, struct code), ...], checked against a
 * record of rec bytes: the number of fields, or -1 with an exception. */
static int parse_layout(PyObject *layout, size_t rec, uint16_t *offs, uint16_t *sizes, char *codes) {
    if (!PyList_Check(layout)) {
        PyErr_SetString(PyExc_TypeError, "layout must be a list of (offset, size, code)");
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(layout);
    if (n > MAX_FIELDS) {
        PyErr_SetString(PyExc_ValueError, "too many fields");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned int off, size;
        int code;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(layout, i), "IIC", &off, &size, &code)) return -1;
        int w = code < 128 ? field_width((char)code) : 0;
        /* every field inside the record (64-bit sum: no wrap-around), of its code's width */
        if ((uint64_t)off + size > rec || off > UINT16_MAX || size > UINT16_MAX || !w || (w > 0 && (int)size != w)) {
            PyErr_Format(PyExc_ValueError, "field %zd: bad layout", i);
            return -1;
        }
        offs[i] = (uint16_t)off, sizes[i] = (uint16_t)size, codes[i] = (char)code;
    }
    return (int)n;
}

static int Input_init(Input *self, PyObject *args, PyObject *kw) {
    PyObject *reader, *handler, *cls, *layout, *track, *clock, *timing, *owner = Py_None, *books = Py_None;
    unsigned int key;
    int stop_after = 0, trades = 0, book_call = 0;
    if (self->reader) {
        PyErr_SetString(PyExc_TypeError, "Input is already initialised");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "O!OOO!OOOI|OpOpp", &ReaderType, &reader, &handler, &cls, &PyList_Type, &layout, &track,
                          &clock, &timing, &key, &owner, &stop_after, &books, &trades, &book_call))
        return -1;
    if (!((Reader *)reader)->m.base) {
        PyErr_SetString(PyExc_ValueError, "reader is " CLOSED_MSG);
        return -1;
    }
    if (books != Py_None && !PyDict_Check(books)) {
        PyErr_SetString(PyExc_TypeError, "books must be a dict {instrument: Book} or None");
        return -1;
    }
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "cls must be a tuple subclass (a message type)");
        return -1;
    }
    if (timing != Py_None && !PyObject_TypeCheck(timing, &WriterType)) {
        PyErr_SetString(PyExc_TypeError, "timing must be a Writer or None");
        return -1;
    }
    size_t rec = ((Reader *)reader)->m.slot_size - 8;
    if (books != Py_None && rec < (trades ? TRADE_INSTRUMENT + 4 : L2_FLAGS + 1)) {
        PyErr_SetString(PyExc_ValueError, trades ? "book-mode input: records must be TradeUpdates"
                                                  : "book-mode input: records must be L2Updates");
        return -1;
    }
    int n = parse_layout(layout, rec, self->off, self->size, self->code);
    if (n < 0) return -1;
    self->nfields = n;
    self->buf = PyMem_Malloc(rec);
    if (!self->buf) {
        PyErr_NoMemory();
        return -1;
    }
    self->cap = rec;
    Py_INCREF(reader), self->reader = (Reader *)reader;
    Py_INCREF(handler), self->handler = handler;
    Py_INCREF(cls), self->cls = cls;
    Py_INCREF(track), self->track = track;
    self->clock = clock == Py_None ? NULL : (Py_INCREF(clock), clock);
    self->timing = timing == Py_None ? NULL : (Py_INCREF(timing), (Writer *)timing);
    self->owner = owner == Py_None ? NULL : (Py_INCREF(owner), owner);
    self->books = books == Py_None ? NULL : (Py_INCREF(books), books);
    self->trades = trades;
    self->book_call = book_call && books != Py_None && !trades;
    self->key = key;
    self->stop_after = stop_after;
    return 0;
}

/* GC support: a handler is usually a bound method of the actor, which holds its ports: a cycle. */
static int Input_traverse(Input *self, visitproc visit, void *arg) {
    Py_VISIT(self->reader);
    Py_VISIT(self->timing);
    Py_VISIT(self->handler);
    Py_VISIT(self->cls);
    Py_VISIT(self->track);
    Py_VISIT(self->clock);
    Py_VISIT(self->owner);
    Py_VISIT(self->books);
    return 0;
}

static int Input_clear(Input *self) {
    Py_CLEAR(self->owner);
    Py_CLEAR(self->books);
    Py_CLEAR(self->reader);
    Py_CLEAR(self->timing);
    Py_CLEAR(self->handler);
    Py_CLEAR(self->cls);
    Py_CLEAR(self->track);
    Py_CLEAR(self->clock);
    return 0;
}

static void Input_dealloc(Input *self) {
    PyObject_GC_UnTrack(self);
    Input_clear(self);
    PyMem_Free(self->buf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A message (an instance of the tuple subclass cls) from the n fields of a record at b. */
static PyObject *make_message(PyObject *cls, int n, const uint16_t *off, const uint16_t *size, const char *code,
                              const char *b) {
    PyObject *t = ((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, n);
    if (!t) return NULL;
    for (int i = 0; i < n; i++) {
        const char *p = b + off[i];
        PyObject *v;
        union {
            int64_t q; uint64_t Q; int32_t i; uint32_t I; int16_t h; uint16_t H;
        } u;
        if (code[i] != 's') memcpy(&u, p, size[i]); /* fields need not be aligned */
        switch (code[i]) {
        case 'q': v = PyLong_FromLongLong(u.q); break;
        case 'Q': v = PyLong_FromUnsignedLongLong(u.Q); break;
        case 'i': v = PyLong_FromLong(u.i); break;
        case 'I': v = PyLong_FromUnsignedLong(u.I); break;
        case 'h': v = PyLong_FromLong(u.h); break;
        case 'H': v = PyLong_FromLong(u.H); break;
        case 'b': v = PyLong_FromLong(*(const int8_t *)p); break;
        case 'B': v = PyLong_FromLong(*(const uint8_t *)p); break;
        default: v = PyBytes_FromStringAndSize(p, size[i]); break;
        }
        if (!v) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

static PyObject *build(Input *self) {
    return make_message(self->cls, self->nfields, self->off, self->size, self->code, self->buf);
}

/* Publish time of the next record without consuming it: 1 and *pub if one is complete (skip
 * markers, laps and stuck sequences before it are dealt with, as a read would). */
static inline int peek_publish(Reader *r, uint64_t *pub) {
    while (settle(r)) {
        const char *slot = slot_at(&r->m, r->seq & r->m.mask);
        *pub = LOAD_RLX((const uint64_t *)(slot + 16));
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (LOAD_RLX((const uint64_t *)slot) == 2 * r->seq + 2) return 1;
    }
    return 0;
}

/* A handler's failure, kept while the others are served (see dispatch). */
typedef struct {
    PyObject *type, *value, *tb;
} Failure;

static void failure_drop(Failure *f) {
    Py_CLEAR(f->type);
    Py_CLEAR(f->value);
    Py_CLEAR(f->tb);
}

/* The current exception is a handler's: with `f`, keep the first one there and go on (1); without
 * (or for KeyboardInterrupt, SystemExit: not a handler's business) stop (0). */
static int keep_going(Input *self, Failure *f) {
    self->failed = 1;
    self->errors++;
    if (!f || !PyErr_ExceptionMatches(PyExc_Exception)) return 0;
    if (!f->type) PyErr_Fetch(&f->type, &f->value, &f->tb);
    else PyErr_Clear();
    return 1;
}

/* A simulated clock's view of "now": the record's publish time. */
static int set_clock(PyObject *clock, uint64_t pub) {
    PyObject *t = PyLong_FromUnsignedLongLong(pub);
    if (!t) return -1;
    int r = PyObject_SetAttr(clock, s_t, t);
    Py_DECREF(t);
    return r;
}

/* A TradeUpdate in the buffer: 1 if it cannot fill any order watched on its book (its price is above
 * every resting buy and below every resting sell; Matching.trade) and the owner has nothing due by
 * its time (the mock exchange acts on due requests before a trade), 0 if the handler must see it
 * (not watched, no book: the handler decides), -1 with an exception set. */
static int trade_unreachable(Input *self) {
    uint32_t inst;
    int64_t price;
    uint64_t pub;
    memcpy(&inst, self->buf + TRADE_INSTRUMENT, 4);
    memcpy(&price, self->buf + TRADE_PRICE, 8);
    memcpy(&pub, self->buf + 8, 8);
    PyObject *iid = PyLong_FromUnsignedLong(inst);
    if (!iid) return -1;
    PyObject *bk = PyDict_GetItemWithError(self->books, iid);
    Py_DECREF(iid);
    if (!bk) return PyErr_Occurred() ? -1 : 0;
    if (!PyObject_TypeCheck(bk, &BookType)) {
        PyErr_SetString(PyExc_TypeError, "book-mode input: books must hold mantra._spine.Book");
        return -1;
    }
    Book *b = (Book *)bk;
    if (!b->watch.on || price <= b->watch.buy_max || price >= b->watch.sell_min) return 0;
    if (!self->owner) return 0;
    PyObject *w = PyObject_GetAttr(self->owner, s_wakeup);
    if (!w) return -1;
    unsigned long long due = PyLong_AsUnsignedLongLong(w);
    Py_DECREF(w);
    if (due == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    return !(due && due <= pub);
}

/* Handle up to max_n records; returns the count, or -1 with an exception set.  A handler that
 * raises consumes its record (`failed` set, `errors` counted); with `f` the next records are still
 * served and the first failure is left in `f`, without it the call stops there. */
static Py_ssize_t dispatch(Input *self, uint64_t limit, Py_ssize_t max_n, Failure *f) {
    Reader *r = self->reader;
    if (!r || !r->m.base) {
        PyErr_SetString(PyExc_ValueError, r ? "reader is " CLOSED_MSG : "Input is " CLOSED_MSG);
        return -1;
    }
    /* our own references: a handler may drop the Input's (the Input stays, the GC cannot clear it) */
    PyObject *handler = self->handler;
    Py_INCREF(r);
    Py_INCREF(handler);
    Py_ssize_t n = 0;
    while (n < max_n) {
        if (!r->m.base) { /* a handler closed it */
            PyErr_SetString(PyExc_ValueError, "reader is " CLOSED_MSG);
            goto fail;
        }
        uint64_t pub;
        if (limit) {
            if (!peek_publish(r, &pub) || pub > limit) break;
        }
        if (!ring_read(r, self->buf)) break;
        PyObject *bk = NULL; /* book mode: the message's book (borrowed from the dict) */
        if (self->books && self->trades) { /* a trade that cannot reach a watched book's orders: no call */
            int skip = trade_unreachable(self);
            if (skip < 0) {
                n++, self->handled++, handled_total++;
                if (keep_going(self, f)) continue;
                goto fail;
            }
            if (skip) {
                memcpy(&pub, self->buf + 8, 8);
                if (self->clock && set_clock(self->clock, pub) < 0) goto fail;
                n++, self->handled++, handled_total++;
                continue;
            }
        } else if (self->books) { /* apply in C; Python sees only the record that ends a message */
            const char *b = self->buf;
            uint32_t inst;
            int64_t price, size;
            memcpy(&inst, b + L2_INSTRUMENT, 4);
            memcpy(&price, b + L2_PRICE, 8);
            memcpy(&size, b + L2_SIZE, 8);
            PyObject *iid = PyLong_FromUnsignedLong(inst);
            if (!iid) goto fail;
            bk = PyDict_GetItemWithError(self->books, iid);
            Py_DECREF(iid);
            if (!bk) {
                if (PyErr_Occurred()) goto fail;
                n++, self->handled++, handled_total++; /* an instrument we do not follow */
                continue;
            }
            if (!PyObject_TypeCheck(bk, &BookType)) {
                n++, self->handled++, handled_total++;
                PyErr_SetString(PyExc_TypeError, "book-mode input: books must hold mantra._spine.Book");
                if (keep_going(self, f)) continue;
                goto fail;
            }
            uint8_t fl = *(const uint8_t *)(b + L2_FLAGS);
            if (fl & L2_CLEAR) {
                ((Book *)bk)->n[0] = ((Book *)bk)->n[1] = 0;
                if (((Book *)bk)->watch.on) ((Book *)bk)->watch.hit = 1;
            }
            if (book_apply((Book *)bk, *(const int8_t *)(b + L2_SIDE), price, size) < 0) {
                n++, self->handled++, handled_total++;
                if (keep_going(self, f)) continue;
                goto fail;
            }
            if (!(fl & L2_LAST)) {
                n++, self->handled++, handled_total++;
                continue;
            }
            int crossed = self->book_call && book_crossed((Book *)bk);
            self->crossed += crossed;
            if (crossed || (((Book *)bk)->watch.on && !watch_due((Book *)bk))) {
                /* a crossed book for a book_call handler (it trades only on a consistent book), or
                 * nothing the owner watches was reached: no call, but time moves on as if it ran */
                memcpy(&pub, self->buf + 8, 8);
                if (self->clock && set_clock(self->clock, pub) < 0) goto fail;
                n++, self->handled++, handled_total++;
                continue;
            }
        }
        uint64_t origin;
        memcpy(&origin, self->buf, 8);
        memcpy(&pub, self->buf + 8, 8);
        if (!origin) origin = 1;
        PyObject *o = PyLong_FromUnsignedLongLong(origin);
        if (!o || PyObject_SetAttr(self->track, s_origin, o) < 0) {
            Py_XDECREF(o);
            goto fail;
        }
        Py_DECREF(o);
        if (self->clock && set_clock(self->clock, pub) < 0) goto fail;
        PyObject *res;
        uint64_t start;
        if (self->book_call) { /* handler(instrument, book, exch_ts): the book holds the message */
            uint32_t inst;
            int64_t ets;
            memcpy(&inst, self->buf + L2_INSTRUMENT, 4);
            memcpy(&ets, self->buf + L2_EXCH_TS, 8);
            PyObject *a[4] = {NULL, PyLong_FromUnsignedLong(inst), bk, PyLong_FromLongLong(ets)};
            if (!a[1] || !a[3]) {
                Py_XDECREF(a[1]), Py_XDECREF(a[3]);
                goto fail;
            }
            Py_INCREF(bk); /* the handler may drop it from the dict */
            calls++;
            start = self->timing ? clock_ns() : 0;
            res = PyObject_Vectorcall(handler, a + 1, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            Py_DECREF(a[1]), Py_DECREF(bk), Py_DECREF(a[3]);
        } else {
            PyObject *msg = build(self);
            if (!msg) goto fail;
            calls++;
            start = self->timing ? clock_ns() : 0;
            res = PyObject_CallOneArg(handler, msg);
            Py_DECREF(msg);
        }
        n++;
        self->handled++;
        handled_total++;
        if (!res) {
            if (keep_going(self, f)) continue;
            goto fail;
        }
        Py_DECREF(res);
        if (self->timing && self->timing->m.base) {
            uint64_t end = clock_ns();
            struct {
                uint32_t key, pad;
                uint64_t start, end;
            } rec = {self->key, 0, start, end};
            ring_write(&self->timing->m, origin, end, self->key, &rec, sizeof rec, 0);
        }
    }
    Py_DECREF(handler);
    Py_DECREF(r);
    return n;
fail:
    Py_DECREF(handler);
    Py_DECREF(r);
    return -1;
}

/* A pass that kept going past handler failures: raise the first one now. */
static PyObject *raise_kept(Failure *f, PyObject *result) {
    if (!f->type) return result;
    Py_XDECREF(result);
    PyErr_Restore(f->type, f->value, f->tb);
    return NULL;
}

/* dispatch(limit=0, max_n=all) -> records handled.  A handler's exception is raised after the
 * batch: the records after a failing one are still handled. */
static PyObject *Input_dispatch(Input *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t limit = nargs > 0 ? PyLong_AsUnsignedLongLong(args[0]) : 0;
    Py_ssize_t max_n = nargs > 1 ? PyLong_AsSsize_t(args[1]) : PY_SSIZE_T_MAX;
    if (PyErr_Occurred()) return NULL;
    Failure f = {0};
    Py_ssize_t n = dispatch(self, limit, max_n, &f);
    if (n < 0) {
        failure_drop(&f);
        return NULL;
    }
    return raise_kept(&f, PyLong_FromSsize_t(n));
}

static PyObject *Input_get_handled(Input *self, void *c) { return PyLong_FromUnsignedLongLong(self->handled); }
static PyObject *Input_get_errors(Input *self, void *c) { return PyLong_FromUnsignedLongLong(self->errors); }
static PyObject *Input_get_crossed(Input *self, void *c) { return PyLong_FromUnsignedLongLong(self->crossed); }
static PyObject *Input_get_failed(Input *self, void *c) { return PyBool_FromLong(self->failed); }
static int Input_set_failed(Input *self, PyObject *v, void *c) {
    int t = v ? PyObject_IsTrue(v) : 0;
    if (t < 0) return -1;
    self->failed = t;
    return 0;
}

static PyMethodDef Input_methods[] = {
    {"dispatch", (PyCFunction)(void (*)(void))Input_dispatch, METH_FASTCALL,
     "dispatch(limit=0, max_n=all) -> records handled; limit: stop at a record published after it"},
    {NULL}};

static PyGetSetDef Input_getset[] = {
    {"handled", (getter)Input_get_handled, NULL, "records handed to the handler so far", NULL},
    {"errors", (getter)Input_get_errors, NULL, "records whose handler raised, so far", NULL},
    {"crossed", (getter)Input_get_crossed, NULL, "book_call: messages not handed over because they left the book crossed", NULL},
    {"failed", (getter)Input_get_failed, (setter)Input_set_failed, "a handler raised since this was last cleared", NULL},
    {NULL}};

static PyTypeObject InputType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "mantra._spine.Input",
    .tp_basicsize = sizeof(Input),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Input_init,
    .tp_dealloc = (destructor)Input_dealloc,
    .tp_traverse = (traverseproc)Input_traverse,
    .tp_clear = (inquiry)Input_clear,
    .tp_free = PyObject_GC_Del,
    .tp_methods = Input_methods,
    .tp_getset = Input_getset,
    .tp_doc = "Input(reader, handler, cls, layout, track, clock, timing, key, owner=None, stop_after=False, books=None, "
              "trades=False): an actor's input port; layout: [(offset in record, size, struct code)] per field; "
              "books: {instrument: Book}, L2Updates applied to them (trades: TradeUpdates that cannot reach a "
              "watched book's orders skipped; book_call: the handler called as handler(instrument, book, exch_ts), "
              "only on an uncrossed book)",
};

/* The inputs of a call, as a tuple of our own (a handler may change the caller's list). */
static PyObject *inputs_arg(PyObject *const *args, Py_ssize_t nargs, const char *usage) {
    if (nargs != 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    PyObject *t = PyList_AsTuple(args[0]);
    if (!t) return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(t); i++) {
        PyObject *o = PyTuple_GET_ITEM(t, i);
        if (!PyObject_TypeCheck(o, &InputType) || !((Input *)o)->reader || !((Input *)o)->reader->m.base) {
            Py_DECREF(t);
            PyErr_Format(PyExc_TypeError, "%s: open Inputs only", usage);
            return NULL;
        }
    }
    return t;
}

/* dispatch_each(inputs, max_n) -> records handled: up to max_n from each input in turn (a live
 * pass: one busy stream cannot starve the others, nor can one whose handler keeps raising: every
 * input is served, then the first handler exception is raised). */
static PyObject *dispatch_each(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    PyObject *ins = inputs_arg(args, nargs, "dispatch_each(list_of_inputs, max_n)");
    if (!ins) return NULL;
    Py_ssize_t max_n = PyLong_AsSsize_t(args[1]), total = 0;
    if (max_n == -1 && PyErr_Occurred()) {
        Py_DECREF(ins);
        return NULL;
    }
    Failure f = {0};
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(ins); i++) {
        Py_ssize_t k = dispatch((Input *)PyTuple_GET_ITEM(ins, i), 0, max_n, &f);
        if (k < 0) {
            failure_drop(&f);
            Py_DECREF(ins);
            return NULL;
        }
        total += k;
    }
    Py_DECREF(ins);
    return raise_kept(&f, PyLong_FromSsize_t(total));
}

/* Wake-up the owner asks for (0 = none), or -1 with an error set. */
static inline int64_t owner_wakeup(Input *in) {
    PyObject *w = PyObject_GetAttr(in->owner, s_wakeup);
    if (!w) return -1;
    uint64_t v = PyLong_AsUnsignedLongLong(w);
    Py_DECREF(w);
    return PyErr_Occurred() ? -1 : (int64_t)v;
}

/* dispatch_all(inputs, limit) -> bitmask of the inputs (first 63) that handled records.
 *
 * The deterministic runner's merge: hand over the records published before `limit` (the earliest
 * wake-up: at that instant the loops run first), across
 * all inputs in publish-time order (ties: list order), until a handler reacts (publishes or writes
 * an array slot) or its owner asks for a wake-up at or before the record's time; a wake-up asked
 * for later only lowers the limit, and an input with `stop_after` (its actor loops after input)
 * ends the call with the last record of that instant.  The simulated clock's view is
 * left at the last record's time: the instant at which the runner then runs the due loops.  A
 * handler's exception ends the call (the order of what follows must not depend on it). */
static PyObject *dispatch_all(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    PyObject *ins = inputs_arg(args, nargs, "dispatch_all(list_of_inputs, limit)");
    if (!ins) return NULL;
    uint64_t limit = PyLong_AsUnsignedLongLong(args[1]), mask = 0;
    if (PyErr_Occurred()) {
        Py_DECREF(ins);
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(ins);
    for (;;) {
        Input *best = NULL;
        Py_ssize_t bi = 0;
        uint64_t bt = 0, pub;
        for (Py_ssize_t i = 0; i < n; i++) {
            Input *in = (Input *)PyTuple_GET_ITEM(ins, i);
            if (!in->reader || !in->reader->m.base) { /* a handler closed it */
                PyErr_SetString(PyExc_ValueError, "reader is " CLOSED_MSG);
                goto fail;
            }
            if (peek_publish(in->reader, &pub) && pub < limit && (!best || pub < bt)) best = in, bi = i, bt = pub;
        }
        if (!best) break;
        uint64_t before = activity, called = calls;
        if (dispatch(best, 0, 1, NULL) < 0) goto fail;
        if (bi < 63) mask |= 1ull << bi;
        if (activity != before) break;
        if (best->stop_after && limit > bt + 1) limit = bt + 1; /* the rest of this instant, then its loop */
        if (best->owner && calls != called) { /* only a handler that ran can have asked for a wake-up */
            int64_t w = owner_wakeup(best);
            if (w < 0) goto fail;
            if (w && (uint64_t)w <= bt) break;
            if (w && (uint64_t)w < limit) limit = (uint64_t)w; /* records from then on wait for its loop */
        }
    }
    Py_DECREF(ins);
    return PyLong_FromUnsignedLongLong(mask);
fail:
    Py_DECREF(ins);
    return NULL;
}

/* ---------------------------------------------------------------- Array (seqlock array) */

#define TORN_SLOTS 8
#define ARRAY_STUCK_NS 20000000ll /* a write takes ~100 ns: 20 ms mid-write means its writer died or froze */

static PyObject *TornRead; /* _spine.TornRead(RuntimeError) */

typedef struct {
    PyObject_HEAD Map m;
    /* slots found stuck mid-write, with the odd version seen: read again while still so, they fail
     * at once instead of spinning again */
    uint64_t torn_index[TORN_SLOTS], torn_version[TORN_SLOTS];
    unsigned torn_next;
} Array;

static int Array_init(Array *self, PyObject *args, PyObject *kw) {
    PyObject *buffer;
    if (!PyArg_ParseTuple(args, "O", &buffer)) return -1;
    map_close(&self->m);
    memset(self->torn_version, 0, sizeof self->torn_version);
    if (map_open(&self->m, buffer, 1) < 0) return -1;
    if (self->m.kind != KIND_ARRAY) {
        map_close(&self->m);
        PyErr_SetString(PyExc_ValueError, "not a seqlock array");
        return -1;
    }
    return 0;
}

static void Array_dealloc(Array *self) {
    map_close(&self->m);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static inline int check_index(Array *a, PyObject *o, uint64_t *i) {
    OPEN(&a->m, -1);
    *i = PyLong_AsUnsignedLongLong(o);
    if (PyErr_Occurred()) return -1;
    if (*i >= a->m.capacity) {
        PyErr_Format(PyExc_IndexError, "slot %llu out of range (%llu slots)", (unsigned long long)*i,
                     (unsigned long long)a->m.capacity);
        return -1;
    }
    return 0;
}

/* The write of slot i: one writer per slot; a slot left odd by a dead writer is simply completed
 * by the next write.  Returns the new version. */
static uint64_t array_put(Array *a, uint64_t i, uint64_t origin, uint64_t now, uint32_t publisher, const void *payload,
                          size_t n) {
    char *slot = slot_at(&a->m, i);
    uint64_t *ver = (uint64_t *)slot;
    uint64_t v = __atomic_fetch_or(ver, 1, __ATOMIC_ACQ_REL) | 1; /* odd: writing */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    fill(&a->m, slot, origin, now, publisher, 0, payload, n);
    STORE_REL(ver, v + 1);
    __atomic_fetch_add(a->m.count, 1, __ATOMIC_RELEASE); /* writes(): one word says "something changed" */
    activity++;
    return v + 1;
}

/* write(index, payload, origin, publisher, now=0) -> new version. */
static PyObject *Array_write(Array *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 4 || nargs > 5) {
        PyErr_SetString(PyExc_TypeError, "write(index, payload, origin, publisher, now=0)");
        return NULL;
    }
    uint64_t i;
    if (check_index(self, args[0], &i) < 0) return NULL;
    Py_buffer b;
    if (get_buf(args[1], &b, 0) < 0) return NULL;
    uint64_t origin = PyLong_AsUnsignedLongLong(args[2]);
    uint32_t publisher = (uint32_t)PyLong_AsUnsignedLong(args[3]);
    uint64_t now = nargs > 4 ? PyLong_AsUnsignedLongLong(args[4]) : 0;
    if (PyErr_Occurred() || (uint64_t)b.len > self->m.slot_size - 8 - TRACK) {
        PyBuffer_Release(&b);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "payload does not fit the slot");
        return NULL;
    }
    uint64_t v = array_put(self, i, origin, now, publisher, b.buf, (size_t)b.len);
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLongLong(v);
}

/* Copy slot i's record (tracking header + payload, slot_size-8 bytes) into dst; its version (0:
 * never written) in *v.  Retries while a write is in progress; a slot still mid-write after
 * ARRAY_STUCK_NS (its writer died or froze there) sets TornRead and returns -1: never torn data,
 * never an endless spin. */
static int array_get(Array *self, uint64_t i, char *dst, uint64_t *vout) {
    size_t n = self->m.slot_size - 8;
    const char *slot = slot_at(&self->m, i);
    const uint64_t *ver = (const uint64_t *)slot;
    uint64_t v, since = 0;
    for (unsigned spins = 0;; spins++) {
        v = LOAD_ACQ(ver);
        if (!(v & 1)) {
            if (v == 0) break;
            memcpy(dst, slot + 8, n);
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            if (LOAD_RLX(ver) == v) break;
        } else if (spins >= 1000) { /* a write takes far less: the writer is descheduled, frozen or dead */
            int known = 0;
            for (int k = 0; k < TORN_SLOTS; k++) known |= self->torn_index[k] == i && self->torn_version[k] == v;
            uint64_t t = mono_ns();
            if (!since) since = t;
            if (known || (int64_t)(t - since) > ARRAY_STUCK_NS) {
                if (!known) {
                    unsigned k = self->torn_next++ % TORN_SLOTS;
                    self->torn_index[k] = i, self->torn_version[k] = v;
                }
                PyErr_Format(TornRead, "seqlock slot %llu is stuck mid-write (version %llu): its writer died or froze",
                             (unsigned long long)i, (unsigned long long)v);
                *vout = v;
                return -1;
            }
            sched_yield(); /* let a descheduled writer on this CPU finish */
            continue;
        }
        cpu_relax();
    }
    *vout = v;
    return 0;
}

/* read_into(index, buf) -> version (0: never written); TornRead for a slot stuck mid-write. */
static PyObject *Array_read_into(Array *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "read_into(index, buf)");
        return NULL;
    }
    uint64_t i;
    if (check_index(self, args[0], &i) < 0) return NULL;
    Py_buffer b;
    if (get_buf(args[1], &b, 1) < 0) return NULL;
    size_t n = self->m.slot_size - 8;
    if ((size_t)b.len < n) {
        PyErr_Format(PyExc_ValueError, "buffer of %zd bytes cannot hold a %zu-byte record", b.len, n);
        PyBuffer_Release(&b);
        return NULL;
    }
    uint64_t v;
    int torn = array_get(self, i, b.buf, &v);
    PyBuffer_Release(&b);
    return torn ? NULL : PyLong_FromUnsignedLongLong(v);
}

static PyObject *Array_version(Array *self, PyObject *arg) {
    uint64_t i;
    if (check_index(self, arg, &i) < 0) return NULL;
    return PyLong_FromUnsignedLongLong(LOAD_ACQ((uint64_t *)slot_at(&self->m, i)));
}

static PyObject *Array_writes(Array *self, PyObject *unused) {
    OPEN(&self->m, NULL);
    return PyLong_FromUnsignedLongLong(LOAD_ACQ(self->m.count));
}

static PyObject *Array_close(Array *self, PyObject *unused) {
    map_close(&self->m);
    Py_RETURN_NONE;
}

static PyMethodDef Array_methods[] = {
    {"write", (PyCFunction)(void (*)(void))Array_write, METH_FASTCALL, "write(index, payload, origin, publisher, now=0) -> version"},
    {"read_into", (PyCFunction)(void (*)(void))Array_read_into, METH_FASTCALL, "read_into(index, buf) -> version; TornRead if stuck mid-write"},
    {"version", (PyCFunction)Array_version, METH_O, "version(index): changes on every write"},
    {"writes", (PyCFunction)Array_writes, METH_NOARGS, "writes to any slot so far (one load: did anything change?)"},
    {"close", (PyCFunction)Array_close, METH_NOARGS, "release the mapping"},
    {NULL}};

static PyTypeObject ArrayType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "mantra._spine.Array",
    .tp_basicsize = sizeof(Array),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Array_init,
    .tp_dealloc = (destructor)Array_dealloc,
    .tp_methods = Array_methods,
    .tp_doc = "Array(mapping): seqlocked latest-value slots",
};

#include "_ports.c" /* Port: an actor's output, packed and published in one call */
#include "_lane.c"  /* Lane: a feed's common frame, text to published levels, in one call */

/* ---------------------------------------------------------------- module functions */

static PyObject *m_traffic(PyObject *m, PyObject *unused) {
    return PyLong_FromUnsignedLongLong(activity + handled_total);
}

static PyObject *m_now(PyObject *m, PyObject *unused) { return PyLong_FromUnsignedLongLong(clock_ns()); }

static PyObject *m_monotonic(PyObject *m, PyObject *unused) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return PyLong_FromUnsignedLongLong((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
}

/* Atomic 64-bit words in a mapping, for header fields written by several processes. */
static uint64_t *word_at(PyObject *buf, PyObject *off, Py_buffer *b) {
    if (get_buf(buf, b, 1) < 0) return NULL;
    Py_ssize_t o = PyLong_AsSsize_t(off);
    /* an atomic on a misaligned word is undefined (a bus error on some CPUs): the address, not
     * just the offset, must be a multiple of 8 */
    if (PyErr_Occurred() || o < 0 || o > b->len - 8 || (((uintptr_t)b->buf + (uintptr_t)o) & 7)) {
        PyBuffer_Release(b);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad word offset (outside, or not 8-byte aligned)");
        return NULL;
    }
    return (uint64_t *)((char *)b->buf + o);
}

static PyObject *m_load(PyObject *m, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer b;
    if (nargs != 2) return PyErr_Format(PyExc_TypeError, "load(buf, offset)");
    uint64_t *w = word_at(args[0], args[1], &b);
    if (!w) return NULL;
    uint64_t v = LOAD_ACQ(w);
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLongLong(v);
}

static PyObject *m_store(PyObject *m, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer b;
    if (nargs != 3) return PyErr_Format(PyExc_TypeError, "store(buf, offset, value)");
    uint64_t v = PyLong_AsUnsignedLongLong(args[2]);
    if (PyErr_Occurred()) return NULL;
    uint64_t *w = word_at(args[0], args[1], &b);
    if (!w) return NULL;
    __atomic_store_n(w, v, __ATOMIC_SEQ_CST);
    PyBuffer_Release(&b);
    Py_RETURN_NONE;
}

static PyObject *m_cas(PyObject *m, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer b;
    if (nargs != 4) return PyErr_Format(PyExc_TypeError, "cas(buf, offset, expected, new)");
    uint64_t exp = PyLong_AsUnsignedLongLong(args[2]), nv = PyLong_AsUnsignedLongLong(args[3]);
    if (PyErr_Occurred()) return NULL;
    uint64_t *w = word_at(args[0], args[1], &b);
    if (!w) return NULL;
    int ok = __atomic_compare_exchange_n(w, &exp, nv, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    PyBuffer_Release(&b);
    return PyBool_FromLong(ok);
}

static PyObject *m_add(PyObject *m, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer b;
    if (nargs != 3) return PyErr_Format(PyExc_TypeError, "add(buf, offset, delta) -> old");
    long long d = PyLong_AsLongLong(args[2]);
    if (PyErr_Occurred()) return NULL;
    uint64_t *w = word_at(args[0], args[1], &b);
    if (!w) return NULL;
    uint64_t old = __atomic_fetch_add(w, (uint64_t)d, __ATOMIC_SEQ_CST);
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLongLong(old);
}

static PyMethodDef module_methods[] = {
    {"crc32", (PyCFunction)m_crc32, METH_O, "crc32(bytes) -> zlib's CRC32, as the book checksums compute it"},
    {"text_frames", (PyCFunction)(void (*)(void))m_text_frames, METH_FASTCALL,
     "text_frames(buf, n, ts, append, max_size, take=None) -> (bytes taken, frames taken, their characters)"},
    {"traffic", m_traffic, METH_NOARGS, "records published + array writes + records dispatched by this process so far"},
    {"now", m_now, METH_NOARGS, "wall-clock time in ns (CLOCK_REALTIME), the spine's timestamps"},
    {"monotonic", m_monotonic, METH_NOARGS, "CLOCK_MONOTONIC in ns"},
    {"wait_any", (PyCFunction)(void (*)(void))wait_any, METH_FASTCALL, "wait_any(readers, timeout_ns) -> bool"},
    {"dispatch_each", (PyCFunction)(void (*)(void))dispatch_each, METH_FASTCALL, "dispatch_each(inputs, max_n) -> records handled (a live pass)"},
    {"dispatch_all", (PyCFunction)(void (*)(void))dispatch_all, METH_FASTCALL, "dispatch_all(inputs, limit) -> mask of inputs that handled records"},
    {"load", (PyCFunction)(void (*)(void))m_load, METH_FASTCALL, "load(buf, offset): acquire-load a u64"},
    {"store", (PyCFunction)(void (*)(void))m_store, METH_FASTCALL, "store(buf, offset, value)"},
    {"cas", (PyCFunction)(void (*)(void))m_cas, METH_FASTCALL, "cas(buf, offset, expected, new) -> bool"},
    {"add", (PyCFunction)(void (*)(void))m_add, METH_FASTCALL, "add(buf, offset, delta) -> old value"},
    {NULL}};

static struct PyModuleDef spine_module = {PyModuleDef_HEAD_INIT, "_spine", "Mantra's atomics, futexes and clock", -1, module_methods};

PyMODINIT_FUNC PyInit__spine(void) {
    if (PyType_Ready(&WriterType) < 0 || PyType_Ready(&ReaderType) < 0 || PyType_Ready(&ArrayType) < 0 ||
        PyType_Ready(&InputType) < 0 || PyType_Ready(&BookType) < 0 || PyType_Ready(&PortType) < 0 ||
        lane_ready() < 0)
        return NULL;
    s_origin = PyUnicode_InternFromString("origin");
    s_t = PyUnicode_InternFromString("t");
    s_wakeup = PyUnicode_InternFromString("wakeup");
    if (!s_origin || !s_t || !s_wakeup) return NULL;
    PyObject *m = PyModule_Create(&spine_module);
    if (!m) return NULL;
    Py_INCREF(&WriterType);
    Py_INCREF(&ReaderType);
    Py_INCREF(&ArrayType);
    PyModule_AddObject(m, "Writer", (PyObject *)&WriterType);
    PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType);
    PyModule_AddObject(m, "Array", (PyObject *)&ArrayType);
    Py_INCREF(&InputType);
    PyModule_AddObject(m, "Input", (PyObject *)&InputType);
    Py_INCREF(&BookType);
    PyModule_AddObject(m, "Book", (PyObject *)&BookType);
    Py_INCREF(&PortType);
    PyModule_AddObject(m, "Port", (PyObject *)&PortType);
    Py_INCREF(&LaneType);
    PyModule_AddObject(m, "Lane", (PyObject *)&LaneType);
    PyObject *l2 = Py_BuildValue("(iiiiii)", L2_PRICE, L2_SIZE, L2_EXCH_TS, L2_INSTRUMENT, L2_SIDE, L2_FLAGS);
    if (!l2 || PyModule_AddObject(m, "L2_OFFSETS", l2) < 0) return NULL; /* checked against L2Update */
    PyObject *tr = Py_BuildValue("(ii)", TRADE_PRICE, TRADE_INSTRUMENT);
    if (!tr || PyModule_AddObject(m, "TRADE_OFFSETS", tr) < 0) return NULL; /* checked against TradeUpdate */
    TornRead = PyErr_NewExceptionWithDoc("mantra._spine.TornRead",
                                         "A seqlock slot stayed mid-write: its writer died or froze while writing it.",
                                         PyExc_RuntimeError, NULL);
    if (!TornRead || PyModule_AddObjectRef(m, "TornRead", TornRead) < 0) return NULL;
    PyModule_AddIntConstant(m, "HEADER_SIZE", HDR_SIZE);
    PyModule_AddIntConstant(m, "LAYOUT_VERSION", LAYOUT_VERSION);
    PyModule_AddIntConstant(m, "STUCK_NS", STUCK_NS);
    PyModule_AddIntConstant(m, "TRACK_SIZE", TRACK);
    PyModule_AddIntConstant(m, "CURSORS_OFFSET", OFF_CURSORS);
    PyModule_AddIntConstant(m, "CURSOR_SIZE", CURSOR_SIZE);
    PyModule_AddIntConstant(m, "N_CURSORS", N_CURSORS);
    return m;
}
