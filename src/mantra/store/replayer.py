"""The replayer: publishes persisted streams back into the spine's queues, in time order.

``streams`` maps output ports to recorded queue names (``{"l2": "l2", "trades": "trades"}``); the
records keep their recorded origin and publisher, and get a new publish time.  Pace:

- simulated clock (deterministic placement): records go out ahead in bursts, stamped with their
  recorded publish times; the deterministic runner hands each one over when the clock reaches its
  time, and ``wakeup`` names the next record not yet out: a backtest;
- ``speed = N``: N x real time on the real clock; ``speed = 0``: as fast as the consumers take it.

Producers never wait on the spine, so the replayer paces itself by its consumers instead: it only
publishes while every registered consumer of its queues is less than a quarter ring behind (the
positions consumers publish in the ring header), so a replay never laps anybody.

Damaged parts of the recording are skipped, logged and kept in ``damage`` (``segments.Damage``
entries; ``skipped`` sums them up), so a result built on a replay can say what it lacked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..runtime.actor import Actor
from . import segments

BURST = 4096


class Replayer(Actor):
    source = True
    dir = ""  # segments directory
    streams: dict = {}  # output port -> recorded queue name
    speed = 1.0  # real-clock replays: 0 = as fast as possible
    start = 0  # publish-time window (ns), 0 = all
    end = 0
    stop_when_done = False  # ask the system to stop after the last record

    def __init__(self, **params):
        super().__init__(**params)
        self.outputs = tuple(self.streams)

    def on_start(self) -> None:
        parts, ports, self.outs = [], [], []  # one entry per stream with records
        self.damage: list = []
        for port, queue in self.streams.items():
            recs = segments.load(Path(self.dir), queue, self.start, self.end or 2**64 - 1, self.damage)
            if not len(recs):
                self.log.warning("replay: no records for %s in %s", queue, self.dir)
                continue
            out = getattr(self, port)
            want = out.ring.msg_type.DTYPE
            recs = segments.upgrade(recs, out.ring.msg_type) if recs.dtype != want else recs
            ports.append(np.full(len(recs), len(parts), np.int16))
            parts.append(recs)
            self.outs.append(out)
        if parts:
            t = np.concatenate([p["publish"] for p in parts]).astype(np.int64)
            which = np.concatenate(ports)
            order = np.argsort(t, kind="stable")  # stable: same-time records keep recorded order
            self.times = t[order]
            blobs = [p.tobytes() for p in parts]
            sizes = [p.dtype.itemsize for p in parts]
            starts = np.concatenate([np.arange(len(p)) for p in parts])[order]
            self.which, self.kidx = which[order], starts
            # per-record (w, k) pairs only for real-clock pacing; simulated replays go by runs
            self.rows = [] if self.clock.simulated else list(zip(self.which.tolist(), starts.tolist()))
            self.blobs, self.sizes = [memoryview(b) for b in blobs], sizes
            # simulated clock: each stream goes out in its own runs (the runner merges by time)
            self.parts = [p["publish"].astype(np.int64) for p in parts]
            self.k = [0] * len(parts)
        else:
            self.parts, self.k = [], []
            self.times, self.rows = np.zeros(0, np.int64), []
        self.i = 0
        self.total = len(self.times)
        self.t0_data = int(self.times[0]) if self.total else 0
        self.t0_wall = self.clock.now()
        self.wakeup = (int(min(t[0] for t in self.parts)) if self.clock.simulated else self._due_time(0)) \
            if self.total else 0
        self._cursor_check = 0
        self.skipped = segments.summary(self.damage)
        if self.damage:
            self.log.error("replay: %d damaged parts of the recording skipped (%d bytes, %d records known lost): %s",
                           self.skipped["chunks"], self.skipped["bytes"], self.skipped["records"],
                           "; ".join(self.skipped["where"][:5]))
        self.log.info("replay: %d records from %s", self.total, self.dir)

    def _due_time(self, i: int) -> int:
        """Clock time at which record i is published."""
        t = int(self.times[i])
        if self.clock.simulated:
            return t
        if not self.speed:
            return self.t0_wall
        return self.t0_wall + int((t - self.t0_data) / self.speed)

    def _room(self, only: int | None = None) -> int:
        """How many records may go out now (to output ``only``, default every output) without any
        consumer falling a quarter ring behind.  Reads the positions consumers publish; the list
        of live consumers is refreshed rarely."""
        if self._cursor_check <= 0:
            self._consumers = [(out.ring, [c["index"] for c in out.ring.consumers() if c["alive"]])
                               for out in self.outs]
            self._cursor_check = 256
        self._cursor_check -= 1
        room = BURST
        for ring, idx in (self._consumers if only is None else self._consumers[only:only + 1]):
            if idx:
                behind = ring.count() - min(ring.cursor_seq(i) for i in idx)
                room = min(room, ring.capacity // 4 - behind)
        return max(room, 0)

    def _drained(self) -> bool:
        self._cursor_check = 0  # re-read who consumes
        return not self.outs or self._room() == min(BURST, min(out.ring.capacity // 4 for out in self.outs))

    def loop(self) -> bool:
        if self.i >= self.total:
            if self.stop_when_done and self._drained():
                self.stop_system()  # only once every consumer has read everything
            elif self.stop_when_done and not self.clock.simulated:
                self.wakeup = self.clock.now() + 1_000_000
            return False
        now = self.clock.now()
        sim = self.clock.simulated
        if not sim and now < self._due_time(self.i):
            return False
        if sim:
            return self._publish_ahead()
        room = self._room()
        if room == 0:
            self.wakeup = now + 100_000
            return False
        n = 0
        rows, blobs, sizes, outs = self.rows, self.blobs, self.sizes, self.outs
        end = min(self.total, self.i + room)
        while self.i < end and self._due_time(self.i) <= now:
            w, k = rows[self.i]
            size = sizes[w]
            outs[w].send_record(blobs[w][k * size:(k + 1) * size])
            self.i += 1
            n += 1
        w, k = int(self.which[self.i - 1]), int(self.kidx[self.i - 1])
        self.set_origin(int.from_bytes(blobs[w][k * sizes[w]:k * sizes[w] + 8], "little"))
        self._next(self._due_time(self.i) if self.i < self.total else 0)
        return n > 0

    def _publish_ahead(self) -> bool:
        """Simulated clock: each stream's next records go out in one run per stream, ahead of
        time and stamped with their recorded times (the deterministic runner hands each one over
        at its time, merging the streams); ``wakeup`` is the earliest record not yet out, so no
        consumer is handed anything past it before the rest is published."""
        n, nxt = 0, 0
        for w, times in enumerate(self.parts):
            k = self.k[w]
            m = min(self._room(w), len(times) - k)
            if m > 0:
                size = self.sizes[w]
                blob = self.blobs[w][k * size:(k + m) * size]
                self.outs[w].send_records(blob, m)
                self.set_origin(int.from_bytes(blob[(m - 1) * size:(m - 1) * size + 8], "little"))
                self.k[w] = k = k + m
                n += m
            if k < len(times) and (not nxt or times[k] < nxt):
                nxt = int(times[k])
        self.i += n
        self._next(nxt)
        return n > 0

    def _next(self, wakeup: int) -> None:
        self.wakeup = wakeup
        if not wakeup:
            self.log.info("replay: done, %d records", self.total)

    @property
    def progress(self) -> float:
        return self.i / self.total if self.total else 1.0
