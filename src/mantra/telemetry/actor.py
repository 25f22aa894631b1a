"""The telemetry actor: drains every process's timing ring and keeps per (actor, stream)
histograms of processing time and latency since origin; writes a JSON snapshot for tools.

Timing records are raw stamps written by the runtime (key, origin, start, end); all statistics
happen here, off the hot path.  Snapshot: ``<system dir>/telemetry.json``, replaced atomically.
"""

from __future__ import annotations

import json

import numpy as np

from ..runtime import paths
from ..runtime.actor import Actor
from ..runtime.process import LOOP_STREAM
from ..spine import Ring, shm
from ..spine.messages import Timing
from .hist import Hist


class Telemetry(Actor):
    interval = 0.5  # seconds between snapshots
    background = True  # its wake-ups do not keep a deterministic run alive

    def on_start(self) -> None:
        self.dir = paths.system_dir(self.system)
        man = json.loads(shm.read_text(paths.manifest(self.dir)))
        self.names = {}
        for an, a in man["actors"].items():
            for i, port in enumerate(a["inputs"]):
                self.names[a["id"] << 16 | i] = f"{an}.{port}"
            self.names[a["id"] << 16 | LOOP_STREAM] = f"{an}.loop"
        self.readers: dict[str, object] = {}
        self.proc: dict[int, Hist] = {}
        self.lat: dict[int, Hist] = {}
        self.window: dict[int, int] = {}
        self.rates: dict[int, float] = {}
        self.lost = 0
        self.last = self.clock.now()
        self.wakeup = self.last + int(self.interval * 1e9)
        self._attach_new()

    def _attach_new(self) -> None:
        tdir = self.dir / "timing"
        if not tdir.exists():
            return
        for p in tdir.iterdir():
            if p.name.startswith(".") or p.name in self.readers:
                continue
            try:
                self.readers[p.name] = Ring.attach(p, Timing).reader(f"{self.name}", start=0)
            except Exception as e:  # a ring being created right now: next round
                self.log.debug("timing ring %s not ready: %s", p, e)

    def drain(self) -> int:
        n = 0
        for c in self.readers.values():
            while True:
                b = c.read_batch(8192)
                if not len(b):
                    break
                n += len(b)
                keys = b["key"]
                for k in set(keys.tolist()):
                    sel = b[keys == k]
                    start = sel["start"].astype(np.int64)
                    self.proc.setdefault(k, Hist()).add(sel["end"].astype(np.int64) - start)
                    # a loop step that ingests data stamps its origin after it started: clip to 0
                    self.lat.setdefault(k, Hist()).add(np.maximum(start - sel["origin"].astype(np.int64), 0))
                    self.window[k] = self.window.get(k, 0) + len(sel)
        return n

    def loop(self) -> bool:
        now = self.clock.now()
        if now < self.wakeup:
            # a simulated clock can run far ahead of the snapshot interval: keep draining so the
            # timing rings are never lapped
            return self.drain() > 0 if self.clock.simulated else False
        self._attach_new()
        self.drain()
        dt = max((now - self.last) / 1e9, 1e-9)
        self.rates = {k: c / dt for k, c in self.window.items()}
        self.window = {k: 0 for k in self.window}
        self.last = now
        self.write_snapshot(now)
        self.wakeup = now + int(self.interval * 1e9)
        return True

    def snapshot(self, now: int) -> dict:
        timers = {}
        for k in sorted(self.proc, key=lambda k: self.names.get(k, str(k))):
            timers[self.names.get(k, f"key{k:#x}")] = {
                "processing_us": self.proc[k].summary(),
                "latency_us": self.lat[k].summary(),
                "rate": round(self.rates.get(k, 0.0), 1),
            }
        lost = sum(c.lost for c in self.readers.values())
        return {"t": now, "timers": timers, "timing_lost": lost}

    def write_snapshot(self, now: int) -> None:
        shm.write_text(paths.telemetry(self.dir), json.dumps(self.snapshot(now)))

    def on_stop(self) -> None:
        self._attach_new()
        self.drain()
        self.write_snapshot(self.clock.now())
