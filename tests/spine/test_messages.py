"""Every message type survives the spine byte-exactly, per message and in numpy batches."""


import numpy as np
import pytest
from hypothesis import given, strategies as st

from mantra.spine import Ring
from mantra.spine.messages import REGISTRY, TRACK, message

_RANGES = {"q": (-(2**63), 2**63 - 1), "Q": (0, 2**64 - 1), "i": (-(2**31), 2**31 - 1), "I": (0, 2**32 - 1),
           "h": (-(2**15), 2**15 - 1), "H": (0, 2**16 - 1), "b": (-128, 127), "B": (0, 255)}


def strategy_for(cls):
    parts = []
    fmt = cls.STRUCT.format.lstrip("<")
    # walk the struct format: counts followed by codes
    i = 0
    while i < len(fmt):
        j = i
        while fmt[j].isdigit():
            j += 1
        n, c = int(fmt[i:j] or 1), fmt[j]
        if c == "s":
            parts.append(st.binary(min_size=n, max_size=n))
        elif c != "x":
            parts.extend(st.integers(*_RANGES[c]) for _ in range(n))
        i = j + 1
    return st.tuples(*parts).map(lambda t: cls._make(t))


@pytest.mark.parametrize("cls", list(REGISTRY.values()), ids=lambda c: c.__name__)
def test_round_trip_through_ring_and_batch(cls, sysdir):
    ring = Ring.create(sysdir / cls.__name__, cls, 1024)
    p, c, cb = ring.writer(), ring.reader("one"), ring.reader("batch")

    @given(st.lists(strategy_for(cls), min_size=1, max_size=20), st.integers(1, 2**64 - 1),
           st.integers(0, 2**32 - 1))
    def check(msgs, origin, publisher):
        for m in msgs:
            p.send(m, origin=origin, publisher=publisher)
        got = [c.read() for _ in msgs]
        for m, g in zip(msgs, got):
            assert cls.STRUCT.pack(*g) == cls.STRUCT.pack(*m)
        assert c.read() is None
        batch = cb.read_batch(64)
        assert len(batch) == len(msgs)
        assert (batch["origin"] == origin).all() and (batch["publisher"] == publisher).all()
        for f, v in zip(cls._fields, zip(*msgs)):
            col = batch[f]
            if col.dtype.kind == "S":
                assert [bytes(x).ljust(col.dtype.itemsize, b"\0") for x in col] == \
                       [x.ljust(col.dtype.itemsize, b"\0") for x in v]
            else:
                assert col.tolist() == list(v)

    check()


def test_dtype_and_struct_agree_on_layout():
    for cls in REGISTRY.values():
        assert cls.DTYPE.itemsize == cls.SLOT_SIZE - 8
        assert cls.SLOT_SIZE % 64 == 0
        vals = [(b"x" if i in cls.TEXT_FIELDS else 3) for i in range(len(cls._fields))]
        raw = bytes(TRACK.size) + cls.STRUCT.pack(*vals)
        rec_view = np.frombuffer(raw.ljust(cls.DTYPE.itemsize, b"\0"), cls.DTYPE)
        for i, f in enumerate(cls._fields):
            assert rec_view[f][0] == (b"x" if i in cls.TEXT_FIELDS else 3)


def test_bad_definitions_are_rejected():
    with pytest.raises(TypeError, match="aligned"):
        message("Bad1", 901, "a:B b:q")
    with pytest.raises(TypeError, match="needs"):
        message("Bad2", 902, "a:q b:q c:q d:q e:q")
    with pytest.raises(TypeError, match="used by"):
        message("Bad3", 1, "a:q")


def test_oversized_payload_is_refused(sysdir):
    from mantra import _spine
    ring = Ring.create(sysdir / "q", REGISTRY[1], 16)
    w = _spine.Writer(ring.mm)
    with pytest.raises(ValueError, match="does not fit"):
        w.publish(b"x" * 40, 1, 0)
