"""The replayer: publishes persisted streams back into the spine's queues, in time order.

``streams`` maps output ports to recorded queue names (``{"l2": "l2", "trades": "trades"}``); the
records keep their recorded origin and publisher, and get a new publish time.  Pace:

- simulated clock (deterministic placement): each record is published when the clock reaches its
  recorded publish time, and ``wakeup`` moves the clock to the next record: a backtest;
- ``speed = N``: N x real time on the real clock; ``speed = 0``: as fast as the consumers take it.

Producers never wait on the spine, so the replayer paces itself by its consumers instead: it only
publishes while every registered consumer of its queues is less than a quarter ring behind (the
positions consumers publish in the ring header), so a replay never laps anybody.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import _spine
from ..runtime.actor import Actor
from . import segments

BURST = 4096


class Replayer(Actor):
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
        parts, ports = [], []
        for i, (port, queue) in enumerate(self.streams.items()):
            recs = segments.load(Path(self.dir), queue, self.start, self.end or 2**64 - 1)
            if not len(recs):
                self.log.warning("replay: no records for %s in %s", queue, self.dir)
                continue
            out = getattr(self, port)
            want = out.ring.msg_type.DTYPE
            recs = segments.upgrade(recs, out.ring.msg_type) if recs.dtype != want else recs
            parts.append(recs)
            ports.append(np.full(len(recs), i, np.int16))
        self.outs = [getattr(self, p) for p in self.streams]
        if parts:
            t = np.concatenate([p["publish"] for p in parts]).astype(np.int64)
            which = np.concatenate(ports)
            order = np.argsort(t, kind="stable")  # stable: same-time records keep recorded order
            self.times = t[order]
            blobs = [p.tobytes() for p in parts]
            sizes = [p.dtype.itemsize for p in parts]
            starts = np.concatenate([np.arange(len(p)) for p in parts])[order]
            self.rows = [(int(w), int(s)) for w, s in zip(which[order], starts)]
            self.blobs, self.sizes = blobs, sizes
        else:
            self.times, self.rows = np.zeros(0, np.int64), []
        self.i = 0
        self.total = len(self.rows)
        self.t0_data = int(self.times[0]) if self.total else 0
        self.t0_wall = self.clock.now()
        self.wakeup = self._due_time(0) if self.total else 0
        self._cursor_check = 0
        self.log.info("replay: %d records from %s", self.total, self.dir)

    def _due_time(self, i: int) -> int:
        """Clock time at which record i is published."""
        t = int(self.times[i])
        if self.clock.simulated:
            return t
        if not self.speed:
            return self.t0_wall
        return self.t0_wall + int((t - self.t0_data) / self.speed)

    def _room(self) -> int:
        """How many records may go out now without any consumer falling a quarter ring behind."""
        room = BURST
        for out in self.outs:
            head, cap = out.ring.count(), out.ring.capacity
            for c in out.ring.consumers():
                if c["alive"]:
                    room = min(room, cap // 4 - (head - c["seq"]))
        return max(room, 0)

    def loop(self) -> bool:
        if self.i >= self.total:
            return False
        now = self.clock.now()
        if now < self._due_time(self.i):
            return False
        room = self._room()
        if room == 0:
            self.wakeup = now if self.clock.simulated else now + 100_000
            return False
        n = 0
        rows, blobs, sizes, outs = self.rows, self.blobs, self.sizes, self.outs
        while self.i < self.total and n < room and self._due_time(self.i) <= now:
            w, k = rows[self.i]
            size = sizes[w]
            outs[w].send_record(memoryview(blobs[w])[k * size:(k + 1) * size])
            self.i += 1
            n += 1
        w, k = rows[self.i - 1]
        self.set_origin(int.from_bytes(blobs[w][k * sizes[w]:k * sizes[w] + 8], "little"))
        if self.i >= self.total:
            self.wakeup = 0
            self.log.info("replay: done, %d records", self.total)
            if self.stop_when_done:
                self.stop_system()
        else:
            self.wakeup = self._due_time(self.i)
        return n > 0

    @property
    def progress(self) -> float:
        return self.i / self.total if self.total else 1.0
