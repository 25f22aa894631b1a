"""Actors used by the runtime tests (imported by spawned systems via PYTHONPATH)."""

import json
import os
from pathlib import Path

from mantra.runtime.actor import Actor
from mantra.spine.messages import L2Update


class Recorder(Actor):
    """Counts what it gets; its stop hook writes the counts to `out` (proves clean shutdown)."""

    inputs = ("l2",)
    out = ""

    def on_start(self):
        self.n = 0
        self.last = None

    def on_l2(self, m):
        self.n += 1
        self.last = m.price

    def on_stop(self):
        Path(self.out).write_text(json.dumps({"n": self.n, "pid": os.getpid()}))


class CrashOnce(Actor):
    """Dies hard after `after` messages the first time it runs (marker file), then behaves."""

    inputs = ("l2",)
    marker = ""
    after = 100

    def on_start(self):
        self.n = 0
        self.first_life = not Path(self.marker).exists()

    def on_l2(self, m):
        self.n += 1
        if self.first_life and self.n >= self.after:
            Path(self.marker).write_text("crashed")
            os._exit(3)


class Faulty(Actor):
    """Raises on every third message: the runtime must count, log and carry on."""

    inputs = ("l2",)

    def on_start(self):
        self.ok = 0

    def on_l2(self, m):
        if m.price % 3 == 0:
            raise ValueError(f"bad price {m.price}")
        self.ok += 1


class CrashAlways(Actor):
    """Dies hard after `after` messages in every life."""

    inputs = ("l2",)
    after = 50

    def on_start(self):
        self.n = 0

    def on_l2(self, m):
        self.n += 1
        if self.n >= self.after:
            os._exit(3)


class LastWords(Actor):
    """Publishes a few messages as it runs and `last` more in its stop hook (as a feed reports its
    books DISCONNECTED when it stops); `report` gets the total it published."""

    outputs = ("out",)
    last = 200
    report = ""

    def on_start(self):
        import time

        self.sent = 0
        self.t0 = time.monotonic()

    def loop(self):
        import time

        if self.sent < 100 and time.monotonic() - self.t0 > 0.5:  # the recorder has attached by then
            self.out.send(L2Update(self.sent + 1, 1, 0, 1, 1, 0))
            self.sent += 1
            return True
        return False

    def on_stop(self):
        import time

        time.sleep(0.3)  # the stop takes a while, as a feed closing its connections does
        for _ in range(self.last):
            self.out.send(L2Update(self.sent + 1, 1, 0, 1, 1, 0))
            self.sent += 1
        Path(self.report).write_text(json.dumps({"sent": self.sent}))
