"""`mantra bench ring`: the spine ring between two pinned processes, against a plain-Python ring
measured in the same run.

- raw_roundtrip_us: a 64-bit word bounced between the two CPUs (the machine's cache-line round trip
  as Python sees it): tells whether this run had the "near" or "far" core pair.
- hop_*: producer paced at `rate` stamps the publish time; the consumer (spinning in C) stamps the
  moment it sees the message.  One-way, publish -> visible to a Python consumer.
- per_message_rate: producer paced at `fast_rate`; a Python consumer reading NamedTuples one by one
  must keep up: reports delivered/s and lost.
- batch_rate: a consumer draining with `read_batch` into numpy.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import _spine
from ..runtime.supervisor import die_with_parent
from ..spine import Ring
from ..spine.messages import L2Update
from .pyring import PyRing

OPTIONS = {"messages", "rate"}
FORK = mp.get_context("fork")


def _pin(cpu):
    try:
        os.sched_setaffinity(0, {cpu % os.cpu_count()})
    except OSError:
        pass


def _pct(a: np.ndarray) -> dict:
    a = a / 1000.0
    return {"p50": round(float(np.percentile(a, 50)), 3), "p90": round(float(np.percentile(a, 90)), 3),
            "p99": round(float(np.percentile(a, 99)), 3), "p999": round(float(np.percentile(a, 99.9)), 3)}


# ------------------------------------------------------------------------- raw word ping-pong
def _pong(mm, n):
    die_with_parent()  # a benchmark stopped by force leaves nothing spinning
    _pin(0)
    w = memoryview(mm).cast("Q")
    for i in range(1, n + 1):
        while w[0] != 2 * i - 1:
            pass
        w[8] = 2 * i
    os._exit(0)


def raw_roundtrip(n=200_000) -> dict:
    import mmap
    mm = mmap.mmap(-1, 4096)
    child = FORK.Process(target=_pong, args=(mm, n))
    child.start()
    _pin(1)
    w = memoryview(mm).cast("Q")
    now = time.perf_counter_ns
    out = np.empty(n, np.int64)
    for i in range(1, n + 1):
        t = now()
        w[0] = 2 * i - 1
        while w[8] != 2 * i:
            pass
        out[i - 1] = now() - t
    child.join()
    return _pct(out[n // 10:])


# ------------------------------------------------------------------------- hop latency, C ring
def _paced_producer(path, n, rate, start_evt):
    die_with_parent()  # a benchmark stopped by force leaves nothing spinning
    _pin(0)
    p = Ring.attach(path).writer()
    msg = L2Update(1, 2, 3, 4, 1, 1)
    start_evt.wait()
    time.sleep(0.05)
    period = 1e9 / rate
    now = _spine.monotonic
    t0 = now()
    for i in range(n):
        nxt = t0 + i * period
        while now() < nxt:
            pass
        p.send(msg, 1)
    os._exit(0)


def hop_c(n, rate) -> dict:
    with tempfile.TemporaryDirectory(dir="/dev/shm") as d:
        ring = Ring.create(Path(d) / "hop", L2Update, 1 << 16)
        c = ring.reader("bench")
        r, rec = c.reader, c.record
        evt = FORK.Event()
        child = FORK.Process(target=_paced_producer, args=(ring.path, n, rate, evt))
        child.start()
        _pin(1)
        lat = np.empty(n, np.int64)
        now = _spine.now
        got = 0
        evt.set()
        while got < n:
            if r.wait_into(rec, 2_000_000_000, 2_000_000_000):
                t = now()
                lat[got] = t - int.from_bytes(rec[8:16], "little")
                got += 1
            else:
                break
        child.join()
        lost = c.lost
        ring.close()
    return {**_pct(lat[n // 20:got]), "received": got, "lost": lost}


def _py_producer(mm, cap, n, rate, start_evt):
    die_with_parent()  # a benchmark stopped by force leaves nothing spinning
    _pin(0)
    publish = PyRing(mm, cap).writer()
    start_evt.wait()
    time.sleep(0.05)
    period = 1e9 / rate
    now = time.perf_counter_ns
    t0 = now()
    for i in range(n):
        nxt = t0 + i * period
        while now() < nxt:
            pass
        publish(1, now())
    os._exit(0)


def hop_py(n, rate) -> dict:
    cap = 1 << 16
    pr = PyRing.create(cap)
    read, state = pr.reader()
    evt = FORK.Event()
    child = FORK.Process(target=_py_producer, args=(pr.mm, cap, n, rate, evt))
    child.start()
    _pin(1)
    lat = np.empty(n, np.int64)
    now = time.perf_counter_ns
    got = 0
    evt.set()
    deadline = time.monotonic() + n / rate + 5
    while got < n and time.monotonic() < deadline:
        m = read()
        if m is not None:
            lat[got] = now() - m[1]
            got += 1
    child.join()
    return {**_pct(lat[n // 20:got]), "received": got, "lost": state[1]}


# ------------------------------------------------------------------------- throughput
def _fast_producer(path, n, rate, start_evt):
    die_with_parent()  # a benchmark stopped by force leaves nothing spinning
    _pin(0)
    p = Ring.attach(path).writer()
    send = p._w.publish
    payload = L2Update.STRUCT.pack(1, 2, 3, 4, 1, 1)
    start_evt.wait()
    time.sleep(0.05)
    now = _spine.monotonic
    t0 = now()
    chunk = 64
    per_chunk = chunk * 1e9 / rate if rate else 0
    for i in range(0, n, chunk):
        if per_chunk:
            nxt = t0 + (i // chunk) * per_chunk
            while now() < nxt:
                pass
        for _ in range(chunk):
            send(payload, 1, 0)
    os._exit(0)


def per_message(n, rate) -> dict:
    """Python consumer reading NamedTuples one at a time from a producer paced at `rate`."""
    with tempfile.TemporaryDirectory(dir="/dev/shm") as d:
        ring = Ring.create(Path(d) / "rate", L2Update, 1 << 16)
        c = ring.reader("bench")
        read = c.read
        evt = FORK.Event()
        child = FORK.Process(target=_fast_producer, args=(ring.path, n, rate, evt))
        child.start()
        _pin(1)
        got = 0
        evt.set()
        while c.reader.head() == 0:
            pass
        t0 = time.perf_counter()
        deadline = t0 + n / max(rate, 1) * 3 + 5
        while got + c.lost < n - 64 and time.perf_counter() < deadline:
            if read() is not None:
                got += 1
        dt = time.perf_counter() - t0
        child.join()
        while read() is not None:
            got += 1
        out = {"delivered_rate": round(got / dt), "received": got, "lost": c.lost, "offered_rate": rate}
        ring.close()
    return out


def batch(n) -> dict:
    """read_batch draining a ring filled by a free-running producer in the other process."""
    with tempfile.TemporaryDirectory(dir="/dev/shm") as d:
        ring = Ring.create(Path(d) / "batch", L2Update, 1 << 20)
        c = ring.reader("bench")
        evt = FORK.Event()
        child = FORK.Process(target=_fast_producer, args=(ring.path, n, 0, evt))
        child.start()
        evt.set()
        child.join()  # producer fills first: measure the drain alone, not the producer's pace
        _pin(1)
        got = 0
        t0 = time.perf_counter()
        while True:
            b = c.read_batch(8192)
            if not len(b):
                break
            got += len(b)
        dt = time.perf_counter() - t0
        ring.close()
    return {"batch_rate": round(got / dt), "received": got, "lost": c.lost}


def py_per_message(n) -> dict:
    """The plain-Python ring's consumer draining a filled ring one message at a time."""
    pr = PyRing.create(1 << 20)
    publish = pr.writer()
    for i in range(n):
        publish(1, i)
    read, state = pr.reader()
    state[0] = 0
    got = 0
    t0 = time.perf_counter()
    while read() is not None:
        got += 1
    return {"per_message_rate": round(got / (time.perf_counter() - t0))}


def run(messages: int = 200_000, rate: int = 100_000) -> dict:
    raw = raw_roundtrip()
    c_hop = hop_c(messages, rate)
    py_hop = hop_py(messages, rate)
    pm = per_message(1_000_000 if messages >= 100_000 else messages * 5, 1_000_000)
    pm_max = per_message(2_000_000, 0)  # unpaced producer: the consumer's ceiling (and its losses)
    bt = batch(1_000_000)
    py_pm = py_per_message(1_000_000)
    return {
        "bench": "ring",
        "raw_roundtrip_us": raw,
        "core_pair": "near" if raw["p50"] < 0.3 else "far",
        "hop_p50_us": c_hop["p50"], "hop_p99_us": c_hop["p99"], "hop": c_hop,
        "per_message_rate": pm["delivered_rate"], "per_message": pm, "per_message_unpaced": pm_max,
        "batch_rate": bt["batch_rate"],
        "lost": c_hop["lost"] + pm["lost"] + bt["lost"],  # the unpaced run is meant to lose: not counted
        "baseline_python_ring": {"hop_p50_us": py_hop["p50"], "hop_p99_us": py_hop["p99"], "hop": py_hop,
                                 "per_message_rate": py_pm["per_message_rate"]},
        "ratio_hop_p50": round(py_hop["p50"] / max(c_hop["p50"], 1e-9), 2),
        "ratio_hop_p99": round(py_hop["p99"] / max(c_hop["p99"], 1e-9), 2),
        "ratio_batch_vs_python_per_message": round(bt["batch_rate"] / max(py_pm["per_message_rate"], 1), 2),
        "rate": rate, "messages": messages,
    }
