"""`mantra bench telemetry`: what automatic timing costs per handled message.

The same Runner drains the same pre-filled queue into a no-op handler twice: with the per-message
timing records on and off.  The difference is the cost of the two clock reads and the timing-ring
write the runtime adds to every handled message.
"""

from __future__ import annotations

import os
import statistics
import time

from ..runtime import paths
from ..runtime.config import parse
from ..runtime.process import Runner
from ..runtime.supervisor import create_spine
from ..spine import Ring
from ..spine.messages import L2Update
from ..spine.shm import remove_system

OPTIONS = {"messages"}


def _doc(name):
    return {"system": {"name": name},
            "queues": {"l2": {"type": "L2Update", "capacity": 1 << 20}},
            "actors": {"noop": {"class": "mantra.bench.telemetry:Noop", "inputs": {"l2": "l2"}}}}


from ..runtime.actor import Actor  # noqa: E402


class Noop(Actor):
    inputs = ("l2",)

    def on_l2(self, m):
        pass


def _drain_ns(spec, n, timing: bool) -> float:
    d = paths.system_dir(spec.name)
    ring = Ring.attach(paths.queue(d, "l2"))
    runner = Runner(spec, ["noop"], process=f"bench{int(timing)}", timing=timing)
    runner.start()
    w = ring.writer()
    send = w._w.publish
    payload = L2Update.STRUCT.pack(1, 2, 3, 4, 1, 1)
    for _ in range(n):
        send(payload, 1, 0)
    t0 = time.perf_counter_ns()
    while runner.step():
        pass
    dt = time.perf_counter_ns() - t0
    handled = runner.slots[0].handled
    runner.stop()
    ring.close()
    assert handled == n, (handled, n)
    return dt / n


def run(messages: int = 500_000) -> dict:
    try:
        os.sched_setaffinity(0, {1 % os.cpu_count()})
    except OSError:
        pass
    name = f"benchtel{os.getpid()}"
    spec = parse(_doc(name))
    create_spine(spec).close()
    try:
        on, off = [], []
        for _ in range(5):
            off.append(_drain_ns(spec, messages, False))
            on.append(_drain_ns(spec, messages, True))
    finally:
        remove_system(name)
    m_on, m_off = statistics.median(on), statistics.median(off)
    return {
        "bench": "telemetry",
        "messages": messages,
        "handled_us_with_timing": round(m_on / 1000, 4),
        "handled_us_without_timing": round(m_off / 1000, 4),
        "timing_overhead_us": round((m_on - m_off) / 1000, 4),
        "handled_rate_with_timing": round(1e9 / m_on),
        "ratio_with_vs_without": round(m_on / m_off, 3),
        "runs": 5,
    }
