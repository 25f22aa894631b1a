"""`mantra top`: the telemetry actor's live histograms, per actor x stream."""

from __future__ import annotations

import json
import time

from ..runtime import paths


def read(system: str) -> dict | None:
    p = paths.telemetry(paths.system_dir(system))
    try:
        return json.loads(p.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def render(system: str, snap: dict | None) -> str:
    if not snap:
        return f"{system}: no telemetry yet (is a Telemetry actor configured?)"
    head = (f"{'actor.stream':<22}{'msg/s':>10}{'count':>11} | {'proc p50':>9}{'p99':>8}{'p99.9':>8}{'max':>9}"
            f" | {'lat p50':>9}{'p99':>8}{'p99.9':>9}  (µs)")
    out = [f"system {system}   timing records lost: {snap.get('timing_lost', 0)}", head, "-" * len(head)]
    for name, t in snap["timers"].items():
        p, lat = t["processing_us"], t["latency_us"]
        out.append(f"{name:<22}{t['rate']:>10.0f}{p['count']:>11} | {p['p50']:>9.2f}{p['p99']:>8.2f}{p['p999']:>8.1f}"
                   f"{p['max']:>9.1f} | {lat['p50']:>9.2f}{lat['p99']:>8.2f}{lat['p999']:>9.1f}")
    return "\n".join(out)


def watch(system: str, interval: float = 1.0, iterations: int = 0) -> None:
    i = 0
    while not iterations or i < iterations:
        print("\033[2J\033[H" + render(system, read(system)), flush=True)
        i += 1
        time.sleep(interval)
