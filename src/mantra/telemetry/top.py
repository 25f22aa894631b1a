"""`mantra top`: the telemetry actor's live histograms, per actor x stream."""

from __future__ import annotations

import json
import time

from ..runtime import paths
from ..spine import shm


def read(system: str) -> dict | None:
    p = paths.telemetry(paths.system_dir(system))
    try:
        return json.loads(shm.read_text(p))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def duration(us: float) -> str:
    """A duration in at most 7 characters, in the unit that suits it (µs in, ns to s out)."""
    if us < 1:
        return f"{us * 1000:.0f}ns"
    for unit, scale in (("µs", 1), ("ms", 1e3), ("s", 1e6)):
        v = us / scale
        if v < 1000 or unit == "s":
            return f"{v:.{2 if v < 10 else 1 if v < 100 else 0}f}{unit}"
    raise AssertionError  # unreachable


W = 8  # every duration column: 7 characters and a space, so columns never run together


def render(system: str, snap: dict | None) -> str:
    if not snap:
        return f"{system}: no telemetry yet (is a Telemetry actor configured?)"
    n = max([len("actor.stream"), *map(len, snap["timers"])]) + 1
    cols = ("proc p50", "p99", "p99.9", "max", "lat p50", "p99", "p99.9")
    head = f"{'actor.stream':<{n}}{'msg/s':>10}{'count':>12} |" + "".join(
        f"{c:>{W + 1}}" + (" |" if i == 3 else "") for i, c in enumerate(cols))
    out = [f"system {system}   timing records lost: {snap.get('timing_lost', 0)}", head, "-" * len(head)]
    for name, t in snap["timers"].items():
        p, lat = t["processing_us"], t["latency_us"]
        vals = [p["p50"], p["p99"], p["p999"], p["max"], lat["p50"], lat["p99"], lat["p999"]]
        out.append(f"{name:<{n}}{t['rate']:>10.0f}{p['count']:>12} |" + "".join(
            f"{duration(v):>{W + 1}}" + (" |" if i == 3 else "") for i, v in enumerate(vals)))
    return "\n".join(out)


def watch(system: str, interval: float = 1.0, iterations: int = 0) -> None:
    i = 0
    while not iterations or i < iterations:
        print("\033[2J\033[H" + render(system, read(system)), flush=True)
        i += 1
        time.sleep(interval)
