"""Multi-producer rings when a producer stalls or dies mid-write: never a torn record, the lost
sequence counted, consumers never held up for a lap.  Never more than two busy processes (this one
and one child; a frozen child does not count)."""

import multiprocessing as mp
import os
import random
import signal
import time

from mantra.spine import Ring
from mantra.spine.messages import L2Update

FORK = mp.get_context("fork")
M = (1 << 63) - 1


def checked(i, tag=1):
    """Every field derived from (i, tag): a record mixing two writes cannot be consistent."""
    return L2Update(i, (i * 7919 + tag) & M, -i, tag, 1 if i & 1 else -1, (i * 31 + tag) & 0xFF)


def consistent(m):
    return m == checked(m.price, m.instrument)


def whole(r):
    """A record of read_batch: payload and tracking header all from one write (the tag is the
    origin, publish time and publisher too)."""
    tag = int(r["instrument"])
    return (consistent(L2Update(*(int(r[f]) for f in L2Update._fields)))
            and int(r["origin"]) == int(r["publish"]) == int(r["publisher"]) == tag)


def _flood(path, tag, stall_at=0):
    p = Ring.attach(path).writer()
    if stall_at:
        p._w._stall = stall_at  # stop ourselves (SIGSTOP) halfway through that write's payload
    i = 0
    while True:
        i += 1
        p.send(checked(i, tag))


def _flood_until_told(path, tag, flags):
    """Publish as fast as possible while flags[0]; then say so in flags[1] and wait, idle."""
    import mmap  # noqa: F401  (flags is a shared anonymous mapping)
    w = Ring.attach(path).writer()._w
    packed = [L2Update.STRUCT.pack(*checked(i, tag)) for i in range(1, 4097)]
    publish = w.publish
    while True:
        while flags[0]:
            for b in packed:
                publish(b, tag, tag, tag)  # tag as origin, publisher and publish time (no clock read)
                if not flags[0]:
                    break
        flags[1] = 1
        while not flags[0]:
            time.sleep(0.0001)
        flags[1] = 0


def _stopped(pid, timeout=5.0):
    """Wait until the child is stopped (it stopped itself, or we stopped it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] in "Tt":
                return
        time.sleep(0.001)
    raise AssertionError("the producer did not stop")


def _drain_records(c, into):
    while len(b := c.read_batch(64)):
        into.extend(b.copy())


def _drain(c, into):
    while (m := c.read()) is not None:
        into.append(m)


def test_a_producer_frozen_at_random_points_never_tears_a_record(sysdir):
    """SIGSTOP a flooding producer anywhere (often mid-write), lap it from this process, let it
    finish that write and stop publishing: whatever it left must not be accepted as a record."""
    import mmap
    cap = 8
    path = sysdir / "q"
    ring = Ring.create(path, L2Update, cap, mpmc=True)
    c = ring.reader("all")
    p = ring.writer()
    flags = memoryview(mmap.mmap(-1, 4096)).cast("B")
    flags[0] = 1
    child = FORK.Process(target=_flood_until_told, args=(path, 2, flags))
    child.start()
    got, rnd, sent, held = [], random.Random(7), 0, 0
    try:
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline and held < 1000:
            time.sleep(rnd.random() * 0.0002)
            os.kill(child.pid, signal.SIGSTOP)
            _stopped(child.pid)
            flags[0] = 0
            _drain_records(c, got)  # stops at the frozen producer's slot, if it holds one
            held += c.seq < ring.count()
            for _ in range(2 * cap + 1):  # lap it, the consumer not looking
                sent += 1
                p.send(checked(sent, 1), origin=1, publisher=1, now=1)
            os.kill(child.pid, signal.SIGCONT)
            while not flags[1]:  # it finished the frozen write and stopped
                time.sleep(0.0001)
            _drain_records(c, got)  # a stale write finished over a newer record would show here
            flags[0] = 1
    finally:
        child.kill()
        child.join()
    torn = [r for r in got if not whole(r)]
    assert held >= 100 and len(got) > 5000, (held, len(got))  # it was often frozen holding a slot
    assert torn == [], f"{len(torn)} torn records of {len(got)}"


def _publish_some(path, tag, n, stall_at):
    """Publish n messages, the stall_at-th stopping itself halfway; exit with the count dropped."""
    p = Ring.attach(path).writer()
    p._w._stall = stall_at
    for i in range(1, n + 1):
        p.send(checked(i, tag))
    os._exit(p.dropped)


def test_a_producer_stopped_mid_write_is_skipped_and_its_stale_write_dropped(sysdir):
    cap = 16
    path = sysdir / "q"
    ring = Ring.create(path, L2Update, cap, mpmc=True)
    c = ring.reader("all")
    c.reader.stuck_ns = 5_000_000
    p = ring.writer()
    child = FORK.Process(target=_publish_some, args=(path, 2, 10, 5))  # the 5th write stops halfway
    child.start()
    try:
        _stopped(child.pid)
        got = []
        _drain(c, got)
        assert [m.price for m in got] == [1, 2, 3, 4] and c.seq == 4  # waits at the held slot
        p.send(checked(1, 1))
        assert c.read() is None  # seq 4 still held, seq 5 done: the consumer waits stuck_ns ...
        time.sleep(0.01)
        _drain(c, got)  # ... then gives seq 4 up
        assert c.lost == 1 and got[-1] == checked(1, 1)
        for i in range(2, 3 * cap + 2):  # three laps over the held slot, the consumer reading along
            p.send(checked(i, 1))
            _drain(c, got)
        assert p.skipped == 3  # once per lap the slot was held: the message went out under the next seq
        assert got[4:] == [checked(i, 1) for i in range(1, 3 * cap + 2)]  # nothing lost, nothing torn
        assert c.skipped == 3 and c.lost == 1
        os.kill(child.pid, signal.SIGCONT)  # it finishes its stale write, then publishes 6..10
        child.join()
        assert child.exitcode == 1  # the stale write was dropped, not published a lap late
        n0 = len(got)
        _drain(c, got)
        assert got[n0:] == [checked(i, 2) for i in range(6, 11)]
        before = p.skipped
        for i in range(10**6, 10**6 + 2 * cap):  # the slot is free again: no more skips
            p.send(checked(i, 1))
        assert p.skipped == before
        _drain(c, got)
        assert all(consistent(m) for m in got)
        assert len(got) + c.lost + c.skipped == c.seq == ring.count()
    finally:
        child.kill()
        child.join()


def test_a_producer_killed_mid_write_holds_consumers_up_once_not_for_a_lap(sysdir):
    cap = 1024
    path = sysdir / "q"
    ring = Ring.create(path, L2Update, cap, mpmc=True)
    c = ring.reader("all")
    c.reader.stuck_ns = 20_000_000
    p = ring.writer()
    child = FORK.Process(target=_flood, args=(path, 2, 3))
    child.start()
    _stopped(child.pid)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    got = []
    for i in range(1, 11):
        p.send(checked(i, 1))
    t = time.monotonic()
    while len(got) < 12 and time.monotonic() - t < 2:
        m = c.wait(0.5)
        if m is not None:
            got.append(m)
    waited = time.monotonic() - t
    assert [(m.instrument, m.price) for m in got] == [(2, 1), (2, 2)] + [(1, i) for i in range(1, 11)]
    assert c.lost == 1 and waited < 1.0  # the dead writer's sequence, given up after stuck_ns
    # the dead writer still holds its slot: every lap the writer landing there skips it, counted
    for i in range(11, 3 * cap):
        p.send(checked(i, 1))
        if i % 256 == 0:
            _drain(c, got)
    _drain(c, got)
    assert all(consistent(m) for m in got) and len(got) == 2 + 3 * cap - 1
    laps = len(range(2 + cap, ring.count(), cap))  # later sequences of the dead writer's slot
    assert laps == 3 and p.skipped == c.skipped == laps and c.lost == 1
    assert len(got) + c.lost + c.skipped == c.seq == ring.count()
