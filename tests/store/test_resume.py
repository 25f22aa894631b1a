"""A restarted persister resumes exactly after the last record on disk: every record once."""

import json
import logging
import time

import numpy as np

from mantra.runtime import paths
from mantra.spine import Ring
from mantra.spine.messages import L2Update
from mantra.store import segments
from mantra.store.persister import Persister

CAPACITY = 1024


class Clock:
    simulated = False

    def now(self) -> int:
        return time.time_ns()


class Source:
    """The ``l2`` ring of a system named ``t``; ``send(n)`` publishes the next n prices."""

    def __init__(self, sysdir):
        assert paths.system_dir("t") == sysdir
        paths.manifest(sysdir).write_text(json.dumps({"queues": {"l2": {"type": "L2Update"}}}))
        self.ring = Ring.create(paths.queue(sysdir, "l2"), L2Update, CAPACITY)
        self.w = self.ring.writer()
        self.sent = 0

    def send(self, n):
        for _ in range(n):
            self.w.send(L2Update(self.sent, 1, 0, 1, 1, 0))
            self.sent += 1


def start(out, name="persister") -> Persister:
    p = Persister(dir=str(out), queues=["l2"], flush_ms=1_000_000)
    p.system, p.name, p.clock, p.log = "t", name, Clock(), logging.getLogger("test.persister")
    p.on_start()
    return p


def killed(p: Persister) -> None:
    """As after kill -9: no on_stop (whatever was pending is gone), the cursor left behind."""
    for w in p.writers.values():
        w.f.close()


def prices(out):
    damage = []
    got = segments.load(out, "l2", damage=damage)
    return got["price"].tolist(), damage


def test_restart_resumes_after_the_last_record_on_disk(sysdir, tmp_path):
    src, out = Source(sysdir), tmp_path / "rec"
    p = start(out)
    src.send(300)
    p.drain()
    p.flush()
    src.send(200)
    p.drain()  # read but never flushed: lost with the process, still in the ring
    killed(p)
    src.send(100)
    p = start(out)
    src.send(50)
    p.drain()
    p.on_stop()
    got, damage = prices(out)
    assert got == list(range(650)) and not damage  # every record exactly once
    assert p.lost == 0 and len(segments.segments(out, "l2")) == 2  # a new file per run


def test_a_restart_after_a_torn_chunk_records_it_again_in_a_new_file(sysdir, tmp_path):
    src, out = Source(sysdir), tmp_path / "rec"
    p = start(out)
    for _ in range(3):
        src.send(100)
        p.drain()
        p.flush()
    killed(p)
    f = segments.segments(out, "l2")[0]
    with open(f, "r+b") as fh:  # died while writing its last chunk
        fh.truncate(f.stat().st_size - 20)
    p = start(out)
    src.send(100)
    p.drain()
    p.on_stop()
    got, damage = prices(out)
    assert got == list(range(400))
    assert len(damage) == 1 and damage[0].path == str(f)  # the torn chunk, reported


def test_a_gap_the_ring_overwrote_is_counted_and_logged_never_duplicated(sysdir, tmp_path, caplog):
    src, out = Source(sysdir), tmp_path / "rec"
    p = start(out)
    src.send(100)
    p.drain()
    p.flush()
    killed(p)
    src.send(3 * CAPACITY)  # published while no persister ran: most of it overwritten
    with caplog.at_level(logging.INFO):
        p = start(out)
        src.send(10)
        p.drain()
        p.on_stop()
    got, _ = prices(out)
    assert got[:100] == list(range(100)) and len(got) == len(set(got))
    assert got[100:] == list(range(got[100], src.sent))  # the rest: a gap-free run up to the last
    assert p.lost == got[100] - 100  # exactly the records missing from disk
    assert "overwritten" in caplog.text and "not recorded" in caplog.text


def test_a_new_ring_is_not_mistaken_for_the_old_one(sysdir, tmp_path, shm_root):
    src, out = Source(sysdir), tmp_path / "rec"
    p = start(out)
    src.send(500)
    p.drain()
    p.on_stop()
    src.ring.close()
    paths.queue(sysdir, "l2").unlink()
    src = Source(sysdir)  # the system came back with fresh rings: seq numbers start again at 0
    src.send(20)
    p = start(out)
    p.drain()
    p.on_stop()
    got, _ = prices(out)
    assert got == list(range(500)) + list(range(20))


def test_a_persister_started_late_keeps_everything_still_in_the_ring(sysdir, tmp_path):
    src, out = Source(sysdir), tmp_path / "rec"
    src.send(CAPACITY - 1)  # published before any persister ran
    p = start(out)
    p.drain()
    p.on_stop()
    assert prices(out)[0] == list(range(CAPACITY - 1)) and p.lost == 0
