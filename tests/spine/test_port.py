"""``_spine.Port``, the C output path, held to its Python reference: ``STRUCT.pack(*msg)`` then
``Writer.publish`` (rings) or ``Array.write`` (arrays) give the same record; values the struct
refuses are refused; tracking stamps come from the handled message's origin and the clock."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mantra import _spine
from mantra.runtime.actor import ArrayPort, Output, Tracking
from mantra.runtime.clock import RealClock, SimClock
from mantra.spine import Ring, SeqArray
from mantra.spine import layout as L
from mantra.spine.messages import REGISTRY, TRACK

TYPES = sorted(REGISTRY.values(), key=lambda t: t.TYPE_ID)
BOUNDS = {"q": (-2**63, 2**63 - 1), "Q": (0, 2**64 - 1), "i": (-2**31, 2**31 - 1), "I": (0, 2**32 - 1),
          "h": (-2**15, 2**15 - 1), "H": (0, 2**16 - 1), "b": (-128, 127), "B": (0, 255)}


def field_values(t, wide: bool):
    """A strategy for one message of type t; ``wide``: ints up to one past each bound either way."""
    out = []
    for _, size, code in t.FIELDS_AT:
        if code == "s":
            out.append(st.binary(max_size=size + 3))  # longer than the field: truncated, like struct
        else:
            lo, hi = BOUNDS[code]
            out.append(st.integers(lo - 1, hi + 1) if wide else st.integers(lo, hi))
    return st.tuples(*out)


@st.composite
def typed_message(draw, wide=False):
    t = draw(st.sampled_from(TYPES))
    return t, draw(field_values(t, wide))


def _record(ring_path, t):
    c = Ring.attach(ring_path, t).reader("", start=0, register=False)
    assert c.read() is not None
    return bytes(c.record)


@settings(max_examples=300, deadline=None)
@given(typed_message(wide=True), st.integers(0, 2**40))
def test_a_ring_record_is_the_structs_and_refusals_match(tmp_path_factory, tm, origin):
    t, fields = tm
    d = tmp_path_factory.mktemp("port")
    try:
        payload = t.STRUCT.pack(*fields)
    except struct.error:
        payload = None
    ref, fast = Ring.create(d / "ref", t, 4), Ring.create(d / "fast", t, 4)
    track = Tracking()
    track.origin = origin
    port = _spine.Port(fast.writer()._w, t, t.FIELDS_AT, t.STRUCT.size, track, SimClock(77), 9)
    if payload is None:
        with pytest.raises((OverflowError, TypeError, ValueError)):
            port.send(fields)
        assert fast.count() == 0 and port.sent == 0  # nothing published
        return
    ref.writer()._w.publish(payload, origin or 77, 9, 77)
    assert port.send(fields) == 0 and port.sent == 1
    assert _record(d / "fast", t) == _record(d / "ref", t)


@settings(max_examples=100, deadline=None)
@given(typed_message(), st.integers(0, 3))
def test_an_array_slot_is_the_structs_and_reads_back(tmp_path_factory, tm, index):
    t, fields = tm
    d = tmp_path_factory.mktemp("port")
    a = SeqArray.create(d / "a", t, 4)
    v = a.write(index, fields, 123, 4, 456)
    rec = bytearray(a.header["slot_size"] - 8)
    assert a._a.read_into(index, rec) == v
    assert bytes(rec[TRACK.size:TRACK.size + t.STRUCT.size]) == t.STRUCT.pack(*fields)
    assert TRACK.unpack_from(rec) == (123, 456, 4, 0)
    got = a.latest(index)
    assert got[0] == v and type(got[1]) is t and got[1] == t._make(t.STRUCT.unpack(t.STRUCT.pack(*fields)))
    assert got[2:] == (123, 4)
    assert a.latest((index + 1) % 4) == (0, None, 0, 0)  # never written


def test_ports_stamp_the_handled_origin_else_now(tmp_path):
    t = REGISTRY[min(REGISTRY)]
    r = Ring.create(tmp_path / "q", t, 8)
    track = Tracking()
    out = Output(r.writer(), track, RealClock(), 3, "q")
    msg = t._make(0 if c != "s" else b"" for _, _, c in t.FIELDS_AT)
    before = _spine.now()
    out.send(msg)
    track.origin = 42
    out.send(msg)
    c = r.reader("", start=0, register=False)
    c.read()
    o1, p1, pub1, _ = c.tracking()
    c.read()
    o2, p2, pub2, _ = c.tracking()
    assert before <= o1 <= p1 and (o2, pub2, pub1) == (42, 3, 3) and p2 >= p1 and out.sent == 2
    # a simulated clock stamps its own time (1 at time 0: 0 would mean "read the clock")
    sim = SimClock(0)
    arr = SeqArray.create(tmp_path / "a", t, 2)
    ap = ArrayPort(arr, Tracking(), sim, 5)
    ap.write(1, msg)
    sim.t = 1000
    ap.write(0, msg)
    assert [arr.latest(i)[2:] for i in (0, 1)] == [(1000, 5), (0, 5)]


def test_a_port_refuses_what_is_not_a_message_and_a_closed_target(tmp_path):
    t = REGISTRY[min(REGISTRY)]
    r = Ring.create(tmp_path / "q", t, 8)
    w = r.writer()
    port = _spine.Port(w._w, t, t.FIELDS_AT, t.STRUCT.size)
    n = len(t.FIELDS_AT)
    with pytest.raises(TypeError, match="tuple"):
        port.send([0] * n)
    with pytest.raises(TypeError, match="fields"):
        port.send((0,) * (n + 1))
    with pytest.raises(TypeError):
        port.write(0, (0,) * n)  # a ring's port has no slots
    with pytest.raises(ValueError, match="layout|fit"):
        _spine.Port(w._w, t, t.FIELDS_AT, 10_000)
    w._w.close()
    with pytest.raises(ValueError, match="closed"):
        port.send((0,) * n)
    assert r.count() == 0


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.just("write"), st.integers(0, 5), st.integers(-3, 3), st.integers(0, 2**40),
                                    st.integers(0, 2**32 - 1)),
                          st.tuples(st.just("torn"), st.integers(0, 5)),
                          st.tuples(st.just("scan"), st.integers(1, 6))), max_size=40))
def test_changed_is_its_reference(tmp_path_factory, steps):
    """``Port.changed`` (one C call) lists, reads and marks seen what the overseer's ``_changed``
    does with writes/version/latest: the slots written since, in index order, a slot left
    mid-write as no value, nothing when nothing was written."""
    from mantra.spine.messages import IdealOrder
    from mantra.trading.overseer import _changed

    d = tmp_path_factory.mktemp("changed")
    a = SeqArray.create(d / "a", IdealOrder, 6)
    watch = {}  # slots watched -> (seen by C, seen by the reference)
    tags = [object() for _ in range(6)]
    for step in steps:
        if step[0] == "write":
            _, i, size, origin, publisher = step
            a.write(i, IdealOrder(1000 + i, size, 1, 1, 0), origin, publisher)
        elif step[0] == "torn":  # its writer died mid-write
            v = a.version(step[1])
            _spine.store(a.mm, L.HEADER_SIZE + step[1] * a.header["slot_size"], v | 1)
        else:
            n = step[1]
            fast, ref = watch.setdefault(n, ([-1] + [0] * n, [-1] + [0] * n))
            use = tags[:n] if n % 2 else None
            got, want = a._port.changed(fast, use), _changed(a, ref, use)
            assert got == want and fast == ref
            assert all(v & 1 or (m is None) == (v == 0) for _, v, m, _, _ in got)


def test_changed_refuses_what_is_not_its_state(tmp_path):
    from mantra.spine.messages import IdealOrder

    a = SeqArray.create(tmp_path / "a", IdealOrder, 2)
    p = a._port
    for bad in ([], (0, 0), [-1, "x"], [0] * 4):
        with pytest.raises((TypeError, IndexError)):
            p.changed(bad)
    with pytest.raises(TypeError):
        p.changed([-1, 0, 0], [object()])  # a tag per watched slot
    seen = [-1, 5, 0]
    a.write(1, IdealOrder(1, 2, 3, 1, 0), 9, 4)
    assert p.changed(seen) == [(0, 0, None, 0, 0), (1, 2, IdealOrder(1, 2, 3, 1, 0), 9, 4)] and seen == [1, 0, 2]
    assert p.changed(seen) == [] and seen == [1, 0, 2]
    r = Ring.create(tmp_path / "q", IdealOrder, 4)
    with pytest.raises(TypeError):
        _spine.Port(r.writer()._w, IdealOrder, IdealOrder.FIELDS_AT, IdealOrder.STRUCT.size).changed([-1])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("quote"), st.integers(-1, 3), st.sampled_from([1, 2, -1, 2**32]), st.sampled_from([1, -1, 200]),
              st.sampled_from([10, 11, -5, 2**63]), st.sampled_from([0, 3, 4]), st.sampled_from([0, 1, 256, None])),
    st.tuples(st.just("ended"), st.integers(0, 2))), max_size=30))
def test_quote_is_the_trade_models(tmp_path_factory, steps):
    """``Port.quote`` (one C call per slot) does what ``TradeModel.quote`` does with the port's
    ``write``: the same return, the same remembered content, the same slots written (content, stamps
    and versions), the same refusals; an ended order's slot (_STALE) is written again."""
    from types import SimpleNamespace

    from mantra.spine.messages import IdealOrder
    from mantra.trading.model import _STALE, TradeModel

    d = tmp_path_factory.mktemp("quote")
    arrays = [SeqArray.create(d / n, IdealOrder, 3) for n in ("ref", "fast")]
    track, clock = Tracking(), SimClock(5)
    ports = [ArrayPort(a, track, clock, 7) for a in arrays]
    ref = SimpleNamespace(written=[None] * 3, _write=ports[0].write)
    fast = [None] * 3
    for k, step in enumerate(steps):
        track.origin, clock.t = k, 100 + k
        if step[0] == "ended":
            ref.written[step[1]] = fast[step[1]] = _STALE
            continue
        _, slot, iid, side, price, size, flags = step
        args = (slot, iid, side, price, size) + (() if flags is None else (flags,))
        try:
            want = TradeModel.quote(ref, *args)
        except Exception as e:
            want = type(e)
        try:
            got = ports[1].quote(fast, *args)
        except Exception as e:
            got = type(e)
        assert got == want and fast == ref.written
        assert [arrays[0].latest(i) for i in range(3)] == [arrays[1].latest(i) for i in range(3)]
