"""The spine across processes: no torn reads ever, producer crash and restart, futex wake-ups.
Never more than two busy processes (this one and one child)."""

import multiprocessing as mp
import os
import signal
import time

from mantra import _spine
from mantra.spine import Ring, SeqArray
from mantra.spine.messages import IdealOrder, L2Update

FORK = mp.get_context("fork")
M = (1 << 63) - 1


def checked(i):
    """A message whose fields are all derived from i: a torn copy cannot be consistent."""
    return L2Update(i, (i * 7919 + 3) & M, -i, i & 0xFFFFFFFF, 1 if i & 1 else -1, i & 0xFF)


def consistent(m):
    return m == checked(m.price)


def _flood(path, stop_at, start=1):
    p = Ring.attach(path).writer()
    i = start
    while i < stop_at:
        p.send(checked(i))
        i += 1
    os._exit(0)


def test_no_torn_reads_under_constant_overwrites(sysdir):
    # A tiny ring makes the producer overwrite slots while the consumer copies them.
    path = sysdir / "q"
    ring = Ring.create(path, L2Update, 8)
    c = ring.reader("stress")
    child = FORK.Process(target=_flood, args=(path, 1 << 62))
    child.start()
    try:
        reads = torn = 0
        deadline = time.monotonic() + 25
        while reads < 1_500_000 and time.monotonic() < deadline:
            m = c.read()
            if m is not None:
                reads += 1
                torn += not consistent(m)
        batch_rows = 0
        for _ in range(2000):
            b = c.read_batch(8)
            batch_rows += len(b)
            ok = (b["size"] == (b["price"] * 7919 + 3) & M) & (b["exch_ts"] == -b["price"])
            torn += int((~ok).sum())
    finally:
        child.kill()
        child.join()
    assert reads >= 200_000, f"only {reads} reads: the stress did not stress"  # ~1.5 M on a quiet machine
    assert c.lost > 0, "the producer never lapped the consumer: overwrites were not exercised"
    assert batch_rows > 0
    assert torn == 0


def _array_writer(path, n):
    a = SeqArray.attach(path)
    for i in range(1, n):
        a.write(i & 3, IdealOrder(i, i * 3, i & 0xFFFF, 1, i & 1))
    os._exit(0)


def test_seqlock_array_never_torn(sysdir):
    path = sysdir / "a"
    a = SeqArray.create(path, IdealOrder, 4)
    child = FORK.Process(target=_array_writer, args=(path, 1 << 40))
    child.start()
    try:
        reads = torn = 0
        changed = set()
        deadline = time.monotonic() + 10
        while reads < 500_000 and time.monotonic() < deadline:
            v, m = a.read(reads & 3)
            if m is not None:
                reads += 1
                changed.add(v)
                torn += m != IdealOrder(m.price, m.price * 3, m.price & 0xFFFF, 1, m.price & 1)
    finally:
        child.kill()
        child.join()
    assert reads >= 300_000 and len(changed) > 1000
    assert torn == 0


def _steady(path, start, rate):
    p = Ring.attach(path).writer()
    i = start
    nxt = time.monotonic()
    while True:
        p.send(checked(i))
        i += 1
        nxt += 1 / rate
        while time.monotonic() < nxt:
            pass


def test_producer_killed_mid_run_then_restarted(sysdir):
    path = sysdir / "q"
    ring = Ring.create(path, L2Update, 1 << 12)
    c = ring.reader("survivor")
    first = FORK.Process(target=_steady, args=(path, 1, 50_000))
    first.start()
    got = []
    t_end = time.monotonic() + 0.5
    while time.monotonic() < t_end:
        m = c.read()
        if m:
            got.append(m)
    os.kill(first.pid, signal.SIGKILL)
    first.join()
    while (m := c.read()) is not None:
        got.append(m)
    n_before = len(got)
    second = FORK.Process(target=_steady, args=(path, 10**9, 50_000))
    second.start()
    try:
        t_end = time.monotonic() + 3
        while time.monotonic() < t_end and (len(got) == n_before or len(got) < n_before + 5000):
            m = c.wait(0.5)
            if m:
                got.append(m)
    finally:
        second.kill()
        second.join()
    prices = [m.price for m in got]
    assert n_before > 1000 and len(got) >= n_before + 5000, "consumer did not continue after the restart"
    assert all(consistent(m) for m in got)
    assert prices[:n_before] == list(range(1, n_before + 1))  # nothing lost or repeated before the kill
    assert prices[n_before:] == list(range(10**9, 10**9 + len(got) - n_before))  # new producer, in order
    assert c.lost == 0


def _publish_later(path, delay):
    time.sleep(delay)
    Ring.attach(path).writer().send(checked(42))
    os._exit(0)


def test_parked_consumer_is_woken_by_another_process(sysdir):
    path = sysdir / "q"
    ring = Ring.create(path, L2Update, 64)
    c = ring.reader("sleeper")
    child = FORK.Process(target=_publish_later, args=(path, 0.3))
    child.start()
    t = time.monotonic()
    cpu = time.process_time()
    m = c.wait(5.0)
    waited, used = time.monotonic() - t, time.process_time() - cpu
    child.join()
    assert m == checked(42)
    assert 0.25 < waited < 4.0  # woken by the publish, not by the 5 s timeout
    assert used < 0.5  # parked on the futex, not spinning (a spin would use ~0.3 s and more)


def test_wait_any_parks_on_several_rings(sysdir):
    rings = [Ring.create(sysdir / f"q{i}", L2Update, 64) for i in range(3)]
    readers = [r.reader("any") for r in rings]
    child = FORK.Process(target=_publish_later, args=(sysdir / "q2", 0.2))
    child.start()
    t = time.monotonic()
    assert _spine.wait_any([r.reader for r in readers], 5_000_000_000)
    child.join()
    assert time.monotonic() - t < 4.0  # woken by the publish, not by the 5 s timeout
    assert readers[2].read() == checked(42) and readers[0].read() is None


def _burst_producer(path, tag, n):
    p = Ring.attach(path).writer()
    for i in range(n):
        p.send(L2Update(i, tag, 0, tag, 1, 0))
        if i % 500 == 499:
            time.sleep(0.001)  # bursts, so the three processes never all spin at once
    os._exit(0)


def test_multi_producer_ring_delivers_everything_in_per_producer_order(sysdir):
    path = sysdir / "q"
    ring = Ring.create(path, L2Update, 1 << 16, mpmc=True)
    c = ring.reader("all")
    c.reader.stuck_ns = 5_000_000_000  # a producer descheduled mid-write on a busy machine is slow, not dead
    n = 20_000
    kids = [FORK.Process(target=_burst_producer, args=(path, tag, n)) for tag in (1, 2)]
    for k in kids:
        k.start()
    seen = {1: [], 2: []}
    deadline = time.monotonic() + 20
    while len(seen[1]) + len(seen[2]) < 2 * n and time.monotonic() < deadline:
        m = c.wait(0.5)
        if m is not None:
            seen[m.size].append(m.price)
    for k in kids:
        k.join()
    assert c.lost == c.skipped == 0 and ring.count() == 2 * n
    assert seen[1] == list(range(n)) and seen[2] == list(range(n))

