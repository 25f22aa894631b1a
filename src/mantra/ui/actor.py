"""The UI actor: reads every queue of a running system with ``read_batch`` into a ``View`` and
serves it (``server.py``).  Like the persister it is a registered consumer that never slows a
producer: lapped, it counts what it lost and shows it.  It drains every ``interval_ms`` (live
data reaches the page within that plus the page's poll), samples each queue's rate and its
consumers' lag and loss twice a second, and reads the telemetry actor's snapshot.

In a system's configuration it is an actor like any other (the demo places it beside the
persister); ``mantra ui SYSTEM`` runs the same actor in its own process, attached to a system
that is already running (``attach``).
"""

from __future__ import annotations

import json
import logging
import os
import time

from ..runtime import paths
from ..runtime.actor import Actor
from ..runtime.clock import RealClock
from ..spine import Ring, shm
from .server import Source, UiServer
from .view import View

log = logging.getLogger("mantra.ui")


class LiveSource(Source):
    mode = "live"

    def __init__(self, view, system: str, actor: "UiActor"):
        super().__init__(view, system)
        self.actor = actor

    def extra_state(self) -> dict:
        a = self.actor
        return {"traffic": a.traffic, "ui": {"lost": a.lost, "lag": a.lag}, "telemetry": list(a.telemetry),
                "live": True, "now_ns": time.time_ns()}


class UiActor(Actor):
    background = True
    host = "127.0.0.1"
    port = 0  # 0: a free port (the URL is logged and written to <system dir>/ui.json)
    remote = False  # serve a non-loopback host (then a token is required)
    queues: list | str = "*"
    interval_ms = 50
    sample_ms = 500

    def on_start(self) -> None:
        d = paths.system_dir(self.system)
        man = json.loads(shm.read_text(paths.manifest(d)))
        from ..feeds.actor import system_registry

        self.dir = d
        self.view = View(system_registry(self.system), {a["id"]: n for n, a in man["actors"].items()})
        names = list(man["queues"]) if self.queues == "*" else list(self.queues)
        self.rings = {q: Ring.attach(paths.queue(d, q)) for q in names}
        # from the oldest record still in each ring: a UI opened late shows what the spine still holds
        self.readers = {q: r.reader(self.name, start=max(r.count() - r.capacity, 0)) for q, r in self.rings.items()}
        self.traffic: list = []
        self.telemetry: list = []
        self.lost = self.lag = 0
        self.last_counts = {q: r.count() for q, r in self.rings.items()}
        self.source = LiveSource(self.view, man["name"], self)
        self.server = UiServer(self.source, self.host, int(self.port), bool(self.remote)).start()
        shm.write_text(d / "ui.json", json.dumps({"url": self.server.url, "pid": os.getpid()}))
        self.log.info("UI at %s", self.server.url)
        now = self.clock.now()
        self.next_sample = now + self.sample_ms * 1_000_000
        self.last_sample = now
        self.wakeup = now + self.interval_ms * 1_000_000

    @property
    def url(self) -> str:
        return self.server.url

    def drain(self) -> int:
        n = 0
        with self.source.lock:
            for q, c in self.readers.items():
                mt = self.rings[q].msg_type
                while len(b := c.read_batch(8192)):
                    self.view.ingest(q, b, mt)
                    n += len(b)
        return n

    def sample(self, now: int) -> None:
        dt = max((now - self.last_sample) / 1e9, 1e-3)
        traffic, lag = [], 0
        for q, r in self.rings.items():
            head = r.count()
            rate = (head - self.last_counts[q]) / dt
            self.last_counts[q] = head
            cons = [{"label": c["label"], "lag": c["lag"], "lost": c["lost"]} for c in r.consumers() if c["alive"]]
            traffic.append({"queue": q, "type": r.msg_type.__name__, "rate": round(rate, 1), "head": head,
                            "consumers": cons})
            lag += max(head - self.readers[q].seq, 0)
            self.view.rate(q, now, rate)
        tele = []
        try:
            snap = json.loads(shm.read_text(paths.telemetry(self.dir)))
        except (OSError, ValueError):
            snap = {}
        for name, t in snap.get("timers", {}).items():
            actor, _, stream = name.partition(".")
            for kind, key in (("processing", "processing_us"), ("latency", "latency_us")):
                h = t.get(key, {})
                tele.append({"actor": actor, "stream": stream, "kind": kind, "n": h.get("count", 0),
                             **{f"{p}_ns": round(h.get(p, 0) * 1000) for p in ("p50", "p99", "p999", "max")}})
        with self.source.lock:
            self.traffic, self.telemetry, self.lag = traffic, tele, lag
            self.lost = sum(c.lost for c in self.readers.values())
        self.last_sample = now

    def loop(self) -> bool:
        now = self.clock.now()
        if now < self.wakeup:
            return False
        did = self.drain() > 0
        if now >= self.next_sample:
            self.sample(now)
            self.next_sample = now + self.sample_ms * 1_000_000
        self.wakeup = now + self.interval_ms * 1_000_000
        return did

    def on_stop(self) -> None:
        self.drain()
        self.server.close()
        for r in self.rings.values():
            r.close()


def attach(system: str, host: str = "127.0.0.1", port: int = 0, remote: bool = False) -> UiActor:
    """The UI actor on a system that is already running, outside its supervisor: started here,
    stepped by ``serve``."""
    a = UiActor(host=host, port=port, remote=remote)
    a.system, a.name, a.id, a.clock = system, "ui", 0, RealClock()
    a.log = logging.getLogger("mantra.actor.ui")
    a.on_start()
    return a


def serve(a: UiActor, stop=lambda: False) -> None:
    """Step an attached UI actor until ``stop()`` or Ctrl-C; if the system goes away, keep serving
    what was read."""
    gone = False
    try:
        while not stop():
            if not gone and not paths.manifest(paths.system_dir(a.system)).exists():
                gone = True
                log.warning("system %s stopped: the UI keeps what it read", a.system)
            if not gone:
                a.loop()
            time.sleep(a.interval_ms / 1000)
    except KeyboardInterrupt:
        pass
    finally:
        a.server.close()
