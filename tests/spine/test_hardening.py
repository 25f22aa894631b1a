"""The C extension never crashes the process: closed and uninitialised objects, bad sizes, hostile
headers, handlers that change what the dispatcher iterates, int64 limits.  Each case raises a
clear exception instead."""

import gc
import time
import mmap
import weakref

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mantra import _spine
from mantra.book import Book
from mantra.runtime.actor import Tracking
from mantra.spine import Ring, SeqArray
from mantra.spine import layout as L
from mantra.spine.array import TornRead
from mantra.spine.messages import IdealOrder, L2Update

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
REC = L2Update.SLOT_SIZE - 8


def calls(ring, arr):
    """Every method of the C handles, as (object kind, callable taking the handle)."""
    rec, payload = bytearray(REC), L2Update.STRUCT.pack(*L2Update(1, 1, 1, 1, 1, 0))
    return {
        "writer": [lambda w: w.publish(payload, 1, 1), lambda w: w.publish_record(rec),
                   lambda w: w.publish_batch(rec, 1), lambda w: w.stamp(1, 1, 1), lambda w: w.count()],
        "reader": [lambda r: r.read_into(rec), lambda r: r.wait_into(rec, 1000), lambda r: r.read_batch(rec, 1),
                   lambda r: r.head(), lambda r: r.ready(), lambda r: setattr(r, "seq", 3),
                   lambda r: _spine.wait_any([r], 1000)],
        "array": [lambda a: a.write(0, b"", 1, 1), lambda a: a.read_into(0, bytearray(IdealOrder.SLOT_SIZE)),
                  lambda a: a.version(0), lambda a: a.writes()],
    }


def handles(sysdir):
    ring = Ring.create(sysdir / "q", L2Update, 64)
    arr = SeqArray.create(sysdir / "a", IdealOrder, 4)
    return ring, arr, {"writer": lambda: _spine.Writer(ring.mm), "reader": lambda: _spine.Reader(ring.mm),
                       "array": lambda: _spine.Array(arr.mm)}


@pytest.mark.parametrize("state", ["closed", "uninitialised"])
def test_every_method_on_a_closed_or_uninitialised_handle_raises(sysdir, state):
    ring, arr, make = handles(sysdir)
    kinds = {"writer": _spine.Writer, "reader": _spine.Reader, "array": _spine.Array}
    for kind, fns in calls(ring, arr).items():
        for fn in fns:
            if state == "closed":
                h = make[kind]()
                h.close()
            else:
                h = kinds[kind].__new__(kinds[kind])
            with pytest.raises((ValueError, TypeError), match="closed or not initialised|open Readers"):
                fn(h)
            h.close()  # closing again is harmless


def test_an_uninitialised_input_raises_and_the_dispatchers_refuse_it(sysdir):
    inp = _spine.Input.__new__(_spine.Input)
    with pytest.raises(ValueError, match="not initialised"):
        inp.dispatch()
    for fn in (_spine.dispatch_each, _spine.dispatch_all):
        with pytest.raises(TypeError, match="open Inputs"):
            fn([inp], 10)
    assert inp.handled == 0 and not inp.failed


def test_publishing_after_the_runner_closed_the_ring_raises(sysdir):
    ring = Ring.create(sysdir / "q", L2Update, 64)
    p = ring.writer()
    ring.close()  # what Runner.stop() does while an actor may still hold its output
    with pytest.raises(ValueError, match="closed"):
        p.send(L2Update(1, 1, 1, 1, 1, 0))


def _mapping(kind, slot, capacity, size=L.HEADER_SIZE + 4096):
    m = mmap.mmap(-1, size)
    L.write_header(m, kind=kind, type_id=L2Update.TYPE_ID, slot_size=slot, capacity=capacity,
                   type_hash=L2Update.TYPE_HASH, payload_size=L2Update.STRUCT.size, name="x")
    return m


@given(st.integers(0, 63), st.sampled_from([64, 128, 1 << 20, 1 << 31]))
def test_a_header_whose_slots_do_not_fit_the_mapping_is_refused(shift, slot):
    capacity = 1 << shift
    m = _mapping(L.KIND_SPMC, slot, capacity)
    fits = capacity * slot <= len(m) - L.HEADER_SIZE
    for kind in (_spine.Writer, _spine.Reader):
        if fits:
            kind(m).close()
        else:  # e.g. 2**58 slots of 64 bytes: the product wraps to 0 in 64 bits
            with pytest.raises(ValueError, match="does not match the mapping size"):
                kind(m)
    m.close()


def test_a_mapping_of_another_layout_version_is_refused_by_the_c_handles():
    m = _mapping(L.KIND_SPMC, 64, 16)
    m[8:12] = (1).to_bytes(4, "little")  # a version-1 file
    with pytest.raises(ValueError, match="layout version"):
        _spine.Writer(m)
    with pytest.raises(ValueError, match="bad magic"):
        _spine.Reader(mmap.mmap(-1, 8192))


def test_record_buffers_of_the_wrong_size_are_refused(sysdir):
    ring = Ring.create(sysdir / "q", L2Update, 64)
    w, r = ring.writer()._w, ring.reader("c").reader
    w.publish(L2Update.STRUCT.pack(*L2Update(1, 1, 1, 1, 1, 0)), 1, 1)
    for short in (bytearray(4), bytearray(REC - 1)):
        with pytest.raises(ValueError, match="cannot hold"):
            r.read_into(short)
    # n * record size overflows 64 bits: would copy far past the buffer
    with pytest.raises(ValueError, match="fewer than n records"):
        w.publish_batch(bytearray(REC), 2**64 // REC + 1)
    with pytest.raises(ValueError, match="fewer than n records"):
        w.publish_batch(bytearray(REC), 2)
    arr = SeqArray.create(sysdir / "a", IdealOrder, 4)
    with pytest.raises(ValueError, match="cannot hold"):
        arr._a.read_into(0, bytearray(8))


def test_an_input_layout_outside_the_record_is_refused(sysdir):
    ring = Ring.create(sysdir / "q", L2Update, 64)
    r = ring.reader("c").reader
    for bad in ([(0xFFFFFFF0, 0x20, "q")],  # offset + size wraps around 32 bits
                [(REC - 4, 8, "q")],  # past the end
                [(0, 1, "q")],  # an 8-byte field declared 1 byte wide
                [(0, 8, "x")]):
        with pytest.raises(ValueError, match="bad layout"):
            _spine.Input(r, print, L2Update, bad, Tracking(), None, None, 1)


def test_a_short_payload_leaves_nothing_of_the_previous_record(sysdir):
    ring = Ring.create(sysdir / "q", L2Update, 2)
    w, r = ring.writer()._w, ring.reader("c").reader
    rec = bytearray(REC)
    for _ in range(2):
        w.publish(b"\xff" * L2Update.STRUCT.size, 1, 1)
        r.read_into(rec)
    w.publish(b"\x01", 1, 1)  # same slot as the first record
    assert r.read_into(rec)
    assert rec[24] == 1 and rec[25:] == bytes(REC - 25)


def test_book_rejects_what_int64_cannot_hold():
    b = Book()
    for side in (1, -1):
        with pytest.raises(OverflowError):
            b.apply(side, I64_MIN, 5)
        assert b.size(side, I64_MIN) == 0
    b.apply(-1, 100, 5)
    b.take(-1, 100, I64_MAX)
    with pytest.raises(OverflowError):
        b.take(-1, 100, 1)
    with pytest.raises(ValueError, match=">= 0"):
        b.take(-1, 100, -1)
    assert b.levels(-1) == [] and b.size(-1, 100) == 0  # all taken, still consistent
    b.apply(-1, 100, 7)  # the feed reports the level again: taken is forgotten
    assert b.levels(-1) == [(100, 7)]


def test_a_seqlock_slot_left_mid_write_by_a_dead_writer_reads_as_no_value(sysdir):
    a = SeqArray.create(sysdir / "a", IdealOrder, 4)
    a.write(1, IdealOrder(1, 2, 3, 1, 0))
    v = a.version(1)
    _spine.store(a.mm, L.HEADER_SIZE + 1 * IdealOrder.SLOT_SIZE, v + 1)  # the writer died mid-write
    with pytest.raises(TornRead):
        a._a.read_into(1, a.record)
    t = _spine.monotonic()
    assert a.read(1) == (v + 1, None)  # odd version: being written by a writer that is gone
    assert a.latest(1) == (v + 1, None, 0, 0)
    assert _spine.monotonic() - t < 5_000_000  # known stuck: no second spin
    assert isinstance(TornRead("x"), RuntimeError)
    a.write(1, IdealOrder(4, 5, 6, 1, 0))  # the next write completes the slot
    assert a.read(1)[1] == IdealOrder(4, 5, 6, 1, 0)


def test_a_cycle_through_a_handler_is_collected(sysdir):
    ring = Ring.create(sysdir / "q", L2Update, 64)
    reader = ring.reader("c").reader

    class Actor:
        def on_l2(self, m):
            pass

    actor = Actor()
    actor.port = _spine.Input(reader, actor.on_l2, L2Update, list(L2Update.FIELDS_AT), Tracking(), None, None, 1)
    gone = weakref.ref(actor)
    del actor
    gc.collect()
    assert gone() is None


def test_a_handler_that_empties_the_dispatchers_list_does_not_crash_it(sysdir):
    rings = [Ring.create(sysdir / f"q{i}", L2Update, 64) for i in range(3)]
    for r in rings:
        w = r.writer()._w
        for k in range(5):
            w.publish(L2Update.STRUCT.pack(*L2Update(k, 1, 1, 1, 1, 0)), 1, 1, 10 + k)
    seen = []
    inputs = []

    def handler(m):
        seen.append(m.price)
        inputs.clear()  # drops the only references to the Inputs being dispatched

    for r in rings:
        inputs.append(_spine.Input(r.reader("c", start=0).reader, handler, L2Update, list(L2Update.FIELDS_AT),
                                   Tracking(), None, None, 1))
    held = list(inputs)
    assert _spine.dispatch_each(inputs, 100) == 15
    inputs.extend(held)
    del held
    for r in rings:
        r.writer()._w.publish(L2Update.STRUCT.pack(*L2Update(9, 1, 1, 1, 1, 0)), 1, 1, 100)
    _spine.dispatch_all(inputs, 2**64 - 1)
    assert seen[:15] == [0, 1, 2, 3, 4] * 3 and seen[15:] == [9, 9, 9]
    assert inputs == []


def test_closing_a_ring_while_another_thread_is_parked_on_it(sysdir):
    import threading

    ring = Ring.create(sysdir / "q", L2Update, 64)
    c = ring.reader("sleeper")
    out = []

    def park():
        try:
            out.append(c.wait(0.3))
        except ValueError as e:
            out.append(e)

    t = threading.Thread(target=park)
    t.start()
    time.sleep(0.05)
    ring.close()  # the parked thread holds the mapping: unmapped once it wakes, not under it
    t.join()
    assert len(out) == 1 and isinstance(out[0], ValueError) and "closed" in str(out[0])


def test_header_atomics_refuse_words_outside_or_misaligned():
    m = mmap.mmap(-1, 4096)
    _spine.store(m, 8, 5)
    assert _spine.load(m, 8) == 5 and _spine.cas(m, 8, 5, 6) and _spine.add(m, 8, 1) == 6
    for buf, off in ((m, 4092), (m, -8), (m, 4), (memoryview(m)[1:65], 0), (bytearray(4), 0)):
        for fn, extra in ((_spine.load, ()), (_spine.store, (1,)), (_spine.cas, (0, 1)), (_spine.add, (1,))):
            with pytest.raises(ValueError, match="bad word offset"):
                fn(buf, off, *extra)
