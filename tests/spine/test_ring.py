"""Rings in one process: delivery, lapping and loss accounting, batches, headers, cursors."""

import os
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from mantra import _spine
from mantra.spine import LayoutError, Ring, SeqArray
from mantra.spine.messages import IdealOrder, L2Update, TradeUpdate


def msg(i):
    return L2Update(i, i * 3 + 1, -i, i % 7, 1 if i % 2 else -1, i % 4)


def test_every_message_arrives_in_order_with_tracking(sysdir):
    r = Ring.create(sysdir / "q", L2Update, 1024)
    p, c = r.writer(), r.reader("c")
    for i in range(500):
        p.send(msg(i), origin=1000 + i, publisher=7)
    for i in range(500):
        assert c.read() == msg(i)
        origin, publish, publisher, _ = c.tracking()
        assert (origin, publisher) == (1000 + i, 7) and publish > 0
    assert c.read() is None and c.lost == 0


def test_lapped_consumer_counts_exact_loss_and_resyncs_to_middle(sysdir):
    cap = 64
    r = Ring.create(sysdir / "q", L2Update, cap)
    p, c = r.writer(), r.reader("slow")
    for i in range(1000):
        p.send(msg(i))
    first = c.read()
    # resync lands at head - capacity/2: the newest half is still readable, the rest is counted lost
    assert first == msg(1000 - cap // 2)
    assert c.lost == 1000 - cap // 2
    rest = [c.read() for _ in range(cap // 2 - 1)]
    assert rest == [msg(i) for i in range(1000 - cap // 2 + 1, 1000)]
    assert c.read() is None
    assert c.lost + 1 + len(rest) == 1000  # every message is either delivered or counted


def test_read_batch_matches_per_message_reads(sysdir):
    r = Ring.create(sysdir / "q", TradeUpdate, 256)
    p, c = r.writer(), r.reader("batch")
    for i in range(200):
        p.send(TradeUpdate(i, 2 * i, 3 * i, 4 * i, i, -1), origin=i + 1)
    b = c.read_batch(150)
    assert len(b) == 150
    assert np.array_equal(b["price"], np.arange(150)) and np.array_equal(b["trade_id"], 4 * np.arange(150))
    assert np.array_equal(b["origin"], np.arange(1, 151)) and set(b["side"]) == {-1}
    assert len(c.read_batch(150)) == 50 and len(c.read_batch(10)) == 0


def test_consumers_publish_position_lag_and_loss(sysdir):
    r = Ring.create(sysdir / "q", L2Update, 16)
    p = r.writer()
    a, b = r.reader("fast"), r.reader("slow")
    for i in range(10):
        p.send(msg(i))
    while a.read():
        pass
    info = {x["label"]: x for x in r.consumers()}
    assert info["fast"]["lag"] == 0 and info["slow"]["lag"] == 10
    assert info["fast"]["pid"] == os.getpid() and info["fast"]["alive"]
    for i in range(40):
        p.send(msg(i))
    b.read()
    assert {x["label"]: x for x in r.consumers()}["slow"]["lost"] == b.lost > 0
    b.close()
    assert [x["label"] for x in r.consumers()] == ["fast"]


def test_restarted_consumer_resumes_from_its_published_position(sysdir):
    r = Ring.create(sysdir / "q", L2Update, 64)
    p = r.writer()
    c = r.reader("model.l2")
    for i in range(10):
        p.send(msg(i))
    for _ in range(4):
        c.read()
    # simulate the owning process dying: its cursor entry keeps its position, with a dead pid
    off = 512 + c._cursor * 64
    _spine.store(r.mm, off, 2**31 - 5)
    c2 = r.reader("model.l2")
    assert c2.read() == msg(4)


def test_attach_with_other_type_or_size_is_a_clear_error(sysdir):
    Ring.create(sysdir / "q", L2Update, 64).close()
    with pytest.raises(LayoutError, match="type id"):
        Ring.attach(sysdir / "q", TradeUpdate)
    with pytest.raises(LayoutError, match="capacity"):
        Ring.create(sysdir / "q", L2Update, 128)
    r = Ring.create(sysdir / "q", TradeUpdate, 128, recreate=True)
    assert r.msg_type is TradeUpdate and r.capacity == 128
    (sysdir / "junk").write_bytes(b"\0" * 8192)
    with pytest.raises(LayoutError, match="magic"):
        Ring.attach(sysdir / "junk", L2Update)
    with pytest.raises(ValueError, match="power of two"):
        Ring.create(sysdir / "q3", L2Update, 100)


def test_layout_change_of_a_type_is_detected(sysdir):
    Ring.create(sysdir / "q", L2Update, 64).close()
    import struct
    with open(sysdir / "q", "r+b") as f:  # another build with a different L2Update layout
        f.seek(32)
        f.write(struct.pack("<Q", L2Update.TYPE_HASH ^ 1))
    with pytest.raises(LayoutError, match="changed shape"):
        Ring.attach(sysdir / "q", L2Update)


def test_half_written_slot_of_dead_producer_is_finished_by_next_producer(sysdir):
    r = Ring.create(sysdir / "q", L2Update, 64)
    p, c = r.writer(), r.reader("c")
    for i in range(5):
        p.send(msg(i))
    # the producer died between marking slot 5 odd and completing it
    _spine.store(r.mm, 4096 + 5 * 64, 2 * 5 + 1)
    assert [c.read() for _ in range(5)] == [msg(i) for i in range(5)]
    assert c.read() is None  # an odd slot is never handed out
    p2 = r.writer()
    assert p2.recovered == 1
    p2.send(msg(99))
    assert c.read() == msg(99) and c.lost == 0


def test_completed_but_uncounted_slot_is_adopted_not_overwritten(sysdir):
    r = Ring.create(sysdir / "q", L2Update, 64)
    p, c = r.writer(), r.reader("c")
    for i in range(3):
        p.send(msg(i))
    # producer died after completing slot 3 but before advancing the counter
    r2 = Ring.attach(sysdir / "q")
    raw = r2.writer()
    raw.send(msg(3))
    _spine.store(r.mm, 64, 3)  # roll the counter back as if never advanced
    p3 = r.writer()
    p3.send(msg(4))
    assert [c.read() for _ in range(5)] == [msg(i) for i in range(5)]


def test_blocking_read_times_out_and_wakes(sysdir):
    r = Ring.create(sysdir / "q", L2Update, 64)
    p, c = r.writer(), r.reader("c")
    t = _spine.monotonic()
    assert c.wait(0.05) is None
    assert _spine.monotonic() - t >= 45_000_000
    p.send(msg(1))
    assert c.wait(1.0) == msg(1)


def test_seqlock_array_latest_value_by_index(sysdir):
    a = SeqArray.create(sysdir / "a", IdealOrder, 4)
    assert a.read(2) == (0, None)
    v1 = a.write(2, IdealOrder(100, 5, 1, 1, 0), origin=11)
    v2 = a.write(2, IdealOrder(101, 6, 1, 1, 0), origin=12)
    assert v2 > v1 and a.version(2) == v2
    assert a.read(2) == (v2, IdealOrder(101, 6, 1, 1, 0)) and a.latest(2)[2] == 12
    with pytest.raises(IndexError):
        a.write(4, IdealOrder(1, 1, 1, 1, 0))
    with pytest.raises(LayoutError):
        Ring.attach(sysdir / "a", IdealOrder)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3), st.integers(1, 10**9)), max_size=40))
def test_seqlock_array_latest_is_the_last_write_from_any_handle(writes):
    """``latest`` hands back what this handle wrote without decoding it, but only while the slot
    still holds that write: a write through another handle (another process) is always seen."""
    import tempfile
    from pathlib import Path
    d = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        a = SeqArray.create(d / "a", IdealOrder, 4)
        b = SeqArray.attach(d / "a")
        want = {}
        for k, (mine, i, price) in enumerate(writes):
            msg = IdealOrder(price, k, i, 1, 0)
            (a if mine else b).write(i, msg, origin=price, publisher=7 if mine else 8)
            want[i] = (msg, price, 7 if mine else 8)
            for h in (a, b):
                for j in range(4):
                    v, m, origin, pub = h.latest(j)
                    if j in want:
                        assert (m, origin, pub) == want[j] and v == h.version(j)
                    else:
                        assert (v, m) == (0, None)
        a.close()
        b.close()
    finally:
        shutil.rmtree(d)


class RingModel(RuleBasedStateMachine):
    """Any interleaving of publishes and reads: each read returns exactly the next message the
    model expects, or the consumer counted precisely the ones it skipped."""

    def __init__(self):
        super().__init__()
        import tempfile
        from pathlib import Path
        self.dir = Path(tempfile.mkdtemp(dir="/dev/shm"))
        self.cap = 16
        self.ring = Ring.create(self.dir / "q", L2Update, self.cap)
        self.p, self.c = self.ring.writer(), self.ring.reader("m")
        self.sent = 0
        self.next = 0  # next seq the consumer should see, per the model
        self.delivered = 0

    @rule(n=st.integers(1, 40))
    def publish(self, n):
        for _ in range(n):
            self.p.send(msg(self.sent))
            self.sent += 1

    @rule()
    def read(self):
        m = self.c.read()
        if self.next == self.sent:
            assert m is None
            return
        if self.sent - self.next > self.cap:  # lapped: expect resync to head - cap/2
            self.next = self.sent - self.cap // 2
        assert m == msg(self.next)
        self.next += 1
        self.delivered += 1

    @invariant()
    def accounting(self):
        # nothing is lost silently: delivered + counted-lost covers every seq up to the cursor
        assert self.c.seq == self.next
        assert self.delivered + self.c.lost == self.next

    def teardown(self):
        self.ring.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TestRingModel = RingModel.TestCase
