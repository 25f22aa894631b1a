"""The persister actor: records every spine queue into segment files.

It drains each queue with ``read_batch`` (no per-message Python), and appends a chunk per queue every
``flush_ms`` or ``chunk_records`` records, whichever first; so after kill -9 at most the last flush
interval is missing.  Files rotate every ``rotate_s`` seconds of publish time:
``<dir>/<queue>/<first publish ns>.seg``.  A consumer lapped by a burst counts its loss, and the
persister reports it (loss is logged, never silent).

Each chunk records the ring's identity and the sequence number just past its last record, so a
restarted persister (kill -9, a crash, a system restart on the same rings) resumes exactly after
the last record on disk: nothing is written twice, and what the ring overwrote meanwhile is
counted as lost and logged.  It always starts new files, never appending to one a crash may have
torn.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..runtime import paths
from ..runtime.actor import Actor
from ..spine import Ring, shm
from . import segments
from .segments import SegmentWriter


class Persister(Actor):
    background = True
    dir = "data/session"  # where segments go
    queues: list | str = "*"  # queue names, or "*" for every queue of the system
    flush_ms = 100
    chunk_records = 65536
    rotate_s = 3600
    level = 9  # zstd level: ~12x on market data at ~2.8 M records/s, far above what queues carry

    def on_start(self) -> None:
        man = json.loads(shm.read_text(paths.manifest(paths.system_dir(self.system))))
        names = list(man["queues"]) if self.queues == "*" else list(self.queues)
        self.out = Path(self.dir)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "system.json").write_text(json.dumps(man, indent=1))
        inst = paths.system_dir(self.system) / "instruments.json"
        if inst.exists():
            (self.out / "instruments.json").write_text(shm.read_text(inst))
        d = paths.system_dir(self.system)
        self.rings = {q: Ring.attach(paths.queue(d, q)) for q in names}
        self.readers = {q: r.reader(f"{self.name}", start=self._start(q, r)) for q, r in self.rings.items()}
        self.pending: dict[str, list] = {q: [] for q in names}
        self.npending = dict.fromkeys(names, 0)
        self.writers: dict[str, SegmentWriter] = {}
        self.opened: dict[str, int] = {}
        self.lost_reported = dict.fromkeys(names, 0)
        self.next_flush = self.clock.now() + self.flush_ms * 1_000_000
        self.wakeup = self.next_flush

    def _start(self, q: str, ring: Ring) -> int:
        """Where to read ``q`` from: just past the last record on disk when it came from this very
        ring, else the oldest message still in the ring (a persister started late keeps what it can;
        if the producer overwrites it first, the reader resyncs and counts the loss)."""
        head = ring.count()
        rid, seq = segments.resume_point(self.out, q)
        if not seq or rid != ring.header["created_ns"] or seq > head:
            if head > ring.capacity:
                self.log.warning("persister on %s: %d messages published before it started are no longer in the"
                                 " ring and were not recorded", q, head - ring.capacity)
            return max(head - ring.capacity, 0)
        if head - seq > ring.capacity:  # overwritten: the first read resyncs and counts the loss
            self.log.error("persister restart on %s: messages published while it was down were overwritten before"
                           " it came back (%d behind, ring of %d)", q, head - seq, ring.capacity)
        else:
            self.log.info("persister restart on %s: resuming at seq %d (%d behind)", q, seq, head - seq)
        return seq

    def _writer(self, q: str, first_ns: int) -> SegmentWriter:
        w = self.writers.get(q)
        if w is not None and first_ns - self.opened[q] >= self.rotate_s * 1_000_000_000:
            w.close()
            w = None
        if w is None:
            path = self.out / q / f"{first_ns}.seg"
            while path.exists():  # a new file: never append to one an earlier run left (maybe torn)
                first_ns += 1
                path = self.out / q / f"{first_ns}.seg"
            w = SegmentWriter(path, q, self.rings[q].msg_type, level=self.level)
            self.writers[q], self.opened[q] = w, first_ns
        return w

    def drain(self) -> int:
        n = 0
        for q, c in self.readers.items():
            while True:
                b = c.read_batch(8192)
                if not len(b):
                    break
                self.pending[q].append(b.tobytes())  # bytes join cheaply; small record arrays do not
                self.npending[q] += len(b)
                n += len(b)
                if self.npending[q] >= self.chunk_records:
                    self.flush(q)
            if c.lost > self.lost_reported[q]:
                self.log.error("persister lapped on %s: %d messages not recorded", q, c.lost - self.lost_reported[q])
                self.lost_reported[q] = c.lost
        return n

    def flush(self, q: str | None = None) -> None:
        for name in [q] if q else list(self.pending):
            parts = self.pending[name]
            if not parts:
                continue
            recs = np.frombuffer(b"".join(parts) if len(parts) > 1 else parts[0], self.rings[name].msg_type.DTYPE)
            # pending holds everything read so far: the reader's position is just past its last record
            self._writer(name, int(recs["publish"][0])).append(
                recs, ring=self.rings[name].header["created_ns"], seq=self.readers[name].seq)
            self.pending[name], self.npending[name] = [], 0

    def loop(self) -> bool:
        did = self.drain() > 0
        now = self.clock.now()
        if now >= self.next_flush:
            self.flush()
            self.next_flush = now + self.flush_ms * 1_000_000
            self.wakeup = self.next_flush
        return did

    @property
    def lost(self) -> int:
        return sum(c.lost for c in self.readers.values())

    def on_stop(self) -> None:
        self.drain()
        self.flush()
        for w in self.writers.values():
            w.close()
