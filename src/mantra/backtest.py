"""`mantra backtest CONFIG.toml --data DIR`: the production system fed from recordings.

The system described by CONFIG runs unchanged, in the deterministic placement (one process, a
simulated clock, fixed actor order), except that:

- actors that produce the recorded market-data queues (feeds, synthetic markets) are replaced by one
  ``Replayer`` publishing the recorded ``l2`` / ``trades`` (whichever the data holds and the system
  has) at their recorded times;
- a ``Persister`` records every queue the run produces to ``--out`` (the replayed market data is
  already in ``--data``);
- the deterministic runner hands every actor each record at its recorded time, so no decision
  ever sees data from its future (``Runner.run_deterministic``);
- trading actors without an ``instruments`` parameter get the data's ``instruments.json``.

The result counts events, orders and fills, sums fees, marks positions to the last trade price for
the PnL, and digests every message the run produced (two deterministic runs give equal digests).
``damage`` says what of the recordings (and of the run's own output) could not be read and was
skipped: chunks, bytes, records, and where.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np

from .instruments import InstrumentRegistry
from .runtime.config import parse
from .runtime.supervisor import create_spine
from .runtime.clock import SimClock
from .runtime.process import Runner
from .spine.messages import OrderAction
from .spine.shm import remove_system
from .store import segments

MARKET = ("trades", "l2")  # replay order for records with equal times: a message's trades first


def prepare(doc: dict, data: Path, out: Path) -> dict:
    doc = json.loads(json.dumps(doc))  # deep copy
    doc.setdefault("system", {})["mode"] = "deterministic"
    doc["system"]["name"] = f"bt{os.getpid()}"
    recorded = set(segments.queues(data))
    streams = {q: q for q in MARKET if q in recorded and q in doc.get("queues", {})}
    if not streams:
        raise SystemExit(f"{data}: no recorded {' or '.join(MARKET)} for this system's queues")
    actors = doc.setdefault("actors", {})
    for name in [n for n, a in actors.items() if set(a.get("outputs", {}).values()) & set(streams)]:
        del actors[name]
    inst = data / "instruments.json"
    for a in actors.values():
        if inst.exists() and "instruments" not in a.get("params", {}) and a["class"].startswith("mantra.trading"):
            a.setdefault("params", {})["instruments"] = str(inst)
    replay = {"class": "mantra.store.replayer:Replayer", "outputs": {q: q for q in streams},
              "params": {"dir": str(data), "streams": streams}}
    # the run's own messages; the replayed market data is already in --data
    produced = [q for q in doc.get("queues", {}) if q not in streams]
    # chunks by size, not by (simulated) time: a backtest's bound on crash loss is moot
    persist = {"class": "mantra.store.persister:Persister",
               "params": {"dir": str(out), "chunk_records": 1 << 18, "flush_ms": 600_000, "queues": produced}}
    doc["actors"] = {"replay": replay, **actors, "persister": persist}
    for p in doc.get("processes", {}).values():
        p["actors"] = [a for a in p.get("actors", []) if a in doc["actors"]]
    return doc


def _bar(frac: float, rate: float, width: int = 30) -> str:
    fill = int(frac * width)
    return f"\r[{'#' * fill}{'.' * (width - fill)}] {frac * 100:5.1f}%  {rate / 1000:8.1f}k events/s"


def run(config: str | Path | dict, data: str | Path, out: str | Path | None = None,
        progress: bool = False) -> dict:
    data = Path(data)
    doc = config if isinstance(config, dict) else tomllib.loads(Path(config).read_text())
    out = Path(out) if out else Path(tempfile.mkdtemp(prefix="mantra-backtest-"))
    spec = parse(prepare(doc, data, out))
    create_spine(spec).close()
    try:
        runner = Runner(spec, list(spec.actors), process="backtest", clock=SimClock(1))
        replay = runner.slots[0].actor
        t0 = time.perf_counter()
        tick = None
        if progress:
            last = [0.0]

            def tick():
                t = time.perf_counter()
                if t - last[0] > 0.25:
                    last[0] = t
                    sys.stderr.write(_bar(replay.progress, replay.i / max(t - t0, 1e-9)))

        runner.run_deterministic(tick=tick)
        end = time.perf_counter()
        wall, run_s = end - t0, end - runner.started
        if progress:
            sys.stderr.write(_bar(1.0, replay.total / run_s) + "\n")
        telemetry = next((s.actor.snapshot(0) for s in runner.slots if hasattr(s.actor, "snapshot")), None)
        handled = {s.spec.name: s.handled for s in runner.slots if s.inputs}
    finally:
        remove_system(spec.name)
    return {**summarize(out, data, replay.total, run_s, telemetry, list(replay.damage)), "wall_s": round(wall, 3),
            "load_s": round(wall - run_s, 3), "handled": handled}


def _registry(data: Path) -> InstrumentRegistry | None:
    p = data / "instruments.json"
    return InstrumentRegistry.load(p) if p.exists() else None


def digest(out: Path, damage: list | None = None) -> str:
    h = hashlib.blake2b(digest_size=16)
    for q in segments.queues(out):
        h.update(q.encode())
        h.update(segments.load(out, q, damage=damage).tobytes())
    return h.hexdigest()


def summarize(out: Path, data: Path, events: int, run_s: float, telemetry: dict | None = None,
              damage: list | None = None) -> dict:
    """``events_per_s``: events over the run loop's time, loading the data excluded (as
    NautilusTrader's ``run()`` is timed in the peer benchmark).  ``damage``: what the replay
    skipped; what reading the results skips is added."""
    damage = [] if damage is None else damage
    reg = _registry(data)
    has = set(segments.queues(out))
    req = segments.load(out, "requests") if "requests" in has else None
    fills = segments.load(out, "fills") if "fills" in has else None
    trades = segments.load(data, "trades", damage=damage) if "trades" in segments.queues(data) else None
    res = {"events": events, "events_per_s": round(events / run_s) if run_s else 0, "run_s": round(run_s, 3),
           "orders": 0, "cancels": 0, "amends": 0, "fills": 0, "fees": 0.0, "pnl": 0.0, "positions": {},
           "pnl_curve": [], "out": str(out)}
    if req is not None and len(req):
        act = req["action"]
        res["orders"] = int((act == OrderAction.NEW).sum())
        res["cancels"] = int(((act == OrderAction.CANCEL) | (act == OrderAction.CANCEL_ALL)).sum())
        res["amends"] = int((act == OrderAction.AMEND).sum())
    if fills is not None and len(fills) and reg is not None:
        res["fills"] = len(fills)
        pnl_total, fees_total, curve_parts = 0.0, 0.0, []
        for iid in np.unique(fills["instrument"]).tolist():
            inst = reg[iid]
            f = fills[fills["instrument"] == iid]
            px, sz, side = f["price"].astype(object), f["size"].astype(object), f["side"].astype(object)
            unit = 10 ** inst.size_scale
            pos = int(np.sum(f["size"].astype(np.int64) * f["side"]))
            cash = -sum(p * s * d for p, s, d in zip(px, sz, side)) / unit  # exact ints, then quote units
            fee = int(f["fee"].astype(np.int64).sum())
            mark = int(trades["price"][trades["instrument"] == iid][-1]) if trades is not None and \
                (trades["instrument"] == iid).any() else int(f["price"][-1])
            scale = 10 ** inst.price_scale
            pnl = (cash + pos * mark / unit - fee) / scale
            pnl_total += pnl
            fees_total += fee / scale
            res["positions"][f"{inst.venue}:{inst.symbol}"] = inst.size_str(pos) if pos >= 0 else "-" + inst.size_str(-pos)
            # PnL over time: cash and position after each fill, marked at that fill's price
            c = np.cumsum((-f["price"].astype(np.float64) * f["size"] * f["side"]) / unit - f["fee"])
            p = np.cumsum(f["size"].astype(np.float64) * f["side"])
            curve_parts.append((f["publish"], (c + p * f["price"] / unit) / scale))
        res["fees"], res["pnl"] = round(fees_total, 6), round(pnl_total, 6)
        if len(curve_parts) == 1:
            ts, v = curve_parts[0]
            idx = np.linspace(0, len(v) - 1, min(20, len(v))).astype(int)
            res["pnl_curve"] = [[int(ts[i]), round(float(v[i]), 4)] for i in idx]
    res["digest"] = digest(out, damage)  # reads every output queue: its damage is noted there
    res["damage"] = segments.summary(list(dict.fromkeys(damage)))  # the trades are read twice
    if telemetry:
        res["latency"] = {k: {"processing_us": v["processing_us"]} for k, v in telemetry["timers"].items()}
    return res


def report(r: dict) -> str:
    lines = [
        f"events        {r['events']:>12,}   ({r['events_per_s']:,}/s over {r['run_s']} s; loading data "
        f"{r.get('load_s', 0)} s)",
        f"orders        {r['orders']:>12,}   cancels {r['cancels']:,}  amends {r['amends']:,}",
        f"fills         {r['fills']:>12,}   fees {r['fees']:.4f}",
        f"PnL           {r['pnl']:>12.4f}",
        "positions     " + (", ".join(f"{k} {v}" for k, v in r["positions"].items()) or "flat"),
        f"digest        {r['digest']}",
    ]
    d = r.get("damage")
    if d and d["chunks"]:
        lines.append(f"DAMAGED DATA  {d['chunks']:>12,}   parts skipped ({d['bytes']:,} bytes, "
                     f"{d['records']:,} records known lost): " + "; ".join(d["where"][:3]))
    if r.get("pnl_curve"):
        vals = [v for _, v in r["pnl_curve"]]
        lo, hi = min(vals), max(vals)
        marks = " ▁▂▃▄▅▆▇█"
        spark = "".join(marks[int((v - lo) / (hi - lo) * 8)] if hi > lo else marks[4] for v in vals)
        lines.append(f"PnL over time {spark}  ({lo:.2f} .. {hi:.2f})")
    if r.get("latency"):
        lines.append("processing per actor x stream (µs, wall clock): p50 / p99 / max, count")
        for k, v in r["latency"].items():
            p = v["processing_us"]
            lines.append(f"  {k:<24}{p['p50']:>8.2f} {p['p99']:>8.2f} {p['max']:>9.1f}  {p['count']:,}")
    return "\n".join(lines)
